"""The student family: `linear`, `mlp`, `cnn` and `dscnn`, each parametrized by width, depth and input resolution.

Student ids are stable strings used by the budget search, checkpoints and manifests::

    linear-r{R}            logistic regression on the R x R canvas (the extreme-budget case)
    mlp-w{W}-d{D}-r{R}     D hidden layers of W units
    cnn-w{W}-d{D}-r{R}     LeNet-like: D stages of 3x3 conv + BN + ReLU + 2x2 max-pool, widths W, 2W, 4W, ...,
                           then the flattened map into the classifier
    dscnn-w{W}-d{D}-r{R}   MobileNet-like: a 3x3 stem of W channels then D depthwise-separable blocks

Every student takes (N, 1, R, R) normalised float and returns logits (N, C). Only ops that export cleanly to
ONNX opset 17 and convert with onnx2tf are used: Conv2d (BatchNorm folds into it on export), depthwise Conv2d,
ReLU, max pooling, global average pooling, Flatten and Linear.

Why `cnn` flattens instead of pooling globally: after two or three small stages the receptive field covers only
part of a digit, and a global average throws away where the strokes are (a 2-stage, 32-wide GAP student reached
49% on the embedded digits after 3 epochs where the flattened one reached 96%).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from edgekd_runtime.errors import UserInputError
from edgekd_runtime.registry import Registry

if TYPE_CHECKING:  # torch is imported lazily so `edgekd --help` stays fast
    from torch import nn

RESOLUTIONS = (28, 20, 16)
#: The input sizes in px every student takes (a digit canvas's side, a line's height): the one rule, which the line
#: data (`edgekd.data.lines.LineSpec`) checks its height against too
INPUT_SIZE_RANGE = (8, 64)
STUDENTS: Registry[Callable[..., "nn.Module"]] = Registry("student")

_ID_RE = re.compile(r"^(?P<family>[a-z]+)(?:-w(?P<w>\d+)-d(?P<d>\d+)(?:-c(?P<c>\d+))?)?-r(?P<r>\d+)$")
CONTEXT_FAMILIES, MAX_CONTEXT = ("ctc", "dsctc"), 3  # line students: (1, 5) context convolutions over the frames


class StudentIdError(UserInputError):
    """A student id that does not parse or is outside the family's valid range."""


@dataclass(frozen=True)
class StudentSpec:
    """A parsed student id."""

    family: str
    width: int | None
    depth: int | None
    input_size: int
    context: int = 0

    @property
    def id(self) -> str:
        if self.family == "linear":
            return f"linear-r{self.input_size}"
        ctx = f"-c{self.context}" if self.context else ""
        return f"{self.family}-w{self.width}-d{self.depth}{ctx}-r{self.input_size}"


def parse_student_id(student_id: str) -> StudentSpec:
    """Parse `dscnn-w16-d3-r28` into a StudentSpec; raises StudentIdError naming the valid forms."""
    m = _ID_RE.match(student_id.strip())
    fam = m.group("family") if m else None
    hint = ("valid forms: linear-r{R}, mlp-w{W}-d{D}-r{R}, cnn-w{W}-d{D}-r{R}, dscnn-w{W}-d{D}-r{R} "
            f"with R in {INPUT_SIZE_RANGE[0]}..{INPUT_SIZE_RANGE[1]} (e.g. dscnn-w16-d3-r28); "
            "for text lines ctc-w{W}-d{D}[-c{C}]-r{H}, "
            "dsctc-w{W}-d{D}[-c{C}]-r{H} (H = line height, "
            f"C = 1..{MAX_CONTEXT} context convolutions); known families: {', '.join(STUDENTS.names())}")
    if not m or fam not in STUDENTS:
        raise StudentIdError(f"bad student id {student_id!r}; {hint}")
    r = int(m.group("r"))
    if not INPUT_SIZE_RANGE[0] <= r <= INPUT_SIZE_RANGE[1]:
        raise StudentIdError(f"student id {student_id!r}: input resolution r{r} out of range; {hint}")
    if fam == "linear":
        if m.group("w") is not None:
            raise StudentIdError(f"student id {student_id!r}: linear takes no width/depth; use linear-r{r}")
        return StudentSpec("linear", None, None, r)
    if m.group("w") is None:
        raise StudentIdError(f"student id {student_id!r}: {fam} needs width and depth; {hint}")
    w, d, c = int(m.group("w")), int(m.group("d")), int(m.group("c") or 0)
    if m.group("c") is not None and (fam not in CONTEXT_FAMILIES or not 1 <= c <= MAX_CONTEXT):
        raise StudentIdError(f"student id {student_id!r}: -c{{C}} (context convolutions) is for the line families "
                             f"{', '.join(CONTEXT_FAMILIES)}, with C in 1..{MAX_CONTEXT}; {hint}")
    max_depth = {"mlp": 4, "cnn": 4, "dscnn": 6, "ctc": 4, "dsctc": 4}[fam]
    if not 1 <= w <= 512 or not 1 <= d <= max_depth:
        raise StudentIdError(f"student id {student_id!r}: width must be 1..512 and depth 1..{max_depth} for {fam}")
    return StudentSpec(fam, w, d, r, c)


def build_student(student_id: str, num_classes: int) -> "nn.Module":
    """Build the student `student_id` with `num_classes` outputs (an nn.Module with a `features` method)."""
    if num_classes < 2:
        raise UserInputError(f"num_classes must be >= 2, got {num_classes}")
    spec = parse_student_id(student_id)
    model = STUDENTS.get(spec.family)(spec, num_classes)
    model.student_id = spec.id
    model.input_size = spec.input_size
    return model


def search_space() -> list[str]:
    """The student ids the budget search enumerates: a few dozen spanning the family, small to large."""
    ids = [f"linear-r{r}" for r in RESOLUTIONS]
    ids += [f"mlp-w{w}-d{d}-r{r}" for w in (16, 32, 64, 128) for d in (1, 2) for r in (28, 16)]
    ids += [f"cnn-w{w}-d{d}-r{r}" for w in (4, 8, 16, 32) for d in (2, 3) for r in RESOLUTIONS]
    ids += [f"dscnn-w{w}-d{d}-r{r}" for w in (8, 16, 32) for d in (2, 3, 4) for r in RESOLUTIONS]
    return ids


def count_params(model: "nn.Module") -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# The family builders need torch: they live in these modules, imported when one of their names is first built.
STUDENTS.declare("edgekd.models.student_nets", "linear", "mlp", "cnn", "dscnn")
STUDENTS.declare("edgekd.models.line_nets", "ctc", "dsctc")
