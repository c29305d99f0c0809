"""The `lines` task (CTC line recognition of digit strings): composition without leakage, the CTC KD losses (golden
numbers and hand-checked properties), line metrics, line models, refusals of bad input, training end to end and a
user folder of line images. Everything runs on a few dozen tiny lines (64 train / 32 val / 32 test)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.data import DataSpec, load_data
from edgekd.data.idx import DataFileError
from edgekd.data.lines import DIGIT_CHARSET, LineSpec, compose_split, encode_texts, load_lines, read_labels_tsv
from edgekd.kd import KD_LOSSES, LossBatch, LossConfig, build_loss
from edgekd.kd.ctc_losses import char_bag_kl, ctc, frame_kl
from edgekd_runtime.errors import BlankImageError, ImageError, UserInputError
from edgekd_runtime.lines import LineTooWideError, greedy_decode, preprocess_line

TINY = LineSpec(train_lines=64, val_lines=32, test_lines=32)
LINES_YAML = ("task: lines\nlines: {train_lines: 64, val_lines: 32, test_lines: 32}\n"
              "train: {batch_size: 16, device: cpu}\ndistill: {transfer_views: 1}\n")
DIGITS_YAML = "data: {limit_per_class: 4}\ntrain: {batch_size: 16, device: cpu}\ndistill: {transfer_views: 1}\n"
RUN_FILES = ("teacher.pt", "student.pt", "last.pt")


def _cfg(**kw):
    from edgekd.train.trainer import TrainConfig

    return TrainConfig(**{"epochs": 1, "batch_size": 16, "device": "cpu", "seed": 1, "deterministic": True,
                          "num_threads": 1, **kw})


@pytest.fixture(scope="module")
def splits():
    return load_lines(TINY)


@pytest.fixture(scope="module")
def line_teacher(splits, tmp_path_factory):
    """A crnn-small lines teacher after one epoch (its path); the distillation and refusal tests share it."""
    from edgekd.train.line_pipeline import train_line_teacher

    out = tmp_path_factory.mktemp("line_teacher")
    train_line_teacher(splits, _cfg(), out, arch="crnn-small", progress=False)
    return out / "teacher.pt"


@pytest.fixture(scope="module")
def digit_teacher(tmp_path_factory):
    from edgekd.train.pipeline import train_teacher

    out = tmp_path_factory.mktemp("digit_teacher")
    train_teacher(DataSpec(limit_per_class=4), _cfg(), out, arch="cnn-small", progress=False)
    return out / "teacher.pt"


@pytest.fixture(scope="module")
def yamls(tmp_path_factory):
    d = tmp_path_factory.mktemp("yaml")
    (d / "lines.yaml").write_text(LINES_YAML)
    (d / "digits.yaml").write_text(DIGITS_YAML)
    return {"lines_yaml": str(d / "lines.yaml"), "digits_yaml": str(d / "digits.yaml")}


# ---------------------------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------------------------

def test_composition_is_deterministic_light_on_dark_left_aligned_and_bounded(splits):
    again, other = load_lines(TINY), load_lines(replace(TINY, seed=1))
    for k in ("train", "val", "test"):
        a, b = getattr(splits, k), getattr(again, k)
        assert np.array_equal(a.x, b.x) and a.texts == b.texts, k
        assert a.texts != getattr(other, k).texts and not np.array_equal(a.x, getattr(other, k).x), k
    assert (splits.train.x.shape, splits.val.x.shape, splits.test.x.shape) == ((64, 24, 192), (32, 24, 192),
                                                                                (32, 24, 192))
    assert splits.train.x.dtype == np.uint8 and splits.charset == DIGIT_CHARSET and splits.num_classes == 11
    full = [len(t) for t in splits.train.texts + splits.val.texts]
    test = [len(t) for t in splits.test.texts]
    assert min(full) >= 1 and max(full) <= 12 and min(test) >= 3 and max(test) <= 10
    assert set("".join(splits.train.texts)) <= set(DIGIT_CHARSET)
    for sp in (splits.train, splits.val, splits.test):
        assert (sp.x <= 24).mean() > 0.7 and np.median(sp.x) == 0
        assert len(sp.sources) == len(sp.texts) and [len(s) for s in sp.sources] == [len(t) for t in sp.texts]
        for x, t in zip(sp.x, sp.texts):
            ink_cols = np.flatnonzero(x.max(0) > 24)
            assert ink_cols[0] <= 4, t  # left-aligned: at most the 1..4 px margin before the first stroke
            assert x.max() > 150 and (x <= 24).mean() > 0.4, t  # bright ink on a dark (zero) background
            if len(t) <= 3:  # short lines: everything right of the text is exact zero padding
                assert not x[:, 32 * len(t) + 32:].any(), t
    # the spec's length bounds are the ones used, the test split has its own
    narrow = load_lines(replace(TINY, min_len=2, max_len=3, test_min_len=5, test_max_len=5))
    assert {len(t) for t in narrow.train.texts + narrow.val.texts} == {2, 3}
    assert {len(t) for t in narrow.test.texts} == {5}
    # another training view is another composition of the training digits, and reproducible
    v1 = splits.train_view(1)
    assert v1.texts != splits.train.texts and v1.texts == splits.train_view(1).texts
    assert splits.train_view(0) is splits.train


def test_no_digit_image_is_in_two_splits(splits):
    d = load_data(DataSpec("embedded", seed=TINY.seed))
    keys = {k: {x.tobytes() for x in getattr(d, k).x} for k in ("train", "val", "test")}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    for k, lines in (("train", splits.train), ("train", splits.train_view(1)), ("val", splits.val),
                     ("test", splits.test)):
        digits = getattr(d, k)
        others = set().union(*(v for o, v in keys.items() if o != k))
        used = np.concatenate(lines.sources)
        assert {digits.x[j].tobytes() for j in used} <= keys[k], k
        assert not any(digits.x[j].tobytes() in others for j in used), k
        # the sources are what the text says: each line's characters are the labels of its digit images
        assert lines.texts == ["".join(d.class_names[int(digits.y[j])] for j in s) for s in lines.sources], k
    assert len(np.unique(np.concatenate(splits.train.sources))) > 200  # many distinct training digits, not a few


def test_line_spec_and_encode_texts_refuse_bad_values():
    targets, lengths = encode_texts(["12", "3", "90"], DIGIT_CHARSET, "t")
    assert targets.tolist() == [[2, 3], [4, 0], [10, 1]] and lengths.tolist() == [2, 1, 2]  # class i+1 = charset[i]
    with pytest.raises(UserInputError, match=r"line 1 \('12a'\).*\['a'\].*outside the model's charset"):
        encode_texts(["1", "12a"], DIGIT_CHARSET, "evaluation lines")
    with pytest.raises(UserInputError, match="line 1 has an empty transcription"):
        encode_texts(["1", ""], DIGIT_CHARSET, "training lines")
    for bad in ({"height": 7}, {"width": 190}, {"min_len": 5, "max_len": 4}, {"test_lines": 0},
                {"val_fraction": 0.5, "test_fraction": 0.5}):
        with pytest.raises(UserInputError):
            replace(TINY, **bad)
    with pytest.raises(UserInputError, match="train_line"):
        LineSpec.from_dict({"train_line": 3})


# ---------------------------------------------------------------------------------------------------------------
# CTC KD losses
# ---------------------------------------------------------------------------------------------------------------

def _lines_batch():
    """2 lines, 6 frames, charset 'abc' + blank; labels 'ab' and 'cca', teacher strings 'bc' and 'aab'."""
    torch.manual_seed(0)
    s = torch.randn(2, 6, 4)
    t = torch.randn(2, 6, 4) * 2
    return LossBatch(s, torch.tensor([[1, 2, 0], [3, 3, 1]]), target_lengths=torch.tensor([2, 3]),
                     teacher_logits=t, teacher_targets=torch.tensor([[2, 3, 0], [1, 1, 2]]),
                     teacher_target_lengths=torch.tensor([2, 3]))


LINE_GOLDEN = {"none": 1.825103998184204, "frame_kd": 1.8708441257476807, "blank_kd": 1.9308427572250366,
               "seq_kd": 1.9040920734405518, "frame_kd+0.5*seq_kd": 2.822890281677246}


@pytest.mark.parametrize("spec", sorted(LINE_GOLDEN))
def test_ctc_loss_golden_values(spec):
    got = build_loss(LossConfig(spec, temperature=2.0, alpha=0.5))(_lines_batch()).item()
    assert math.isclose(got, LINE_GOLDEN[spec], rel_tol=1e-4), got


def test_ctc_by_hand_and_none_is_plain_ctc():
    # 2 frames, target 'a' (class 1): paths a-a, a-blank, blank-a
    p = torch.tensor([[[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]])
    logits = p.log()
    want = -math.log(0.5 * 0.1 + 0.5 * 0.6 + 0.2 * 0.1)
    got = ctc(logits, torch.tensor([[1]]), torch.tensor([1])).item()
    assert math.isclose(got, want, rel_tol=1e-5)
    # target 'ab' over 2 frames: one path, and the loss is divided by the target length
    got = ctc(logits, torch.tensor([[1, 2]]), torch.tensor([2])).item()
    assert math.isclose(got, -math.log(0.5 * 0.3) / 2, rel_tol=1e-5)
    # 'aa' needs a blank between the a's: 3 frames, impossible in 2, counted as zero (not inf)
    assert ctc(logits, torch.tensor([[1, 1]]), torch.tensor([2])).item() == 0.0
    b = _lines_batch()
    assert build_loss("none")(b).item() == ctc(b.student_logits, b.y_a, b.target_lengths).item()


def test_frame_kd_vanishes_on_the_teacher_and_scales_as_t_squared():
    b = _lines_batch()
    s, t = b.student_logits, b.teacher_logits
    same = replace(b, teacher_logits=s.clone())
    for name in ("frame_kd", "blank_kd"):
        assert abs(build_loss(LossConfig(name, alpha=1.0))(same).item()) < 1e-6, name
    # softmax(T s / T) = softmax(s): scaling the logits by T leaves the KL alone, so the loss is T^2 * KL(T=1)
    base = frame_kl(s, t, 1.0).item()
    assert base > 0.1
    for T in (2.0, 4.0, 8.0):
        got = build_loss(LossConfig("frame_kd", temperature=T, alpha=1.0))(
            replace(b, student_logits=s * T, teacher_logits=t * T)).item()
        assert math.isclose(got, T * T * base, rel_tol=1e-4), (T, got)
    # the frame KL by hand: mean over the 12 frames of sum_c p_t (log p_t - log p_s)
    lp_s, lp_t = torch.log_softmax(s.double(), -1), torch.log_softmax(t.double(), -1)
    assert math.isclose(base, (lp_t.exp() * (lp_t - lp_s)).sum(-1).mean().item(), rel_tol=1e-5)
    # alpha mixes the soft term with CTC on the labels
    a = 0.3
    got = build_loss(LossConfig("frame_kd", temperature=2.0, alpha=a))(b).item()
    want = a * frame_kl(s, t, 2.0).item() + (1 - a) * ctc(s, b.y_a, b.target_lengths).item()
    assert math.isclose(got, want, rel_tol=1e-5)


def _spike(frame: int, char: int, frames: int = 8, classes: int = 4) -> torch.Tensor:
    """(1, frames, classes) logits: blank everywhere, `char` at `frame`."""
    z = torch.zeros(1, frames, classes)
    z[0, :, 0] = 6.0
    z[0, frame, 0], z[0, frame, char] = 0.0, 6.0
    return z


def test_blank_kd_bag_term_ignores_a_one_frame_shift():
    t, late, wrong = _spike(2, 1), _spike(3, 1), _spike(2, 2)
    assert abs(char_bag_kl(late, t, 1.0).item()) < 1e-6  # same characters, one frame later: same bag
    assert frame_kl(late, t, 1.0).item() > 1.0  # while the plain frame KL punishes the shift
    assert char_bag_kl(wrong, t, 1.0).item() > 1.0  # another character is a different bag
    # blank_kd = frame KL weighted by the teacher's non-blank probability + the bag term
    y, ln = torch.tensor([[1]]), torch.tensor([1])
    got = build_loss(LossConfig("blank_kd", temperature=2.0, alpha=1.0))(
        LossBatch(late, y, target_lengths=ln, teacher_logits=t)).item()
    w = 1.0 - torch.softmax(t, -1)[..., 0]
    want = frame_kl(late, t, 2.0, w).item() + char_bag_kl(late, t, 2.0).item()
    assert math.isclose(got, want, rel_tol=1e-5) and got > 1.0


def test_seq_kd_is_ctc_on_the_teacher_strings_and_sums_add_up():
    b = _lines_batch()
    on_teacher = ctc(b.student_logits, b.teacher_targets, b.teacher_target_lengths).item()
    on_labels = ctc(b.student_logits, b.y_a, b.target_lengths).item()
    assert on_teacher != on_labels
    assert math.isclose(build_loss(LossConfig("seq_kd", alpha=1.0))(b).item(), on_teacher, rel_tol=1e-6)
    got = build_loss(LossConfig("seq_kd", alpha=0.25))(b).item()
    assert math.isclose(got, 0.25 * on_teacher + 0.75 * on_labels, rel_tol=1e-5)
    with pytest.raises(UserInputError, match="decoded strings"):
        build_loss("seq_kd")(replace(b, teacher_targets=None))
    parts = {n: build_loss(LossConfig(n, temperature=2.0, alpha=0.5))(b).item()
             for n in ("frame_kd", "seq_kd", "blank_kd", "none")}
    for spec, want in (("frame_kd+0.5*seq_kd", parts["frame_kd"] + 0.5 * parts["seq_kd"]),
                       ("0.3*blank_kd+0.7*none", 0.3 * parts["blank_kd"] + 0.7 * parts["none"])):
        got = build_loss(LossConfig(spec, temperature=2.0, alpha=0.5))(b).item()
        assert math.isclose(got, want, rel_tol=1e-5), spec


def test_losses_refuse_the_other_task():
    b = _lines_batch()
    lines_b = replace(b, student_features=torch.randn(2, 6), teacher_features=torch.randn(2, 6))
    for name in ("kd", "mse", "dkd", "fitnet"):
        with pytest.raises(UserInputError, match="frame_kd, blank_kd, seq_kd"):
            build_loss(name)(lines_b)
    torch.manual_seed(0)
    digits = LossBatch(torch.randn(4, 5), torch.tensor([0, 3, 1, 4]), teacher_logits=torch.randn(4, 5),
                       teacher_targets=torch.tensor([[1], [1], [1], [1]]), teacher_target_lengths=torch.ones(4))
    for name in ("frame_kd", "blank_kd", "seq_kd"):
        with pytest.raises(UserInputError, match="--task lines"):
            build_loss(name)(digits)
    with pytest.raises(UserInputError, match="needs teacher"):
        build_loss("frame_kd")(replace(b, teacher_logits=None))
    assert {"frame_kd", "blank_kd", "seq_kd"} <= set(KD_LOSSES.names())


@pytest.mark.parametrize("name", ["frame_kd", "blank_kd", "seq_kd"])
def test_each_line_loss_cites_its_paper(name):
    """STYLE 10: the docstring of each KD loss cites its paper (a year, as the digit losses do)."""
    doc = type(KD_LOSSES.get(name)(LossConfig())).__doc__ or ""
    assert re.search(r"\b(19|20)\d\d\b", doc), doc


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------

def test_line_metrics_by_hand():
    from edgekd.train.ctc_metrics import line_metrics

    m = line_metrics(["123", "45"], ["13", "45"])
    assert math.isclose(m.cer, 1 / 5) and m.string_acc == 0.5 and (m.n_lines, m.n_chars) == (2, 5)
    assert m.per_length == {3: {"n": 1, "string_acc": 0.0, "cer": pytest.approx(1 / 3)},
                            2: {"n": 1, "string_acc": 1.0, "cer": 0.0}}
    assert set(m.to_dict()["per_length"]) == {"2", "3"}
    m = line_metrics(["12", "12", "7"], ["", "1234", "7"])  # a deletion of everything, two insertions
    assert math.isclose(m.cer, 4 / 5) and math.isclose(m.string_acc, 1 / 3)
    assert m.per_length[2] == {"n": 2, "string_acc": 0.0, "cer": 1.0}
    assert line_metrics(["1"], ["1111"]).cer == 3.0  # insertions can push CER above 1


def _logits_for(paths: list[list[int]], classes: int = 4) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(paths), classes).float() * 5.0 + 0.1 * torch.arange(classes)


def test_greedy_paths_and_exact_matches_by_hand():
    from edgekd.train.ctc_metrics import decode, exact_matches, greedy_paths

    logits = _logits_for([[1, 1, 0, 1, 2, 2, 0, 0],   # a a (blank splits the repeat) b -> "aab"
                          [0, 0, 0, 0, 0, 0, 0, 0],   # all blank -> ""
                          [3, 3, 3, 3, 3, 3, 3, 3],   # one long c -> "c"
                          [2, 0, 2, 0, 3, 1, 1, 0],   # -> "bbca"
                          [1, 2, 3, 0, 0, 0, 0, 0]])  # -> "abc"
    seq, n = greedy_paths(logits)
    assert n.tolist() == [3, 0, 1, 4, 3]
    assert [row[:k] for row, k in zip(seq.tolist(), n.tolist())] == [[1, 1, 2], [], [3], [2, 2, 3, 1], [1, 2, 3]]
    texts = decode(seq, n, "abc")
    assert texts == ["aab", "", "c", "bbca", "abc"] == greedy_decode(logits.numpy(), "abc")  # board == training
    targets = torch.tensor([[1, 1, 2, 0], [1, 0, 0, 0], [3, 3, 0, 0], [2, 2, 3, 1], [1, 2, 0, 0]])
    lengths = torch.tensor([3, 1, 2, 4, 2])
    # right: "aab", "bbca"; wrong: "" for "a", "c" for "cc", "abc" for "ab" (a longer reading with the right prefix)
    assert exact_matches(logits, targets, lengths).item() == 2


def test_evaluate_lines_refuses_a_character_outside_the_charset(splits):
    from edgekd.data.lines import LineSplit
    from edgekd.models.students import build_student
    from edgekd.train.ctc_metrics import evaluate_lines

    model = build_student("ctc-w4-d2-r24", 11)
    m = evaluate_lines(model, splits.val, DIGIT_CHARSET, torch.device("cpu"))
    assert m.n_lines == 32 and m.n_chars == sum(len(t) for t in splits.val.texts) and np.isfinite(m.loss)
    bad = LineSplit(splits.val.x[:2], ["12", "1x"])
    with pytest.raises(UserInputError, match=r"evaluation lines: line 1 \('1x'\)"):
        evaluate_lines(model, bad, DIGIT_CHARSET, torch.device("cpu"))


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------

def _line_model(name: str, classes: int, height: int):
    from edgekd.models.line_models import LINE_TEACHERS
    from edgekd.models.students import build_student
    from edgekd.models.teachers import TEACHERS

    return TEACHERS.get(name)(classes, height=height) if name in LINE_TEACHERS else build_student(name, classes)


@pytest.mark.parametrize("name,height", [("crnn", 24), ("crnn-small", 24), ("crnn-small", 32), ("convctc", 24),
                                         ("ctc-w4-d2-r24", 24),
                                         ("ctc-w4-d4-r24", 24), ("dsctc-w8-d3-r24", 24), ("ctc-w4-d3-r32", 32)])
def test_line_models_emit_one_frame_per_four_columns(name, height):
    from torch import nn

    from edgekd.models.line_models import is_line_model

    torch.manual_seed(0)
    m = _line_model(name, 11, height).eval()
    with torch.no_grad():
        assert m(torch.randn(3, 1, height, 192)).shape == (3, 48, 11)
        assert m(torch.randn(2, 1, height, 64)).shape == (2, 16, 11)
    recurrent = [x for x in m.modules() if isinstance(x, (nn.RNNBase, nn.LSTM, nn.GRU, nn.RNN))]
    assert is_line_model(name) and bool(recurrent) == name.startswith("crnn")  # students: no recurrent op


def test_teacher_files_separated_by_commas_are_averaged(tmp_path):
    """An ensemble's output is the log of the members' mean posterior (softmax of it = that mean)."""
    from edgekd.models.line_models import load_line_teacher
    from edgekd.models.teachers import TEACHERS

    torch.manual_seed(0)
    members = [TEACHERS.get("crnn-small")(11, height=24).eval() for _ in range(2)]
    paths = []
    for i, m in enumerate(members):
        paths.append(tmp_path / f"t{i}.ts")
        torch.jit.trace(m, torch.zeros(1, 1, 24, 192)).save(str(paths[-1]))
    t = load_line_teacher(f"{paths[0]}, {paths[1]}", 11, 24, 192)
    x = torch.randn(2, 1, 24, 192)
    with torch.no_grad():
        want = torch.stack([m(x).softmax(-1) for m in members]).mean(0)
        got = t.model(x).softmax(-1)
    assert t.source == "ensemble" and t.name == "ensemble(t0+t1)"
    assert torch.allclose(got, want, atol=1e-6)


def test_line_student_context_convolutions():
    """`-c{C}` adds C (1, 5) convolutions over the frames: the id round-trips, each adds hidden*hidden*5 weights
    (+ BatchNorm), the frames and classes stay, and digit families or C outside 1..3 are refused."""
    from edgekd.models.students import StudentIdError, build_student, count_params, parse_student_id

    spec = parse_student_id("ctc-w8-d2-c2-r24")
    assert (spec.family, spec.width, spec.depth, spec.context, spec.input_size) == ("ctc", 8, 2, 2, 24)
    assert spec.id == "ctc-w8-d2-c2-r24" and parse_student_id("ctc-w8-d2-r24").context == 0
    hidden = 32  # ctc-w8-d2: stages 8, 16 -> 2 * 16 collapsed features
    n = [count_params(build_student(f"ctc-w8-d2{c}-r24", 11)) for c in ("", "-c1", "-c2")]
    assert n[1] - n[0] == n[2] - n[1] == hidden * hidden * 5 + 2 * hidden
    for sid in ("ctc-w8-d2-c3-r24", "dsctc-w8-d2-c1-r24"):
        with torch.inference_mode():
            assert build_student(sid, 11).eval()(torch.zeros(2, 1, 24, 192)).shape == (2, 48, 11)
    for bad, why in (("ctc-w8-d2-c4-r24", "C in 1..3"), ("ctc-w8-d2-c0-r24", "C in 1..3"),
                     ("cnn-w8-d2-c1-r28", "for the line families")):
        with pytest.raises(StudentIdError, match=why):
            parse_student_id(bad)


def test_a_context_student_exports_to_onnx_with_any_width(tmp_path):
    """The context convolutions pad along the frames only, so the ONNX graph keeps the dynamic width: it matches
    torch at 96, 192 and 384 px."""
    from edgekd.export.onnx_export import export_line_onnx, torch_logits
    from edgekd.models.students import build_student
    from edgekd_converters.runners import run_onnx

    torch.manual_seed(0)
    model = build_student("ctc-w8-d2-c2-r24", 11).eval()
    path = export_line_onnx(model, 24, 192, 11, tmp_path / "s.onnx")
    x = np.random.default_rng(0).standard_normal((3, 1, 24, 384)).astype(np.float32)
    for w in (96, 192, 384):
        got, want = run_onnx(path, x[..., :w]), torch_logits(model, x[..., :w])
        assert got.shape == want.shape == (3, w // 4, 11) and np.abs(got - want).max() < 1e-4


def test_line_student_cost_and_bad_ids():
    from edgekd.budget.cost import student_cost
    from edgekd.models.line_models import check_line_output, is_line_model, line_search_space
    from edgekd.models.students import StudentIdError, build_student, parse_student_id
    from edgekd.models.teachers import TeacherMismatchError

    c = student_cost("ctc-w8-d2-r24", 11)
    assert c.input_shape == (1, 1, 24, 192) and c.extra["line_width"] == 192
    assert c.extra["macs_per_column"] == c.macs / 192 and c.macs > 0
    half = student_cost("ctc-w8-d2-r24", 11, line_width=96)
    assert half.input_shape == (1, 1, 24, 96) and half.params == c.params
    assert math.isclose(half.extra["macs_per_column"], c.extra["macs_per_column"], rel_tol=0.02)  # per column
    with pytest.raises(StudentIdError, match="depth 1..4"):
        parse_student_id("ctc-w8-d5-r24")
    with pytest.raises(StudentIdError, match="4 stages do not fit a line of height 8"):
        build_student("ctc-w4-d4-r8", 11)
    space = line_search_space(24)
    assert len(space) == len(set(space)) and all(is_line_model(s) and s.endswith("-r24") for s in space)
    assert all(parse_student_id(s).input_size == 24 and parse_student_id(s).id == s for s in space)
    assert all(parse_student_id(s).context >= 1 for s in space)  # every searched line student has context
    assert not is_line_model("cnn-w4-d2-r20") and not is_line_model("cnn-small")
    with pytest.raises(TeacherMismatchError, match=r"\(1, 48, 12\)"):
        check_line_output(build_student("ctc-w4-d2-r24", 11).eval(), 12, 24, 192, "t.pt")


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------------------------

def _page(h: int, w: int, ink: tuple[slice, slice]) -> np.ndarray:
    """Dark ink (a bar) on white paper, uint8."""
    a = np.full((h, w), 255, np.uint8)
    a[ink] = 0
    return a


def test_preprocess_line_accepts_a_line_and_refuses_bad_images():
    from edgekd_runtime.lines import TEXT_HEIGHT_SHARE

    x = preprocess_line(_page(40, 300, np.s_[10:30, 10:150]), 24, 192)  # a 20 x 140 px bar of dark ink
    assert x.shape == (24, 192) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    text_h = round(TEXT_HEIGHT_SHARE * 24)
    rows, cols = np.flatnonzero(x.max(1) > 0.5), np.flatnonzero(x.max(0) > 0.5)
    assert len(rows) == text_h and rows[0] == (24 - text_h) // 2  # the ink band scaled to its share, centred
    assert cols[0] == 2 and abs(len(cols) - 140 * text_h / 20) <= 1  # aspect kept, left-aligned at 2 px
    assert x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].min() > 0.9  # light ink on dark
    assert not x[:, cols[-1] + 2:].any() and not x[:rows[0] - 1].any()  # zero padding right (and above)
    with pytest.raises(ImageError, match="empty"):
        preprocess_line(np.zeros((0, 50), np.uint8), 24, 192)
    with pytest.raises(LineTooWideError, match="192 px"):
        preprocess_line(_page(40, 800, np.s_[10:30, 10:790]), 24, 192)
    assert issubclass(LineTooWideError, ImageError) and issubclass(ImageError, UserInputError)
    with pytest.raises(BlankImageError):
        preprocess_line(np.full((30, 100), 255, np.uint8), 24, 192)


def _write_folder(root: Path, rows: list[tuple[str, str]], images: dict[str, np.ndarray]) -> Path:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for name, img in images.items():
        Image.fromarray(img).save(root / name)
    (root / "labels.tsv").write_text("file\ttext\n" + "".join(f"{f}\t{t}\n" for f, t in rows))
    return root


def _cli(args: list[str]):
    return CliRunner().invoke(app, args)


def _refused(r, *needles: str) -> None:
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert r.stderr.startswith("error: ") and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def _nothing_written(out: Path) -> None:
    assert not any((out / f).exists() for f in RUN_FILES), sorted(p.name for p in out.iterdir())


def test_label_file_refusals(tmp_path):
    imgs = {f"l{i}.png": _page(40, 120, np.s_[10:30, 10:20 + 10 * i]) for i in range(3)}
    good = [("l0.png", "1"), ("l1.png", "22"), ("l2.png", "333")]
    cases = {"missing": (good + [("nope.png", "4")], "nope.png does not exist"),
             "empty": ([good[0], ("l1.png", " "), good[2]], "l1.png has an empty transcription"),
             "too few": (good[:2], "lists 2 line(s); at least 3")}
    for case, (rows, msg) in cases.items():
        root = _write_folder(tmp_path / case.replace(" ", "_"), rows, imgs)
        with pytest.raises(DataFileError, match=re.escape(msg)):
            read_labels_tsv(root)
        out = tmp_path / f"out_{case.replace(' ', '_')}"
        r = _cli(["teacher", "train", "--task", "lines", "--data", "folder", "--data-path", str(root),
                  "--arch", "crnn-small", "--epochs", "1", "--device", "cpu", "--out", str(out), "--quiet"])
        _refused(r, msg)
        assert not out.exists()  # refused while reading the data: nothing written at all


# (command, what stderr must say); {..} are filled from the fixtures; every case must exit 2 and leave no weights
CLI_REFUSALS = {
    "lines teacher for digits": (["distill", "--teacher", "{line_teacher}", "--student", "cnn-w4-d2-r20",
                                  "--loss", "kd", "--config", "{digits_yaml}"], ["reads text lines", "--task lines"]),
    "digit teacher for lines": (["distill", "--task", "lines", "--teacher", "{digit_teacher}", "--student",
                                 "ctc-w4-d2-r24", "--loss", "frame_kd", "--config", "{lines_yaml}"],
                                ["reads single digits", "teacher train --task lines"]),
    "digit student for lines": (["distill", "--task", "lines", "--student", "cnn-w4-d2-r20", "--loss", "none",
                                 "--config", "{lines_yaml}"], ["reads single digits", "budget --task lines"]),
    "digit teacher arch for lines": (["teacher", "train", "--task", "lines", "--arch", "cnn-small",
                                      "--config", "{lines_yaml}"], ["crnn-small"]),
    "line student height": (["distill", "--task", "lines", "--student", "ctc-w4-d2-r32", "--loss", "none",
                             "--config", "{lines_yaml}"], ["32 px", "-r24"]),
    "digit loss for lines": (["distill", "--task", "lines", "--teacher", "{line_teacher}", "--student",
                              "ctc-w4-d2-r24", "--loss", "kd", "--config", "{lines_yaml}"], ["frame_kd"]),
    "digit KD mode for lines": (["distill", "--task", "lines", "--teacher", "{line_teacher}", "--student",
                                 "ctc-w4-d2-r24", "--kd-mode", "online", "--config", "{lines_yaml}"],
                                ["--kd-mode online is for the digits task"]),
    "line loss for digits": (["distill", "--teacher", "{digit_teacher}", "--student", "cnn-w4-d2-r20",
                              "--loss", "frame_kd", "--config", "{digits_yaml}"], ["--task lines"]),
    # the mirror cases: line models asked to read single digits (no --task lines)
    "line student for digits": (["distill", "--student", "ctc-w4-d2-r24", "--loss", "none",
                                 "--config", "{digits_yaml}"], ["--task lines"]),
    "line teacher arch for digits": (["teacher", "train", "--arch", "crnn-small", "--config", "{digits_yaml}"],
                                     ["--task lines"]),
}


@pytest.mark.parametrize("case", list(CLI_REFUSALS))
def test_cli_refuses_mixed_tasks_with_exit_2(case, line_teacher, digit_teacher, yamls, tmp_path):
    args, needles = CLI_REFUSALS[case]
    paths = {"line_teacher": str(line_teacher), "digit_teacher": str(digit_teacher), **yamls}
    out = tmp_path / "out"
    r = _cli([a.format(**paths) for a in args] + ["--epochs", "1", "--out", str(out), "--quiet"])
    _refused(r, *needles)
    if out.exists():
        _nothing_written(out)


# ---------------------------------------------------------------------------------------------------------------
# Training end to end
# ---------------------------------------------------------------------------------------------------------------

def test_line_teacher_checkpoint_contract(line_teacher, splits):
    from edgekd.models.line_models import load_line_teacher

    ck = torch.load(line_teacher, weights_only=True)
    assert (ck["format"], ck["kind"], ck["arch"], ck["task"]) == ("edgekd-checkpoint", "teacher", "crnn-small",
                                                                  "lines")
    assert (ck["charset"], ck["blank"], ck["num_classes"], ck["input_height"]) == (DIGIT_CHARSET, 0, 11, 24)
    assert ck["width_policy"] == {"kind": "fixed", "width": 192, "frame_stride": 4}
    assert ck["labels"] == list(DIGIT_CHARSET) and ck["data"]["train_lines"] == 64
    m = ck["metrics"]
    assert m["epochs_run"] == 1 and 0.0 <= m["test_string_acc"] <= 1.0 and m["test_cer"] >= 0.0
    assert sum(v["n"] for v in m["test_per_length"].values()) == 32
    assert {int(k) for k in m["test_per_length"]} == {len(t) for t in splits.test.texts}
    t = load_line_teacher(str(line_teacher), 11, 24, 192)
    assert t.name == "crnn-small" and not t.has_features
    with torch.no_grad():
        assert t.model(torch.zeros(2, 1, 24, 192)).shape == (2, 48, 11)
    from edgekd.models.teachers import TeacherMismatchError

    # a teacher for 24 px lines refuses 32 px data, saying which height to use
    with pytest.raises(TeacherMismatchError, match="set the line height to 24"):
        load_line_teacher(str(line_teacher), 11, 32, 192)


@pytest.mark.parametrize("loss", ["frame_kd", "blank_kd", "seq_kd", "frame_kd+0.5*seq_kd", "none"])
def test_distill_lines_with_each_loss(loss, splits, line_teacher, tmp_path):
    from edgekd.models.line_models import load_line_teacher
    from edgekd.models.students import build_student
    from edgekd.train.line_pipeline import distill_lines
    from edgekd.train.pipeline import DistillOptions

    teacher = None if loss == "none" else load_line_teacher(str(line_teacher), 11, 24, 192)
    m = distill_lines(splits, "ctc-w4-d2-r24", _cfg(), tmp_path, teacher=teacher,
                      opts=DistillOptions(loss=loss, transfer_views=1), progress=False)
    assert m["epochs_run"] == 1 and m["loss"] == loss and m["teacher"] == (None if loss == "none" else "crnn-small")
    assert np.isfinite(m["test_loss"]) and m["test_cer"] >= 0.0
    ck = torch.load(tmp_path / "student.pt", weights_only=True)
    assert (ck["kind"], ck["arch"], ck["task"], ck["charset"], ck["blank"]) == ("student", "ctc-w4-d2-r24", "lines",
                                                                                DIGIT_CHARSET, 0)
    assert ck["width_policy"]["width"] == 192 and ck["input_height"] == 24
    model = build_student("ctc-w4-d2-r24", 11)
    model.load_state_dict(ck["state_dict"])
    hist = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(hist) == 1 and {"train_loss", "val_cer", "val_acc", "val_loss"} <= set(hist[0])
    assert np.isfinite(hist[0]["train_loss"]) and hist[0]["train_loss"] > 0
    with pytest.raises(UserInputError, match="reads single digits"):
        distill_lines(splits, "cnn-w4-d2-r20", _cfg(), tmp_path / "x", opts=DistillOptions(loss="none"),
                      progress=False)


class _Cut(Exception):
    pass


def test_line_teacher_interrupted_then_resumed_ends_with_identical_weights(splits, tmp_path):
    from edgekd.train.line_pipeline import train_line_teacher

    cfg = _cfg(epochs=2, seed=5)
    train_line_teacher(splits, cfg, tmp_path / "full", arch="crnn-small", progress=False)

    def cut(epoch, rec):
        if epoch == 0:
            raise _Cut  # after epoch 0's checkpoint, like a crash

    with pytest.raises(_Cut):
        train_line_teacher(splits, cfg, tmp_path / "cut", arch="crnn-small", progress=False, on_epoch_end=cut)
    assert (tmp_path / "cut" / "last.pt").exists() and not (tmp_path / "cut" / "teacher.pt").exists()
    train_line_teacher(splits, cfg, tmp_path / "cut", arch="crnn-small", progress=False, resume=True)
    a = torch.load(tmp_path / "full" / "teacher.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut" / "teacher.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha = [json.loads(x)["train_loss"] for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    hb = [json.loads(x)["train_loss"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert len(ha) == 2 and ha == hb


def test_cli_teacher_and_distill_for_lines(tmp_path, yamls):
    import yaml

    r = _cli(["teacher", "train", "--config", yamls["lines_yaml"], "--arch", "crnn-small", "--epochs", "1",
              "--out", str(tmp_path / "t"), "--json"])  # the task comes from the file
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["epochs_run"] == 1 and out["checkpoint"] == str(tmp_path / "t" / "teacher.pt")
    ck = torch.load(tmp_path / "t" / "teacher.pt", weights_only=True)
    assert ck["task"] == "lines" and ck["data"]["train_lines"] == 64 and ck["arch"] == "crnn-small"
    saved = yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())
    assert saved["task"] == "lines" and saved["lines"]["train_lines"] == 64 and saved["train"]["epochs"] == 1
    r = _cli(["distill", "--task", "lines", "--teacher", str(tmp_path / "t" / "teacher.pt"), "--student",
              "ctc-w4-d2-r24", "--config", yamls["lines_yaml"], "--epochs", "1", "--out", str(tmp_path / "s"),
              "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    from edgekd.train.line_pipeline import DEFAULT_LINE_LOSS

    assert out["loss"] == DEFAULT_LINE_LOSS == "blank_kd" and out["teacher"] == "crnn-small"  # not the digits' `kd`
    ck = torch.load(tmp_path / "s" / "student.pt", weights_only=True)
    assert (ck["task"], ck["arch"], ck["kind"]) == ("lines", "ctc-w4-d2-r24", "student")
    r = _cli(["distill", "--task", "lines", "--student", "ctc-w4-d2-r24", "--loss", "none", "--config",
              yamls["lines_yaml"], "--epochs", "1", "--out", str(tmp_path / "s"), "--quiet"])
    _refused(r, "--resume")  # a second run into the same --out is refused


@pytest.mark.parametrize("yaml_key, flags, expected", [("lines_yaml", [], 60), ("digits_yaml", ["--task", "lines"], 60),
                                                       ("lines_yaml", ["--epochs", "7"], 7), ("digits_yaml", [], 40)])
def test_teacher_default_epochs_follow_the_task(yaml_key, flags, expected, yamls, tmp_path, monkeypatch):
    """A line teacher trains 60 epochs unless told otherwise, whether the task comes from --task or from the YAML;
    a digit teacher 40."""
    import edgekd.train.line_pipeline as lp
    import edgekd.train.pipeline as dp

    seen = {}

    def fake(data, cfg, out, **kw):
        seen["epochs"] = cfg.epochs
        return {"checkpoint": str(out / "teacher.pt"), "epochs_run": cfg.epochs}

    monkeypatch.setattr(lp, "train_line_teacher", fake)
    monkeypatch.setattr(dp, "train_teacher", fake)
    r = _cli(["teacher", "train", "--config", yamls[yaml_key], *flags, "--out", str(tmp_path / "t"), "--json"])
    assert r.exit_code == 0, r.output
    assert seen["epochs"] == expected and lp.DEFAULT_LINE_TEACHER_EPOCHS == 60


def test_cli_budget_for_lines():
    from edgekd.models.line_models import line_search_space

    r = _cli(["budget", "--task", "lines", "--target", "rpi4", "--latency-ms", "2", "--flash-kb", "32", "--no-plot",
              "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["total"] == len(out["candidates"]) == len(line_search_space(24))
    assert {c["student"] for c in out["candidates"]} == set(line_search_space(24))
    feasible = [c for c in out["candidates"] if c["feasible"]]
    assert feasible and out["chosen"] in {c["student"] for c in feasible}
    assert all(c["flash_bytes"] <= 32 * 1024 and c["latency_ms"] <= 2.0 for c in feasible)
    r = _cli(["budget", "--task", "words", "--target", "rpi4", "--no-plot"])
    _refused(r, "unknown task 'words'")


# ---------------------------------------------------------------------------------------------------------------
# A user folder of line images
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def line_folder(tmp_path_factory):
    """6 line PNGs (dark ink on light paper, 2x the composed size) and labels.tsv with a header row."""
    from PIL import Image

    d = load_data(DataSpec("embedded", seed=0))
    lines = compose_split(d.test.x, d.test.y, d.class_names, 6, (2, 5), 24, 192, seed=7)
    images = {f"line_{i}.png": np.asarray(Image.fromarray(255 - x).resize((384, 48), Image.BILINEAR))
              for i, x in enumerate(lines.x)}
    root = _write_folder(tmp_path_factory.mktemp("lines"), [(f"line_{i}.png", t) for i, t in enumerate(lines.texts)],
                         images)
    return root, lines.texts


def test_folder_of_line_images(line_folder):
    root, texts = line_folder
    s = load_lines(LineSpec("folder", str(root)))
    assert s.charset == "".join(sorted(set("".join(texts)))) and s.num_classes == len(s.charset) + 1
    assert (len(s.train), len(s.val), len(s.test)) == (4, 1, 1)
    assert sorted(s.train.texts + s.val.texts + s.test.texts) == sorted(texts)
    for sp in (s.train, s.val, s.test):
        assert sp.x.shape[1:] == (24, 192) and sp.x.dtype == np.uint8
        for x in sp.x:  # dark-on-light files come out light on dark, left-aligned at the runtime's 2 px
            assert x.max() > 200 and np.median(x) == 0 and np.flatnonzero(x.max(0) > 24)[0] <= 4
    assert load_lines(LineSpec("folder", str(root))).train.texts == s.train.texts  # same seed, same split
    v1 = s.train_view(1)  # later views re-render the same labelled lines
    assert v1.texts == s.train.texts and v1.x.shape == s.train.x.shape and not np.array_equal(v1.x, s.train.x)


def test_cli_data_info_for_a_line_folder(line_folder):
    root, texts = line_folder
    r = _cli(["data", "info", "--task", "lines", str(root), "--json", "--no-grid"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    s = load_lines(LineSpec("folder", str(root)))
    assert out["source"] == "folder" and out["charset"] == s.charset and out["num_classes"] == len(s.charset) + 1
    assert out["lines"] == {"train": 4, "val": 1, "test": 1} and out["shape"] == [24, 192]
    for k in ("train", "val", "test"):
        want = Counter(len(t) for t in getattr(s, k).texts)
        assert {int(n): c for n, c in out["length_histogram"][k].items()} == want, k
    assert sum(out["characters"].values()) == sum(len(t) for t in texts)
    r = _cli(["data", "info", "--task", "lines", str(root / "nowhere"), "--json", "--no-grid"])
    _refused(r, "nowhere")
