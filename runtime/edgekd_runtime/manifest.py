"""The bundle manifest (`manifest.json`): the one file the board needs besides the models.

Schema (format_version 1)::

    {
      "format": "edgekd-bundle", "format_version": 1,
      "task": "image-classification",
      "name": "dscnn-w16-d3-r28",                  # student id
      "labels": ["0", ..., "9"],
      "input":  {"name": "input", "shape": [1, 1, 28, 28], "layout": "NCHW", "dtype": "float32"},
      "output": {"name": "logits", "kind": "logits"},           # "logits" or "probs"
      "normalization": {"mean": 0.1307, "std": 0.3081},          # x = (pixel/255 - mean) / std
      "preprocessing": {"kind": "mnist", "canvas": 28, "box": 20, "polarity": "auto"},
      "artifacts": [
        {"path": "student.onnx", "format": "onnx", "precision": "fp32", "size_bytes": 1234,
         "sha256": "...", "parity": {"reference": "torch", "max_abs_diff": 1e-7, "top1_agreement": 1.0,
         "tolerance": 1e-4, "passed": true}, "accuracy": 0.981, "budget_ok": true}
      ],
      "deployed": "student_int8.tflite",          # optional: the artifact chosen for the board (the budget's)
      "budget": {...}, "profile": {...}, "versions": {...}, "created": "2026-11-23T18:00:00Z",
      "report": "report.md"
    }

Artifact paths are relative to the bundle directory. Precision is one of fp32, fp16, int8. `deployed` (written by
`edgekd convert` / `edgekd run`) names the artifact `edgekd_runtime.load(bundle)` opens when no backend or
precision is asked for; manifests without it (older bundles) load their first usable artifact.

A text-line bundle (`"task": "line-recognition"`, a CTC line student) adds a `lines` block (`LinesSpec`); its
`labels` are the characters of the charset, the input shape is (1, 1, height, width) at the reference width,
the normalisation is the top-level `normalization`, and `preprocessing` (the digit procedure) is not used::

      "lines": {"charset": "0123456789", "blank": 0, "height": 24, "width": 192, "max_width": 1536,
                "dynamic_formats": ["onnx"], "frame_stride": 4, "max_len": 24, "text_height_share": 0.83}
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_json, sha256_file
from .errors import ChecksumMismatchError, ManifestError, UserInputError

MANIFEST_NAME = "manifest.json"
COVERAGE_PNG = "coverage.png"  # a line bundle's coverage-accuracy plot
#: Files a bundle holds besides its manifest and its artifacts.
BUNDLE_EXTRA_FILES = (COVERAGE_PNG,)
FORMAT = "edgekd-bundle"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
ARTIFACT_FORMATS = ("onnx", "tflite")
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
PREPROCESS_KINDS = ("mnist", "resize")
POLARITIES = ("auto", "light-on-dark", "dark-on-light")
IMAGE_TASK, LINE_TASK = "image-classification", "line-recognition"
TASKS = (IMAGE_TASK, LINE_TASK)
#: The largest line canvas a lines block may ask for (pixels): edgekd trains lines 8..128 px high and lets a dynamic
#: width reach 8x the reference width; a canvas this size is 64 MiB of float32, a corrupt one must not be allocated.
LINE_MAX_HEIGHT_PX, LINE_MAX_WIDTH_PX = 512, 32_768


@dataclass(frozen=True)
class InputSpec:
    name: str = "input"
    shape: tuple[int, ...] = (1, 1, 28, 28)  # batch dimension first; -1 or 1 for a dynamic batch
    layout: str = "NCHW"  # NCHW or NHWC
    dtype: str = "float32"

    @property
    def size(self) -> int:
        """Side of the square image the model takes (H == W)."""
        return int(self.shape[2] if self.layout == "NCHW" else self.shape[1])


@dataclass(frozen=True)
class Normalization:
    """The model's input normalisation `x = (canvas - mean) / std`, canvas = pixel / 255 in [0, 1]."""

    mean: float = MNIST_MEAN
    std: float = MNIST_STD

    def apply(self, canvases: Any, out: np.ndarray | None = None) -> Any:
        """The one place the normalisation is computed, for the board, the converters and training alike.

        A numpy array comes back float32 (other dtypes are converted first), written into `out` when given (a
        laid-out input buffer of the same shape); a torch tensor keeps its dtype and device."""
        if out is not None:  # the board's hot path: float32 scalars made once per normalisation
            mean, std = self._f32
            np.subtract(canvases, mean, out)  # (out positional: keyword parsing is a tenth of these calls)
            return np.divide(out, std, out)
        if isinstance(canvases, np.ndarray) and canvases.dtype != np.float32:
            canvases = canvases.astype(np.float32)
        return (canvases - self.mean) / self.std

    @cached_property
    def _f32(self) -> tuple[np.ndarray, np.ndarray]:
        """mean and std as 0-d float32 arrays: a ufunc turns a numpy scalar operand into an array on every call,
        which made the two calls of the hot path's normalisation cost ~2x what they do with arrays."""
        return np.array(self.mean, np.float32), np.array(self.std, np.float32)


def check_normalization(mean: Any, std: Any, where: str, error: type[UserInputError] = UserInputError) -> Normalization:
    """The one rule for an input normalisation `x = (pixel/255 - mean) / std`: both finite numbers, std > 0.

    `where` names the source (a manifest, `--mean/--std`); raises `error` saying what to pass instead."""
    vals = {}
    for name, v in (("mean", mean), ("std", std)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise error(f"{where}: normalization {name} {v!r} is not a finite number; give the {name} the model was "
                        f"trained with (MNIST: mean {MNIST_MEAN}, std {MNIST_STD})")
        vals[name] = float(v)
    if vals["std"] <= 0:
        raise error(f"{where}: normalization std {std!r} must be > 0 (x = (pixel/255 - mean) / std); give the std "
                    f"the model was trained with (MNIST: {MNIST_STD})")
    return Normalization(vals["mean"], vals["std"])


@dataclass(frozen=True)
class PreprocessSpec:
    kind: str = "mnist"  # the MNIST procedure (crop ink, fit 20x20, pad 28x28, centre of mass)
    canvas: int = 28
    box: int = 20
    polarity: str = "auto"  # auto | light-on-dark | dark-on-light


@dataclass(frozen=True)
class LinesSpec:
    """What the board needs to read a text line with a CTC line student (task `line-recognition`).

    Attributes:
        charset: the characters; CTC class i + 1 is `charset[i]`.
        height: the line canvas height in pixels (the model's input height).
        width: the reference width in pixels: the fixed width the TFLite artifacts take (narrower lines are
            zero-padded on the right), the width benchmarks and costs are quoted for.
        max_width: the widest line the artifacts of `dynamic_formats` take (any multiple of `frame_stride`
            up to it); equal to `width` when no artifact has a dynamic width axis.
        dynamic_formats: artifact formats whose input width is dynamic (e.g. ["onnx"]).
        blank: the CTC blank class (edgekd's convention: 0).
        frame_stride: pixel columns per output frame (T = width // frame_stride).
        max_len: the longest string the model can emit at the reference width.
        text_height_share: share of the canvas height the text band fills (the runtime's line preprocessing).
        confidence_temperature: T > 0 that calibrates the string confidence (softmax(scores / T), fitted on the
            val split at export; 1.0 = uncalibrated, the default for bundles made before calibration).
    """

    charset: str
    height: int
    width: int
    max_width: int
    dynamic_formats: tuple[str, ...] = ()
    blank: int = 0
    frame_stride: int = 4
    max_len: int = 0
    text_height_share: float = 0.83
    confidence_temperature: float = 1.0

    @property
    def num_classes(self) -> int:
        return len(self.charset) + 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dynamic_formats"] = list(self.dynamic_formats)
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "manifest") -> "LinesSpec":
        """Parse and check a manifest's `lines` block; every problem is a `ManifestError` naming the field."""
        if not isinstance(d, dict):
            raise ManifestError(f"{source}: \"lines\" must be an object (charset, height, width, ...); got "
                                f"{type(d).__name__}: re-create the bundle with `edgekd export`")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        missing = sorted({"charset", "height", "width", "max_width"} - set(d))
        if unknown or missing:
            raise ManifestError(f"{source}: lines block has unknown field(s) {unknown} / lacks {missing}; "
                                f"re-create the bundle with `edgekd export`")
        try:
            spec = cls(**{**d, "dynamic_formats": tuple(str(f) for f in d.get("dynamic_formats") or ())})
        except TypeError as e:
            raise ManifestError(f"{source}: malformed lines block ({e})") from None
        spec._check(source)
        return spec

    def _check(self, source: str) -> None:
        def bad(what: str) -> ManifestError:
            return ManifestError(f"{source}: lines.{what}; re-create the bundle with `edgekd export`")

        ints = {k: getattr(self, k) for k in ("height", "width", "max_width", "blank", "frame_stride", "max_len")}
        for k, v in ints.items():
            if type(v) is not int:
                raise bad(f"{k} must be an integer, got {v!r}")
        for k, cap in (("height", LINE_MAX_HEIGHT_PX), ("width", LINE_MAX_WIDTH_PX), ("max_width", LINE_MAX_WIDTH_PX)):
            if ints[k] > cap:
                raise bad(f"{k} {ints[k]} is more than the runtime takes ({cap} px)")
        if not isinstance(self.charset, str) or not self.charset or len(set(self.charset)) != len(self.charset):
            raise bad(f"charset {self.charset!r} must be a non-empty string of distinct characters")
        if self.blank != 0:
            raise bad(f"blank is {self.blank}; edgekd line models use class 0 as the CTC blank")
        if self.frame_stride < 1 or self.height < 1 or self.max_len < 0:
            raise bad(f"frame_stride {self.frame_stride}, height {self.height} and max_len {self.max_len} must be "
                      f"positive")
        if self.width < self.frame_stride or self.width % self.frame_stride:
            raise bad(f"width {self.width} must be a positive multiple of frame_stride {self.frame_stride}")
        if self.max_width < self.width or self.max_width % self.frame_stride:
            raise bad(f"max_width {self.max_width} must be a multiple of frame_stride {self.frame_stride} and "
                      f">= width {self.width}")
        if not set(self.dynamic_formats) <= set(ARTIFACT_FORMATS):
            raise bad(f"dynamic_formats {list(self.dynamic_formats)} must be among {list(ARTIFACT_FORMATS)}")
        if not isinstance(self.text_height_share, (int, float)) or not 0 < self.text_height_share <= 1:
            raise bad(f"text_height_share {self.text_height_share!r} must be in (0, 1]")
        t = self.confidence_temperature
        if type(t) not in (int, float) or not math.isfinite(t) or t <= 0:
            raise bad(f"confidence_temperature {t!r} must be a finite number > 0 (1.0: uncalibrated)")


@dataclass
class Artifact:
    path: str
    format: str
    precision: str
    size_bytes: int
    sha256: str
    parity: dict[str, Any] | None = None
    accuracy: float | None = None
    budget_ok: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, bundle_dir: str | os.PathLike, rel_path: str, precision: str, **kw: Any) -> "Artifact":
        p = Path(bundle_dir) / rel_path
        fmt = p.suffix.lstrip(".")
        if fmt not in ARTIFACT_FORMATS:
            raise ManifestError(f"artifact {p} has suffix {p.suffix!r}; expected .onnx or .tflite")
        if precision not in PRECISIONS:
            raise ManifestError(f"artifact {p}: precision {precision!r} is not one of {PRECISIONS}")
        return cls(path=rel_path, format=fmt, precision=precision, size_bytes=p.stat().st_size,
                   sha256=sha256_file(p), **kw)


@dataclass
class Manifest:
    name: str
    labels: list[str]
    input: InputSpec = field(default_factory=InputSpec)
    output: dict[str, Any] = field(default_factory=lambda: {"name": "logits", "kind": "logits"})
    normalization: Normalization = field(default_factory=Normalization)
    preprocessing: PreprocessSpec = field(default_factory=PreprocessSpec)
    artifacts: list[Artifact] = field(default_factory=list)
    deployed: str | None = None  # path of the artifact chosen for the board; None: the first usable one
    task: str = IMAGE_TASK
    budget: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    created: str | None = None
    report: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    lines: LinesSpec | None = None  # task line-recognition only

    # ---- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input"]["shape"] = list(self.input.shape)
        if self.lines is None:
            d.pop("lines")  # digit bundles keep their schema
        else:
            d["lines"] = self.lines.to_dict()
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **d}

    def save(self, bundle_dir: str | os.PathLike) -> Path:
        path = Path(bundle_dir) / MANIFEST_NAME
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "manifest") -> "Manifest":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ManifestError(f"{source}: not an edgekd bundle manifest (missing \"format\": \"{FORMAT}\")")
        version = d.get("format_version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ManifestError(f"{source}: format_version {version!r} is not an integer; re-create the manifest with "
                                f"`edgekd export` (this runtime writes {FORMAT_VERSION})")
        if version > FORMAT_VERSION:
            raise ManifestError(f"{source}: format_version {d['format_version']} is newer than this runtime "
                                f"understands ({FORMAT_VERSION}); upgrade edgekd-runtime")
        try:
            inp = dict(d.get("input") or {})
            if "shape" in inp:
                inp["shape"] = tuple(int(s) for s in inp["shape"])
            m = cls(
                name=str(d["name"]),
                labels=[str(x) for x in d["labels"]],
                input=InputSpec(**inp),
                output=dict(d.get("output") or {"name": "logits", "kind": "logits"}),
                normalization=Normalization(**(d.get("normalization") or {})),
                preprocessing=PreprocessSpec(**(d.get("preprocessing") or {})),
                artifacts=_artifacts(d.get("artifacts", []), source),
                deployed=d.get("deployed"),
                task=d.get("task", IMAGE_TASK),
                budget=d.get("budget"), profile=d.get("profile"), versions=d.get("versions") or {},
                created=d.get("created"), report=d.get("report"), extra=_extra(d.get("extra"), source),
            )
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{source}: malformed manifest ({type(e).__name__}: {e}); "
                                f"re-create it with `edgekd export`") from None
        if m.input.layout not in ("NCHW", "NHWC"):
            raise ManifestError(f"{source}: input.layout {m.input.layout!r} must be NCHW or NHWC")
        if not m.labels:
            raise ManifestError(f"{source}: labels is empty")
        if m.deployed is not None and m.deployed not in {a.path for a in m.artifacts}:
            raise ManifestError(f"{source}: deployed {m.deployed!r} is not one of its artifacts "
                                f"({', '.join(a.path for a in m.artifacts) or 'none'}); re-run `edgekd convert`")
        m.normalization = check_normalization(m.normalization.mean, m.normalization.std, source, ManifestError)
        _check_preprocessing(m.preprocessing, source)
        for a in m.artifacts:
            if a.format not in ARTIFACT_FORMATS or a.precision not in PRECISIONS:
                raise ManifestError(f"{source}: artifact {a.path!r} has format {a.format!r} and precision "
                                    f"{a.precision!r}; formats are {', '.join(ARTIFACT_FORMATS)} and precisions "
                                    f"{', '.join(PRECISIONS)}: re-create the bundle with `edgekd export`/`convert`")
        if d.get("lines") is not None:
            m.lines = LinesSpec.from_dict(d["lines"], source)
        _check_line_task(m, source)
        return m

    @classmethod
    def load(cls, bundle_dir: str | os.PathLike) -> "Manifest":
        path = Path(bundle_dir) / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"{bundle_dir}: no {MANIFEST_NAME}; pass a bundle directory made by "
                                f"`edgekd export`, or a .onnx/.tflite file")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ManifestError(f"{path}: not valid JSON ({e}); re-create it with `edgekd export`") from None
        return cls.from_dict(d, source=str(path))

    # ---- queries -------------------------------------------------------------------------------------------
    def own_files(self) -> set[str]:
        """The names of the files edgekd writes in this bundle's directory: the manifest, its artifacts and
        BUNDLE_EXTRA_FILES (what `--force` may replace; anything else there is the user's)."""
        return {MANIFEST_NAME, *BUNDLE_EXTRA_FILES, *(a.path for a in self.artifacts)}

    def artifact(self, format: str | None = None, precision: str | None = None) -> Artifact:
        """The first artifact matching format/precision (the manifest lists the preferred one first)."""
        for a in self.artifacts:
            if (format is None or a.format == format) and (precision is None or a.precision == precision):
                return a
        have = ", ".join(f"{a.path} ({a.format}/{a.precision})" for a in self.artifacts) or "none"
        raise ManifestError(f"bundle {self.name!r} has no artifact with format={format} precision={precision}; "
                            f"it has: {have}")

    def deployed_artifact(self) -> Artifact | None:
        """The artifact recorded as deployed (None for bundles that record none)."""
        return next((a for a in self.artifacts if a.path == self.deployed), None)

    def set_artifact(self, art: Artifact) -> None:
        """Add or replace (by path) an artifact entry."""
        self.artifacts = [a for a in self.artifacts if a.path != art.path] + [art]


#: What a JSON value must be, by the Python types json.load gives (None: null is allowed); bool is not an int here.
_JSON_KINDS = {str: "a string", int: "an integer", float: "a number", dict: "an object", bool: "true or false",
               None: "null"}
ARTIFACT_TYPES: dict[str, tuple[Any, ...]] = {
    "path": (str,), "format": (str,), "precision": (str,), "size_bytes": (int,), "sha256": (str,),
    "parity": (dict, None), "accuracy": (int, float, None), "budget_ok": (bool, None), "extra": (dict, None)}
#: The parts of an artifact's parity and of extra.confidence that the runtime reads (`edgekd-rt info`, `load`).
PARITY_TYPES: dict[str, tuple[Any, ...]] = {"passed": (bool, None), "cer": (int, float, None)}
THRESHOLD_TYPES: dict[str, tuple[Any, ...]] = {"threshold": (int, float), "coverage": (int, float)}


def _check_types(d: dict[str, Any], types: dict[str, tuple[Any, ...]], where: str, source: str) -> None:
    """Refuse a value of `d` (the object at `where` in the manifest) whose JSON type is not one `types` allows."""
    for key, allowed in types.items():
        v = d.get(key)
        if key not in d or (v is None and None in allowed):
            continue
        kinds = tuple(t for t in allowed if t is not None)
        if isinstance(v, bool) == (bool in kinds) and isinstance(v, kinds):
            continue
        shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
        names = [_JSON_KINDS[t] for t in allowed if not (t is int and float in allowed)]  # int or float: a number
        raise ManifestError(f"{source}: {where + '.' if where else ''}{key} is {shown}; expected {' or '.join(names)}"
                            f": re-create the bundle with `edgekd export` / `edgekd convert`")


def _artifacts(raw: Any, source: str) -> list[Artifact]:
    """The artifacts list, each entry's fields of the right JSON type (missing or unknown ones: TypeError)."""
    if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
        raise ManifestError(f"{source}: artifacts must be a list of objects (path, format, precision, size_bytes, "
                            f"sha256, ...); re-create the bundle with `edgekd export`")
    for i, a in enumerate(raw):
        _check_types(a, ARTIFACT_TYPES, f"artifacts[{i}]", source)
        _check_types(a.get("parity") or {}, PARITY_TYPES, f"artifacts[{i}].parity", source)
        name = a.get("path", "-")
        if name != os.path.basename(name) or name in (".", ".."):
            raise ManifestError(f"{source}: artifacts[{i}].path {name!r} leaves the bundle; an artifact is a file "
                                f"name inside the bundle directory: re-create the bundle with `edgekd export`")
        if not name or a.get("size_bytes", 0) < 0:
            raise ManifestError(f"{source}: artifacts[{i}] has path {name!r} and size_bytes "
                                f"{a.get('size_bytes')!r}; expected a file name and a size >= 0: re-create the bundle "
                                f"with `edgekd export`")
    return [Artifact(**{**a, "extra": a.get("extra") or {}}) for a in raw]


def _extra(raw: Any, source: str) -> dict[str, Any]:
    """The manifest's `extra` object (null: empty); its `confidence` block as `edgekd-rt info` reads it."""
    extra = {} if raw is None else raw
    _check_types({"extra": extra}, {"extra": (dict,)}, "", source)
    _check_types(extra, {"confidence": (dict, None)}, "extra", source)
    conf = extra.get("confidence") or {}
    for key in ("threshold_99", "threshold_95"):
        _check_types(conf, {key: (dict, None)}, "extra.confidence", source)
        th = conf.get(key) or {}
        if th and not set(THRESHOLD_TYPES) <= set(th):
            raise ManifestError(f"{source}: extra.confidence.{key} lacks {sorted(set(THRESHOLD_TYPES) - set(th))}; "
                                f"re-create the bundle with `edgekd export`")
        _check_types(th, THRESHOLD_TYPES, f"extra.confidence.{key}", source)
    return extra


def _check_preprocessing(p: PreprocessSpec, source: str) -> None:
    """Refuse a preprocessing section the board could not run on any image (checked once, at load)."""
    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if p.kind not in PREPROCESS_KINDS:
        raise ManifestError(f"{source}: preprocessing kind {p.kind!r} is unknown; known kinds: "
                            f"{', '.join(PREPROCESS_KINDS)}")
    if p.polarity not in POLARITIES:
        raise ManifestError(f"{source}: preprocessing polarity {p.polarity!r} is unknown; use one of "
                            f"{', '.join(POLARITIES)}")
    if not whole(p.canvas) or not whole(p.box) or not 1 <= p.box <= p.canvas:
        raise ManifestError(f"{source}: preprocessing canvas {p.canvas!r} and box {p.box!r} must be whole numbers "
                            f"with 1 <= box <= canvas (MNIST: canvas 28, box 20); re-create it with `edgekd export`")


def _check_line_task(m: Manifest, source: str) -> None:
    """The task is one the runtime knows; a line-recognition manifest has a lines block whose charset is its
    labels; no other task has one."""
    if m.task not in TASKS:
        raise ManifestError(f"{source}: task {m.task!r} is not one the runtime knows ({', '.join(TASKS)}); "
                            f"re-create the bundle with `edgekd export`")
    if (m.task == LINE_TASK) != (m.lines is not None):
        raise ManifestError(f"{source}: task {m.task!r} " + ("needs a \"lines\" block (charset, height, width, ...)"
                            if m.task == LINE_TASK else f"cannot have a \"lines\" block (only {LINE_TASK!r})")
                            + "; re-create the bundle with `edgekd export`")
    if m.lines is not None and list(m.lines.charset) != m.labels:
        raise ManifestError(f"{source}: labels {m.labels} are not the characters of lines.charset "
                            f"{m.lines.charset!r}; re-create the bundle with `edgekd export`")
    if m.lines is not None and m.input.shape[2 if m.input.layout == "NCHW" else 1] != m.lines.height:
        raise ManifestError(f"{source}: input.shape {list(m.input.shape)} does not have the height "
                            f"lines.height {m.lines.height}; re-create the bundle with `edgekd export`")


def verify_artifact(bundle_dir: str | os.PathLike, art: Artifact) -> Path:
    """Check that an artifact exists and its sha256 matches the manifest; return its path."""
    p = Path(bundle_dir) / art.path
    if not p.is_file():
        raise ManifestError(f"{p}: listed in the manifest but missing; copy the whole bundle directory")
    digest = sha256_file(p)
    if digest != art.sha256:
        raise ChecksumMismatchError(
            f"{p}: sha256 {digest[:16]}... does not match the manifest's {art.sha256[:16]}...; the file was "
            f"changed or damaged in transit: copy it again from the workstation's bundle")
    return p
