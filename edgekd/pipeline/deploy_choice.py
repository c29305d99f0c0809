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
  stays untouched for the report). The student is deployed only when it is more accurate beyond noise (a
  one-sided sign test on the val digits exactly one of them gets right, p < 0.05); otherwise the teacher is: the
  student's checkpoint was chosen on that split, so its figure there leans its way, and on 500 val digits a
  0.2 pp lead is one digit (measured: 97.2 % vs 97.0 % on val was 95.0 % vs 95.4 % on test).

`deploy_teacher` (config, `--deploy-teacher`) changes the third and fourth cases: `compare` always trains and
compares (for a teacher whose accuracy is in doubt: a weak teacher can be beaten by a student trained on the
labels), `never` always deploys the student (the behaviour before the teacher was a candidate).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from edgekd.report.schema import Deployment
from edgekd.report.stats import sign_test_p

if TYPE_CHECKING:
    from edgekd.budget.cost import ModelCost

STUDENT, TEACHER = "student", "teacher"
POLICIES = ("auto", "compare", "never")  # the `deploy_teacher` setting of `edgekd run`
STUDENT_BETTER_P = 0.05  # a pending comparison deploys the student when it is better on val at this significance


DeployChoice = Deployment  # the decision is made in the type report.json stores it as (one field list)


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


@dataclass(frozen=True)
class ValComparison:
    """Teacher and distilled student on the same val digits: accuracies and the digits only one gets right."""

    teacher_accuracy: float
    student_accuracy: float | None = None  # None: no student was trained
    student_only: int = 0
    teacher_only: int = 0

    @property
    def student_better_p(self) -> float | None:
        """One-sided sign test on the digits they disagree on: the chance of the student winning at least
        `student_only` of them if neither were better (None without a student)."""
        if self.student_accuracy is None:
            return None
        return sign_test_p(self.student_only, self.teacher_only)


def decide(choice: DeployChoice, search: Mapping[str, Any], val: ValComparison) -> DeployChoice:
    """The decision after training: a pending comparison deploys the student only when it is more accurate on
    the val split beyond noise (sign test p < STUDENT_BETTER_P: its checkpoint was picked on that split, and a
    digit or two either way is not evidence); every other choice stands, with the val figures recorded."""
    p = val.student_better_p
    acc = replace(choice, teacher_val_accuracy=val.teacher_accuracy, student_val_accuracy=val.student_accuracy,
                  student_better_p=p)
    if not choice.compare or val.student_accuracy is None or p is None:
        return acc
    t, s = search["teacher"]["student"], search["chosen"]
    both = (f"({100 * val.teacher_accuracy:.2f} % vs {100 * val.student_accuracy:.2f} % on the val split; the student "
            f"alone right on {val.student_only} digits, the teacher alone on {val.teacher_only}: sign test p = "
            f"{p:.3f})")
    if p >= STUDENT_BETTER_P:
        return replace(acc, model=TEACHER, reason=f"the teacher {t} fits the budget and the distilled {s} is not "
                                                  f"more accurate beyond noise {both}; the teacher is deployed")
    return replace(acc, model=STUDENT, reason=f"the distilled {s} is more accurate than the teacher {t}, which fits "
                                              f"the budget too {both}; the student is deployed")


def compare_on_val(teacher: Any, student_ck: Path | None, splits: Any) -> ValComparison:
    """Teacher vs the distilled student (None: not trained) on the val split, fp32 torch on the CPU."""
    from edgekd.train.checkpoint import load_student_checkpoint
    from edgekd_runtime.errors import UserInputError

    if not len(splits.val.y):
        raise UserInputError("the teacher and the student are compared on the val split, which is empty: set "
                             "data.val_fraction above 0, or pass --deploy-teacher never")
    t_ok = _correct(teacher.model, splits.val.x, splits.val.y, 28)
    if student_ck is None:
        return ValComparison(float(t_ok.mean()))
    model, ck = load_student_checkpoint(student_ck)
    s_ok = _correct(model, splits.val.x, splits.val.y, int(ck.get("input_size") or 28))
    return ValComparison(float(t_ok.mean()), float(s_ok.mean()), int(np.sum(s_ok & ~t_ok)), int(np.sum(t_ok & ~s_ok)))


def _correct(model: Any, x: np.ndarray, y: np.ndarray, input_size: int) -> np.ndarray:
    """Per digit: does `model` classify the uint8 canvas `x` (resized to `input_size`) as `y`?"""
    import torch

    from edgekd.train.batches import predict_labels

    return predict_labels(model, x, torch.device("cpu"), input_size) == np.asarray(y)
