"""Measure a board's latency model: run the shipped micro-model suite, fit the coefficients, write a profile.

Runs on the board with numpy and onnxruntime / a TFLite interpreter only. The suite (``assets/calibration``,
built by ``python -m edgekd.budget.suite``) lists each micro-model with its `OpFeatures`, so no ONNX parsing is
needed here. Each precision's coefficients are fitted by non-negative least squares on relative error (rows
weighted by 1/measured), and the profile records the fit error and the conditions measured, and a safety margin
per precision from the fit's leave-one-out residuals (`latency_margin_pct`), which the budget search adds to its
predictions: single-layer micro-models cannot show every cost a stack of layers pays, so the margin is sized by
how far the fit misses on models it was not fitted to.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import CalibrationError, ProfileError
from .profile import COEFFICIENTS, PRECISIONS, DeviceProfile, LatencyCoefficients, OpFeatures
from .sysinfo import utc_timestamp

SUITE_DIR = Path(__file__).parent / "assets" / "calibration"
SUITE_FORMAT = "edgekd-calibration-suite"
BACKEND_PRECISIONS = {"tflite": ("fp32", "fp16", "int8"), "onnx": ("fp32", "int8")}


@dataclass(frozen=True)
class SuiteModel:
    """One micro-model of the calibration suite."""

    name: str
    group: str
    quick: bool
    features: OpFeatures
    files: dict[str, dict[str, str]]  # format -> precision -> file name in the suite dir


@dataclass(frozen=True)
class CalibrationConfig:
    """What to measure. `min_time_ms` is the timing window per micro-model after `warmup` runs."""

    backend: str = "tflite"
    threads: int | None = None
    precisions: tuple[str, ...] = ("fp32", "int8")
    quick: bool = True
    warmup: int = 5
    min_runs: int = 15
    min_time_ms: float = 150.0
    rounds: int = 1  # repeat the suite and keep each model's fastest median (robust to a busy machine)

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_PRECISIONS:
            raise ProfileError(f"backend {self.backend!r} is not one of {', '.join(BACKEND_PRECISIONS)}")
        bad = [p for p in self.precisions if p not in BACKEND_PRECISIONS[self.backend]]
        if bad or not self.precisions:
            raise ProfileError(f"precision(s) {bad or '(none)'} cannot be calibrated on backend {self.backend}; "
                               f"it runs {', '.join(BACKEND_PRECISIONS[self.backend])}")
        if self.threads is not None and self.threads < 1:
            raise ProfileError(f"threads = {self.threads}: must be >= 1")
        if self.min_runs < 1 or self.rounds < 1 or self.warmup < 0 or self.min_time_ms < 0:
            raise ProfileError("min_runs and rounds must be >= 1, warmup and min_time_ms >= 0")

    @classmethod
    def full(cls, **kw: Any) -> "CalibrationConfig":
        """The whole suite, longer windows, two rounds (a few minutes on a Pi 4)."""
        return cls(**{"quick": False, "min_runs": 30, "min_time_ms": 600.0, "rounds": 2, **kw})


def load_suite(quick: bool = True, suite_dir: Path = SUITE_DIR) -> list[SuiteModel]:
    """The micro-models (all of them, or the quick subset) from ``suite.json``."""
    path = suite_dir / "suite.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"{path}: the calibration suite is missing; reinstall edgekd-runtime") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CalibrationError(f"{path}: corrupt ({e}); reinstall edgekd-runtime") from None
    if d.get("format") != SUITE_FORMAT:
        raise CalibrationError(f"{path}: not an edgekd calibration suite")
    models = [SuiteModel(m["name"], m["group"], bool(m["quick"]), OpFeatures.from_dict(m["features"], m["name"]),
                         m["files"]) for m in d["models"]]
    return [m for m in models if m.quick or not quick]


def time_model_ms(path: Path, backend: str, threads: int, warmup: int, min_runs: int, min_time_ms: float) -> float:
    """Median wall time of one invoke (batch 1, input of the model's dtype), in milliseconds."""
    from .backends import open_backend

    b = open_backend(path, backend, threads)
    info = b.inputs[0]
    x = np.zeros(tuple(d if d > 0 else 1 for d in info.shape), dtype=np.dtype(info.dtype))
    run = b.run  # what edgekd_runtime.bench times, so predictions and `edgekd-rt bench` agree
    for _ in range(warmup):
        run(x)
    times: list[float] = []
    t_end = time.perf_counter() + min_time_ms / 1e3
    while len(times) < min_runs or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
        if len(times) > 100_000:
            break
    return float(np.median(times) * 1e3)


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int = 500) -> np.ndarray:
    """Non-negative least squares, min ||a x - b|| s.t. x >= 0 (Lawson-Hanson active set; numpy only)."""
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (b - a @ x)
    tol = 1e-10 * max(1.0, float(np.abs(a).max())) * max(m, n)
    for _ in range(max_iter):
        if passive.all() or (w[~passive] <= tol).all():
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            s = np.zeros(n)
            s[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (s[passive] > 0).all():
                x = s
                break
            mask = passive & (s <= 0)
            alpha = float(np.min(x[mask] / (x[mask] - s[mask])))
            x = x + alpha * (s - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = a.T @ (b - a @ x)
    return x


#: The margin covers this share of the calibration models' leave-one-out under-predictions.
MARGIN_QUANTILE = 0.9


def _solve(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """NNLS on relative error (rows weighted by 1/measured), columns scaled to keep the active set conditioned."""
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)
    return nnls((a / scale) / y[:, None], np.ones_like(y)) / scale


def leave_one_out_ms(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's prediction by the fit on all the other rows: how the model does on a model it has not seen."""
    keep = np.ones(len(y), dtype=bool)
    out = np.empty(len(y))
    for i in range(len(y)):
        keep[i] = False
        out[i] = a[i] @ _solve(a[keep], y[keep])
        keep[i] = True
    return out


def residual_margin_pct(measured_ms: Sequence[float] | np.ndarray, predicted_ms: Sequence[float] | np.ndarray,
                        quantile: float = MARGIN_QUANTILE) -> float:
    """The percentage to add to predictions so that `quantile` of these measurements fall within them:
    the `quantile` of measured / predicted - 1, at least 0, rounded up to 0.1 %."""
    y, p = np.asarray(measured_ms, dtype=float), np.asarray(predicted_ms, dtype=float)
    if len(y) == 0 or len(y) != len(p) or not np.all(y > 0):
        raise CalibrationError(f"need matching positive measurements and predictions, got {len(y)} and {len(p)}")
    under = y / np.maximum(p, 1e-12) - 1.0
    return float(math.ceil(max(0.0, float(np.quantile(under, quantile))) * 1000 - 1e-6) / 10)


def fit_coefficients(features: Sequence[OpFeatures], latency_ms: Sequence[float]) -> tuple[LatencyCoefficients,
                                                                                           dict[str, float]]:
    """Fit the latency model to measurements; return the coefficients, the fit error (in-sample and
    leave-one-out) and `margin_pct`, the safety margin from the leave-one-out residuals (a fit's in-sample
    residuals understate its error on a model it was not fitted to, such as a student)."""
    y = np.asarray(latency_ms, dtype=float)
    if len(y) <= len(COEFFICIENTS) or not np.all(y > 0):
        raise CalibrationError(f"need > {len(COEFFICIENTS)} positive measurements to fit, got {list(y)}")
    a = np.array([LatencyCoefficients.design_row(f) for f in features], dtype=float)
    coef = _solve(a, y)
    pred, loo = a @ coef, leave_one_out_ms(a, y)
    ape, loo_ape = np.abs(pred - y) / y * 100, np.abs(loo - y) / y * 100
    err = {"median_ape_pct": float(np.median(ape)), "mean_ape_pct": float(np.mean(ape)),
           "max_ape_pct": float(np.max(ape)), "rmse_ms": float(np.sqrt(np.mean((pred - y) ** 2))),
           "loo_median_ape_pct": float(np.median(loo_ape)), "loo_max_ape_pct": float(np.max(loo_ape)),
           "margin_pct": residual_margin_pct(y, loo), "margin_quantile": MARGIN_QUANTILE, "samples": int(len(y))}
    return LatencyCoefficients(*map(float, coef)), err


def cpu_name() -> str:
    """A human name for this CPU (Pi boards: the device-tree model), best effort."""
    for p in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            return Path(p).read_text(errors="replace").strip("\x00\n ")
        except OSError:
            pass
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 30


def calibrate(config: CalibrationConfig = CalibrationConfig(), name: str = "my-board",
              out_dir_for_flash: Path | None = None,
              progress: Callable[[str, str, float], None] | None = None) -> DeviceProfile:
    """Run the suite on this machine and return the fitted profile (not written; see `DeviceProfile.save`).

    Args:
        config: backend, threads, precisions and timing windows.
        name: the profile's name.
        out_dir_for_flash: where the model will live; its free space becomes the profile's flash limit.
        progress: called as progress(precision, micro_model, latency_ms) after each measurement.

    Raises:
        CalibrationError: the suite is missing or could not be run/fitted. BackendUnavailableError: no interpreter.
    """
    from .backends import resolve_threads

    threads = resolve_threads(config.threads)
    suite = load_suite(config.quick)
    latency: dict[str, LatencyCoefficients] = {}
    fits: dict[str, Any] = {}
    t0 = time.perf_counter()
    for prec in config.precisions:
        meas: dict[str, float] = {}
        for _ in range(config.rounds):
            for m in suite:
                rel = m.files.get(config.backend, {}).get(prec)
                if rel is None:
                    continue
                ms = time_model_ms(SUITE_DIR / rel, config.backend, threads, config.warmup, config.min_runs,
                                   config.min_time_ms)
                meas[m.name] = min(ms, meas.get(m.name, float("inf")))
                if progress:
                    progress(prec, m.name, ms)
        used = [m for m in suite if m.name in meas]
        coef, err = fit_coefficients([m.features for m in used], [meas[m.name] for m in used])
        latency[prec] = coef
        fits[prec] = {**err, "measured_ms": {m.name: round(meas[m.name], 5) for m in used},
                      "predicted_ms": {m.name: round(coef.latency_ms(m.features), 5) for m in used}}
    flash_dir = out_dir_for_flash or Path.cwd()
    try:
        flash = shutil.disk_usage(flash_dir).free
    except OSError:
        flash = 1 << 30
    backend_version = _backend_version(config.backend)
    calib = {"date": utc_timestamp(),
             "backend": config.backend, "backend_version": backend_version, "threads": threads,
             "cpu": cpu_name(), "machine": platform.machine(), "python": platform.python_version(),
             "suite": "quick" if config.quick else "full", "rounds": config.rounds,
             "min_time_ms": config.min_time_ms, "duration_s": round(time.perf_counter() - t0, 2), "fit": fits}
    return DeviceProfile(name=name, description=f"measured by edgekd-rt calibrate on {cpu_name()}",
                         cpu=cpu_name(), cores=os.cpu_count() or 1, threads=threads, ram_bytes=ram_bytes(),
                         flash_bytes=int(max(flash, 1)), backend=config.backend, latency=latency, estimate=False,
                         sources=(f"edgekd-rt calibrate ({calib['suite']} suite, {config.backend} "
                                  f"{backend_version}, {threads} threads, {calib['date']})",
                                  margin_source(fits)),
                         calibration=calib, latency_margin_pct={p: f["margin_pct"] for p, f in fits.items()})


def margin_source(fits: dict[str, Any]) -> str:
    """The profile's line on where its latency margins come from."""
    parts = ", ".join(f"+{f['margin_pct']:.1f} % {p}" for p, f in fits.items())
    q = next(iter(fits.values()))["margin_quantile"]
    return (f"latency margins {parts}: the {q:.0%} quantile of the fit's leave-one-out under-predictions "
            f"on the calibration models")


def _backend_version(backend: str) -> str:
    try:
        if backend == "onnx":
            import onnxruntime

            return f"onnxruntime {onnxruntime.__version__}"
        from .backend_tflite import find_interpreter

        _, mod, ver = find_interpreter()
        return f"{mod} {ver}"
    except Exception as e:  # reported, not fatal: the measurement itself already succeeded or failed
        return f"unknown ({type(e).__name__})"


__all__ = ["CalibrationConfig", "SuiteModel", "calibrate", "fit_coefficients", "leave_one_out_ms", "load_suite",
           "nnls", "residual_margin_pct", "time_model_ms", "PRECISIONS"]
