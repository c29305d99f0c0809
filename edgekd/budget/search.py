"""Student search under a hardware budget: cost every student of the family, keep those that fit, rank by capacity.

`search(budget, profile)` returns a `SearchResult` whose `chosen` is the most capable feasible student. An
impossible budget raises `BudgetInfeasibleError` naming the binding limit and the nearest candidates; a budget
that contradicts itself or the board raises `BudgetError` before anything is costed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from edgekd_runtime.errors import BudgetError
from edgekd_runtime.profile import PRECISIONS, DeviceProfile

from .cost import ModelCost, student_cost

KIB = 1024
# limit name -> (unit for messages, CLI flag, scale from the flag's unit to the limit's unit)
LIMITS = {
    "latency_ms": ("ms", "--latency-ms", 1.0),
    "flash_bytes": ("KiB", "--flash-kb", KIB),
    "ram_bytes": ("KiB", "--ram-kb", KIB),
    "macs": ("MACs", "--macs", 1.0),
    "params": ("params", "--params", 1.0),
}


class BudgetInfeasibleError(BudgetError):
    """No candidate meets the budget; carries the binding limit and the nearest candidates."""

    def __init__(self, message: str, binding: str, nearest: Sequence["Candidate"]) -> None:
        super().__init__(message)
        self.binding, self.nearest = binding, list(nearest)


@dataclass(frozen=True)
class Budget:
    """Limits a student must meet on the target board (None = no limit beyond the board's own RAM/flash).

    Attributes:
        latency_ms: single-image latency at the profile's backend and threads, which the prediction plus the
            profile's safety margin (`DeviceProfile.latency_bound_ms`) must not exceed.
        flash_bytes: model file size at `precision`.
        ram_bytes: peak activation memory (the interpreter's arena) at `precision`.
        macs: multiply-accumulates per image.
        params: parameters.
        precision: fp32, fp16 or int8: what will be deployed.
    """

    latency_ms: float | None = None
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    macs: int | None = None
    params: int | None = None
    precision: str = "int8"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise BudgetError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        for name, (unit, flag, scale) in LIMITS.items():
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                shown = v / scale if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                raise BudgetError(f"{flag} {shown!r}: a limit must be a finite number > 0 ({unit}); leave it "
                                  f"out for no limit")

    @classmethod
    def from_cli(cls, latency_ms: float | None = None, flash_kb: float | None = None, ram_kb: float | None = None,
                 macs: float | None = None, params: float | None = None, precision: str = "int8") -> "Budget":
        """Build from CLI units (KiB for memory); a bad value is reported as the user typed it."""
        given = {"latency_ms": latency_ms, "flash_bytes": flash_kb, "ram_bytes": ram_kb, "macs": macs,
                 "params": params}
        vals: dict[str, Any] = {}
        for k, v in given.items():
            if v is None:
                continue
            unit, flag, scale = LIMITS[k]
            if not math.isfinite(v) or v <= 0:
                raise BudgetError(f"{flag} {v:g}: a limit must be a finite number > 0 ({unit}); leave it out for "
                                  f"no limit")
            vals[k] = v if k == "latency_ms" else int(math.floor(v * scale))
        return cls(precision=precision, **vals)

    def cli_units(self) -> dict[str, Any]:
        """The inverse of `from_cli`: the limits in CLI units (latency_ms, flash_kb, ram_kb, macs, params) and the
        precision, as a config file writes them."""
        d: dict[str, Any] = {}
        for k, (_, flag, scale) in LIMITS.items():
            v = getattr(self, k)
            d[flag[2:].replace("-", "_")] = v if v is None or scale == 1.0 else v / scale
        return {**d, "precision": self.precision}

    def limits(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in LIMITS if getattr(self, k) is not None}

    def to_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in LIMITS}, "precision": self.precision}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Budget":
        unknown = set(d) - set(LIMITS) - {"precision"}
        if unknown:
            raise BudgetError(f"budget has unknown field(s) {sorted(unknown)}; known: {sorted(LIMITS)} + precision")
        return cls(**d)


@dataclass(frozen=True)
class Candidate:
    """One student costed against the budget. `usage[limit]` is cost / limit (1.0 = exactly at the limit);
    latency's usage is `latency_bound_ms` (the prediction `latency_ms` plus the profile's margin) / limit."""

    student_id: str
    cost: ModelCost
    latency_ms: float
    flash_bytes: int
    ram_bytes: int
    capacity: float
    usage: Mapping[str, float]
    proxy_accuracy: float | None = None
    latency_bound_ms: float | None = None  # None: no margin (the prediction itself)
    role: str = "student"  # or "teacher": the run's teacher costed as a candidate (`teacher_candidate`)

    @property
    def feasible(self) -> bool:
        return all(u <= 1.0 for u in self.usage.values())

    @property
    def violated(self) -> tuple[str, ...]:
        return tuple(k for k, u in self.usage.items() if u > 1.0)

    @property
    def worst_usage(self) -> tuple[str, float]:
        if not self.usage:
            return ("", 0.0)
        k = max(self.usage, key=lambda n: self.usage[n])
        return k, self.usage[k]

    @property
    def bound_ms(self) -> float:
        """What the latency limit is held against: the prediction plus the profile's margin."""
        return self.latency_ms if self.latency_bound_ms is None else self.latency_bound_ms

    def value(self, limit: str) -> float:
        return {"latency_ms": self.bound_ms, "flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
                "macs": self.cost.macs, "params": self.cost.params}[limit]

    def to_dict(self) -> dict[str, Any]:
        return {"student": self.student_id, "role": self.role, "params": self.cost.params, "macs": self.cost.macs,
                "latency_ms": round(self.latency_ms, 6), "latency_bound_ms": round(self.bound_ms, 6),
                "flash_bytes": self.flash_bytes,
                "ram_bytes": self.ram_bytes, "capacity": round(self.capacity, 1), "feasible": self.feasible,
                "usage_pct": {k: round(100 * u, 1) for k, u in self.usage.items()},
                "violated": list(self.violated), "proxy_accuracy": self.proxy_accuracy,
                "features": self.cost.features.to_dict()}


@dataclass(frozen=True)
class SearchResult:
    """All candidates (most capable first), the effective limits and the chosen student. `teacher` is the run's
    teacher costed the same way (`teacher_candidate`), listed beside the students and never `chosen` here: whether
    it is deployed instead is the pipeline's decision (`edgekd.pipeline.deploy_choice`)."""

    budget: Budget
    profile: DeviceProfile
    limits: Mapping[str, float]
    candidates: tuple[Candidate, ...]
    chosen: Candidate
    ranked_by: str = "capacity"
    notes: tuple[str, ...] = field(default=())
    teacher: Candidate | None = None

    @property
    def feasible(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if c.feasible)

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen.student_id, "precision": self.budget.precision,
                "profile": {"name": self.profile.name, "estimate": self.profile.estimate,
                            "backend": self.profile.backend, "threads": self.profile.threads},
                "budget": self.budget.to_dict(), "effective_limits": dict(self.limits),
                "ranked_by": self.ranked_by, "feasible": len(self.feasible), "total": len(self.candidates),
                "notes": list(self.notes), "candidates": [c.to_dict() for c in self.candidates],
                "teacher": None if self.teacher is None else self.teacher.to_dict()}


def capacity_of(cost: ModelCost) -> float:
    """Capacity score: geometric mean of parameters and MACs (bigger and more compute = more accurate on
    MNIST-like tasks, to first order). `--proxy-epochs` ranks by measured accuracy instead."""
    return math.sqrt(max(cost.params, 1) * max(cost.macs, 1))


def effective_limits(budget: Budget, profile: DeviceProfile) -> dict[str, float]:
    """The budget's limits plus the board's RAM and flash; raises BudgetError on contradictions."""
    coef = profile.coefficients(budget.precision)  # ProfileError if the profile lacks this precision
    lim = budget.limits()
    for key, board, what in (("ram_bytes", profile.ram_bytes, "RAM"), ("flash_bytes", profile.flash_bytes,
                                                                         "flash")):
        if key in lim and lim[key] > board:
            raise BudgetError(f"contradictory budget: {LIMITS[key][1]} {lim[key] / KIB:g} asks for more {what} "
                              f"than {profile.name} has ({board / KIB:g} KiB); lower it or pick another board")
        lim.setdefault(key, board)
    if budget.latency_ms is not None and budget.latency_ms <= coef.per_invoke_ms:
        raise BudgetError(f"contradictory budget: --latency-ms {budget.latency_ms:g} is not above {profile.name}'s "
                          f"fixed cost of one invoke ({coef.per_invoke_ms:.4g} ms at {budget.precision}); no model "
                          f"can be that fast: raise it above {coef.per_invoke_ms:.3g} ms")
    return lim


def evaluate(student_ids: Sequence[str], budget: Budget, profile: DeviceProfile, num_classes: int = 10,
             cost_fn: Callable[[str, int], ModelCost] = student_cost,
             limits: Mapping[str, float] | None = None) -> list[Candidate]:
    """Cost each student and its use of every limit."""
    lim = dict(limits) if limits is not None else effective_limits(budget, profile)
    return [costed_candidate(sid, cost_fn(sid, num_classes), budget, profile, lim) for sid in student_ids]


def costed_candidate(name: str, cost: ModelCost, budget: Budget, profile: DeviceProfile,
                     limits: Mapping[str, float], role: str = "student") -> Candidate:
    """One model's use of every limit (the one rule for students and the teacher alike)."""
    lat = profile.estimate_latency_ms(cost.features, budget.precision)
    bound = profile.latency_bound_ms(cost.features, budget.precision)
    vals = {"latency_ms": bound, "flash_bytes": cost.flash_bytes[budget.precision],
            "ram_bytes": cost.peak_ram_bytes[budget.precision], "macs": cost.macs, "params": cost.params}
    return Candidate(student_id=name, cost=cost, latency_ms=lat, flash_bytes=vals["flash_bytes"],
                     ram_bytes=vals["ram_bytes"], capacity=capacity_of(cost),
                     usage={k: vals[k] / v for k, v in limits.items()}, latency_bound_ms=bound, role=role)


def teacher_candidate(result: SearchResult, name: str, cost: ModelCost) -> SearchResult:
    """`result` with the teacher (its cost measured on its exported ONNX graph, as a student's is) listed as a
    candidate against the same limits, the same precision and the same latency margin."""
    from dataclasses import replace

    cand = costed_candidate(name, cost, result.budget, result.profile, result.limits, role="teacher")
    return replace(result, teacher=cand)


def search(budget: Budget, profile: DeviceProfile, candidates: Sequence[str] | None = None, num_classes: int = 10,
           proxy: Callable[[Sequence[Candidate]], Mapping[str, float]] | None = None,
           cost_fn: Callable[[str, int], ModelCost] = student_cost) -> SearchResult:
    """Pick the most capable student that meets `budget` on `profile`.

    Args:
        budget: the limits and the precision to deploy.
        profile: the board (its latency model, RAM and flash).
        candidates: student ids to consider; default `edgekd.models.students.search_space()`.
        num_classes: output classes (changes the head's cost).
        proxy: optional ranking by a short proxy training: called with the feasible candidates (most capable
            first), returns student id -> validation accuracy for those it trained.
        cost_fn: (student_id, num_classes) -> ModelCost; default exports each student to ONNX in memory.

    Raises:
        BudgetError: an invalid or contradictory budget. BudgetInfeasibleError: nothing fits.
    """
    from edgekd.data.split import check_num_classes

    check_num_classes(num_classes, "num_classes")  # before any head, cost or export is sized by it
    if candidates is None:
        from edgekd.models.students import search_space

        candidates = search_space()
    if not candidates:
        raise BudgetError("no candidate students to search")
    lim = effective_limits(budget, profile)
    cands = sorted(evaluate(candidates, budget, profile, num_classes, cost_fn, lim),
                   key=lambda c: (-c.capacity, c.latency_ms, c.student_id))
    feasible = [c for c in cands if c.feasible]
    if not feasible:
        raise _infeasible(cands, lim, budget, profile)
    ranked_by, notes = "capacity", []
    if proxy is not None:
        acc = dict(proxy(feasible))
        if acc:
            ranked_by = "proxy_accuracy"
            cands = [_with_proxy(c, acc.get(c.student_id)) for c in cands]
            feasible = sorted((c for c in cands if c.feasible and c.proxy_accuracy is not None),
                              key=lambda c: (-(c.proxy_accuracy or 0), -c.capacity))
            notes.append(f"ranked {len(acc)} feasible candidates by proxy-training accuracy")
    notes += latency_notes(profile, budget.precision)
    return SearchResult(budget=budget, profile=profile, limits=lim, candidates=tuple(cands), chosen=feasible[0],
                        ranked_by=ranked_by, notes=tuple(notes))


def latency_notes(profile: DeviceProfile, precision: str) -> list[str]:
    """What the latency figures rest on: an estimate or a calibration, and the safety margin they carry."""
    notes = []
    if precision in profile.latency_margin_pct:
        notes.append(f"latency predictions carry a +{100 * profile.latency_margin(precision):.1f} % margin from the "
                     f"calibration fit's residuals ({profile.name}, {precision}); a student fits a latency limit "
                     f"when its prediction plus the margin does")
    if profile.estimate:
        notes.append(f"latency predicted with the built-in {profile.name} ESTIMATE; calibrate on the board "
                     f"(`edgekd-rt calibrate --out board.json`) and pass --profile board.json for real numbers")
    return notes


def _with_proxy(c: Candidate, acc: float | None) -> Candidate:
    from dataclasses import replace

    return replace(c, proxy_accuracy=acc)


def _fmt(limit: str, v: float) -> str:
    unit, _, scale = LIMITS[limit]
    if limit == "latency_ms":
        return f"{v:.4g} ms"
    if scale != 1.0:
        return f"{v / scale:.1f} {unit}"
    return f"{v:,.0f} {unit}"


def _infeasible(cands: Sequence[Candidate], lim: Mapping[str, float], budget: Budget,
                profile: DeviceProfile) -> BudgetInfeasibleError:
    nearest = sorted(cands, key=lambda c: (c.worst_usage[1], -c.capacity))[:3]
    binding = nearest[0].worst_usage[0]
    near = "; ".join(f"{c.student_id} needs {_fmt(k, c.value(k))} = {100 * u:.0f}% of {_fmt(k, lim[k])}"
                     for c in nearest for k, u in [c.worst_usage])
    flag = LIMITS[binding][1]
    hint = (f"raise {flag} to at least {_fmt(binding, nearest[0].value(binding))}" if binding in budget.limits()
            else f"the board's own {binding.split('_')[0]} ({_fmt(binding, lim[binding])}) is too small")
    n_break = sum(1 for c in cands if binding in c.violated)
    msg = (f"no student fits this budget on {profile.name} at {budget.precision}: {binding} is the binding limit "
           f"({n_break} of {len(cands)} candidates exceed it; it is the one the nearest candidates exceed most). "
           f"Nearest: {near}. Fix: {hint}, or a lower precision / faster board")
    return BudgetInfeasibleError(msg, binding, nearest)
