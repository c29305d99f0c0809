"""The one configuration schema: every command reads the same file and uses its own keys of it."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.config import ConfigError, RunConfig, budget_request, read_yaml, resolve_config
from edgekd.pipeline import load_pipeline_config

RUN_YAML = """\
data: {limit_per_class: 10}
teacher_arch: cnn-small
train: {batch_size: 16, lr: 0.01}
teacher_train: {epochs: 2}
student_train: {epochs: 1}
distill: {loss: none, transfer_views: 1, dkd_alpha: 2.5}
student: linear-r16
target: rpi4
budget: {latency_ms: 0.5, flash_kb: 64, ram_kb: null, precision: int8}
bench_runs: 5
"""


def _write(tmp_path, text, name="c.yaml"):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def test_a_run_yaml_drives_distill(tmp_path):
    cfg = _write(tmp_path, RUN_YAML)
    r = CliRunner().invoke(app, ["distill", "--config", str(cfg), "--device", "cpu", "--out", str(tmp_path / "o"),
                                 "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["epochs_run"] == 1 and out["params"] == 16 * 16 * 10 + 10  # student_train's epochs, the file's student
    assert r.stderr == ""  # run's own keys (teacher_train, bench_runs, ...) are not distill's business
    saved = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1 and saved["train"]["batch_size"] == 16 and saved["train"]["lr"] == 0.01
    assert saved["distill"]["dkd_alpha"] == 2.5
    assert saved["budget"] == {"latency_ms": 0.5, "flash_kb": 64.0, "ram_kb": None, "macs": None, "params": None,
                               "precision": "int8"}


def test_distill_trains_as_long_as_the_run_unless_told(tmp_path):
    from edgekd.cli.teacher_cmd import resolve_task_config
    from edgekd.pipeline.config import PipelineConfig
    from edgekd.pipeline.tasks import line_defaults
    from edgekd.train.line_pipeline import DEFAULT_LINE_STUDENT_LR
    from edgekd.train.trainer import TrainConfig

    assert resolve_task_config(None, {}).train == PipelineConfig().student_train  # 60 epochs, batch 64
    assert resolve_task_config(None, {"task": "lines"}).train == line_defaults().student_train
    lines = line_defaults()  # line students: their own peak learning rate, the teacher keeps the TrainConfig default
    assert lines.student_train.lr == DEFAULT_LINE_STUDENT_LR != lines.teacher_train.lr == TrainConfig().lr
    assert resolve_task_config(None, {"train": {"epochs": 3}}).train.epochs == 3
    assert resolve_task_config(_write(tmp_path, "train: {epochs: 4}\n"), {}).train.epochs == 4


def test_the_same_yaml_for_run_and_teacher_train(tmp_path):
    path = _write(tmp_path, RUN_YAML)
    run = load_pipeline_config(path)
    assert (run.teacher_train.epochs, run.teacher_train.batch_size) == (2, 16)  # `train` under both stages
    assert (run.student_train.epochs, run.student_train.lr) == (1, 0.01)
    assert run.budget.latency_ms == 0.5 and run.budget.flash_bytes == 64 * 1024 and run.budget.ram_bytes is None
    assert run.bench_runs == 5 and run.teacher_arch == "cnn-small"
    teacher = resolve_config(read_yaml(path), stage="teacher", path=path)
    assert (teacher.train.epochs, teacher.train.batch_size) == (2, 16) and teacher.teacher_arch == "cnn-small"


def test_dkd_and_fitnet_weights_are_settable():
    from edgekd.kd import build_loss
    from edgekd.kd.loss_modules import DecoupledKD, FitNetHint

    cfg = resolve_config({"distill": {"loss": "dkd", "dkd_alpha": 2.5, "dkd_beta": 3.0}})
    loss = build_loss(cfg.distill.loss_config())
    assert isinstance(loss, DecoupledKD) and (loss.a, loss.b) == (2.5, 3.0)
    run = load_pipeline_config(None, {"distill": {"loss": "fitnet", "fitnet_weight": 0.25}})
    fit = build_loss(run.distill.loss_config())
    assert isinstance(fit, FitNetHint) and fit.weight == 0.25


@pytest.mark.parametrize("text, needle", [
    ("distil: {loss: kd}\n", "unknown key(s) ['distil']"),
    ("student_train: {epoch: 3}\n", "unknown student_train option(s) ['epoch']"),
    ("budget: {flash_mb: 3}\n", "unknown budget option(s) ['flash_mb']"),
    ("train: 3\n", "section 'train' must be a mapping"),
])
def test_unknown_keys_name_the_key_and_the_file(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        read_yaml(path)
    assert needle in str(e.value) and str(path) in str(e.value)


def test_budget_null_in_a_file_removes_a_limit_but_a_missing_flag_does_not(tmp_path):
    path = _write(tmp_path, "budget: {flash_kb: null, ram_kb: 8}\n")
    cfg = load_pipeline_config(path, {"budget": {"latency_ms": None, "flash_kb": None}})
    assert cfg.budget.flash_bytes is None and cfg.budget.ram_bytes == 8 * 1024 and cfg.budget.latency_ms == 1.0
    with pytest.raises(ConfigError, match="budget"):
        load_pipeline_config(_write(tmp_path, "budget: {latency_ms: -1}\n", "bad.yaml"))


def test_distill_budget_request_from_the_file_and_the_flags():
    flags = dict(target=None, profile=None, latency_ms=None, flash_kb=None, ram_kb=None, macs=None, params=None,
                 precision=None)
    assert budget_request(RunConfig(), **flags) is None  # nothing asks for a search: --student is needed
    cfg = resolve_config({"target": "rpi5", "budget": {"flash_kb": 64}})
    req = budget_request(cfg, **{**flags, "latency_ms": 2.0})
    assert (req["target"], req["flash_kb"], req["latency_ms"], req["precision"]) == ("rpi5", 64.0, 2.0, "int8")
    assert budget_request(cfg, **{**flags, "target": "rpi4"})["target"] == "rpi4"  # a flag wins over the file
    fp16 = resolve_config({"budget": {"latency_ms": 2, "precision": "fp16"}})
    assert budget_request(fp16, **flags)["precision"] == "fp16"  # no flag: the file's precision
    assert budget_request(fp16, **{**flags, "precision": "fp32"})["precision"] == "fp32"
    assert budget_request(fp16, **{**flags, "precision": "int8"})["precision"] == "int8"  # given, even the default
    assert budget_request(resolve_config({"student": "linear-r16", "target": "rpi4"}), **flags) is None


def test_a_lines_config_drives_run_with_the_line_defaults_and_refuses_digit_sections(tmp_path):
    cfg = load_pipeline_config(_write(tmp_path, "task: lines\nstudent_train: {epochs: 3}\n"))
    assert cfg.task == "lines" and cfg.student_train.epochs == 3
    with pytest.raises(ConfigError, match="data"):
        load_pipeline_config(_write(tmp_path, "task: lines\ndata: {seed: 1}\n"))


@pytest.mark.parametrize("args", [{}, {"quick": True}, {"task": "lines"}, {"task": "lines", "quick": True,
                                                                          "budget": {"flash_kb": 50}}])
def test_the_config_yaml_a_run_writes_reads_back_as_the_same_configuration(tmp_path, args):
    """A run's config.yaml (`PipelineConfig.file_dict`) is a config file `--config` takes: the same settings and
    fingerprint, for either task (it used to carry the other task's section, which the loader refuses)."""
    cfg = load_pipeline_config(overrides=args)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.file_dict(), sort_keys=False))
    back = load_pipeline_config(path)
    assert back == cfg and back.fingerprint() == cfg.fingerprint()
    assert ("lines" in cfg.file_dict()) == (cfg.task == "lines") != ("data" in cfg.file_dict())


def test_a_run_yaml_drives_teacher_train(tmp_path):
    cfg = _write(tmp_path, RUN_YAML)
    r = CliRunner().invoke(app, ["teacher", "train", "--config", str(cfg), "--device", "cpu",
                                 "--out", str(tmp_path / "t"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["epochs_run"] == 2  # teacher_train's epochs over train's
    saved = yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())
    assert saved["teacher_arch"] == "cnn-small" and saved["train"]["batch_size"] == 16
    import torch

    assert torch.load(tmp_path / "t" / "teacher.pt", weights_only=True)["arch"] == "cnn-small"  # the file's arch
