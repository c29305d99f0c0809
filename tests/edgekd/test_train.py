"""The trainer: exact resume after a kill, early stopping, warm start, checkpoints, devices and bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd_runtime.errors import UserInputError

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    from edgekd.data import DataSpec
    from edgekd.data.augment import AugmentConfig
    from edgekd.train.pipeline import train_teacher
    from edgekd.train.trainer import TrainConfig
    torch.set_num_threads(1)
    out, kill_after, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    def hook(epoch, rec):
        if epoch == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, like a power cut after the epoch's checkpoint
    cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, device="cpu", seed=5, deterministic=True, num_threads=1)
    aug = AugmentConfig(mixup_p=0.3, erase_p=0.3)  # random augmentation + dropout: RNG state must survive
    train_teacher(DataSpec(limit_per_class=8, seed=1), cfg, out, arch="cnn-small", aug=aug, resume=resume,
                  progress=False, on_epoch_end=hook)
""")


def _run(tmp_path, out, kill_after, resume):
    script = tmp_path / "train_job.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), str(out), str(kill_after), "1" if resume else "0"],
                          capture_output=True, text=True, timeout=300)


def test_killed_after_an_epoch_then_resumed_ends_with_identical_weights(tmp_path):
    full = _run(tmp_path, tmp_path / "full", -1, False)
    assert full.returncode == 0, full.stderr
    killed = _run(tmp_path, tmp_path / "cut", 1, False)
    assert killed.returncode == -9  # SIGKILL after epoch index 1 of 3
    assert not (tmp_path / "cut" / "teacher.pt").exists()
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 2
    resumed = _run(tmp_path, tmp_path / "cut", -1, True)
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "full" / "teacher.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "teacher.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    ha = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    hb = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    assert a["kind"] == "teacher" and a["format"] == "edgekd-checkpoint" and a["num_classes"] == 10


def _tiny_fit(tiny_splits, out, **kw):
    from edgekd.data.augment import AugmentConfig
    from edgekd.kd import build_loss
    from edgekd.models.students import build_student
    from edgekd.train.batches import OnlineSource
    from edgekd.train.trainer import TrainConfig, fit

    cfg = TrainConfig(**{"epochs": 2, "batch_size": 32, "device": "cpu", "lr": 1e-2, **kw})
    m = build_student("mlp-w16-d1-r16", 10)
    src = OnlineSource(tiny_splits.train.x, tiny_splits.train.y, torch.device("cpu"), AugmentConfig.none(), 0, 16)
    return fit(m, src, build_loss("none"), cfg, out, val=(tiny_splits.val.x, tiny_splits.val.y), input_size=16,
               progress=False)


def _parts(tiny_splits, seed=0, student="mlp-w16-d1-r16", **kw):
    from edgekd.data.augment import AugmentConfig
    from edgekd.kd import build_loss
    from edgekd.models.students import build_student
    from edgekd.train.batches import OnlineSource
    from edgekd.train.trainer import TrainConfig, setup_training

    torch.manual_seed(seed)
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 32, "device": "cpu", "lr": 1e-2, "scheduler": "cosine", **kw})
    src = OnlineSource(tiny_splits.train.x, tiny_splits.train.y, torch.device("cpu"), AugmentConfig(erase_p=0.5), 0,
                       16)
    return setup_training(build_student(student, 10), src, build_loss("none"), cfg), src


def test_one_epoch_then_checkpoint_then_restore_continues_exactly(tiny_splits, tmp_path):
    """The stages of fit alone: train_epoch sees every training sample once and steps the scheduler once per
    batch; save_train_state + restore_train_state into fresh objects continue with the same next epoch."""
    from edgekd.train.checkpoint import rng_state, set_rng_state
    from edgekd.train.trainer import TrainState, restore_train_state, save_train_state, train_epoch, validate

    a, src = _parts(tiny_splits)
    before = {k: v.clone() for k, v in a.model.state_dict().items()}
    rec = train_epoch(a, src, 0)
    n = len(tiny_splits.train)
    assert (n, a.steps) == (140, 5) and rec["samples_per_s"] * rec["epoch_time_s"] == pytest.approx(n)
    assert 0 < rec["train_loss"] < 10 and 0 <= rec["train_acc"] <= 1 and rec["epoch"] == 0
    assert a.sched.last_epoch == a.steps and rec["lr"] == a.opt.param_groups[0]["lr"] < 1e-2
    assert any(not torch.equal(before[k], v) for k, v in a.model.state_dict().items())
    score = validate(a.model, rec, a.device, (tiny_splits.val.x, tiny_splits.val.y), 16, None)
    from edgekd.train.trainer import evaluate

    assert score == rec["val_acc"] == evaluate(a.model, tiny_splits.val.x, tiny_splits.val.y, a.device, 16)[0]
    state = TrainState()
    assert state.record(0, rec, score, a.model, patience=None) is False
    save_train_state(a, state, tmp_path)
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [rec]
    rng = rng_state()
    next_a = train_epoch(a, src, 1)

    b, _ = _parts(tiny_splits, seed=1)  # other initial weights, overwritten by the checkpoint
    set_rng_state(rng)
    restored = restore_train_state(b, tmp_path / "last.pt")
    assert restored.epoch == 0 and restored.history == [rec] and restored.best_epoch == 0
    assert restored.best_acc == score and restored.stopped is False
    next_b = train_epoch(b, src, 1)
    assert next_b["train_loss"] == next_a["train_loss"] and next_b["lr"] == next_a["lr"]
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


def test_the_cpu_trains_channels_last_unless_told_not_to(tiny_splits):
    """NHWC on the CPU too (oneDNN's faster layout for these convolutions): the same epoch as NCHW to float
    rounding; `channels_last: false` keeps NCHW."""
    from edgekd.train.trainer import train_epoch

    losses = {}
    for channels_last in (True, False):
        p, src = _parts(tiny_splits, student="cnn-w8-d2-r16", channels_last=channels_last)
        conv = next(m for m in p.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) is channels_last
        assert conv.weight.is_contiguous() is not channels_last
        losses[channels_last] = train_epoch(p, src, 0)["train_loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)


def test_train_state_keeps_the_best_weights_and_stops_after_patience_epochs_without_progress():
    from edgekd.train.trainer import TrainState

    model = torch.nn.Linear(2, 1)
    state = TrainState()
    stops = []
    for epoch, score in enumerate([0.5, 0.7, 0.6, 0.7, 0.65]):
        with torch.no_grad():
            model.bias.fill_(epoch)
        stops.append(state.record(epoch, {"epoch": epoch}, score, model, patience=3))
    assert stops == [False, False, False, False, True] and state.stopped
    assert (state.best_epoch, state.best_acc, state.bad_epochs, state.epoch) == (1, 0.7, 3, 4)
    assert float(state.best_state["bias"]) == 1.0 and len(state.history) == 5
    unvalidated = TrainState()
    assert unvalidated.record(0, {}, None, model, patience=None) is False and unvalidated.best_epoch == -1


def test_early_stopping_keeps_the_best_epoch(tiny_splits, tmp_path):
    res = _tiny_fit(tiny_splits, tmp_path, epochs=30, lr=0.3, optimizer="sgd", scheduler="none", patience=2)
    accs = [h["val_acc"] for h in res.history]
    assert res.stopped_early and len(accs) < 30
    assert res.best_val_acc == max(accs) and accs[res.best_epoch] == max(accs)
    assert all(a <= res.best_val_acc for a in accs[res.best_epoch + 1:]) and len(accs) - 1 - res.best_epoch == 2
    from edgekd.train.trainer import evaluate

    acc, _ = evaluate(res.model, tiny_splits.val.x, tiny_splits.val.y, torch.device("cpu"), 16)
    assert acc == res.best_val_acc  # the returned model is the best one, not the last


@pytest.mark.parametrize("select", ["last", "best", "auto"])
def test_select_returns_the_final_or_the_best_validation_epochs_weights(tiny_splits, tmp_path, select):
    from edgekd.train.checkpoint import load_torch

    # a high constant SGD rate: the val accuracy peaks early (epoch 2 of 8 here), the weights keep moving
    res = _tiny_fit(tiny_splits, tmp_path, epochs=8, lr=0.5, optimizer="sgd", scheduler="none", select=select)
    accs = [h["val_acc"] for h in res.history]
    best = accs.index(max(accs))
    want = 7 if select in ("last", "auto") else best  # auto: the last, as there is no patience nor evaluator
    assert len(accs) == 8 and (res.best_epoch, res.best_val_acc) == (want, accs[want])
    assert res.kept == ("best" if select == "best" else "last")
    st = load_torch(tmp_path / "last.pt")
    kept = st["model"] if want == 7 else st["best_state"]
    assert all(torch.equal(v, kept[k]) for k, v in res.model.state_dict().items())
    if best != 7:  # the final and the best weights differ, so the check above tells them apart
        assert not all(torch.equal(v, st["best_state"][k]) for k, v in st["model"].items())


def test_select_is_checked():
    from edgekd.train.trainer import TrainConfig

    with pytest.raises(UserInputError, match="unknown select 'final'; choose auto, best, last"):
        TrainConfig(select="final")
    assert TrainConfig(patience=3).selects_best() and TrainConfig().selects_best(evaluator=True)
    assert not TrainConfig().selects_best() and not TrainConfig(select="last", patience=3).selects_best(True)


def test_student_checkpoint_contract_and_warm_start(tiny_splits, tmp_path):
    from edgekd.train.checkpoint import load_student_checkpoint, transfer_parameters
    from edgekd.train.pipeline import DistillOptions, distill
    from edgekd.train.trainer import TrainConfig

    cfg = TrainConfig(epochs=2, batch_size=32, device="cpu")
    m = distill(tiny_splits, "cnn-w4-d2-r20", cfg, tmp_path / "a", opts=DistillOptions(loss="none", transfer_views=2),
                progress=False)
    ck = torch.load(tmp_path / "a" / "student.pt", weights_only=True)
    assert {"format", "kind", "arch", "num_classes", "labels", "input_size", "normalization", "data", "state_dict",
            "metrics", "config"} <= set(ck)
    assert (ck["kind"], ck["arch"], ck["input_size"], ck["num_classes"]) == ("student", "cnn-w4-d2-r20", 20, 10)
    assert ck["data"]["limit_per_class"] == 20 and ck["normalization"] == {"mean": 0.1307, "std": 0.3081}
    model, _ = load_student_checkpoint(tmp_path / "a" / "student.pt")
    assert model(torch.zeros(2, 1, 20, 20)).shape == (2, 10) and 0 <= m["test_acc"] <= 1
    from edgekd.models.students import build_student

    # cnn flattens its last map into the head: at another resolution all but the head's weight transfer
    wider = build_student("cnn-w4-d2-r28", 10)
    assert transfer_parameters(wider, tmp_path / "a" / "student.pt") == len(wider.state_dict()) - 1
    assert torch.equal(wider.state_dict()["head.bias"], ck["state_dict"]["head.bias"])
    assert torch.equal(wider.state_dict()["body.0.weight"], ck["state_dict"]["body.0.weight"])
    with pytest.raises(UserInputError, match="shares no parameter"):
        transfer_parameters(build_student("linear-r16", 3), tmp_path / "a" / "student.pt")


def _fake_accelerators(monkeypatch, cuda: bool, mps: bool, bf16: bool = True) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


def test_auto_device_is_the_one_this_machine_has(monkeypatch):
    from edgekd.train.device import resolve_device

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    if torch.cuda.is_available():
        expected = torch.device("cuda", 0)
    elif torch.backends.mps.is_available():
        expected = torch.device("mps")
    else:
        expected = torch.device("cpu")
    assert resolve_device("auto") == expected
    assert resolve_device() == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, torch.device("cuda", 0)),  # cuda first
    (False, True, torch.device("mps")),     # then mps
    (False, False, torch.device("cpu")),    # then cpu
])
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    from edgekd.train.device import resolve_device

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _fake_accelerators(monkeypatch, cuda, mps)
    assert resolve_device("auto") == expected


def test_auto_device_under_torchrun_is_the_local_rank_gpu(monkeypatch):
    from edgekd.train.device import resolve_device

    _fake_accelerators(monkeypatch, cuda=True, mps=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)


def test_explicit_device_is_refused_when_absent_and_kept_when_present(monkeypatch):
    from edgekd.train.device import resolve_device

    _fake_accelerators(monkeypatch, cuda=False, mps=False)
    with pytest.raises(UserInputError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(UserInputError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(UserInputError, match="MPS is not available"):
        resolve_device("mps")
    _fake_accelerators(monkeypatch, cuda=True, mps=True)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("mps") == torch.device("mps")


def test_amp_resolution(monkeypatch):
    from edgekd.train.device import resolve_amp

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_amp("auto", cpu) is None and resolve_amp("off", cpu) is None
    assert resolve_amp("auto", torch.device("mps")) is None
    assert resolve_amp("bf16", cpu) == torch.bfloat16
    with pytest.raises(UserInputError, match="fp16 needs a GPU"):
        resolve_amp("fp16", cpu)
    with pytest.raises(UserInputError, match="unknown AMP"):
        resolve_amp("int4", cpu)
    _fake_accelerators(monkeypatch, cuda=True, mps=False, bf16=True)
    assert resolve_amp("auto", cuda) == torch.bfloat16
    assert resolve_amp("fp16", cuda) == torch.float16
    _fake_accelerators(monkeypatch, cuda=True, mps=False, bf16=False)
    assert resolve_amp("auto", cuda) == torch.float16


def test_cli_corrupt_checkpoint_and_bad_config_exit_2(tmp_path):
    run = CliRunner().invoke
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    r = run(app, ["distill", "--student", "linear-r16", "--loss", "none", "--out", str(tmp_path / "run"),
                  "--resume", "--epochs", "1", "--quiet"])
    assert r.exit_code == 2 and "corrupt" in r.stderr and "last.pt" in r.stderr and "Traceback" not in r.output
    r = run(app, ["distill", "--student", "linear-r16", "--loss", "none", "--out", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 2 and "--resume" in r.stderr
    (tmp_path / "c.yaml").write_text("train:\n  epoch: 3\n")
    r = run(app, ["distill", "--student", "linear-r16", "--loss", "none", "--config", str(tmp_path / "c.yaml")])
    assert r.exit_code == 2 and "epoch" in r.stderr and "epochs" in r.stderr
    (tmp_path / "d.yaml").write_text("train: [1, 2\n")
    r = run(app, ["teacher", "train", "--config", str(tmp_path / "d.yaml")])
    assert r.exit_code == 2 and "not valid YAML" in r.stderr
    r = run(app, ["distill", "--student", "dscnn-w16", "--loss", "none"])
    assert r.exit_code == 2 and "bad student id" in r.stderr
    r = run(app, ["distill", "--student", "linear-r16"])
    assert r.exit_code == 2 and "--teacher" in r.stderr


def test_cli_scratch_run_with_yaml_and_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {limit_per_class: 10}\ntrain: {epochs: 3, batch_size: 16, lr: 0.01}\n"
                   "distill: {loss: none, transfer_views: 1}\nstudent: linear-r16\n")
    r = CliRunner().invoke(app, ["distill", "--config", str(cfg), "--epochs", "1", "--device", "cpu",
                                 "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["epochs_run"] == 1 and out["params"] == 16 * 16 * 10 + 10
    import yaml

    saved = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1 and saved["train"]["lr"] == 0.01 and saved["data"]["limit_per_class"] == 10
    assert saved["student"] == "linear-r16"
    lines = (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and {"train_loss", "val_acc", "samples_per_s"} <= set(json.loads(lines[0]))


def test_torch_compile_trains_like_eager_and_saves_plain_weights(tiny_splits, tmp_path):
    """--compile (inductor, which needs a C compiler on CPU) follows the eager run and its checkpoints hold the
    model's own parameter names (no `_orig_mod.` prefix) so export and resume read them."""
    torch.manual_seed(0)
    eager = _tiny_fit(tiny_splits, tmp_path / "eager", seed=3)
    torch.manual_seed(0)
    compiled = _tiny_fit(tiny_splits, tmp_path / "compiled", seed=3, compile=True)
    for a, b in zip(eager.history, compiled.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3, abs=1e-4)
    state = torch.load(tmp_path / "compiled" / "last.pt", weights_only=False)["model"]
    assert set(state) == set(eager.model.state_dict())
    for k, v in compiled.model.state_dict().items():
        torch.testing.assert_close(v, eager.model.state_dict()[k], rtol=1e-3, atol=1e-4)


def test_progress_bar_shows_running_loss_and_accuracy_without_a_sync_per_batch(monkeypatch):
    from edgekd.train.trainer import _Progress

    class Sums:  # stands for the (loss*n, correct, n) device tensor; counts the reads (device syncs)
        reads = 0

        def tolist(self):
            Sums.reads += 1
            return [2.0 * 64, 48.0, 64.0]

    monkeypatch.setattr(_Progress, "REFRESH_S", 3600.0)
    bar = _Progress(enabled=True)
    bar.start(0, 3, steps=50)
    for _ in range(50):
        bar.step(Sums(), 32)
    fields = bar.p.tasks[0].fields
    assert bar.p.tasks[0].completed == 50 and Sums.reads == 1  # the first batch, then once per REFRESH_S
    assert fields["loss"] == 2.0 and fields["acc"] == 0.75 and fields["sps"] > 0
    bar.end({"epoch": 0, "train_loss": 2.0, "train_acc": 0.75, "samples_per_s": 1000.0})
    monkeypatch.setattr(_Progress, "REFRESH_S", 0.0)
    bar.start(1, 3, steps=5)
    for _ in range(5):
        bar.step(Sums(), 32)
    assert Sums.reads == 6
    bar.end({"epoch": 1, "train_loss": 2.0, "train_acc": 0.75, "samples_per_s": 1000.0})
