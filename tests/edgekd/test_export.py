"""`edgekd export`: a real (tiny, trained) student checkpoint -> student.onnx + manifest.json, checked against
torch on the test split; refusals and failures leave nothing behind."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from export_support import SPEC, STUDENT, make_student_checkpoint
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.export import export_bundle
from edgekd_runtime.atomic import sha256_file
from edgekd_runtime.manifest import Manifest


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory):
    return make_student_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.pt")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, student_ckpt):
    out = tmp_path_factory.mktemp("export") / "bundle"
    return out, export_bundle(student_ckpt, out)


def test_bundle_holds_onnx_and_manifest(bundle, student_ckpt):
    out, manifest = bundle
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "student.onnx"]
    saved = Manifest.load(out)
    assert saved.to_dict() == manifest.to_dict()
    assert saved.name == STUDENT and saved.labels == [str(i) for i in range(10)]
    assert saved.task == "image-classification"
    assert (saved.input.name, saved.input.shape, saved.input.layout, saved.input.dtype) == \
        ("input", (1, 1, 16, 16), "NCHW", "float32")
    assert (saved.normalization.mean, saved.normalization.std) == (0.1307, 0.3081)
    assert saved.preprocessing.kind == "mnist" and saved.output == {"name": "logits", "kind": "logits"}
    assert {k: saved.extra["data"][k] for k in SPEC} == SPEC
    assert saved.extra["checkpoint"]["sha256"] == sha256_file(student_ckpt)
    assert {"torch", "onnx", "onnxruntime", "python"} <= set(saved.versions) and saved.created.endswith("Z")
    art = saved.artifacts[0]
    assert (art.path, art.format, art.precision) == ("student.onnx", "onnx", "fp32")
    assert art.sha256 == sha256_file(out / "student.onnx") and art.size_bytes == (out / "student.onnx").stat().st_size


def test_onnx_matches_torch_on_the_test_split(bundle):
    _, manifest = bundle
    p = manifest.artifacts[0].parity
    assert p["reference"] == "torch" and p["num_samples"] == 120 and p["passed"]
    assert p["max_abs_diff"] <= 1e-4 and p["top1_agreement"] == 1.0
    acc = manifest.artifacts[0].accuracy
    assert acc == pytest.approx(manifest.extra["torch_accuracy"]) and acc > 0.6  # the student learned something
    assert manifest.artifacts[0].extra["accuracy_source"] == "edgekd_runtime"


def test_onnx_graph_contract(bundle):
    import onnxruntime as ort

    out, _ = bundle
    model = onnx.load(out / "student.onnx")
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (outp,) = model.graph.input, model.graph.output
    assert (inp.name, outp.name) == ("input", "logits")
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch
    sess = ort.InferenceSession(str(out / "student.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        assert sess.run(None, {"input": np.zeros((n, 1, 16, 16), np.float32)})[0].shape == (n, 10)


def test_existing_output_is_refused_then_replaced_with_force(bundle, student_ckpt):
    from edgekd_converters import OutputExistsError

    out, _ = bundle
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(OutputExistsError, match="already exists; pass --force"):
        export_bundle(student_ckpt, out)
    assert (out / "manifest.json").read_bytes() == before
    m = export_bundle(student_ckpt, out, force=True, max_samples=30)
    assert m.artifacts[0].parity["num_samples"] == 30 and not list(out.parent.glob(".bundle.*"))


def test_force_never_deletes_the_checkpoint_or_files_edgekd_did_not_write(student_ckpt, tmp_path):
    from edgekd_converters import OutputExistsError

    own = tmp_path / "d"
    own.mkdir()
    ck = shutil.copy(student_ckpt, own / "student.pt")
    (own / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="holds .*student.pt, an input of this command.*nothing was deleted"):
        export_bundle(ck, own, force=True, max_samples=30)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="is not a bundle edgekd wrote"):
        export_bundle(student_ckpt, other, force=True, max_samples=30)
    export_bundle(student_ckpt, tmp_path / "b", max_samples=30)
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="holds notes.txt, which edgekd did not write there"):
        export_bundle(student_ckpt, tmp_path / "b", force=True, max_samples=30)
    assert sorted(p.name for p in own.iterdir()) == ["notes.txt", "student.pt"]
    assert (other / "notes.txt").is_file() and (tmp_path / "b" / "notes.txt").is_file()


def test_parity_failure_writes_nothing(student_ckpt, tmp_path, monkeypatch):
    """A deliberately altered ONNX export (one weight changed) is caught against torch."""
    from onnx import numpy_helper

    import edgekd.export.bundle as bundle_mod
    from edgekd_converters import ParityError

    real_export = bundle_mod.export_onnx

    def altered_export(model, size, path, opset):
        real_export(model, size, path, opset)
        proto = onnx.load(path)
        init = max(proto.graph.initializer, key=lambda i: np.prod(i.dims))
        w = numpy_helper.to_array(init).copy()
        w.flat[0] += 0.5
        init.CopyFrom(numpy_helper.from_array(w, init.name))
        onnx.save(proto, path)
        return path

    monkeypatch.setattr(bundle_mod, "export_onnx", altered_export)
    with pytest.raises(ParityError, match=r"student.onnx: parity check against torch failed .* max abs diff"):
        export_bundle(student_ckpt, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_json_and_bad_inputs(student_ckpt, tmp_path):
    r = CliRunner().invoke(app, ["export", str(student_ckpt), "--out", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["artifacts"][0]["parity"]["passed"] is True
    again = CliRunner().invoke(app, ["export", str(student_ckpt), "--out", str(tmp_path / "b")])
    assert again.exit_code == 2 and "--force" in again.output
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    bad = CliRunner().invoke(app, ["export", str(junk), "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "junk.pt" in bad.output and "Traceback" not in bad.output
    missing = CliRunner().invoke(app, ["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "d")])
    assert missing.exit_code == 2 and "not found" in missing.output
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
    assert CliRunner().invoke(app, ["export", "--help"]).exit_code == 0


def test_digit_and_line_exports_pick_their_check_split_by_one_rule():
    """`eval_split`: the test split, else the val split (data without a test split), else a typed error."""
    from types import SimpleNamespace

    from edgekd.export.samples import eval_split
    from edgekd_runtime.errors import UserInputError

    assert eval_split(SimpleNamespace(test=[1, 2], val=[3]), "data d") == ([1, 2], "test")
    assert eval_split(SimpleNamespace(test=[], val=[3]), "data d") == ([3], "val")
    with pytest.raises(UserInputError, match="line data d: no test or validation samples to check the export on"):
        eval_split(SimpleNamespace(test=[], val=[]), "line data d")
