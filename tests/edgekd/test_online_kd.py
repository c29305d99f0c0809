"""Online ("patient and consistent") distillation and the choice between online and cached KD."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.data.augment import AugmentConfig
from edgekd.models.students import build_student
from edgekd.models.teachers import TEACHERS
from edgekd.train.batches import OnlineKDSource, model_input, normalize, resize_uint8
from edgekd.train.kd_mode import ONLINE_MAX_COST_RATIO, choose_kd_mode
from edgekd.train.pipeline import DistillOptions, distill
from edgekd.train.trainer import TrainConfig
from edgekd_runtime.errors import UserInputError

CPU = torch.device("cpu")


class Recorder(nn.Module):
    """A linear teacher that keeps the batches it was shown."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(784, 10)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return self.fc(x.flatten(1))


def _source(tiny_splits, seed=3, size=28, teacher=None):
    t = teacher or Recorder().eval()
    return OnlineKDSource(tiny_splits.train.x, tiny_splits.train.y, CPU, AugmentConfig.transfer(), seed, t, size), t


def test_teacher_and_student_see_the_same_mixed_view(tiny_splits):
    src, t = _source(tiny_splits)
    idx = torch.arange(64)
    x, tgt = src.batch(0, idx)
    assert torch.equal(t.seen[-1], x)  # the very tensor the student trains on
    with torch.no_grad():
        assert torch.allclose(tgt["teacher_logits"], t.fc(x.flatten(1)))
    assert "lam" in tgt and (tgt["lam"] < 1).any()  # some views are mixed, and the teacher saw them mixed


def test_a_smaller_student_sees_the_teachers_view_resized_like_the_board(tiny_splits):
    src, t = _source(tiny_splits, size=14)
    idx = torch.arange(32)
    x, _ = src.batch(0, idx)
    view, _ = src.views(0, idx)  # the float canvases of this step, before normalisation
    assert torch.equal(t.seen[-1], normalize(view))  # the teacher saw the 28x28 view itself
    expected = model_input(torch.from_numpy(resize_uint8(torch.round(view[:, 0] * 255).to(torch.uint8).numpy(), 14)))
    assert x.shape == (32, 1, 14, 14) and torch.equal(x, expected)


def test_fresh_views_every_epoch_and_the_same_ones_for_the_same_seed(tiny_splits):
    idx = torch.arange(40)
    a, _ = _source(tiny_splits, seed=3)
    b, _ = _source(tiny_splits, seed=3)
    c, _ = _source(tiny_splits, seed=4)
    (x0, t0), (xb, tb) = a.batch(0, idx), b.batch(0, idx)
    assert torch.equal(x0, xb) and torch.equal(t0["teacher_logits"], tb["teacher_logits"])
    assert not torch.equal(x0, a.batch(1, idx)[0])  # epoch 1 is a new view, not a cached one
    assert not torch.equal(x0, c.batch(0, idx)[0])


def _distill(tiny_splits, tmp_path, name, mode, teacher_model):
    from edgekd.models.teachers import Teacher

    cfg = TrainConfig(epochs=2, batch_size=32, lr=3e-3, device="cpu", seed=7, deterministic=True, num_threads=1)
    teacher = Teacher(teacher_model, "t", "test", False)
    return distill(tiny_splits, "cnn-w4-d2-r20", cfg, tmp_path / name, teacher=teacher,
                   opts=DistillOptions(loss="kd", alpha=1.0, transfer_views=2, kd_mode=mode), progress=False)


def test_online_distillation_is_deterministic_with_a_seed_and_differs_from_cached(tiny_splits, tmp_path):
    torch.manual_seed(0)
    teacher = TEACHERS.get("cnn-small")(10).eval()
    a = _distill(tiny_splits, tmp_path, "a", "online", teacher)
    b = _distill(tiny_splits, tmp_path, "b", "online", teacher)
    c = _distill(tiny_splits, tmp_path, "c", "cached", teacher)
    assert (a["kd_mode"], c["kd_mode"]) == ("online", "cached")
    wa, wb, wc = (torch.load(m["checkpoint"], weights_only=True)["state_dict"] for m in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert a["test_acc"] == b["test_acc"]


class _Raises(nn.Module):
    def forward(self, x):
        raise RuntimeError("no flop formula")


def test_auto_mode_chooses_by_cost_and_device():
    student = build_student("cnn-w16-d2-r28", 10)  # the default budget's student
    big, small = TEACHERS.get("cnn")(10), TEACHERS.get("cnn-small")(10)
    default = choose_kd_mode("auto", big, student, CPU, 28)  # the default teacher: 21.9 M MACs vs a 3.1 M step
    assert default.mode == "cached" and 7.0 < default.teacher_macs / default.student_step_macs < 7.2
    assert default.teacher_macs > ONLINE_MAX_COST_RATIO * default.student_step_macs
    cheap = choose_kd_mode("auto", small, student, CPU, 28)
    assert cheap.mode == "online" and cheap.teacher_macs <= cheap.student_step_macs
    assert "MACs" in cheap.reason and "MACs" in default.reason
    assert choose_kd_mode("auto", big, student, torch.device("cuda"), 28).mode == "online"
    assert choose_kd_mode("auto", _Raises(), student, CPU, 28).mode == "cached"
    assert choose_kd_mode("auto", None, student, CPU, 28).mode == "cached"
    assert choose_kd_mode("online", big, student, CPU, 28).mode == "online"
    assert choose_kd_mode("cached", small, student, torch.device("cuda"), 28).mode == "cached"
    assert student.training  # counting MACs leaves the student in training mode, its BatchNorm statistics unmoved
    assert all(torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
               for m in student.modules() if isinstance(m, nn.BatchNorm2d))


def test_unknown_kd_mode_is_refused():
    with pytest.raises(UserInputError, match="online, cached"):
        choose_kd_mode("sometimes", None, build_student("cnn-w4-d2-r20", 10), CPU, 20)
