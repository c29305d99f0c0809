"""Device profiles: a board's limits and a per-op-class latency model, as a frozen dataclass with a JSON form.

The latency model is linear in features of the model's ONNX graph (see `OpFeatures`)::

    latency_ms = per_invoke_ms + layers * per_layer_us / 1e3
                 + (conv_macs * conv_ns_per_mac + dwconv_macs * dwconv_ns_per_mac
                    + conv_positions * conv_ns_per_position + pointwise_macs * pointwise_ns_per_mac
                    + io_elems * io_ns_per_elem + activation_elems * activation_ns_per_elem
                    + dense_macs * dense_ns_per_mac + elementwise_elems * elementwise_ns_per_elem) / 1e6

with one set of coefficients per precision (fp32, fp16, int8), valid for the backend and thread count the
profile records. Built-in board profiles (`DeviceProfile.rpi4()`, ...) are estimates derived from published CPU
figures; `edgekd-rt calibrate` measures a real one on the board, and with it a safety margin per precision
(`latency_margin_pct`, from the fit's leave-one-out residuals) that the budget search adds to every prediction.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .atomic import atomic_write_json
from .errors import ProfileError

FORMAT = "edgekd-device-profile"
FORMAT_VERSION = 2  # 2: the activation_ns_per_elem coefficient and latency_margin_pct (version 1 files read)
PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("tflite", "onnx")  # the model formats edgekd_runtime.backends runs
ASSETS_DIR = Path(__file__).parent / "assets" / "profiles"


@dataclass(frozen=True)
class OpFeatures:
    """Per-op-class work of one inference (batch 1), computed from the ONNX graph with shapes.

    Attributes:
        conv_macs: multiply-accumulates of k x k (k > 1) convolutions, groups=1 or grouped (not depthwise).
        dwconv_macs: multiply-accumulates of depthwise convolutions (groups == input channels).
        dense_macs: multiply-accumulates of Gemm/MatMul (fully connected) layers.
        elementwise_elems: elements touched by pooling (output x window) and stand-alone elementwise ops.
        layers: kernels the interpreter launches (activations fused into their producer are not counted).
        conv_positions: output positions (N x H x W) of the k x k conv layers: their kernels pay a cost per output
            pixel besides per MAC (indirection/im2col, requantization), large for int8 on some CPUs.
        pointwise_macs: multiply-accumulates of 1x1 convolutions (a plain GEMM: cheaper per MAC than k x k).
        io_elems: elements of the model's inputs and outputs, copied in and out on every invoke.
        activation_elems: elements every kernel writes (the outputs of all counted layers): the per-element cost
            of storing activations (and, in int8, requantizing them), which a stack of layers pays at each layer.
    """

    conv_macs: int = 0
    dwconv_macs: int = 0
    dense_macs: int = 0
    elementwise_elems: int = 0
    layers: int = 0
    conv_positions: int = 0
    pointwise_macs: int = 0
    io_elems: int = 0
    activation_elems: int = 0

    @property
    def macs(self) -> int:
        return self.conv_macs + self.pointwise_macs + self.dwconv_macs + self.dense_macs

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "features") -> "OpFeatures":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ProfileError(f"{source}: unknown feature(s) {sorted(unknown)}; known: {sorted(names)}")
        try:
            vals = {k: int(v) for k, v in d.items()}
        except (TypeError, ValueError) as e:
            raise ProfileError(f"{source}: features must be integers ({e})") from None
        if any(v < 0 for v in vals.values()):
            raise ProfileError(f"{source}: features must be >= 0, got {vals}")
        return cls(**vals)


COEFFICIENTS = ("per_invoke_ms", "per_layer_us", "conv_ns_per_mac", "dwconv_ns_per_mac", "dense_ns_per_mac",
                "elementwise_ns_per_elem", "conv_ns_per_position", "pointwise_ns_per_mac", "io_ns_per_elem",
                "activation_ns_per_elem")
# Coefficients added after profiles were first written: a profile without them reads them as 0 (not modelled).
OPTIONAL_COEFFICIENTS = ("activation_ns_per_elem",)


@dataclass(frozen=True)
class LatencyCoefficients:
    """Coefficients of the linear latency model for one precision (all >= 0)."""

    per_invoke_ms: float
    per_layer_us: float
    conv_ns_per_mac: float
    dwconv_ns_per_mac: float
    dense_ns_per_mac: float
    elementwise_ns_per_elem: float
    conv_ns_per_position: float
    pointwise_ns_per_mac: float
    io_ns_per_elem: float
    activation_ns_per_elem: float = 0.0

    def latency_ms(self, f: OpFeatures) -> float:
        return (self.per_invoke_ms + f.layers * self.per_layer_us * 1e-3
                + (f.conv_macs * self.conv_ns_per_mac + f.dwconv_macs * self.dwconv_ns_per_mac
                   + f.dense_macs * self.dense_ns_per_mac + f.elementwise_elems * self.elementwise_ns_per_elem
                   + f.conv_positions * self.conv_ns_per_position + f.pointwise_macs * self.pointwise_ns_per_mac
                   + f.io_elems * self.io_ns_per_elem + f.activation_elems * self.activation_ns_per_elem) * 1e-6)

    def scaled(self, factor: float) -> "LatencyCoefficients":
        return LatencyCoefficients(*(getattr(self, c) * factor for c in COEFFICIENTS))

    @staticmethod
    def design_row(f: OpFeatures) -> list[float]:
        """The features in coefficient order and units, so that `row @ coefficients == latency_ms`."""
        return [1.0, f.layers * 1e-3, f.conv_macs * 1e-6, f.dwconv_macs * 1e-6, f.dense_macs * 1e-6,
                f.elementwise_elems * 1e-6, f.conv_positions * 1e-6, f.pointwise_macs * 1e-6, f.io_elems * 1e-6,
                f.activation_elems * 1e-6]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str) -> "LatencyCoefficients":
        if not isinstance(d, Mapping):
            raise ProfileError(f"{source}: expected an object with {', '.join(COEFFICIENTS)}")
        missing = [c for c in COEFFICIENTS if c not in d and c not in OPTIONAL_COEFFICIENTS]
        extra = sorted(set(d) - set(COEFFICIENTS))
        if missing or extra:
            raise ProfileError(f"{source}: missing {missing} / unknown {extra}; the latency model needs exactly "
                               f"{', '.join(COEFFICIENTS)}")
        vals = {}
        for c in COEFFICIENTS:
            v = d.get(c, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ProfileError(f"{source}.{c} = {v!r}: must be a finite number >= 0")
            vals[c] = float(v)
        return cls(**vals)


@dataclass(frozen=True)
class DeviceProfile:
    """A board: its CPU, memory limits and latency model. JSON round-trip with `to_json` / `load`.

    Attributes:
        name: short id (``rpi4``) or a user's name for a calibrated board.
        description: one line for humans.
        cpu: CPU model and clock.
        cores: CPU cores.
        threads: interpreter threads the latency model holds for (the default to deploy with).
        ram_bytes: board RAM (a hard cap on any budget's RAM limit).
        flash_bytes: storage available for the model (a hard cap on any budget's flash limit).
        backend: interpreter the latency model holds for (``tflite`` or ``onnx``, i.e. onnxruntime).
        latency: precision -> coefficients.
        estimate: True for built-in profiles derived from published figures, False when measured.
        sources: where the numbers come from (published figures, or the calibration run).
        calibration: for measured profiles: fit error, conditions (backend, threads, CPU, date), samples.
        latency_margin_pct: precision -> safety margin in percent that a budget adds to each prediction
            (`latency_bound_ms`); `edgekd-rt calibrate` sets it from the fit's own residuals. Absent: 0.
    """

    name: str
    description: str
    cpu: str
    cores: int
    threads: int
    ram_bytes: int
    flash_bytes: int
    backend: str
    latency: Mapping[str, LatencyCoefficients]
    estimate: bool = True
    sources: tuple[str, ...] = ()
    calibration: Mapping[str, Any] | None = field(default=None, compare=False)
    latency_margin_pct: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = f"device profile {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise ProfileError(f"{src}: name must be a non-empty string")
        for attr in ("cores", "threads", "ram_bytes", "flash_bytes"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ProfileError(f"{src}: {attr} = {v!r} must be a positive integer")
        if self.backend not in BACKENDS:
            raise ProfileError(f"{src}: backend {self.backend!r} must be one of {', '.join(BACKENDS)}")
        if not self.latency:
            raise ProfileError(f"{src}: latency has no precision; give coefficients for at least one of "
                               f"{', '.join(PRECISIONS)}")
        bad = [p for p in self.latency if p not in PRECISIONS]
        if bad:
            raise ProfileError(f"{src}: latency precision(s) {bad} not one of {', '.join(PRECISIONS)}")
        for p, v in self.latency_margin_pct.items():
            if p not in self.latency:
                raise ProfileError(f"{src}: latency_margin_pct has precision {p!r}, which latency does not model")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ProfileError(f"{src}: latency_margin_pct.{p} = {v!r}: must be a finite number >= 0 (percent)")

    # ---- the model -----------------------------------------------------------------------------------------
    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(p for p in PRECISIONS if p in self.latency)

    def coefficients(self, precision: str) -> LatencyCoefficients:
        if precision not in self.latency:
            raise ProfileError(f"device profile {self.name!r} has no latency model for precision {precision!r}; "
                               f"it has {', '.join(self.precisions)}: pick one of those or calibrate with "
                               f"`edgekd-rt calibrate --precision {precision}`")
        return self.latency[precision]

    def estimate_latency_ms(self, features: OpFeatures | Mapping[str, Any], precision: str = "fp32") -> float:
        """Predicted single-image latency in milliseconds at this profile's backend and thread count."""
        if not isinstance(features, OpFeatures):
            features = OpFeatures.from_dict(features)
        return self.coefficients(precision).latency_ms(features)

    def latency_margin(self, precision: str) -> float:
        """The safety margin of `precision`'s predictions as a fraction (0.12 = +12 %); 0 when none is recorded."""
        self.coefficients(precision)  # ProfileError for a precision the profile does not model
        return float(self.latency_margin_pct.get(precision, 0.0)) / 100.0

    def latency_bound_ms(self, features: OpFeatures | Mapping[str, Any], precision: str = "fp32") -> float:
        """The prediction plus the safety margin: what a latency budget must hold (the one home of that rule)."""
        return self.estimate_latency_ms(features, precision) * (1.0 + self.latency_margin(precision))

    # ---- JSON ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "name": self.name, "description": self.description, "cpu": self.cpu, "cores": self.cores,
            "threads": self.threads, "ram_bytes": self.ram_bytes, "flash_bytes": self.flash_bytes,
            "backend": self.backend, "estimate": self.estimate, "sources": list(self.sources),
            "latency": {p: asdict(c) for p, c in self.latency.items()},
            "calibration": dict(self.calibration) if self.calibration is not None else None,
            "latency_margin_pct": dict(self.latency_margin_pct),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        atomic_write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def from_dict(cls, d: Any, source: str = "device profile") -> "DeviceProfile":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ProfileError(f"{source}: not an edgekd device profile (missing \"format\": \"{FORMAT}\"); "
                               f"make one with `edgekd-rt calibrate --out board.json`")
        if not isinstance(d.get("format_version"), int) or d["format_version"] > FORMAT_VERSION:
            raise ProfileError(f"{source}: format_version {d.get('format_version')!r} is not one this version "
                               f"reads (1..{FORMAT_VERSION}); upgrade edgekd-runtime")
        required = ("name", "cpu", "cores", "threads", "ram_bytes", "flash_bytes", "backend", "latency")
        missing = [k for k in required if k not in d]
        if missing:
            raise ProfileError(f"{source}: missing field(s) {', '.join(missing)}")
        lat = d["latency"]
        if not isinstance(lat, dict):
            raise ProfileError(f"{source}: latency must be an object precision -> coefficients")
        coeffs = {p: LatencyCoefficients.from_dict(c, f"{source}: latency.{p}") for p, c in lat.items()}
        margin = d.get("latency_margin_pct") or {}
        if not isinstance(margin, dict):
            raise ProfileError(f"{source}: latency_margin_pct must be an object precision -> percent")
        srcs = d.get("sources") or []
        if not isinstance(srcs, list) or not all(isinstance(s, str) for s in srcs):
            raise ProfileError(f"{source}: sources must be a list of strings")
        try:
            return cls(name=d["name"], description=str(d.get("description", "")), cpu=str(d["cpu"]),
                       cores=d["cores"], threads=d["threads"], ram_bytes=d["ram_bytes"],
                       flash_bytes=d["flash_bytes"], backend=d["backend"], latency=coeffs,
                       estimate=bool(d.get("estimate", False)), sources=tuple(srcs),
                       calibration=d.get("calibration"), latency_margin_pct=margin)
        except ProfileError as e:
            raise ProfileError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DeviceProfile":
        p = Path(path)
        if not p.is_file():
            raise ProfileError(f"{p}: no such profile file; pass a built-in name or a JSON file made by "
                               f"`edgekd-rt calibrate --out {p.name}`")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ProfileError(f"{p}: not valid JSON ({e}); re-create it with `edgekd-rt calibrate`") from None
        return cls.from_dict(d, source=str(p))

    def with_(self, **changes: Any) -> "DeviceProfile":
        return replace(self, **changes)

    # ---- built-in boards (estimates; JSON files under assets/profiles) -------------------------------------
    @classmethod
    def builtin(cls, name: str) -> "DeviceProfile":
        path = ASSETS_DIR / f"{name.replace('-', '_')}.json"
        if not path.is_file():
            from .errors import UnknownNameError
            raise UnknownNameError("device profile", name, builtin_names())
        return cls.load(path)

    @classmethod
    def rpi3b(cls) -> "DeviceProfile":
        return cls.builtin("rpi3b")

    @classmethod
    def rpi4(cls) -> "DeviceProfile":
        return cls.builtin("rpi4")

    @classmethod
    def rpi5(cls) -> "DeviceProfile":
        return cls.builtin("rpi5")

    @classmethod
    def rpi_zero2w(cls) -> "DeviceProfile":
        return cls.builtin("rpi-zero2w")

    @classmethod
    def host(cls) -> "DeviceProfile":
        return cls.builtin("host")


def builtin_names() -> list[str]:
    """Names of the built-in board profiles (``rpi-zero2w`` style, from the files in assets/profiles)."""
    return sorted(p.stem.replace("_", "-") for p in ASSETS_DIR.glob("*.json"))
