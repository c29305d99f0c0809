"""Line recognizers for the `lines` task (CTC): the line teachers and the line student families.

Every line model takes (N, 1, H, W) normalised line canvases and returns CTC logits (N, W // 4, C): one frame per
4 pixel columns, C = charset + blank (class 0). The shared frame rate lets frame-level KD compare teacher and
student frame by frame.

Students (ids in the style of the digit families, `r` = the line height they take)::

    ctc-w{W}-d{D}-r{H}     D stages of 3x3 conv + BN + ReLU + max-pool (widths W, 2W, 4W, ...; the first two
                           pool 2x2, later ones 2x1), the height collapsed by a (h, 3) conv, a 1x1 classifier
    dsctc-w{W}-d{D}-r{H}   the same with depthwise-separable stages after a full 3x3 stem
    ...-c{C}-r{H}          (either family) C context convolutions (1, 5) over the frames before the classifier

Why context: a frame of ctc-w8-d2 sees 18 pixel columns, about one digit, so touching and overlapping digits are
read from a fragment. Each (1, 5) convolution widens that by 16 columns for about 5k parameters and 0.25M MACs
(cheap at the frame rate). Distilled from the same teacher (two 60-epoch convctc) for 40 epochs at a peak rate of
3e-3 over 8 views, on the 2,000 test strings: ctc-w8-d2-r24 6.10 % CER / 68.2 % strings, -c1 3.95 % / 78.3 %, -c2
3.08 % / 82.5 %, -c3 3.04 % / 83.0 % (the same as -c2 within noise, so the budget search tries -c1 and -c2).

Only Conv2d (BatchNorm folds into it), depthwise Conv2d, ReLU, max pooling, Squeeze and Transpose: no recurrent
op, so the students convert to TFLite full int8. The teacher (`crnn`) adds a bidirectional LSTM.

This module needs no torch at import: the nn.Modules and their builders (registered in STUDENTS and TEACHERS by
name) live in `line_nets`, imported when one is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
                             f"crnn-small; students such as ctc-w8-d2-c2-r24, listed by `edgekd budget --task lines`)")
    if task == "lines" and height is not None and arch.split("-")[0] in LINE_FAMILIES:
        from .students import parse_student_id

        h = parse_student_id(arch).input_size
        if h != height:
            raise UserInputError(f"student {arch} takes lines {h} px high but the data's lines are {height} px; use "
                                 f"-r{height} or set the line height (lines: {{height: {h}}})")
        check_stages_fit(arch)


def stage_pools(depth: int) -> list[tuple[int, int]]:
    """The max-pool (height, width) of each of `depth` conv stages: the first two 2x2, later ones 2x1."""
    return [(2, 2) if i < 2 else (2, 1) for i in range(depth)]


def collapsed_height(height: int, depth: int) -> int:
    """The feature map's height after `depth` stages on lines `height` px high (0: the stages do not fit)."""
    for pool in stage_pools(depth):
        height //= pool[0]
    return height


def check_stages_fit(student_id: str) -> None:
    """Refuse a line student whose stages pool its line height away (e.g. 4 stages on lines 8 px high)."""
    from .students import StudentIdError, parse_student_id

    spec = parse_student_id(student_id)
    if spec.family in LINE_FAMILIES and spec.depth and collapsed_height(spec.input_size, spec.depth) < 1:
        raise StudentIdError(f"student id {spec.id!r}: {spec.depth} stages do not fit a line of height "
                             f"{spec.input_size}; use fewer stages or taller lines")


def line_search_space(height: int = 24) -> list[str]:
    """The line student ids the budget search enumerates, small to large (those whose stages fit `height`)."""
    ctx = ("-c1", "-c2")  # every searched student has context (see the module doc); a third gained nothing
    ids = [f"ctc-w{w}-d{d}{c}-r{height}" for w in (4, 8, 12, 16, 24, 32) for d in (2, 3) for c in ctx]
    ids += [f"dsctc-w{w}-d{d}{c}-r{height}" for w in (8, 16, 24, 32) for d in (2, 3, 4) for c in ctx]
    return [i for i in ids if collapsed_height(height, int(i.split("-d")[1][0])) >= 1]


def load_line_teacher(ref: str, num_classes: int, height: int, width: int, arch: str | None = None):
    """Load a line teacher: an edgekd `lines` teacher checkpoint, or a TorchScript / ExportedProgram file taking
    (N, 1, height, width) normalised line canvases and returning (N, width // 4, num_classes) CTC logits (blank 0).
    Several files separated by commas make an ensemble (`LineEnsemble`). Returns an
    `edgekd.models.teachers.Teacher` in eval mode on the CPU."""
    from pathlib import Path

    from edgekd.train.checkpoint import CHECKPOINT_FORMAT

    from .teachers import Teacher, TeacherMismatchError, load_teacher_module, teacher_files

    if "," in ref:
        members = [load_line_teacher(r, num_classes, height, width, arch) for r in teacher_files(ref)]
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
    """An ensemble of line models (`line_nets.LineEnsemble`: the mean of their per-frame CTC posteriors, as
    log-probabilities) in eval mode."""
    from .line_nets import LineEnsemble

    return LineEnsemble(models).eval()  # (the mean posterior: ensemble.ProbabilityEnsemble)
