"""The run's report shows the deployed artifact's image path (decode, preprocess, inference, total) measured by
the bench step through edgekd_runtime; on a tiny hand-made bundle (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

STAGES = ["decode", "preprocess", "inference", "total"]


def _bundle(d: Path) -> Path:
    """student.onnx (Flatten -> Gemm, 10 classes) and a manifest that records it as deployed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgekd_runtime.manifest import Artifact, Manifest

    d.mkdir()
    w = np.random.default_rng(0).normal(0, 0.05, (784, 10)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["f"]), helper.make_node("Gemm", ["f", "W", "b"], ["out"])], "lin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.zeros(10, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(d / "student.onnx"))
    m = Manifest(name="lin", labels=[str(i) for i in range(10)])
    m.artifacts = [Artifact.from_file(d, "student.onnx", "fp32")]
    m.deployed = "student.onnx"
    m.save(d)
    return d


def _digit() -> np.ndarray:
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32) + 0.5
    r = np.sqrt(((yy - 14.0) / 9.3) ** 2 + ((xx - 14.0) / 6.3) ** 2)
    return (np.clip(1.0 - np.abs(r - 0.86) / 0.24, 0.0, 1.0) * 255).astype(np.uint8)


def test_digit_photo_is_a_640x480_frame_the_runtime_reads_back_as_the_digit():
    from edgekd.data.digit_photos import render_digit_photo
    from edgekd_runtime.preprocess import preprocess

    photo = render_digit_photo(_digit())
    assert photo.shape == (480, 640) and photo.dtype == np.uint8
    assert np.array_equal(photo, render_digit_photo(_digit()))
    canvas = preprocess(photo)
    ref = _digit().astype(np.float32) / 255
    assert np.corrcoef(canvas.ravel(), ref.ravel())[0, 1] > 0.8


def test_bench_step_measures_the_deployed_artifact_and_the_report_shows_it(tmp_path):
    from types import SimpleNamespace

    from edgekd.pipeline.results import _image_path
    from edgekd.pipeline.run import _bench_step
    from edgekd.report.render import render_report

    bundle = _bundle(tmp_path / "bundle")
    run = tmp_path / "run"
    run.mkdir()
    test = SimpleNamespace(x=_digit()[None], y=np.array([0]))
    lines: list[str] = []
    bench = _bench_step(SimpleNamespace(bench_runs=6, task="digits"), bundle, run, lines.append, test)
    ip = bench["student.onnx"]["image_path"]
    assert ip["runs"] == 6 and ip["decoded_shape"] == [480, 640] and "640x480" in ip["image"]
    assert "samples_ms" not in ip and list(ip["stages"]) == STAGES
    st = ip["stages"]
    assert st["total"]["mean_ms"] == pytest.approx(sum(st[k]["mean_ms"] for k in STAGES[:3]))
    assert any("decode" in line and "preprocess" in line for line in lines)
    assert json.loads((run / "bench.json").read_text())["artifacts"]["student.onnx"]["image_path"] == ip

    row = _image_path(bench, "student.onnx")
    assert row is not None and row.artifact == "student.onnx" and row.stages == st
    assert _image_path({"a.tflite": {"image_path": None}}, "a.tflite") is None
    (run / "report.json").write_text(json.dumps({"image_path": row.to_dict()}))
    md = render_report(run).read_text()
    assert "## Image path" in md and "| stage | p50 (ms) | p90 (ms) | p99 (ms) | mean (ms) |" in md
    for k in STAGES:
        assert f"| {k} | {st[k]['p50_ms']:.3f} | {st[k]['p90_ms']:.3f} | {st[k]['p99_ms']:.3f} |" in md
    (run / "report.json").write_text(json.dumps({"image_path": None}))
    assert "Image path" not in render_report(run).read_text()
