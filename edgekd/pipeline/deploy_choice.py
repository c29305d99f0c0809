"""Which model a run deploys: the distilled student, or the teacher itself when it fits the budget and is the
more accurate (issue 13 item 5: the budget search never deploys a student that is less accurate than a teacher
that fits the same budget).

The teacher is costed like a student (its exported ONNX graph: params, MACs, flash, RAM, latency with the
profile's margin) and listed in the search (`edgekd.budget.search.teacher_candidate`). Then, before any student
trains (`plan`):

* the teacher does not fit, or could not be costed: the distilled student is deployed, as before;
* `--student` was given: that student is deployed (an explicit choice wins), the teacher's fit is reported;
* the teacher fits and no student that fits is more capable (capacity = sqrt(params x MACs), the search's own
  ranking): no student is trained and the teacher is deployed; a student distilled from it is not expected to be
  more accurate (issue 13 measured 1.4 pp worse for a student of 3.4x the teacher's parameters);
* the teacher fits but a more capable student fits too: both students train as usual and `decide` compares the
  teacher with the distilled student on the val split (the same digits, held out from training; the test split
  stays untouched for the report). The teacher is deployed when it is at least as accurate: the student's
  checkpoint was chosen on that split, so its figure there leans its way.

`deploy_teacher` (config, `--deploy-teacher`) changes the third and fourth cases: `compare` always trains and
compares (for a teacher whose accuracy is in doubt: a weak teacher can be beaten by a student trained on the
labels), `never` always deploys the student (the behaviour before the teacher was a candidate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from edgekd.budget.cost import ModelCost

STUDENT, TEACHER = "student", "teacher"
POLICIES = ("auto", "compare", "never")  # the `deploy_teacher` setting of `edgekd run`


@dataclass(frozen=True)
class DeployChoice:
    """The decision and why (report.json's `deployment`).

    Attributes:
        model: "student" (the distilled student) or "teacher".
        reason: one sentence for the report and the log.
        students_trained: whether the distilled and scratch students were trained.
        teacher_fits: whether the teacher meets the budget; None when it could not be costed.
        compare: the choice waits for the val accuracies (`decide`).
        teacher_val_accuracy, student_val_accuracy: on the val split, once measured.
    """

    model: str
    reason: str
    students_trained: bool
    teacher_fits: bool | None
    compare: bool = False
    teacher_val_accuracy: float | None = None
    student_val_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cost_teacher(teacher: Any, file: str | None) -> tuple["ModelCost | None", str | None]:
    """The teacher's cost on the ONNX graph it would be deployed as (`edgekd.export.teacher_bundle`): a torch
    teacher exported at 28x28 as `edgekd export` does, an ONNX teacher's own graph as the converters normalise it.
    (None, why) for a TFLite teacher, or when the graph cannot be exported or costed: it then stays a teacher only.
    """
    from edgekd.budget.cost import analyze_onnx, module_cost
    from edgekd.models.teachers import TEACHER_INPUT_SIZE
    from edgekd_runtime.errors import first_line

    if teacher.source == "tflite":
        return None, "not costed: a TFLite file has no ONNX graph to deploy and convert from (give its ONNX file)"
    try:
        if teacher.source == "onnx":
            from edgekd_converters.model_info import load_onnx
            from edgekd_converters.normalize import normalize_model

            return analyze_onnx(normalize_model(load_onnx(file), str(file))[0], name=teacher.name), None
        return module_cost(teacher.model, (1, 1, TEACHER_INPUT_SIZE, TEACHER_INPUT_SIZE), name=teacher.name), None
    except Exception as e:  # noqa: BLE001 - user models fail to export in many ways; the run goes on without it
        return None, f"not costed: its ONNX graph could not be exported or costed ({first_line(e, 160)})"


def check_policy(policy: str) -> str:
    """`deploy_teacher` must be one of POLICIES (the one home of this rule)."""
    from edgekd_runtime.errors import UserInputError

    if policy not in POLICIES:
        raise UserInputError(f"deploy_teacher {policy!r} is not one of {', '.join(POLICIES)} (auto: deploy the "
                             f"teacher when it fits and no more capable student does; compare: train and deploy the "
                             f"more accurate on val; never: always the student)")
    return policy


def plan(search: Mapping[str, Any], student_given: bool, policy: str = "auto") -> DeployChoice:
    """The decision before training, from budget.json's content (`SearchResult.to_dict()` + `teacher_note`)."""
    t = search.get("teacher")
    if t is None:
        why = search.get("teacher_note") or "not costed"
        return DeployChoice(STUDENT, f"the teacher is {why}; the distilled student is deployed", True, None)
    if not t["feasible"]:
        over = ", ".join(f"{k} {t['usage_pct'][k]:.0f} % of the limit" for k in t["violated"])
        return DeployChoice(STUDENT, f"the teacher {t['student']} does not fit the budget ({over}); the distilled "
                                     f"student is deployed", True, False)
    if student_given or policy == "never":
        given = f"--student {search['chosen']} was given" if student_given else "deploy_teacher is never"
        return DeployChoice(STUDENT, f"{given}, so the student is deployed; the teacher {t['student']} fits the "
                                     f"budget too", True, True)
    best = max((c for c in search["candidates"] if c["feasible"]), key=lambda c: c["capacity"], default=None)
    if policy == "auto" and (best is None or t["capacity"] >= best["capacity"]):
        than = "" if best is None else f" (capacity {t['capacity']:,.0f} vs at most {best['capacity']:,.0f})"
        return DeployChoice(TEACHER, f"the teacher {t['student']} fits the budget and no student that fits is more "
                                     f"capable{than}: a student distilled from it is not expected to be more "
                                     f"accurate, so no student was trained and the teacher is deployed", False, True)
    why = "deploy_teacher is compare" if policy == "compare" else f"so does a more capable student ({best['student']})"
    return DeployChoice(STUDENT, f"the teacher {t['student']} fits the budget and {why}; the more accurate on the val "
                                 f"split is deployed", True, True, compare=True)


def decide(choice: DeployChoice, search: Mapping[str, Any], teacher_val: float,
           student_val: float | None) -> DeployChoice:
    """The decision after training (`student_val` None: no student was trained): a pending comparison is settled
    by val accuracy (ties go to the teacher); every other choice stands, with the accuracies recorded."""
    acc = replace(choice, teacher_val_accuracy=teacher_val, student_val_accuracy=student_val)
    if not choice.compare or student_val is None:
        return acc
    t, s = search["teacher"]["student"], search["chosen"]
    both = f"({100 * teacher_val:.2f} % vs {100 * student_val:.2f} % on the val split)"
    if teacher_val >= student_val:
        return replace(acc, model=TEACHER, reason=f"the teacher {t} fits the budget and is at least as accurate as "
                                                  f"the distilled {s} {both}; the teacher is deployed")
    return replace(acc, model=STUDENT, reason=f"the distilled {s} is more accurate than the teacher {t}, which fits "
                                              f"the budget too {both}; the student is deployed")


def val_accuracies(teacher: Any, student_ck: Path | None, splits: Any) -> tuple[float, float | None]:
    """(teacher, distilled student) accuracy on the val split in fp32 torch on the CPU (student None: not
    trained)."""
    from edgekd.train.checkpoint import load_student_checkpoint
    from edgekd.train.device import resolve_device
    from edgekd.train.trainer import evaluate

    cpu = resolve_device("cpu")
    t_acc, _ = evaluate(teacher.model, splits.val.x, splits.val.y, cpu)
    if student_ck is None:
        return float(t_acc), None
    model, ck = load_student_checkpoint(student_ck)
    s_acc, _ = evaluate(model, splits.val.x, splits.val.y, cpu, int(ck.get("input_size") or 28))
    return float(t_acc), float(s_acc)
