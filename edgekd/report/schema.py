"""The run report as typed dataclasses: what `edgekd run` writes to report.json and what the renderer reads.

`Report.to_dict()` is report.json's content and `Report.from_dict()` reads it back (including files written before
these classes existed: same keys). One class per section; a section's keys are its fields. Sections that a run
may not have (`image_path`, a pipeline that stopped early) are optional, and top-level sections this version does
not know (a newer task's, say) are kept verbatim in `Report.sections`, so loading and saving never drops them.

The device profile and the budget are kept as the dicts their own classes write (`DeviceProfile.to_dict`,
`Budget.to_dict`): those classes are the one home of their schema.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Mapping, TypeVar

from edgekd_runtime.errors import UserInputError

REPORT_FORMAT = "edgekd-report"
REPORT_FORMAT_VERSION = 1


class ReportFormatError(UserInputError):
    """report.json does not have the shape edgekd writes (a missing or unknown key, a section of the wrong kind)."""


S = TypeVar("S", bound="_Section")


class _Section:
    """to_dict/from_dict for a flat dataclass of JSON values. Fields listed in `_omit_when_none` are left out of
    the dict when None (keys that today's report writes only when it has them, e.g. a model row's `note`)."""

    _omit_when_none: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)  # type: ignore[arg-type]
                if not (f.name in self._omit_when_none and getattr(self, f.name) is None)}

    @classmethod
    def from_dict(cls: type[S], d: Any, where: str = "") -> S:
        where = where or cls.__name__
        if not isinstance(d, Mapping):
            raise ReportFormatError(f"{where}: expected an object, got {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ReportFormatError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        missing = [n for n, f in known.items()
                   if n not in d and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ReportFormatError(f"{where}: missing key(s) {missing}")
        return cls(**d)


@dataclass
class RunInfo(_Section):
    """What made the run: when, with which configuration (and its fingerprint), which versions; `name`,
    `wall_time_s` and `resumed` are set once the run has finished."""

    created: str
    quick: bool
    config: dict[str, Any]
    fingerprint: str
    versions: dict[str, str]
    name: str | None = None
    wall_time_s: float | None = None
    resumed: bool | None = None


@dataclass
class Target(_Section):
    """The board (DeviceProfile.to_dict()), the budget (Budget.to_dict()) and the deployed precision."""

    profile: dict[str, Any]
    budget: dict[str, Any]
    precision: str

    @property
    def profile_name(self) -> str:
        return str(self.profile.get("name", "?"))

    @property
    def profile_is_estimate(self) -> bool:
        return bool(self.profile.get("estimate"))


@dataclass
class ModelRow(_Section):
    """One trained model (role teacher, scratch or distilled): accuracy on the test split, cost and latency.
    The cost fields are None for a foreign teacher that does not export (then `note` says why)."""

    _omit_when_none = ("macs", "flash_bytes", "peak_ram_bytes", "predicted_latency_ms", "measured_latency_ms",
                       "epochs_run", "epoch_time_s", "note")

    role: str
    arch: str
    test_accuracy: float | None
    params: int | None
    metrics: str | None = None  # path of its metrics.jsonl, relative to the run directory
    macs: int | None = None
    flash_bytes: int | None = None
    peak_ram_bytes: int | None = None
    predicted_latency_ms: float | None = None
    measured_latency_ms: float | None = None
    epochs_run: int | None = None
    epoch_time_s: list[float] | None = None
    note: str | None = None


@dataclass
class ArtifactRow(_Section):
    """One file of the bundle: accuracy through edgekd_runtime, parity (ParityReport.to_dict()), latency here,
    and whether it meets the budget (None: not checked, another precision)."""

    path: str
    format: str
    precision: str
    size_bytes: int
    accuracy: float | None
    parity: dict[str, Any] | None
    p50_ms: float | None
    p99_ms: float | None
    budget_ok: bool | None


@dataclass
class Deployed(_Section):
    """The artifact the board loads by default, measured through edgekd_runtime on the test split."""

    path: str
    precision: str
    accuracy: float
    num_samples: int
    split: str
    labels: list[str]
    confusion: list[list[int]]


@dataclass
class BudgetSummary(_Section):
    """The budget search (budget.json's headline): the chosen student, how many candidates fit, and its binding
    limit: the limit the chosen student uses most of (`binding_usage_pct` percent of it; absent from reports
    written before it was recorded)."""

    _omit_when_none = ("binding", "binding_usage_pct", "teacher")

    chosen: str
    plot: str | None
    feasible: int | None
    evaluated: int | None
    ranked_by: str | None
    notes: list[str] | None
    effective_limits: dict[str, float] | None
    binding: str | None = None
    binding_usage_pct: float | None = None
    teacher: dict[str, Any] | None = None  # the teacher as a candidate (`results._teacher_candidate`)


@dataclass(frozen=True)
class Deployment(_Section):
    """Which model is deployed and why: the distilled student, or the teacher when it fits the budget and is the
    more accurate candidate. `edgekd.pipeline.deploy_choice` makes the decision in this very type (DeployChoice).

    Attributes:
        model: "student" (the distilled student) or "teacher".
        reason: one sentence for the report and the log.
        students_trained: whether the distilled and scratch students were trained.
        teacher_fits: whether the teacher meets the budget; None when it could not be costed.
        compare: the choice waits for the val accuracies (`deploy_choice.decide`).
        teacher_val_accuracy, student_val_accuracy: on the val split, once measured.
        student_better_p: the sign test of "the student is more accurate" on the val digits they disagree on.
    """

    model: str
    reason: str
    students_trained: bool
    teacher_fits: bool | None
    compare: bool = False
    teacher_val_accuracy: float | None = None
    student_val_accuracy: float | None = None
    student_better_p: float | None = None


@dataclass
class KDGain(_Section):
    """Distilled minus scratch on the run's test split, paired over the same digits (`edgekd.report.stats`): the
    gain and its interval (fractions), the digits each one alone reads right, and the KD mode it was trained in."""

    gain: float
    low: float
    high: float
    level: float
    n: int
    distilled_only: int
    scratch_only: int
    within_noise: bool
    kd_mode: str | None = None


@dataclass
class Check(_Section):
    """One pass/fail line of the report; a failed check makes `edgekd run` exit 1."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class LatencyModelCheck(_Section):
    """The `host` profile's prediction against the deployed artifact's measured p50 on this machine."""

    host_estimate_ms: float
    measured_p50_ms: float
    ratio: float
    artifact: str


@dataclass
class ImagePath(_Section):
    """From an image file to an answer with the deployed artifact: stage -> {p50_ms, p90_ms, p99_ms, mean_ms}."""

    artifact: str
    image: str
    decoded_shape: list[int]
    runs: int
    stages: dict[str, dict[str, float]]


def _opt(cls: type[S], d: Any, where: str) -> S | None:
    return None if d is None else cls.from_dict(d, where)


def _rows(cls: type[S], d: Any, where: str) -> list[S]:
    if not isinstance(d, list):
        raise ReportFormatError(f"{where}: expected a list, got {type(d).__name__}")
    return [cls.from_dict(x, f"{where}[{i}]") for i, x in enumerate(d)]


@dataclass
class Report:
    """report.json. `sections` holds top-level sections this version does not define, kept as they were."""

    run: RunInfo | None = None
    target: Target | None = None
    models: list[ModelRow] = field(default_factory=list)
    artifacts: list[ArtifactRow] = field(default_factory=list)
    deployed: Deployed | None = None
    budget: BudgetSummary | None = None
    checks: list[Check] = field(default_factory=list)
    latency_model: LatencyModelCheck | None = None
    image_path: ImagePath | None = None
    deployment: Deployment | None = None  # absent in reports from before the teacher was a candidate
    kd_gain: KDGain | None = None  # absent when no students were trained (and in older reports)
    sections: dict[str, Any] = field(default_factory=dict)
    format: str = REPORT_FORMAT
    format_version: int = REPORT_FORMAT_VERSION

    _SECTIONS: ClassVar[tuple[str, ...]] = ("run", "target", "models", "artifacts", "deployed", "budget", "checks",
                                            "latency_model", "image_path", "deployment", "kd_gain")

    def model(self, role: str) -> ModelRow | None:
        return next((m for m in self.models if m.role == role), None)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        def opt(s: _Section | None) -> dict[str, Any] | None:
            return None if s is None else s.to_dict()

        return {"format": self.format, "format_version": self.format_version, "run": opt(self.run),
                "target": opt(self.target), "models": [m.to_dict() for m in self.models],
                "artifacts": [a.to_dict() for a in self.artifacts], "deployed": opt(self.deployed),
                "budget": opt(self.budget), "checks": [c.to_dict() for c in self.checks],
                "latency_model": opt(self.latency_model), "image_path": opt(self.image_path),
                **({} if self.deployment is None else {"deployment": self.deployment.to_dict()}),
                **({} if self.kd_gain is None else {"kd_gain": self.kd_gain.to_dict()}), **self.sections}

    @classmethod
    def from_dict(cls, d: Any) -> Report:
        if not isinstance(d, Mapping):
            raise ReportFormatError(f"report: expected an object, got {type(d).__name__}")
        fmt = d.get("format", REPORT_FORMAT)
        if fmt != REPORT_FORMAT:
            raise ReportFormatError(f"report: format {fmt!r} is not {REPORT_FORMAT!r}")
        version = d.get("format_version", REPORT_FORMAT_VERSION)
        if not isinstance(version, int) or version > REPORT_FORMAT_VERSION:
            raise ReportFormatError(f"report: format_version {version!r} is newer than this edgekd reads "
                                    f"({REPORT_FORMAT_VERSION}); upgrade edgekd")
        return cls(run=_opt(RunInfo, d.get("run"), "run"), target=_opt(Target, d.get("target"), "target"),
                   models=_rows(ModelRow, d.get("models", []), "models"),
                   artifacts=_rows(ArtifactRow, d.get("artifacts", []), "artifacts"),
                   deployed=_opt(Deployed, d.get("deployed"), "deployed"),
                   budget=_opt(BudgetSummary, d.get("budget"), "budget"),
                   checks=_rows(Check, d.get("checks", []), "checks"),
                   latency_model=_opt(LatencyModelCheck, d.get("latency_model"), "latency_model"),
                   image_path=_opt(ImagePath, d.get("image_path"), "image_path"),
                   deployment=_opt(Deployment, d.get("deployment"), "deployment"),
                   kd_gain=_opt(KDGain, d.get("kd_gain"), "kd_gain"),
                   sections={k: v for k, v in d.items() if k not in (*cls._SECTIONS, "format", "format_version")},
                   format=fmt, format_version=version)
