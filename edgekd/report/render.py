"""Render `report.md` and its figures from `report.json`.

report.json is the single source of truth; `edgekd report RUN_DIR` re-renders the markdown and PNGs from it
(and from the metrics.jsonl files it points to), so the two can never disagree. Keys used here::

    run:        {name, created, wall_time_s, quick, config, versions}
    target:     {profile: {name, estimate, ...}, budget: {...}, precision}
    models:     [{role: teacher|scratch|distilled, arch, test_accuracy, params, macs, flash_bytes,
                  peak_ram_bytes, predicted_latency_ms, measured_latency_ms, metrics: "path/metrics.jsonl"}]
    artifacts:  [{path, format, precision, size_bytes, accuracy, parity: {max_abs_diff, top1_agreement,
                  passed}, p50_ms, p99_ms, budget_ok}]
    deployed:   {path, accuracy, labels, confusion}
    budget:     {chosen, plot, feasible, evaluated, binding}
    checks:     [{name, ok, detail}]
    image_path: {artifact, image, runs, stages: {decode|preprocess|inference|total: {p50_ms, p90_ms, p99_ms,
                 mean_ms}}} or null
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd_runtime.atomic import atomic_write_text
from edgekd_runtime.errors import UserInputError

from . import figures


def _pct(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: float | int | None, fmt: str = "{:,}") -> str:
    return "—" if x is None else fmt.format(x)


def _kb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1024:,.1f} kB"


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def load_report(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "report.json"
    if not path.is_file():
        raise UserInputError(f"{run_dir}: no report.json; is this a run directory made by `edgekd run`? "
                             f"(run it again to finish an interrupted run)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"{path}: not valid JSON ({e}); re-run `edgekd run` with the same options") from None


def render_report(run_dir: str | Path) -> Path:
    """Write report.md and the PNG figures for the run in `run_dir`; return the report.md path."""
    run_dir = Path(run_dir)
    rep = load_report(run_dir)
    figs = _figures(run_dir, rep)
    atomic_write_text(run_dir / "report.md", _markdown(rep, figs))
    return run_dir / "report.md"


def _figures(run_dir: Path, rep: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    curves = {m["role"]: figures.read_metrics(run_dir / m["metrics"]) for m in rep.get("models", [])
              if m.get("metrics")}
    if any(curves.values()):
        figures.training_curves(curves, run_dir / "training_curves.png")
        out["curves"] = "training_curves.png"
    dep = rep.get("deployed") or {}
    if dep.get("confusion"):
        figures.confusion_matrix_png(dep["confusion"], dep.get("labels") or [str(i) for i in
                                     range(len(dep["confusion"]))],
                                     f"Deployed student ({dep.get('path')}) on the test split",
                                     run_dir / "confusion_matrix.png")
        out["confusion"] = "confusion_matrix.png"
    plot = (rep.get("budget") or {}).get("plot")
    if plot and (run_dir / plot).is_file():
        out["budget"] = plot
    return out


def _image_path_table(ip: dict[str, Any] | None) -> list[str]:
    """The deployed artifact's image path, stage by stage (empty without one)."""
    if not ip:
        return []
    L = ["## Image path", "",
         f"From an image file to an answer with `{ip['artifact']}` through edgekd_runtime on this machine: "
         f"{ip['image']}, {ip['runs']} runs (`edgekd-rt bench MODEL --image FILE` measures the same on a board).", "",
         "| stage | p50 (ms) | p90 (ms) | p99 (ms) | mean (ms) |", "|---|---:|---:|---:|---:|"]
    for name, s in ip["stages"].items():
        L.append(f"| {name} | {_ms(s.get('p50_ms'))} | {_ms(s.get('p90_ms'))} | {_ms(s.get('p99_ms'))} | "
                 f"{_ms(s.get('mean_ms'))} |")
    return L + [""]


def _markdown(rep: dict[str, Any], figs: dict[str, str]) -> str:
    run, target = rep.get("run", {}), rep.get("target", {})
    prof = target.get("profile") or {}
    models = {m["role"]: m for m in rep.get("models", [])}
    dep = rep.get("deployed") or {}
    L: list[str] = []
    L.append(f"# edgekd run `{run.get('name', '?')}`\n")
    teacher, scratch, dist = models.get("teacher"), models.get("scratch"), models.get("distilled")
    headline = []
    if dist and dep:
        headline.append(f"**Deployed:** `{dep.get('path')}` — {_pct(dep.get('accuracy'))} test accuracy through "
                        f"edgekd_runtime, student `{dist.get('arch')}` for **{prof.get('name', '?')}** "
                        f"({target.get('precision', '?')}).")
    if teacher and scratch and dist and None not in (teacher.get("test_accuracy"), scratch.get("test_accuracy"),
                                                     dist.get("test_accuracy")):
        gap = teacher["test_accuracy"] - scratch["test_accuracy"]
        gain = dist["test_accuracy"] - scratch["test_accuracy"]
        rec = f", recovering {100 * gain / gap:.0f}% of the teacher–scratch gap" if gap > 0 else ""
        headline.append(f"**Distillation:** {_pct(dist['test_accuracy'])} vs {_pct(scratch['test_accuracy'])} "
                        f"trained from scratch ({100 * gain:+.2f} pp){rec}; teacher {_pct(teacher['test_accuracy'])}.")
    failed = [c for c in rep.get("checks", []) if not c.get("ok")]
    headline.append("**Checks:** " + ("all passed." if not failed else
                                      "; ".join(f"FAILED {c['name']}: {c.get('detail', '')}" for c in failed)))
    L += [" ".join(headline), ""]
    if run:
        L.append(f"Created {run.get('created', '?')} in {run.get('wall_time_s', 0):.0f} s"
                 + (" (quick mode)" if run.get("quick") else "") + ".\n")

    L += ["## Teacher vs student", "",
          f"Predicted latency is for **{prof.get('name', '?')}**"
          + (" (built-in estimate: calibrate on the board with `edgekd-rt calibrate`)" if prof.get("estimate") else "")
          + "; measured latency is on this machine (edgekd_runtime, p50).", "",
          "| model | architecture | test acc. | params | MACs | flash | peak RAM | predicted latency (ms) | "
          "measured here (ms) |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for role in ("teacher", "scratch", "distilled"):
        m = models.get(role)
        if m:
            L.append(f"| {role} | `{m.get('arch')}` | {_pct(m.get('test_accuracy'))} | {_num(m.get('params'))} | "
                     f"{_num(m.get('macs'))} | {_kb(m.get('flash_bytes'))} | {_kb(m.get('peak_ram_bytes'))} | "
                     f"{_ms(m.get('predicted_latency_ms'))} | {_ms(m.get('measured_latency_ms'))} |")
    L.append("")

    arts = rep.get("artifacts", [])
    if arts:
        L += ["## Artifacts", "",
              "Accuracy is measured on the test split through edgekd_runtime (what the board computes); parity is "
              "against the reference the artifact was converted from.", "",
              "| file | format | precision | size | test acc. | max abs diff | top-1 agreement | parity | "
              "p50 (ms) | p99 (ms) | within budget |",
              "|---|---|---|---:|---:|---:|---:|---|---:|---:|---|"]
        for a in arts:
            par = a.get("parity") or {}
            ok = {True: "yes", False: "**NO**", None: "—"}
            L.append(f"| `{a['path']}` | {a.get('format')} | {a.get('precision')} | {_kb(a.get('size_bytes'))} | "
                     f"{_pct(a.get('accuracy'))} | {_num(par.get('max_abs_diff'), '{:.2e}')} | "
                     f"{_pct(par.get('top1_agreement'))} | {ok[par.get('passed')]} | {_ms(a.get('p50_ms'))} | "
                     f"{_ms(a.get('p99_ms'))} | {ok[a.get('budget_ok')]} |")
        L.append("")

    L += _image_path_table(rep.get("image_path"))
    lm = rep.get("latency_model")
    if lm:
        L += [f"Latency model check on this machine: the `host` profile predicts {lm['host_estimate_ms']:.3f} ms for "
              f"`{lm['artifact']}`, measured p50 is {lm['measured_p50_ms']:.3f} ms (ratio {lm['ratio']:.2f}). "
              "Calibrate your board with `edgekd-rt calibrate` for board-accurate predictions.", ""]
    bud = rep.get("budget") or {}
    if bud:
        L += ["## Budget", "", f"Limits: `{json.dumps(target.get('budget') or {})}`. "
              f"{bud.get('feasible', '?')} of {bud.get('evaluated', '?')} candidate students fit; chosen: "
              f"`{bud.get('chosen')}`" + (f" (binding limit: {bud['binding']})" if bud.get("binding") else "")
              + ".", ""]
        if bud.get("notes"):  # what the latency figures rest on (estimate or calibration, their margin)
            L += [f"- {n}" for n in bud["notes"]] + [""]
        if "budget" in figs:
            L += [f"![budget search]({figs['budget']})", ""]
    if "curves" in figs:
        L += ["## Training", "", f"![training curves]({figs['curves']})", ""]
    if "confusion" in figs:
        L += ["## Deployed student", "", f"![confusion matrix]({figs['confusion']})", ""]
    if rep.get("checks"):
        L += ["## Checks", "", "| check | result | detail |", "|---|---|---|"]
        L += [f"| {c['name']} | {'ok' if c.get('ok') else '**FAILED**'} | {c.get('detail', '')} |"
              for c in rep["checks"]]
        L.append("")
    if run.get("versions"):
        L += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in run["versions"].items()), ""]
    L += ["Re-render this page with `edgekd report RUN_DIR`. Machine-readable numbers: `report.json`.", ""]
    return "\n".join(L)
