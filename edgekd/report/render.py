"""Render `report.md` and its figures from `report.json`.

report.json is the single source of truth; `edgekd report RUN_DIR` re-renders the markdown and PNGs from it
(and from the metrics.jsonl files it points to), so the two can never disagree. Its sections and their keys are
the dataclasses of `edgekd.report.schema` (`Report`); this module reads nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd_runtime.atomic import atomic_write_text
from edgekd_runtime.errors import UserInputError

from . import figures
from .html import write_html
from .schema import ArtifactRow, ImagePath, Report, ReportFormatError


def fmt_pct(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def fmt_num(x: float | int | None, fmt: str = "{:,}") -> str:
    return "—" if x is None else fmt.format(x)


def fmt_kb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1024:,.1f} kB"


def fmt_ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def load_report(run_dir: Path) -> Report:
    """The run's report.json, typed; a missing, unreadable or malformed file is a UserInputError naming it."""
    path = run_dir / "report.json"
    if not path.is_file():
        raise UserInputError(f"{run_dir}: no report.json; is this a run directory made by `edgekd run`? "
                             f"(run it again to finish an interrupted run)")
    try:
        return Report.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise UserInputError(f"{path}: not valid JSON ({e}); re-run `edgekd run` with the same options") from None
    except ReportFormatError as e:
        raise ReportFormatError(f"{path}: {e}; it was not written by this edgekd: re-run `edgekd run` with the same "
                                f"options") from None


def report_json(run_dir: Path) -> dict[str, Any]:
    """What `edgekd report RUN --json` prints: a lines run's report.json as written (its sections are not the
    digit `Report`'s), else the typed `load_report`'s."""
    lines = _lines_report(run_dir)
    return lines if lines is not None else load_report(run_dir).to_dict()


def render_report(run_dir: str | Path) -> Path:
    """Write report.md, report.html and the PNG figures for the run in `run_dir` (a lines run's by
    edgekd.report.lines); return the report.md path."""
    run_dir = Path(run_dir)
    lines = _lines_report(run_dir)
    if lines is not None:
        from .lines import render_lines_report

        return render_lines_report(run_dir, lines)
    rep = load_report(run_dir)
    figs = _figures(run_dir, rep)
    md = _markdown(rep, figs)
    atomic_write_text(run_dir / "report.md", md)
    write_html(md, run_dir / "report.html", f"edgekd run {rep.run.name if rep.run else ''}")
    return run_dir / "report.md"


def _lines_report(run_dir: Path) -> dict[str, Any] | None:
    """report.json of an `edgekd run --task lines` as written (edgekd.pipeline.lines_report), else None."""
    try:
        raw = json.loads((run_dir / "report.json").read_text())
    except (OSError, ValueError):
        return None  # load_report says what is wrong
    return raw if isinstance(raw, dict) and raw.get("task") == "lines" else None


def _figures(run_dir: Path, rep: Report) -> dict[str, str]:
    out: dict[str, str] = {}
    curves = {m.role: figures.read_metrics(run_dir / m.metrics) for m in rep.models if m.metrics}
    if any(curves.values()):
        figures.training_curves(curves, run_dir / "training_curves.png")
        out["curves"] = "training_curves.png"
    dep = rep.deployed
    if dep is not None and dep.confusion:
        figures.confusion_matrix_png(dep.confusion, dep.labels or [str(i) for i in range(len(dep.confusion))],
                                     f"Deployed model ({dep.path}) on the test split",
                                     run_dir / "confusion_matrix.png")
        out["confusion"] = "confusion_matrix.png"
    plot = rep.budget.plot if rep.budget is not None else None
    if plot and (run_dir / plot).is_file():
        out["budget"] = plot
    return out


def _markdown(rep: Report, figs: dict[str, str]) -> str:
    L = [f"# edgekd run `{rep.run.name if rep.run and rep.run.name else '?'}`\n", _headline(rep), ""]
    if rep.run is not None:
        L.append(f"Created {rep.run.created} in {rep.run.wall_time_s or 0:.0f} s"
                 + (" (quick mode)" if rep.run.quick else "") + ".\n")
    L += _models_table(rep)
    L += _artifacts_table(rep.artifacts)
    L += image_path_table(rep.image_path)
    L += _latency_model_line(rep)
    L += _budget_section(rep, figs)
    if "curves" in figs:
        L += ["## Training", "", f"![training curves]({figs['curves']})", ""]
    if "confusion" in figs:
        L += ["## Deployed model", "", f"![confusion matrix]({figs['confusion']})", ""]
    if rep.checks:
        L += ["## Checks", "", "| check | result | detail |", "|---|---|---|"]
        L += [f"| {c.name} | {'ok' if c.ok else '**FAILED**'} | {c.detail} |" for c in rep.checks]
        L.append("")
    if rep.run is not None and rep.run.versions:
        L += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in rep.run.versions.items()), ""]
    L += ["Re-render this page with `edgekd report RUN_DIR`. Machine-readable numbers: `report.json`.", ""]
    return "\n".join(L)


def _gain_interval(rep: Report) -> str:
    """The gain's paired interval and, when it contains 0, that the test split cannot tell the two apart."""
    g = rep.kd_gain
    if g is None:
        return ""
    noise = "; within noise: the test split cannot tell the two apart" if g.within_noise else ""
    mode = f", {g.kd_mode} KD" if g.kd_mode else ""
    return (f", {100 * g.level:.0f} % CI {100 * g.low:+.2f} .. {100 * g.high:+.2f} pp over {g.n:,} paired test "
            f"digits{mode}{noise}")


def _headline(rep: Report) -> str:
    """One paragraph: what is deployed and why, what distillation gained, whether every check passed."""
    teacher, scratch, dist = rep.model("teacher"), rep.model("scratch"), rep.model("distilled")
    dep, target, choice = rep.deployed, rep.target, rep.deployment
    headline = []
    shown = teacher if choice is not None and choice.model == "teacher" else dist
    if shown and dep:
        what = "teacher" if shown is teacher else "student"
        headline.append(f"**Deployed:** `{dep.path}` — {fmt_pct(dep.accuracy)} test accuracy through edgekd_runtime, "
                        f"{what} `{shown.arch}` for **{target.profile_name if target else '?'}** "
                        f"({target.precision if target else '?'}).")
    if choice is not None:
        headline.append(f"**Why this model:** {choice.reason}.")
    if (teacher and scratch and dist and teacher.test_accuracy is not None and scratch.test_accuracy is not None
            and dist.test_accuracy is not None):
        gap = teacher.test_accuracy - scratch.test_accuracy
        gain = dist.test_accuracy - scratch.test_accuracy
        rec = f", recovering {100 * gain / gap:.0f}% of the teacher–scratch gap" if gap > 0 else ""
        headline.append(f"**Distillation:** {fmt_pct(dist.test_accuracy)} vs {fmt_pct(scratch.test_accuracy)} "
                        f"trained from scratch ({100 * gain:+.2f} pp{_gain_interval(rep)}){rec}; teacher "
                        f"{fmt_pct(teacher.test_accuracy)}.")
    failed = rep.failed_checks
    headline.append("**Checks:** " + ("all passed." if not failed else
                                      "; ".join(f"FAILED {c.name}: {c.detail}" for c in failed)))
    return " ".join(headline)


def _models_table(rep: Report) -> list[str]:
    target = rep.target
    name = target.profile_name if target else "?"
    L = ["## Teacher vs student", "",
         f"Predicted latency is for **{name}**"
         + (" (built-in estimate: calibrate on the board with `edgekd-rt calibrate`)"
            if target and target.profile_is_estimate else "")
         + "; measured latency is on this machine (edgekd_runtime, p50).", "",
         "| model | architecture | test acc. | params | MACs | flash | peak RAM | predicted latency (ms) | "
         "measured here (ms) |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for role in ("teacher", "scratch", "distilled"):
        m = rep.model(role)
        if m:
            L.append(f"| {role} | `{m.arch}` | {fmt_pct(m.test_accuracy)} | {fmt_num(m.params)} | {fmt_num(m.macs)} | "
                     f"{fmt_kb(m.flash_bytes)} | {fmt_kb(m.peak_ram_bytes)} | {fmt_ms(m.predicted_latency_ms)} | "
                     f"{fmt_ms(m.measured_latency_ms)} |")
    return L + [""]


def _artifacts_table(arts: list[ArtifactRow]) -> list[str]:
    if not arts:
        return []
    ok = {True: "yes", False: "**NO**", None: "—"}
    L = ["## Artifacts", "",
         "Accuracy is measured on the test split through edgekd_runtime (what the board computes); parity is "
         "against the reference the artifact was converted from.", "",
         "| file | format | precision | size | test acc. | max abs diff | top-1 agreement | parity | "
         "p50 (ms) | p99 (ms) | within budget |",
         "|---|---|---|---:|---:|---:|---:|---|---:|---:|---|"]
    for a in arts:
        par = a.parity or {}
        L.append(f"| `{a.path}` | {a.format} | {a.precision} | {fmt_kb(a.size_bytes)} | {fmt_pct(a.accuracy)} | "
                 f"{fmt_num(par.get('max_abs_diff'), '{:.2e}')} | {fmt_pct(par.get('top1_agreement'))} | "
                 f"{ok[par.get('passed')]} | {fmt_ms(a.p50_ms)} | {fmt_ms(a.p99_ms)} | {ok[a.budget_ok]} |")
    return L + [""]


def image_path_table(ip: ImagePath | None) -> list[str]:
    """The deployed artifact's image path, stage by stage (empty without one)."""
    if ip is None:
        return []
    L = ["## Image path", "",
         f"From an image file to an answer with `{ip.artifact}` through edgekd_runtime on this machine: "
         f"{ip.image}, {ip.runs} runs (`edgekd-rt bench MODEL --image FILE` measures the same on a board).", "",
         "| stage | p50 (ms) | p90 (ms) | p99 (ms) | mean (ms) |", "|---|---:|---:|---:|---:|"]
    for name, s in ip.stages.items():
        L.append(f"| {name} | {fmt_ms(s.get('p50_ms'))} | {fmt_ms(s.get('p90_ms'))} | {fmt_ms(s.get('p99_ms'))} | "
                 f"{fmt_ms(s.get('mean_ms'))} |")
    return L + [""]


def _latency_model_line(rep: Report) -> list[str]:
    lm = rep.latency_model
    if lm is None:
        return []
    return [f"Latency model check on this machine: the `host` profile predicts {lm.host_estimate_ms:.3f} ms for "
            f"`{lm.artifact}`, measured p50 is {lm.measured_p50_ms:.3f} ms (ratio {lm.ratio:.2f}). "
            "Calibrate your board with `edgekd-rt calibrate` for board-accurate predictions.", ""]


def _budget_section(rep: Report, figs: dict[str, str]) -> list[str]:
    bud = rep.budget
    if bud is None:
        return []
    binding = (f" (binding limit: {bud.binding}, {bud.binding_usage_pct:.1f}% used)"
               if bud.binding and bud.binding_usage_pct is not None else "")
    feasible, evaluated = ("?" if n is None else n for n in (bud.feasible, bud.evaluated))
    L = ["## Budget", "", f"Limits: `{json.dumps(rep.target.budget if rep.target else {})}`. "
         f"{feasible} of {evaluated} candidate students fit; chosen: `{bud.chosen}`{binding}.", ""]
    t = bud.teacher
    if t and t.get("name"):
        L += [f"The teacher `{t['name']}` was costed as a candidate too: {fmt_num(t.get('params'))} params, "
              f"{fmt_kb(t.get('flash_bytes'))} flash, {fmt_ms(t.get('latency_ms'))} ms predicted: "
              + ("it **fits** the budget." if t.get("feasible") else
                 f"it does not fit ({', '.join(t.get('violated') or [])})."), ""]
    elif t:
        L += [f"The teacher was not a candidate: {t.get('note')}.", ""]
    if bud.notes:  # what the latency figures rest on (estimate or calibration, their margin)
        L += [f"- {n}" for n in bud.notes] + [""]
    if "budget" in figs:
        L += [f"![budget search]({figs['budget']})", ""]
    return L
