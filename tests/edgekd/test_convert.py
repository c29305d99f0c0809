"""`edgekd convert`: the whole chain on a tiny trained student (export, TFLite fp32/fp16/int8 and ONNX int8,
parity against torch, manifest, runtime load of each artifact); refusals and parity failures change nothing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from export_support import SPEC, make_student_checkpoint
from typer.testing import CliRunner

import edgekd_runtime
from edgekd.cli import app
from edgekd.export import convert_exported_bundle, export_bundle
from edgekd.export.samples import bundle_samples, normalise
from edgekd_runtime.manifest import Manifest, verify_artifact

pytestmark = pytest.mark.tflite


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory):
    return make_student_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.pt")


@pytest.fixture(scope="module")
def converted(tmp_path_factory, student_ckpt):
    out = tmp_path_factory.mktemp("conv") / "bundle"
    export_bundle(student_ckpt, out)
    manifest, report = convert_exported_bundle(out)
    return out, manifest, report


@pytest.fixture(scope="module")
def held_out():
    s = bundle_samples(SPEC, 16)
    return s.test_x, s.test_y


def test_bundle_lists_every_artifact_with_checksums(converted):
    out, manifest, _ = converted
    assert Manifest.load(out).to_dict() == manifest.to_dict()
    got = [(a.path, a.format, a.precision) for a in manifest.artifacts]
    assert got == [("student.onnx", "onnx", "fp32"), ("student_float32.tflite", "tflite", "fp32"),
                   ("student_float16.tflite", "tflite", "fp16"), ("student_int8.tflite", "tflite", "int8"),
                   ("student_int8.onnx", "onnx", "int8")]
    for a in manifest.artifacts:
        verify_artifact(out, a)  # sha256 and presence
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json", *(a.path for a in manifest.artifacts)])
    conv = manifest.extra["conversion"]
    assert conv["reference"] == "torch" and conv["num_eval_samples"] == 120
    assert conv["num_calibration_samples"] >= 200 and "onnx2tf" in manifest.versions


def test_parity_against_torch_meets_each_tolerance(converted):
    _, manifest, _ = converted
    arts = {(a.format, a.precision): a for a in manifest.artifacts}
    torch_acc = manifest.extra["torch_accuracy"]
    for key, a in arts.items():
        assert a.parity["passed"] and a.parity["reference"] == "torch" and a.parity["num_samples"] == 120, key
    for key in (("onnx", "fp32"), ("tflite", "fp32")):
        assert arts[key].parity["max_abs_diff"] <= 1e-4 and arts[key].parity["top1_agreement"] == 1.0
        assert arts[key].accuracy == pytest.approx(torch_acc)
    for key in (("tflite", "int8"), ("onnx", "int8")):  # the default tolerance; margins: export_support.py
        print(f"{arts[key].path}: top-1 agreement {100 * arts[key].parity['top1_agreement']:.2f}% vs torch")
        assert arts[key].parity["top1_agreement"] >= 0.99
        assert abs(arts[key].accuracy - torch_acc) <= 0.02
    assert arts[("tflite", "int8")].size_bytes < 0.5 * arts[("tflite", "fp32")].size_bytes


def test_runtime_loads_each_artifact_and_reproduces_the_numbers(converted, held_out, student_ckpt):
    from edgekd.export.onnx_export import torch_logits
    from edgekd.train.checkpoint import load_student_checkpoint

    out, manifest, _ = converted
    x, y = held_out
    model, _ = load_student_checkpoint(student_ckpt)
    ref = torch_logits(model, normalise(x, 0.1307, 0.3081))
    for a in manifest.artifacts:
        rec = edgekd_runtime.load(out, backend=a.format, precision=a.precision)
        assert rec.evaluate(x, y) == pytest.approx(a.accuracy), a.path
        assert a.extra["accuracy_source"] == "edgekd_runtime"
        logits = rec.forward(x[:16])
        # int8 steps scale with the logit range: measured max errors (6 seeds) of ~1 % of it with exact int8
        # arithmetic (XNNPACK; onnxruntime on VNNI or ARM) and up to 8 % from onnxruntime on AVX2 without VNNI, whose
        # u8*s8 pair sums saturate at int16 in the first layer; a runtime that dequantised wrongly is off by more.
        span = float(np.abs(ref[:16]).max())
        tol = {"fp32": 1e-4, "fp16": 0.05, "int8": 0.15 * span}[a.precision]
        err = float(np.abs(logits - ref[:16]).max())
        print(f"{a.path}: max abs logit error {err:.3g} (allowed {tol:.3g}, logit range {span:.3g})")
        assert err <= tol, a.path


def test_conversion_records_the_deployed_artifact_and_the_board_loads_it(converted):
    """No budget in this checkpoint: edgekd's default precision, int8, as TFLite; load(bundle) opens that one."""
    out, manifest, _ = converted
    assert manifest.deployed == Manifest.load(out).deployed == "student_int8.tflite"
    rec = edgekd_runtime.load(out)
    assert rec.model_path.name == "student_int8.tflite" and rec.precision == "int8" and rec.is_deployed


def test_cli_convert_keep_going_redeploys_when_the_deployed_artifact_fails(converted, tmp_path, monkeypatch):
    """An int8 TFLite that misses its tolerance is left out: the deployed one becomes the ONNX int8."""
    from edgekd_converters import TOLERANCES, Tolerance

    src, _, _ = converted
    out = tmp_path / "bundle"
    shutil.copytree(src, out)
    monkeypatch.setitem(TOLERANCES, "int8", Tolerance(atol=0.0, rtol=0.0, min_top1_agreement=1.0 + 1e-9))
    r = CliRunner().invoke(app, ["convert", str(out), "--force", "--keep-going", "--to", "tflite"])
    assert r.exit_code == 1
    m = Manifest.load(out)
    assert "student_int8.tflite" not in [a.path for a in m.artifacts] and m.deployed == "student_int8.onnx"
    assert edgekd_runtime.load(out).model_path.name == "student_int8.onnx"


def test_deployable_artifact_rule():
    from edgekd_converters.bundle import deployable_artifact
    from edgekd_runtime.manifest import Artifact

    def manifest(paths, budget=None):
        arts = [Artifact(p, p.rsplit(".", 1)[1], prec, 1, "0") for p, prec in paths]
        return Manifest(name="m", labels=["0", "1"], artifacts=arts, budget=budget)

    every = [("student.onnx", "fp32"), ("student_float32.tflite", "fp32"), ("student_float16.tflite", "fp16"),
             ("student_int8.tflite", "int8"), ("student_int8.onnx", "int8")]
    assert deployable_artifact(manifest(every)).path == "student_int8.tflite"
    assert deployable_artifact(manifest(every, {"precision": "fp16"})).path == "student_float16.tflite"
    assert deployable_artifact(manifest(every, {"precision": "fp32"})).path == "student_float32.tflite"
    assert deployable_artifact(manifest(every[:3] + every[4:])).path == "student_int8.onnx"
    assert deployable_artifact(manifest(every[:1])).path == "student.onnx"


def test_second_conversion_is_refused_without_force(converted):
    from edgekd_converters import OutputExistsError

    out, _, _ = converted
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(OutputExistsError, match="already has .*student_int8.tflite.*--force"):
        convert_exported_bundle(out)
    r = CliRunner().invoke(app, ["convert", str(out)])
    assert r.exit_code == 2 and "--force" in r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_parity_failure_leaves_the_bundle_untouched(converted, tmp_path, monkeypatch):
    from edgekd_converters import TOLERANCES, ParityError, Tolerance

    src, _, _ = converted
    out = tmp_path / "bundle"
    shutil.copytree(src, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setitem(TOLERANCES, "fp16", Tolerance(atol=0.0, rtol=0.0, min_top1_agreement=1.0))
    with pytest.raises(ParityError, match=r"student_float16.tflite: parity check against torch failed"):
        convert_exported_bundle(out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no staging dir, no new file


def test_cli_convert_onnx_int8_only_json(student_ckpt, tmp_path):
    out = tmp_path / "b"
    export_bundle(student_ckpt, out, max_samples=60)
    r = CliRunner().invoke(app, ["convert", str(out), "--to", "onnx-int8", "--max-samples", "60", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [a["path"] for a in doc["artifacts"]] == ["student.onnx", "student_int8.onnx"]
    assert doc["artifacts"][1]["parity"]["num_samples"] == 60


def test_cli_convert_bad_bundles_exit_2(tmp_path, converted):
    r = CliRunner().invoke(app, ["convert", str(tmp_path)])
    assert r.exit_code == 2 and "no manifest.json" in r.output and "Traceback" not in r.output
    src, _, _ = converted
    tampered = tmp_path / "tampered"
    shutil.copytree(src, tampered)
    with open(tampered / "student.onnx", "ab") as f:
        f.write(b"\x00")
    r = CliRunner().invoke(app, ["convert", str(tampered), "--force"])
    assert r.exit_code == 2 and "sha256" in r.output
    relabelled = tmp_path / "relabelled"
    shutil.copytree(src, relabelled)
    d = json.loads((relabelled / "manifest.json").read_text())
    d["labels"] = d["labels"][:-1]
    (relabelled / "manifest.json").write_text(json.dumps(d))
    r = CliRunner().invoke(app, ["convert", str(relabelled), "--force"])  # named against the bundle, not a stage
    assert r.exit_code == 2 and f"{relabelled / 'student.onnx'}: the model outputs" in r.output, r.output
    assert ".convert-" not in r.output
    assert CliRunner().invoke(app, ["convert", "--help"]).exit_code == 0


def test_keep_going_writes_what_passed_and_records_the_failure(converted, tmp_path, monkeypatch):
    from edgekd_converters import TOLERANCES, Tolerance

    src, _, _ = converted
    out = tmp_path / "bundle"
    shutil.copytree(src, out)
    monkeypatch.setitem(TOLERANCES, "fp16", Tolerance(atol=0.0, rtol=0.0, min_top1_agreement=1.0))
    r = CliRunner().invoke(app, ["convert", str(out), "--force", "--keep-going"])
    assert r.exit_code == 1 and "student_float16.tflite missed its tolerance" in r.output
    manifest = Manifest.load(out)
    assert "student_float16.tflite" not in [a.path for a in manifest.artifacts]
    assert not (out / "student_float16.tflite").exists()  # the old fp16 file is no longer vouched for
    (failed,) = manifest.extra["conversion"]["failed"]
    assert failed["path"] == "student_float16.tflite" and failed["parity"]["passed"] is False
    assert failed["parity"]["max_abs_diff"] > 0.0
    for a in manifest.artifacts:
        verify_artifact(out, a)


def test_reference_falls_back_to_onnx_when_the_checkpoint_is_gone(student_ckpt, tmp_path):
    ckpt = tmp_path / "student.pt"
    shutil.copyfile(student_ckpt, ckpt)
    export_bundle(ckpt, tmp_path / "b", max_samples=40)
    ckpt.unlink()  # the bundle travelled to a machine without the checkpoint
    manifest, report = convert_exported_bundle(tmp_path / "b", targets=["onnx-int8"], max_samples=40)
    assert manifest.extra["conversion"]["reference"] == "onnx"
    assert manifest.artifact("onnx", "int8").parity["reference"] == "onnx" and not report.failed


def test_runtime_and_converter_accuracy_must_agree(converted, tmp_path, monkeypatch):
    """If the board runtime read an artifact differently from the converters, the manifest would lie."""
    import edgekd_converters.bundle as bundle_mod
    from edgekd_converters import ConversionError

    src, manifest, _ = converted
    for a in manifest.artifacts[1:]:
        assert abs(a.accuracy - a.extra["converter_accuracy"]) <= bundle_mod.RUNTIME_ACCURACY_SLACK
    out = tmp_path / "bundle"
    shutil.copytree(src, out)
    real_load = edgekd_runtime.load

    class Inverted:  # a runtime that feeds inverted canvases (a polarity bug)
        def __init__(self, rec):
            self.rec = rec

        def evaluate(self, x, y):
            return self.rec.evaluate(1.0 - x, y)

    monkeypatch.setattr(edgekd_runtime, "load", lambda *a, **k: Inverted(real_load(*a, **k)))
    with pytest.raises(ConversionError, match="edgekd_runtime measures accuracy"):
        convert_exported_bundle(out, targets=["onnx-int8"], force=True)
    assert Manifest.load(out).to_dict() == manifest.to_dict()


def test_killed_conversion_leaves_no_stage_behind_the_next_one(student_ckpt, tmp_path):
    """A conversion killed mid-way (SIGKILL: no cleanup runs) leaves its hidden stage; the next conversion of the
    bundle removes it, and an old stage with no pid in its name, but not one owned by a live process."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "b"
    export_bundle(student_ckpt, out, max_samples=60)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen([sys.executable, "-m", "edgekd", "convert", str(out), "--max-samples", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob(f".convert-{proc.pid}-*")):  # the stage's name holds its owner's pid
        assert proc.poll() is None and time.monotonic() < deadline, "the conversion never staged anything"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (killed,) = out.glob(".convert-*")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p != killed} == before  # nothing half-written
    no_pid = out / ".convert-nopid"
    no_pid.mkdir()
    os.utime(no_pid, (time.time() - 3600, time.time() - 3600))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (out / f".convert-{live.pid}-live").mkdir()
        r = CliRunner().invoke(app, ["convert", str(out), "--to", "onnx-int8", "--max-samples", "60"])
        assert r.exit_code == 0, r.output
        assert sorted(p.name for p in out.glob(".convert-*")) == [f".convert-{live.pid}-live"]
    finally:
        live.kill()
        live.wait()
