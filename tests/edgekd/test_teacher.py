"""Teachers: built-in training, user files (TorchScript, ExportedProgram, state_dict), refusals with exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.models.teachers import TEACHERS, TeacherMismatchError, load_teacher
from edgekd_runtime.errors import ModelLoadError, UserInputError


@pytest.fixture(scope="module")
def small_teacher():
    torch.manual_seed(0)
    return TEACHERS.get("cnn-small")(10).eval()


def _same_outputs(a, b):
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-5)


def test_torchscript_exported_program_and_state_dict_teachers(small_teacher, tmp_path):
    torch.jit.save(torch.jit.trace(small_teacher, torch.zeros(1, 1, 28, 28)), str(tmp_path / "t.ts"))
    ts = load_teacher(str(tmp_path / "t.ts"), 10)
    assert ts.source == "torchscript" and not ts.has_features and _same_outputs(ts.model, small_teacher)

    ep = torch.export.export(small_teacher, (torch.zeros(2, 1, 28, 28),))  # static batch: refused, says why
    torch.export.save(ep, str(tmp_path / "static.pt2"))
    with pytest.raises(ModelLoadError, match="dynamic batch"):
        load_teacher(str(tmp_path / "static.pt2"), 10)
    batch = torch.export.Dim("batch", min=1, max=4096)
    ep = torch.export.export(small_teacher, (torch.zeros(2, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(ep, str(tmp_path / "t.pt2"))
    e = load_teacher(str(tmp_path / "t.pt2"), 10)
    assert e.source == "exported-program" and _same_outputs(e.model, small_teacher)

    torch.save(small_teacher.state_dict(), tmp_path / "sd.pt")
    sd = load_teacher(str(tmp_path / "sd.pt"), 10, arch="cnn-small")
    assert sd.source == "state-dict" and sd.has_features and _same_outputs(sd.model, small_teacher)
    with pytest.raises(UserInputError, match="--teacher-arch"):
        load_teacher(str(tmp_path / "sd.pt"), 10)


def test_teacher_with_wrong_class_count_is_refused(small_teacher, tmp_path):
    torch.jit.save(torch.jit.trace(small_teacher, torch.zeros(1, 1, 28, 28)), str(tmp_path / "t.ts"))
    with pytest.raises(TeacherMismatchError, match=r"\(1, 10\).*26 classes"):
        load_teacher(str(tmp_path / "t.ts"), 26)
    torch.save(small_teacher.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(TeacherMismatchError, match="5 outputs"):
        load_teacher(str(tmp_path / "sd.pt"), 5, arch="cnn-small")


def test_corrupt_and_missing_teacher_files(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(ModelLoadError, match="bad.pt"):
        load_teacher(str(tmp_path / "bad.pt"), 10)
    with pytest.raises(ModelLoadError, match="not found"):
        load_teacher(str(tmp_path / "none.pt"), 10)
    torch.save({"format": "edgekd-checkpoint", "kind": "student", "arch": "linear-r16"}, tmp_path / "s.pt")
    with pytest.raises(ModelLoadError, match="not a teacher"):
        load_teacher(str(tmp_path / "s.pt"), 10)


def test_cli_teacher_train_then_distill_and_refusals(tmp_path):
    run = CliRunner().invoke
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {limit_per_class: 12}\n")
    r = run(app, ["teacher", "train", "--arch", "cnn-small", "--epochs", "2", "--device", "cpu", "--json",
                  "--config", str(cfg), "--out", str(tmp_path / "t2")])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    ck = torch.load(tmp_path / "t2" / "teacher.pt", weights_only=True)
    assert ck["kind"] == "teacher" and ck["arch"] == "cnn-small" and m["epochs_run"] == 2
    r = run(app, ["distill", "--teacher", str(tmp_path / "t2" / "teacher.pt"), "--student", "dscnn-w8-d2-r16",
                  "--loss", "kd+0.5*fitnet", "--config", str(cfg), "--epochs", "1", "--views", "1", "--json",
                  "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["loss"] == "kd+0.5*fitnet" and out["teacher"] == "cnn-small"
    st = torch.load(tmp_path / "s" / "student.pt", weights_only=True)
    assert st["arch"] == "dscnn-w8-d2-r16" and st["input_size"] == 16
    # a teacher for other classes: exit 2, a message, no traceback
    cfg3 = tmp_path / "c3.yaml"
    import numpy as np

    np.savez(tmp_path / "three.npz", x=np.random.default_rng(0).integers(0, 255, (30, 28, 28)).astype(np.uint8),
             y=np.repeat(np.arange(3), 10))
    cfg3.write_text(f"data: {{source: npz, path: {tmp_path / 'three.npz'}}}\n")
    r = run(app, ["distill", "--teacher", str(tmp_path / "t2" / "teacher.pt"), "--student", "linear-r16",
                  "--config", str(cfg3), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "10 classes" in r.stderr and "3" in r.stderr and "Traceback" not in r.output
    r = run(app, ["teacher", "train", "--arch", "resnet152"])
    assert r.exit_code == 2 and "cnn-small" in r.stderr
    r = run(app, ["teacher", "list", "--json"])
    assert r.exit_code == 0 and "cnn" in json.loads(r.stdout)["teachers"]
