"""Bad inputs to the training side are refused with `error: ...` and exit 2: before any training (run, distill,
teacher train), for damaged checkpoints and teacher files, unwritable outputs, and labels that are not classes."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from cli_checks import refused

from edgekd.kd import LossConfig, check_loss
from edgekd.models.teachers import TEACHERS, load_teacher
from edgekd_runtime.errors import ModelLoadError, UnknownNameError, UserInputError

SMALL_DATA = "data: {limit_per_class: 20}\n"


@pytest.mark.parametrize("extra, needle", [
    (["--student", "cnn-w16-d9-r28"], "depth 1..4 for cnn"),
    (["--student", "resnet-w8-d2-r28"], "bad student id 'resnet-w8-d2-r28'"),
    (["--student", "ctc-w8-d2-r24"], "reads text lines (CTC)"),
])
def test_run_refuses_a_bad_student_before_reading_data(tmp_path, no_work, extra, needle):
    refused(["run", "--quick", "--out", tmp_path / "run", *extra], needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("yaml, needle", [
    ("distill: {loss: frame_kd}", "KD loss 'frame_kd' is for text lines (--task lines), not the digits task"),
    ("distill: {loss: 'kd+0.5*nope'}", "unknown KD loss 'nope'"),
    ("distill: {temperature: 0}", "KD temperature must be > 0"),
    ("distill: {transfer_views: 0}", "transfer_views must be >= 1"),
    ("teacher_arch: resnet", "unknown teacher 'resnet'"),
])
def test_run_refuses_bad_settings_before_reading_data(tmp_path, no_work, yaml, needle):
    (tmp_path / "c.yaml").write_text(yaml + "\n")
    refused(["run", "--quick", "--config", tmp_path / "c.yaml", "--out", tmp_path / "run"], needle)


def test_run_refuses_an_output_it_cannot_write(tmp_path, no_work):
    (tmp_path / "file").write_text("x")
    refused(["run", "--quick", "--out", tmp_path / "file" / "run"], "is a file, not a directory")


def test_run_refuses_a_student_over_budget_before_the_teacher_trains(tmp_path, monkeypatch):
    import edgekd.train.pipeline

    monkeypatch.setattr(edgekd.train.pipeline, "train_teacher",
                        lambda *a, **k: pytest.fail("the teacher trained before the budget was checked"))
    (tmp_path / "c.yaml").write_text(SMALL_DATA)
    refused(["run", "--quick", "--config", tmp_path / "c.yaml", "--student", "cnn-w128-d3-r28",
              "--out", tmp_path / "run"], "no student fits this budget")


@pytest.mark.parametrize("extra, needle", [
    (["--student", "dscnn-w8-d9-r28", "--loss", "none"], "depth 1..6 for dscnn"),
    (["--student", "dscnn-w8-d3-r28", "--loss", "blank_kd", "--teacher", "t.pt"], "is for text lines"),
    (["--student", "dscnn-w8-d3-r28"], "give --teacher FILE"),
    (["--task", "lines", "--student", "ctc-w8-d2-r32", "--loss", "none"], "takes lines 32 px high"),
    (["--task", "lines", "--student", "ctc-w8-d2-r24", "--loss", "kd", "--teacher", "t.pt"], "is for digits"),
])
def test_distill_refuses_bad_inputs_before_reading_data(tmp_path, no_work, extra, needle):
    refused(["distill", "--out", tmp_path / "o", *extra], needle)
    assert not (tmp_path / "o").exists()


def test_distill_refuses_an_output_it_cannot_write(tmp_path, no_work):
    (tmp_path / "o").write_text("a file")
    refused(["distill", "--student", "dscnn-w8-d3-r28", "--loss", "none", "--out", tmp_path / "o"],
             "exists and is not a directory")


def test_teacher_train_reads_the_data_before_writing_anything(tmp_path):
    np.savez(tmp_path / "one.npz", x=np.zeros((6, 28, 28), np.uint8), y=np.zeros(6, np.int64))
    refused(["teacher", "train", "--data", "npz", "--data-path", tmp_path / "one.npz", "--out", tmp_path / "t"],
             "needs at least 2 classes")
    assert not (tmp_path / "t").exists()


def test_check_loss_by_task():
    check_loss(LossConfig("kd+0.5*fitnet"), "digits")
    check_loss(LossConfig("blank_kd"), "lines")
    check_loss(LossConfig("none"), "lines")
    with pytest.raises(UserInputError, match="for lines use one of: blank_kd, frame_kd, none, seq_kd"):
        check_loss(LossConfig("0.5*kd+frame_kd"), "lines")
    with pytest.raises(UnknownNameError):
        check_loss(LossConfig("kd+nope"), "digits")


# ---- checkpoints and teacher files --------------------------------------------------------------------------------
def _bad_checkpoints(d):
    base = {"format": "edgekd-checkpoint", "num_classes": 10, "state_dict": {}}
    (d / "empty.pt").write_bytes(b"")
    (d / "text.pt").write_text("hello world\n")
    for kind in ("student", "teacher"):
        torch.save({**base, "kind": kind}, d / f"{kind}_noarch.pt")
        arch = "linear-r28" if kind == "student" else "cnn-small"
        torch.save({**base, "kind": kind, "arch": arch, "num_classes": "ten"}, d / f"{kind}_ten.pt")
    return {"empty.pt": "is empty (0 bytes)", "text.pt": "cannot be read as a torch file (KeyError",
            "noarch.pt": "has no architecture (arch: None)", "ten.pt": "num_classes 'ten' is not a whole number"}


def test_export_refuses_damaged_checkpoints(tmp_path):
    needles = _bad_checkpoints(tmp_path)
    for name in ("empty.pt", "text.pt", "student_noarch.pt", "student_ten.pt"):
        refused(["export", tmp_path / name, "--out", tmp_path / "b"], needles[name.split("_")[-1]])
        assert not (tmp_path / "b").exists()


def test_teacher_refuses_damaged_checkpoints(tmp_path):
    needles = _bad_checkpoints(tmp_path)
    for name in ("empty.pt", "text.pt", "teacher_noarch.pt", "teacher_ten.pt"):
        with pytest.raises(ModelLoadError, match=re.escape(needles[name.split("_")[-1]])):
            load_teacher(str(tmp_path / name), 10)


def test_bad_exported_program_teacher_fails_quietly_with_the_cause(tmp_path, capfd):
    torch.save(TEACHERS.get("cnn-small")(10).state_dict(), tmp_path / "weights.pt2")  # a zip, not a .pt2
    (tmp_path / "text.pt2").write_text("hello")
    capfd.readouterr()
    with pytest.raises(ModelLoadError, match=r"weights.pt2 \(RuntimeError: PytorchStreamReader failed locating"):
        load_teacher(str(tmp_path / "weights.pt2"), 10)
    with pytest.raises(ModelLoadError, match=r"text.pt2 \(RuntimeError: PytorchStreamReader failed reading zip"):
        load_teacher(str(tmp_path / "text.pt2"), 10)
    assert capfd.readouterr().err == ""


# ---- data -----------------------------------------------------------------------------------------------------
def test_data_info_grid_to_an_unwritable_path(tmp_path):
    (tmp_path / "file").write_text("x")
    refused(["data", "info", "embedded", "--grid", tmp_path / "file" / "grid.png"], "is a file, not a directory")
    refused(["data", "info", "embedded", "--grid", tmp_path], "exists and is a directory")


def test_npz_float_labels_must_be_whole_and_one_class_isrefused(tmp_path):
    from edgekd.data import DataSpec, load_data

    x = np.zeros((20, 28, 28), np.uint8)
    np.savez(tmp_path / "half.npz", x=x, y=np.array([0.5, 1.0] * 10))
    refused(["data", "info", tmp_path / "half.npz", "--no-grid"], "labels must be whole class numbers 0..C-1; "
             "found 0.5 (10 such label(s))")
    np.savez(tmp_path / "text.npz", x=x, y=np.array(["a", "b"] * 10))
    refused(["data", "info", tmp_path / "text.npz", "--no-grid"], "labels must be integer class numbers")
    np.savez(tmp_path / "whole.npz", x=x, y=np.array([0.0, 1.0] * 10))
    assert load_data(DataSpec("npz", str(tmp_path / "whole.npz"))).num_classes == 2
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(20, np.int64))
    refused(["data", "info", tmp_path / "one.npz", "--no-grid"], "needs at least 2 classes to learn to tell apart")
