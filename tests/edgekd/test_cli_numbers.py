"""Training numbers and seeds from a YAML file or a flag (`edgekd run`, `distill`, `teacher train`, `data info`):
a NaN or infinite rate, a bool or 1.5 for a count, a negative seed, a number YAML read as text, a config that is
not YAML. Each is one `error: ...` line naming the file / section / value, exit 2, before anything is written."""

from __future__ import annotations

import functools

import pytest
from cli_checks import refused

TEACHER = "teacher.pt"  # distill's --teacher: never read, the settings are refused first
_refused = functools.partial(refused, one_line=True)


@pytest.mark.parametrize("yaml, needles", [
    ("train: {lr: .nan}", ["section train", "lr (the peak learning rate) must be a finite number > 0, got nan"]),
    ("train: {lr: .inf}", ["lr (the peak learning rate) must be a finite number > 0, got inf"]),
    ("student_train: {epochs: true}", ["section student_train", "epochs must be a whole number, got true"]),
    ("student_train: {epochs: 1.5}", ["epochs must be a whole number, got 1.5"]),
    ("student_train: {epochs: -3}", ["section student_train", "epochs must be a whole number >= 1, got -3"]),
    ("student_train: {epochs: \"ten\"}", ["epochs must be a whole number, got the string 'ten'"]),
    ("train: {lr: 1e-3}", ["section train", "lr must be a number, got the string '1e-3'",
                           "YAML reads 1e-3 without a dot as text: write 1.0e-3"]),
    ("train: {lr: 1.0e3}", ["YAML reads 1.0e3 without a sign in the exponent as text: write 1.0e+3"]),
    ("train: {patience: 0}", ["patience must be a whole number >= 1"]),
    ("train: {num_threads: 0}", ["num_threads (--threads) must be a whole number >= 1"]),
    ("data: {seed: -1}", ["section data", "seed must be a whole number from 0 to"]),
    ("distill: {temperature: .nan}", ["section distill", "KD temperature must be > 0 (a finite number), got nan"]),
    ("bench_runs: 1.5", ["bench_runs must be a whole number, got 1.5"]),
])
def test_run_refuses_a_bad_number_in_the_file_before_the_run_dir(tmp_path, no_work, yaml, needles):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml + "\n")
    _refused(["run", "--quick", "--config", cfg, "--out", tmp_path / "run"], f"config file {cfg}", *needles)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--lr", "nan"], "lr (the peak learning rate) must be a finite number > 0, got nan"),
    (["--lr", "inf"], "lr (the peak learning rate) must be a finite number > 0, got inf"),
    (["--temperature", "nan"], "KD temperature must be > 0 (a finite number), got nan"),
    (["--patience", "-1"], "patience must be a whole number >= 1"),
    (["--threads", "0"], "num_threads (--threads) must be a whole number >= 1"),
    (["--threads", "-2"], "num_threads (--threads) must be a whole number >= 1"),
    (["--seed", "-1"], "train.seed must be a whole number from 0 to 4294967295, got -1"),
    (["--data-seed", "-1"], "data.seed must be a whole number from 0 to 4294967295, got -1"),
])
def test_distill_refuses_a_bad_number_flag_before_reading_anything(tmp_path, no_work, flags, needle):
    _refused(["distill", "--teacher", tmp_path / TEACHER, "--student", "linear-r16", "--out", tmp_path / "o",
              *flags], "command line", needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--data-seed", "-1"], "data.seed must be a whole number from 0"),
    (["--lr", "nan"], "must be a finite number > 0, got nan"),
])
def test_teacher_train_refuses_a_bad_number_flag(tmp_path, no_work, flags, needle):
    _refused(["teacher", "train", "--out", tmp_path / "t", *flags], needle)
    assert not (tmp_path / "t").exists()


def test_run_refuses_a_negative_seed_flag(tmp_path, no_work):
    _refused(["run", "--quick", "--seed", "-1", "--out", tmp_path / "run"], "seed must be a whole number from 0")
    assert not (tmp_path / "run").exists()


def test_data_info_refuses_a_negative_seed(tmp_path, no_work):
    _refused(["data", "info", "--seed", "-1", "--grid", tmp_path / "g.png"], "--seed must be a whole number from 0")
    assert not (tmp_path / "g.png").exists()


def test_a_yaml_syntax_error_is_one_line_naming_the_file_and_the_place(tmp_path, no_work):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("a: [\n")
    _refused(["run", "--quick", "--config", cfg, "--out", tmp_path / "run"],
             f"config file {cfg} is not valid YAML: line 2, column 1:")


def test_the_checks_are_the_dataclass_s_for_any_caller():
    from edgekd.train.trainer import TrainConfig
    from edgekd_runtime.errors import UserInputError

    for bad in ({"lr": float("nan")}, {"lr": float("inf")}, {"epochs": True}, {"epochs": 1.5}, {"seed": -1},
                {"patience": 0}, {"num_threads": 0}, {"weight_decay": float("nan")}):
        with pytest.raises(UserInputError):
            TrainConfig(**bad)
    assert TrainConfig(lr=1, patience=1, num_threads=1).lr == 1  # an int rate is a number
