"""The report of `edgekd run --task lines`: report.md, report.html and the figures, from report.json.

Figures drawn from report.json (so `edgekd report RUN_DIR` redraws them): training curves, the character
confusion of the deployed artifact, its coverage-accuracy plot. `test_readings.png` (test lines with their
readings) needs the line images, so the run draws it when it builds report.json (`readings_png`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekd_runtime.atomic import atomic_write_text

from . import figures
from .html import write_html
from .render import fmt_kb, fmt_ms, fmt_num, fmt_pct, image_path_table
from .schema import ImagePath

ROLES = ("teacher", "scratch", "distilled")


def readings_png(canvases: np.ndarray, samples: Sequence[dict[str, Any]], path: Path) -> Path:
    """Test line canvases (N, H, W) uint8, light on dark) drawn dark on light as written, two columns, each with
    `#index text → reading (confidence)`; wrong readings in red."""
    plt = figures._plt()
    cols = 2
    rows = max(1, -(-len(samples) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 0.9 * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, s in zip(axes.T.flat, samples):
        ax.imshow(255 - canvases[s["index"]], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ok = s["reading"] == s["text"]
        ax.set_title(f"#{s['index']}  {s['text']} → {s['reading'] or '(nothing)'}  ({s['confidence']:.2f})",
                     fontsize=8, loc="left", color="black" if ok else "#d62728")
    fig.tight_layout()
    return figures._save(fig, path)


def render_lines_report(run_dir: Path, rep: dict[str, Any]) -> Path:
    """Write report.md, report.html and the figures of a lines run; return the report.md path."""
    figs = _figures(run_dir, rep)
    md = _markdown(rep, figs)
    atomic_write_text(run_dir / "report.md", md)
    write_html(md, run_dir / "report.html", f"edgekd run {rep.get('run', {}).get('name', '')} (lines)")
    return run_dir / "report.md"


def _figures(run_dir: Path, rep: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    curves = {m["role"]: figures.read_metrics(run_dir / m["metrics"]) for m in rep.get("models", [])
              if m.get("metrics")}
    if any(curves.values()):
        figures.training_curves(curves, run_dir / "training_curves.png")
        out["curves"] = "training_curves.png"
    dep = rep.get("deployed") or {}
    conf = dep.get("confusion") or {}
    if conf.get("matrix"):
        figures.confusion_matrix_png(conf["matrix"], conf["labels"], f"Characters read by {dep.get('path')} "
                                     f"(∅: inserted / dropped)", run_dir / "char_confusion.png")
        out["confusion"] = "char_confusion.png"
    if (dep.get("confidence") or {}).get("coverage"):
        figures.coverage_png(dep["confidence"], run_dir / "coverage.png")
        out["coverage"] = "coverage.png"
    for key, name in (("budget", (rep.get("budget") or {}).get("plot")), ("grid", dep.get("grid"))):
        if name and (run_dir / name).is_file():
            out[key] = name
    return out


def _headline(rep: dict[str, Any]) -> list[str]:
    target, dep = rep.get("target", {}), rep.get("deployed") or {}
    models = {m["role"]: m for m in rep.get("models", [])}
    board = (target.get("profile") or {}).get("name", "?")
    h = []
    if dep:
        h.append(f"**Deployed:** `{dep.get('path')}` reads {fmt_pct(dep.get('string_accuracy'))} of the "
                 f"{dep.get('num_samples')} test lines exactly (CER {fmt_pct(dep.get('cer'))}) through edgekd_runtime; "
                 f"student `{(models.get('distilled') or {}).get('arch')}` for **{board}** "
                 f"({target.get('precision', '?')}).")
    t, s, d = (models.get(r) or {} for r in ROLES)
    if None not in (s.get("test_string_accuracy"), d.get("test_string_accuracy")):
        gain = d["test_string_accuracy"] - s["test_string_accuracy"]
        h.append(f"**Distillation:** {fmt_pct(d['test_string_accuracy'])} string accuracy, CER "
                 f"{fmt_pct(d.get('test_cer'))} vs {fmt_pct(s['test_string_accuracy'])}, "
                 f"CER {fmt_pct(s.get('test_cer'))} "
                 f"trained from scratch ({100 * gain:+.2f} pp); teacher {fmt_pct(t.get('test_string_accuracy'))}, "
                 f"CER {fmt_pct(t.get('test_cer'))}.")
    lat = rep.get("line_latency") or {}
    if lat:
        h.append(f"**An {lat['length']}-character line:** {fmt_ms(lat.get('predicted_board_ms'))} ms predicted on "
                 f"{lat.get('board')}, {fmt_ms(lat.get('measured_inference_ms'))} ms measured here (inference; "
                 f"{fmt_ms(lat.get('measured_total_ms'))} ms from the photo file through read()'s stages).")
    failed = [c for c in rep.get("checks", []) if not c.get("ok")]
    h.append("**Checks:** " + ("all passed." if not failed else
                               "; ".join(f"FAILED {c['name']}: {c.get('detail', '')}" for c in failed)))
    return [" ".join(h), ""]


def _models_table(rep: dict[str, Any]) -> list[str]:
    prof = (rep.get("target") or {}).get("profile") or {}
    width = (rep.get("data") or {}).get("width", "?")
    L = ["## Teacher vs student", "",
         f"CER and string accuracy on the test lines (torch fp32). Predicted latency is per line of {width} px on "
         f"**{prof.get('name', '?')}**" + (" (a built-in estimate: calibrate the board with `edgekd-rt calibrate`)"
                                          if prof.get("estimate") else "")
         + "; measured latency is the deployed artifact's on this machine (edgekd_runtime, p50).", "",
         "| model | architecture | CER | string acc. | params | MACs | flash | peak RAM | predicted (ms) | "
         "measured here (ms) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in rep.get("models", []):
        L.append(f"| {m['role']} | `{m.get('arch')}` | {fmt_pct(m.get('test_cer'))} | "
                 f"{fmt_pct(m.get('test_string_accuracy'))} | {fmt_num(m.get('params'))} | {fmt_num(m.get('macs'))} | "
                 f"{fmt_kb(m.get('flash_bytes'))} | {fmt_kb(m.get('peak_ram_bytes'))} | "
                 f"{fmt_ms(m.get('predicted_latency_ms'))} | {fmt_ms(m.get('measured_latency_ms'))} |")
    return L + [""]


def _per_length_table(rep: dict[str, Any]) -> list[str]:
    """String accuracy (CER) per string length: each model in torch, the deployed artifact through the runtime."""
    cols = [(m["role"], m.get("per_length") or {}) for m in rep.get("models", [])]
    dep = rep.get("deployed") or {}
    cols.append((f"deployed `{dep.get('path')}`", dep.get("per_length") or {}))
    lengths = sorted({int(k) for _, pl in cols for k in pl})
    if not lengths:
        return []
    L = ["## Accuracy per length", "", "String accuracy (CER) on the test lines of each length.", "",
         "| length | lines | " + " | ".join(c for c, _ in cols) + " |", "|---:|---:|" + "---:|" * len(cols)]
    for k in lengths:
        n = next((pl[str(k)]["n"] for _, pl in cols if str(k) in pl), 0)
        cells = [f"{fmt_pct(pl[str(k)]['string_acc'], 1)} ({fmt_pct(pl[str(k)]['cer'], 1)})" if str(k) in pl else "—"
                 for _, pl in cols]
        L.append(f"| {k} | {n} | " + " | ".join(cells) + " |")
    return L + [""]


def _artifacts_table(rep: dict[str, Any]) -> list[str]:
    arts = rep.get("artifacts", [])
    if not arts:
        return []
    ok = {True: "yes", False: "**NO**", None: "—"}
    L = ["## Artifacts", "",
         "String accuracy and CER on the test lines through edgekd_runtime (what the board computes); parity is "
         "against the reference the artifact was converted from (greedy strings agree; int8 CER at most 0.3 pp "
         "higher).", "",
         "| file | format | precision | size | string acc. | CER | max abs diff | strings agree | CER vs ref. | "
         "parity | p50 (ms) | p99 (ms) | within budget |",
         "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for a in arts:
        par = a.get("parity") or {}
        inc = par.get("cer_increase")
        L.append(f"| `{a['path']}` | {a.get('format')}{' (any width)' if a.get('dynamic_width') else ''} | "
                 f"{a.get('precision')} | {fmt_kb(a.get('size_bytes'))} | {fmt_pct(a.get('string_accuracy'))} | "
                 f"{fmt_pct(a.get('cer'))} | {fmt_num(par.get('max_abs_diff'), '{:.2e}')} | "
                 f"{fmt_pct(par.get('string_agreement'))} | {'—' if inc is None else f'{100 * inc:+.2f} pp'} | "
                 f"{ok[par.get('passed')]} | {fmt_ms(a.get('p50_ms'))} | {fmt_ms(a.get('p99_ms'))} | "
                 f"{ok[a.get('budget_ok')]} |")
    return L + [""]


def _latency_section(rep: dict[str, Any]) -> list[str]:
    lat = rep.get("line_latency") or {}
    if not lat:
        return []
    L = ["## Latency of an 8-character line", "",
         f"The deployed {lat.get('precision')} model `{(rep.get('deployed') or {}).get('path')}` takes lines of "
         f"{lat.get('width_px')} px (up to about 12 characters), so an {lat.get('length')}-character line costs one "
         "run at that width.", "",
         "| | ms |", "|---|---:|",
         f"| predicted on {lat.get('board')} (cost model) | {fmt_ms(lat.get('predicted_board_ms'))} |",
         f"| predicted on this machine (`host` profile) | {fmt_ms(lat.get('host_estimate_ms'))} |",
         f"| measured here: inference on the line's canvas (p50) | {fmt_ms(lat.get('measured_inference_ms'))} |",
         f"| measured here: the interpreter at {lat.get('width_px')} px (p50) | "
         f"{fmt_ms(lat.get('measured_interpreter_ms'))} |",
         f"| measured here: photo file → reading, all stages (p50) | {fmt_ms(lat.get('measured_total_ms'))} |", ""]
    ip = rep.get("image_path")
    keys = ("artifact", "image", "decoded_shape", "runs", "stages")  # the digit report's section (and table)
    return L + image_path_table(ImagePath.from_dict({k: ip.get(k) for k in keys}) if ip else None)


def _confidence_section(rep: dict[str, Any], figs: dict[str, str]) -> list[str]:
    c = (rep.get("deployed") or {}).get("confidence") or {}
    if not c:
        return []
    L = ["## Confidence you can act on", "",
         f"The string confidence is calibrated on the {c.get('fitted_on') or '—'} split (temperature "
         f"{c.get('temperature', 1.0):.3f}, stored in the manifest); on the test lines ({c.get('source')}) its "
         f"ECE goes from {c.get('ece_before', float('nan')):.3f} to {c.get('ece_after', float('nan')):.3f}. "
         "Rejecting the least confident readings leaves these accurate:", ""]
    for key, target in (("threshold_99", "99 %"), ("threshold_95", "95 %")):
        t = c.get(key)
        L.append(f"- {target} string accuracy: " + ("not reached at any threshold." if not t else
                 f"accept readings with confidence >= {t['threshold']:.3f} ({fmt_pct(t['coverage'], 1)} of the lines "
                 f"kept, {fmt_pct(t['accuracy'], 2)} of them right)."))
    L += ["", "| rejected | kept | string accuracy of the kept |", "|---:|---:|---:|"]
    L += [f"| {p['reject_percent']:.0f} % | {fmt_pct(p['coverage'], 1)} | {fmt_pct(p['accuracy'])} |"
          for p in c.get("coverage", [])]
    L.append("")
    if "coverage" in figs:
        L += [f"![coverage vs accuracy]({figs['coverage']})", ""]
    return L


def _markdown(rep: dict[str, Any], figs: dict[str, str]) -> str:
    run, target = rep.get("run", {}), rep.get("target", {})
    L = [f"# edgekd run `{run.get('name', '?')}` — text lines\n"] + _headline(rep)
    if run:
        L.append(f"Created {run.get('created', '?')} in {run.get('wall_time_s', 0):.0f} s"
                 + (" (quick mode)" if run.get("quick") else "") + ".\n")
    L += _models_table(rep) + _per_length_table(rep) + _artifacts_table(rep) + _latency_section(rep)
    L += _confidence_section(rep, figs)
    if "confusion" in figs:
        L += ["## Character confusion", "", "True characters (rows) against what the deployed artifact read "
              "(columns), aligned by edit distance; ∅ collects dropped (column) and inserted (row) characters.", "",
              f"![character confusion]({figs['confusion']})", ""]
    if "grid" in figs:
        L += ["## Test lines and their readings", "", "The first test lines, written as the data holds them, with "
              "the deployed artifact's reading and confidence (wrong readings in red).", "",
              f"![test lines]({figs['grid']})", ""]
    bud = rep.get("budget") or {}
    if bud:
        L += ["## Budget", "", f"Limits: `{json.dumps(target.get('budget') or {})}`. {bud.get('feasible', '?')} of "
              f"{bud.get('evaluated', '?')} candidate line students fit; chosen: `{bud.get('chosen')}`.", ""]
        L += [f"- {n}" for n in bud.get("notes") or []] + ([""] if bud.get("notes") else [])
        L += [f"![budget search]({figs['budget']})", ""] if "budget" in figs else []
    if "curves" in figs:
        L += ["## Training", "", "Validation string accuracy per epoch (the checkpoint is chosen on val CER).", "",
              f"![training curves]({figs['curves']})", ""]
    if rep.get("checks"):
        L += ["## Checks", "", "| check | result | detail |", "|---|---|---|"]
        L += [f"| {c['name']} | {'ok' if c.get('ok') else '**FAILED**'} | {c.get('detail', '')} |"
              for c in rep["checks"]]
        L.append("")
    if run.get("versions"):
        L += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in run["versions"].items()), ""]
    L += ["Re-render this page with `edgekd report RUN_DIR`. Machine-readable numbers: `report.json`.", ""]
    return "\n".join(L)
