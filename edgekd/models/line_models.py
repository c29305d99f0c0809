"""Line recognizers for the `lines` task (CTC): the line teachers and the line student families.

Every line model takes (N, 1, H, W) normalised line canvases and returns CTC logits (N, W // 4, C): one frame per
4 pixel columns, C = charset + blank (class 0). The shared frame rate lets frame-level KD compare teacher and
student frame by frame.

Students (ids in the style of the digit families, `r` = the line height they take)::

    ctc-w{W}-d{D}-r{H}     D stages of 3x3 conv + BN + ReLU + max-pool (widths W, 2W, 4W, ...; the first two
                           pool 2x2, later ones 2x1), the height collapsed by a (h, 3) conv, a 1x1 classifier
    dsctc-w{W}-d{D}-r{H}   the same with depthwise-separable stages after a full 3x3 stem

Only Conv2d (BatchNorm folds into it), depthwise Conv2d, ReLU, max pooling, Squeeze and Transpose: no recurrent
op, so the students convert to TFLite full int8. The teacher (`crnn`) adds a bidirectional LSTM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .students import STUDENTS, StudentIdError, StudentSpec
from .teachers import TEACHERS

if TYPE_CHECKING:
    from torch import nn

LINE_FAMILIES = ("ctc", "dsctc")
LINE_TEACHERS = ("crnn", "crnn-small", "convctc")
FRAME_STRIDE = 4  # pixel columns per CTC frame, for every line model


def is_line_model(arch: str) -> bool:
    """True for a line student id (`ctc-...`, `dsctc-...`) or a line teacher name (`crnn...`)."""
    return arch.split("-")[0] in LINE_FAMILIES or arch in LINE_TEACHERS


def check_task(arch: str, task: str, height: int | None = None) -> None:
    """Refuse a model id/name of the other task (and, for lines with `height`, a student of another line height),
    naming what to pass instead. The one home of this rule for the CLI and the training jobs."""
    from edgekd_runtime.errors import UserInputError

    if is_line_model(arch) and task != "lines":
        raise UserInputError(f"{arch!r} reads text lines (CTC); pass --task lines (or task: lines in the YAML), or "
                             f"pick a digit model (e.g. cnn teacher, dscnn-w8-d3-r28 student)")
    if not is_line_model(arch) and task == "lines":
        raise UserInputError(f"{arch!r} reads single digits; for --task lines use a line model (teachers crnn, "
                             f"crnn-small; students such as ctc-w8-d2-r24, listed by `edgekd budget --task lines`)")
    if task == "lines" and height is not None and arch.split("-")[0] in LINE_FAMILIES:
        from .students import parse_student_id

        h = parse_student_id(arch).input_size
        if h != height:
            raise UserInputError(f"student {arch} takes lines {h} px high but the data's lines are {height} px; use "
                                 f"-r{height} or set the line height (lines: {{height: {h}}})")


def line_search_space(height: int = 24) -> list[str]:
    """The line student ids the budget search enumerates, small to large."""
    ids = [f"ctc-w{w}-d{d}-r{height}" for w in (4, 8, 12, 16, 24, 32) for d in (2, 3)]
    ids += [f"dsctc-w{w}-d{d}-r{height}" for w in (8, 16, 24, 32) for d in (2, 3, 4)]
    return ids


def _stage_pools(depth: int) -> list[tuple[int, int]]:
    return [(2, 2) if i < 2 else (2, 1) for i in range(depth)]


def _line_classes():
    import torch
    from torch import nn

    class LineNet(nn.Module):
        """A body (N, 1, H, W) -> (N, c, h, W/4), the height collapsed by a (h, 3) conv, a 1x1 classifier."""

        def __init__(self, body: nn.Module, channels: int, h: int, num_classes: int, hidden: int,
                     context: int = 0) -> None:
            super().__init__()
            self.body = body
            layers = [nn.Conv2d(channels, hidden, (h, 3), padding=(0, 1), bias=False), nn.BatchNorm2d(hidden),
                      nn.ReLU(inplace=True)]
            for _ in range(context):  # wider context along the line: (1, 5) convolutions over the frames
                layers += [nn.Conv2d(hidden, hidden, (1, 5), padding=(0, 2), bias=False), nn.BatchNorm2d(hidden),
                           nn.ReLU(inplace=True)]
            self.collapse = nn.Sequential(*layers)
            self.head = nn.Conv2d(hidden, num_classes, 1)
            self.feature_dim = hidden

        def forward(self, x: torch.Tensor, with_features: bool = False):
            feats = self.collapse(self.body(x))  # (N, hidden, 1, T)
            # NCHW -> NHWC then merge H (= 1) into T: the transpose onnx2tf folds into its own NHWC layout
            # (a Squeeze of the height axis does not survive that layout change)
            logits = self.head(feats).permute(0, 2, 3, 1).flatten(1, 2)  # (N, T, C)
            return (logits, feats.permute(0, 2, 3, 1).flatten(1, 2)) if with_features is True else logits

    class CRNN(nn.Module):
        """CNN + bidirectional LSTM (Shi et al. 2016, "An End-to-End Trainable Neural Network for Image-based
        Sequence Recognition", TPAMI): conv stages, the height folded into the features, BiLSTM, classifier."""

        def __init__(self, widths: tuple[int, ...], hidden: int, height: int, num_classes: int) -> None:
            super().__init__()
            layers, c_in, h = [], 1, height
            for c_out, pool in zip(widths, _stage_pools(len(widths))):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                           nn.ReLU(inplace=True), nn.MaxPool2d(pool)]
                c_in, h = c_out, h // pool[0]
            self.body = nn.Sequential(*layers)
            self.proj = nn.Sequential(nn.Linear(c_in * h, hidden), nn.ReLU(inplace=True))
            self.rnn = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
            self.drop = nn.Dropout(0.2)
            self.head = nn.Linear(2 * hidden, num_classes)
            self.feature_dim = 2 * hidden

        def forward(self, x: torch.Tensor, with_features: bool = False):
            f = self.body(x)  # (N, c, h, T)
            f = self.proj(f.flatten(1, 2).transpose(1, 2))  # (N, T, hidden)
            feats, _ = self.rnn(f)
            logits = self.head(self.drop(feats))
            return (logits, feats) if with_features is True else logits

    return LineNet, CRNN


def _conv(c_in: int, c_out: int, k: int = 3, groups: int = 1) -> list["nn.Module"]:
    from torch import nn

    return [nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


def _check_height(spec: StudentSpec) -> int:
    h = spec.input_size
    for pool in _stage_pools(spec.depth):
        h //= pool[0]
    if h < 1:
        raise StudentIdError(f"student id {spec.id!r}: {spec.depth} stages do not fit a line of height "
                             f"{spec.input_size}; use fewer stages or taller lines")
    return h


@STUDENTS.register(key="ctc")
def _ctc(spec: StudentSpec, num_classes: int) -> "nn.Module":
    from torch import nn

    h = _check_height(spec)
    layers: list[nn.Module] = []
    c_in, c = 1, spec.width
    for pool in _stage_pools(spec.depth):
        layers += _conv(c_in, c) + [nn.MaxPool2d(pool)]
        c_in, c = c, c * 2
    return _line_classes()[0](nn.Sequential(*layers), c_in, h, num_classes, 2 * c_in)


@STUDENTS.register(key="dsctc")
def _dsctc(spec: StudentSpec, num_classes: int) -> "nn.Module":
    from torch import nn

    h = _check_height(spec)
    layers: list[nn.Module] = _conv(1, spec.width)
    c = spec.width
    for i, pool in enumerate(_stage_pools(spec.depth)):
        c_out = c * 2 if i < 3 else c
        layers += [nn.MaxPool2d(pool)] + _conv(c, c, groups=c) + _conv(c, c_out, k=1)
        c = c_out
    return _line_classes()[0](nn.Sequential(*layers), c, h, num_classes, 2 * c)


def _crnn(widths: tuple[int, ...], hidden: int, num_classes: int, height: int) -> "nn.Module":
    return _line_classes()[1](widths, hidden, height, num_classes)


@TEACHERS.register(key="crnn")
def crnn(num_classes: int, height: int = 24) -> "nn.Module":
    """The default line teacher (about 0.45M parameters, 54M MACs per 192-px line): conv 24-48-96-128 + BiLSTM 128
    (CRNN)."""
    return _crnn((24, 48, 96, 128), 128, num_classes, height)


@TEACHERS.register(key="convctc")
def convctc(num_classes: int, height: int = 24) -> "nn.Module":
    """A convolution-only line teacher (about 0.69M parameters, 72M MACs per 192-px line): conv 32-64-128 stages,
    the height collapsed into 192 channels, two (1, 5) context convolutions over the frames. Its CTC spikes come
    from local evidence like the students', so frame-level KD does not have to move them."""
    from torch import nn

    layers: list[nn.Module] = []
    c_in, h = 1, height
    for c, pool in zip((32, 64, 128), _stage_pools(3)):
        layers += _conv(c_in, c) + [nn.MaxPool2d(pool)]
        c_in, h = c, h // pool[0]
    return _line_classes()[0](nn.Sequential(*layers), c_in, h, num_classes, 192, context=2)


@TEACHERS.register(key="crnn-small")
def crnn_small(num_classes: int, height: int = 24) -> "nn.Module":
    """A small line teacher for tests and quick runs."""
    return _crnn((8, 16, 32), 32, num_classes, height)


def load_line_teacher(ref: str, num_classes: int, height: int, width: int, arch: str | None = None):
    """Load a line teacher: an edgekd `lines` teacher checkpoint, or a TorchScript / ExportedProgram file taking
    (N, 1, height, width) normalised line canvases and returning (N, width // 4, num_classes) CTC logits (blank 0).
    Several files separated by commas make an ensemble (`LineEnsemble`). Returns an
    `edgekd.models.teachers.Teacher` in eval mode on the CPU."""
    from pathlib import Path

    from edgekd.train.checkpoint import CHECKPOINT_FORMAT

    from .teachers import Teacher, TeacherMismatchError, load_teacher_module

    if "," in ref:
        members = [load_line_teacher(r.strip(), num_classes, height, width, arch) for r in ref.split(",") if r.strip()]
        model = line_ensemble([m.model for m in members])
        return Teacher(model, "ensemble(" + "+".join(m.name for m in members) + ")", "ensemble", has_features=False)

    model, source, ck = load_teacher_module(Path(ref).expanduser(), arch, task="lines", height=height)
    if ck is not None:
        if ck.get("format") == CHECKPOINT_FORMAT and ck.get("task", "digits") != "lines":
            raise TeacherMismatchError(f"teacher {ref} reads single digits; --task lines needs a line teacher "
                                       f"(edgekd teacher train --task lines)")
        if int(ck.get("input_height", height)) != height:
            raise TeacherMismatchError(f"teacher {ref} reads lines {ck['input_height']} px high but the data's lines "
                                       f"are {height} px; set the line height to {ck['input_height']}")
    check_line_output(model, num_classes, height, width, ref)
    name = ck["arch"] if ck is not None else Path(ref).stem
    return Teacher(model, name, source, has_features=False)


def check_line_output(model: "nn.Module", num_classes: int, height: int, width: int, where: str) -> None:
    """Refuse a line model that does not map (1, 1, height, width) to (1, width // 4, num_classes) logits."""
    import torch

    from edgekd_runtime.errors import ModelLoadError

    from .teachers import TeacherMismatchError

    try:
        with torch.inference_mode():
            out = model(torch.zeros(1, 1, height, width))
    except Exception as e:  # noqa: BLE001 - user models fail in many ways
        raise ModelLoadError(f"line teacher {where} does not run on a (1, 1, {height}, {width}) line "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    out = out[0] if isinstance(out, (tuple, list)) else out
    want = (1, width // FRAME_STRIDE, num_classes)
    if tuple(out.shape) != want:
        raise TeacherMismatchError(f"line teacher {where} outputs shape {tuple(out.shape)}; a line teacher must "
                                   f"return {want} (N, frames = width / {FRAME_STRIDE}, charset + blank) CTC logits")


def line_ensemble(models: list["nn.Module"]) -> "nn.Module":
    """An ensemble of line models: the mean of their per-frame CTC posteriors, returned as log-probabilities (which
    serve as logits: their softmax is the mean posterior). Members must share the frame rate (every line model
    here does)."""
    import torch
    from torch import nn

    class LineEnsemble(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = nn.ModuleList(models)

        def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor:
            outs = [m(x) for m in self.members]
            probs = torch.stack([(o[0] if isinstance(o, (tuple, list)) else o).float().softmax(-1) for o in outs])
            return probs.mean(0).clamp_min(1e-12).log()

    return LineEnsemble().eval()
