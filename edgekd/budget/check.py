"""After conversion: compare each artifact's real size (and measured host latency) with the budget and the
predictions, and flag the artifacts that break the budget in the manifest, so none ships silently.

    from edgekd.budget.check import check_bundle
    checks = check_bundle("bundle/")          # sets Artifact.budget_ok and manifest.extra["budget_check"]

The budget and profile come from the manifest (`edgekd distill --target ...` records them in the checkpoint and
`edgekd export` copies them). Latency on the board is the profile's prediction, held against the limit with the
profile's safety margin as the search held it (`DeviceProfile.latency_bound_ms`); when the profile was calibrated
on this very machine, the measured latency decides instead.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekd_runtime.errors import BudgetError
from edgekd_runtime.profile import DeviceProfile

from .cost import analyze_onnx
from .search import Budget


@dataclass(frozen=True)
class ArtifactCheck:
    """One artifact against the budget. `*_ok` is None when the budget sets no such limit."""

    path: str
    precision: str
    file_bytes: int
    predicted_flash_bytes: int
    flash_limit_bytes: int | None
    predicted_ram_bytes: int
    ram_limit_bytes: int | None
    predicted_latency_ms: float | None
    measured_host_latency_ms: float | None
    latency_limit_ms: float | None
    latency_source: str  # "profile prediction" | "measured on the calibrated machine" | "none"
    flash_ok: bool | None
    ram_ok: bool | None
    latency_ok: bool | None
    latency_bound_ms: float | None = None  # the prediction + the profile's margin, when that decided

    @property
    def budget_ok(self) -> bool:
        return all(v is not False for v in (self.flash_ok, self.ram_ok, self.latency_ok))

    def problems(self) -> list[str]:
        out = []
        if self.flash_ok is False:
            out.append(f"file {self.file_bytes / 1024:.1f} KiB > flash limit {self.flash_limit_bytes / 1024:.1f} KiB")
        if self.ram_ok is False:
            out.append(f"peak RAM {self.predicted_ram_bytes / 1024:.1f} KiB > "
                       f"limit {self.ram_limit_bytes / 1024:.1f} KiB")
        if self.latency_ok is False:
            lat = (self.measured_host_latency_ms if self.latency_source.startswith("measured")
                   else self.latency_bound_ms or self.predicted_latency_ms)
            out.append(f"latency {lat:.4g} ms ({self.latency_source}) > limit {self.latency_limit_ms:.4g} ms")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "budget_ok": self.budget_ok, "problems": self.problems()}


def _bundle_cost(bundle: Path, manifest: Any, onnx_name: str) -> Any:
    """The cost of the bundle's fp32 ONNX model; for a text-line model with a dynamic width, of one line of the
    reference width (`lines.width`, what the budget search costed), not of a 1-px-wide one."""
    if manifest.lines is None:
        return analyze_onnx(bundle / onnx_name, name=manifest.name)
    import tempfile

    from edgekd_converters.line_bundle import fixed_width_copy

    with tempfile.TemporaryDirectory(prefix="edgekd_cost_") as tmp:
        fixed = fixed_width_copy(bundle / onnx_name, Path(tmp) / "fixed.onnx", manifest.lines.width,
                                 manifest.lines.frame_stride)
        return analyze_onnx(fixed, name=manifest.name)


def _budget_and_profile(manifest: Any) -> tuple[Budget | None, DeviceProfile | None]:
    rec = manifest.budget or {}
    b = rec.get("budget", rec) if isinstance(rec, dict) else None
    budget = Budget.from_dict({k: v for k, v in b.items()}) if b else None
    prof = manifest.profile or (rec.get("profile") if isinstance(rec, dict) else None)
    profile = DeviceProfile.from_dict(prof, source="manifest profile") if prof else None
    return budget, profile


def check_bundle(bundle_dir: str | os.PathLike, measure: bool = True, threads: int = 1, runs: int = 50,
                 write: bool = True) -> list[ArtifactCheck]:
    """Check every artifact of a bundle against its recorded budget; flag it in the manifest when `write`.

    Returns [] when the bundle records no budget. Raises BudgetError for a malformed budget record.
    """
    from edgekd_runtime.calibrate import cpu_name
    from edgekd_runtime.manifest import Manifest

    bundle = Path(bundle_dir)
    manifest = Manifest.load(bundle)
    try:
        budget, profile = _budget_and_profile(manifest)
    except (TypeError, ValueError) as e:
        raise BudgetError(f"{bundle}/manifest.json: malformed budget/profile record ({e})") from None
    if budget is None:
        return []
    fp32 = next((a for a in manifest.artifacts if a.format == "onnx" and a.precision == "fp32"), None)
    if fp32 is None:
        raise BudgetError(f"{bundle}: no fp32 ONNX artifact to cost; re-export the bundle with `edgekd export`")
    cost = _bundle_cost(bundle, manifest, fp32.path)
    same_machine = bool(profile and not profile.estimate and (profile.calibration or {}).get("cpu") == cpu_name())
    checks = []
    for art in manifest.artifacts:
        p = art.precision
        bound = None
        pred_lat = (profile.estimate_latency_ms(cost.features, p)
                    if profile and p in profile.precisions else None)
        measured = _measure(bundle / art.path, art.format, threads, runs) if measure else None
        lat_limit = budget.latency_ms
        if lat_limit is None:
            src, lat_ok = "none", None
        elif same_machine and measured is not None and profile.backend == art.format:
            src, lat_ok = "measured on the calibrated machine", measured <= lat_limit
        elif pred_lat is not None:
            margin = profile.latency_margin(p)
            src = "profile prediction" + (f" + {100 * margin:.1f} % margin" if margin else "")
            bound = profile.latency_bound_ms(cost.features, p)
            lat_ok = bound <= lat_limit
        else:
            src, lat_ok = "none", None
        c = ArtifactCheck(path=art.path, precision=p, file_bytes=art.size_bytes,
                          predicted_flash_bytes=cost.flash_bytes[p], flash_limit_bytes=budget.flash_bytes,
                          predicted_ram_bytes=cost.peak_ram_bytes[p], ram_limit_bytes=budget.ram_bytes,
                          predicted_latency_ms=pred_lat, measured_host_latency_ms=measured,
                          latency_limit_ms=lat_limit, latency_source=src,
                          flash_ok=None if budget.flash_bytes is None else art.size_bytes <= budget.flash_bytes,
                          ram_ok=None if budget.ram_bytes is None else cost.peak_ram_bytes[p] <= budget.ram_bytes,
                          latency_ok=lat_ok, latency_bound_ms=bound)
        checks.append(c)
        art.budget_ok = c.budget_ok
    if write:
        manifest.extra["budget_check"] = {"artifacts": [c.to_dict() for c in checks],
                                          "all_ok": all(c.budget_ok for c in checks)}
        manifest.save(bundle)
    return checks


def _measure(path: Path, fmt: str, threads: int, runs: int) -> float | None:
    import edgekd_runtime
    from edgekd_runtime.errors import EdgekdError

    try:
        return float(edgekd_runtime.load(path, backend=fmt, threads=threads).benchmark(runs=runs, warmup=5).p50_ms)
    except EdgekdError:  # e.g. no TFLite interpreter here: the size checks still stand
        return None
