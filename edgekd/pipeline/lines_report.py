"""report.json of `edgekd run --task lines`: the line models, the bundle's artifacts, the deployed artifact read
through edgekd_runtime on the test lines (CER, string accuracy, per length, character confusion, confidence and
coverage, sample readings), the latency of an 8-character line (predicted on the board, measured here), checks.

Shares the digit report's shape where the two tasks agree (run, target, budget, artifacts, checks, image_path,
latency_model); `task: lines` tells `edgekd report` which renderer to use (edgekd.report.lines).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import results
from .config import PipelineConfig
from .tasks import REPORT_LINE_LENGTH

INT8_CER_INCREASE_PP = 0.3  # issue 12: the deployed int8 artifact's CER at most 0.3 pp (absolute) above torch fp32
GAP = "∅"  # the character confusion's row of insertions and column of deletions
SAMPLE_LINES = 24  # test lines drawn with their readings in the report
READINGS_PNG = "test_readings.png"


def build_lines_report(cfg: PipelineConfig, run_dir: Path, splits: Any, profile: Any, budget: Any,
                       search: dict[str, Any], bundle: Path, bench: dict[str, Any], teacher_ck: str) -> dict[str, Any]:
    from edgekd.budget.cost import student_cost
    from edgekd.export.bundle import export_versions
    from edgekd.report.lines import readings_png
    from edgekd_converters.bundle import deployable_artifact
    from edgekd_runtime.manifest import Manifest
    from edgekd_runtime.sysinfo import utc_timestamp

    manifest = Manifest.load(bundle)
    prec, chosen = budget.precision, search["chosen"]
    cost = student_cost(chosen, splits.num_classes, line_width=splits.spec.width)
    art = manifest.deployed_artifact() or deployable_artifact(manifest, prec)
    dep = deployed_readings(bundle, art, manifest, splits.test)
    readings_png(splits.test.x, dep["samples"], run_dir / READINGS_PNG)
    dep["grid"] = READINGS_PNG
    measured = bench[art.path]["p50_ms"]
    models = [teacher_row(cfg, teacher_ck, splits, profile, run_dir),
              *(student_row(role, run_dir, chosen, cost, profile, prec, measured) for role in ("scratch", "distilled"))]
    artifacts, checks = artifact_rows(bundle, bench, prec, profile)
    fits = next((r["budget_ok"] for r in artifacts if r["path"] == art.path), None)
    checks = conversion_checks(manifest, art, prec, fits) + checks + deployed_checks(manifest, art, dep)
    ip = bench[art.path].get("image_path")
    image_path = {"artifact": art.path, **{k: v for k, v in ip.items() if k != "samples_ms"}} if ip else None
    return {
        "format": "edgekd-report", "format_version": 1, "task": "lines",
        "run": {"created": utc_timestamp(), "quick": cfg.quick, "config": cfg.to_dict(),
                "fingerprint": cfg.fingerprint(), "versions": export_versions()},
        "target": {"profile": profile.to_dict(), "budget": budget.to_dict(), "precision": prec},
        "data": {"charset": splits.charset, "height": splits.spec.height, "width": splits.spec.width,
                 "train_lines": len(splits.train), "val_lines": len(splits.val), "test_lines": len(splits.test),
                 "test_lengths": [splits.spec.test_min_len, splits.spec.test_max_len]},
        "models": models, "artifacts": artifacts, "deployed": dep,
        "budget": {"chosen": chosen, "plot": search.get("plot"), "feasible": search.get("feasible"),
                   "evaluated": search.get("total"), "ranked_by": search.get("ranked_by"),
                   "notes": search.get("notes"), "effective_limits": search.get("effective_limits")},
        "checks": checks,
        "line_latency": line_latency(cost, profile, art.precision, splits.spec.width, measured, image_path),
        "image_path": image_path,
    }


def deployed_readings(bundle: Path, art: Any, manifest: Any, test: Any) -> dict[str, Any]:
    """The deployed artifact read through edgekd_runtime on the test lines: CER, string accuracy, per length,
    the character confusion, the confidence block at the bundle's temperature and the first SAMPLE_LINES
    readings."""
    import edgekd_runtime
    from edgekd.export.lines import confidence_on
    from edgekd.train.ctc_metrics import line_metrics
    from edgekd_runtime.confidence import greedy_confidences

    rec = edgekd_runtime.load(bundle, backend=art.format, precision=art.precision)
    x = test.x.astype(np.float32) / np.float32(255.0)
    scores = np.concatenate([rec.forward(x[i:i + 256]) for i in range(0, len(x), 256)])
    charset, t = manifest.lines.charset, manifest.lines.confidence_temperature
    hyps, conf = greedy_confidences(scores, charset, t)
    m = line_metrics(list(test.texts), hyps)
    labels, matrix = char_confusion(test.texts, hyps, charset)
    block = {**confidence_on(scores, list(test.texts), charset, t), "source": f"edgekd_runtime {art.path}",
             "fitted_on": ((manifest.extra or {}).get("confidence") or {}).get("fitted_on")}
    return {"path": art.path, "format": art.format, "precision": art.precision, "split": "test",
            "num_samples": m.n_lines, "num_chars": m.n_chars, "cer": m.cer, "string_accuracy": m.string_acc,
            "per_length": m.to_dict()["per_length"], "confusion": {"labels": labels, "matrix": matrix},
            "confidence": block,
            "samples": [{"index": i, "text": test.texts[i], "reading": hyps[i], "confidence": float(conf[i])}
                        for i in range(min(SAMPLE_LINES, len(hyps)))]}


def char_confusion(refs: Sequence[str], hyps: Sequence[str], charset: str) -> tuple[list[str], list[list[int]]]:
    """Counts of (true character, read character) over the edit alignment of each reading with its text (rapidfuzz
    opcodes): matches and substitutions, deletions in the GAP column, insertions in the GAP row."""
    from rapidfuzz.distance import Levenshtein

    gap = len(charset)
    idx = {c: i for i, c in enumerate(charset)}
    m = np.zeros((gap + 1, gap + 1), np.int64)
    for ref, hyp in zip(refs, hyps):
        for tag, i1, i2, j1, j2 in Levenshtein.opcodes(ref, hyp):
            a, b = [idx[c] for c in ref[i1:i2]], [idx[c] for c in hyp[j1:j2]]
            n = min(len(a), len(b)) if tag in ("equal", "replace") else 0
            for i, j in zip(a[:n], b[:n]):
                m[i, j] += 1
            np.add.at(m, (a[n:], gap), 1)
            np.add.at(m, (gap, b[n:]), 1)
    return [*charset, GAP], m.tolist()


def teacher_row(cfg: PipelineConfig, teacher_ck: str, splits: Any, profile: Any, run_dir: Path) -> dict[str, Any]:
    """The teacher on the test lines (torch fp32), its size and predicted fp32 latency per line (it is not
    deployed)."""
    import torch

    from edgekd.budget.cost import module_cost
    from edgekd.train.ctc_metrics import evaluate_lines

    from .tasks import load_task_teacher

    t = load_task_teacher(cfg, teacher_ck, splits)
    m = evaluate_lines(t.model, splits.test, splits.charset, torch.device("cpu"))
    row: dict[str, Any] = {"role": "teacher", "arch": t.name, "test_cer": m.cer, "test_string_accuracy": m.string_acc,
                           "per_length": m.to_dict()["per_length"],
                           "params": int(sum(p.numel() for p in t.model.parameters())),
                           "metrics": "teacher/metrics.jsonl" if (run_dir / "teacher/metrics.jsonl").is_file()
                           else None, "note": "torch fp32 (the teacher is not deployed)"}
    try:
        c = module_cost(t.model, (1, 1, splits.spec.height, splits.spec.width), name=t.name)
        row.update(macs=c.macs, flash_bytes=c.flash_bytes["fp32"], peak_ram_bytes=c.peak_ram_bytes["fp32"],
                   predicted_latency_ms=profile.estimate_latency_ms(c.features, "fp32"))
    except Exception as e:  # noqa: BLE001 - a foreign teacher that does not export still gets its accuracy row
        row["note"] = f"cost unavailable: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}"
    return row


def student_row(role: str, run_dir: Path, arch: str, cost: Any, profile: Any, prec: str,
                measured_ms: float) -> dict[str, Any]:
    """A trained student (scratch or distilled) from its checkpoint's test metrics (torch fp32) and its cost at the
    deployed precision; both share the architecture, so the deployed artifact's latency is theirs."""
    from edgekd.train.checkpoint import load_torch

    mt = load_torch(run_dir / role / "student.pt")["metrics"]
    return {"role": role, "arch": arch, "test_cer": mt.get("test_cer"), "test_string_accuracy":
            mt.get("test_string_acc"), "per_length": mt.get("test_per_length"), "params": cost.params,
            "macs": cost.macs, "flash_bytes": cost.flash_bytes[prec], "peak_ram_bytes": cost.peak_ram_bytes[prec],
            "predicted_latency_ms": profile.estimate_latency_ms(cost.features, prec),
            "measured_latency_ms": measured_ms, "metrics": f"{role}/metrics.jsonl",
            "epochs_run": mt.get("epochs_run"), "epoch_time_s": mt.get("epoch_time_s")}


def artifact_rows(bundle: Path, bench: dict[str, Any], prec: str, profile: Any
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every artifact (string accuracy and CER through edgekd_runtime, parity, latency here, within budget) and the
    checks of parity and of the budget after conversion (real file sizes; for the deployed precision)."""
    from edgekd.budget.check import check_bundle
    from edgekd_runtime.manifest import Manifest

    budget_checks = {c.path: c for c in check_bundle(bundle, measure=False)}  # flags budget_ok in the manifest
    rows, checks = [], []
    for a in Manifest.load(bundle).artifacts:
        b, par = bench.get(a.path, {}), a.parity or {}
        rows.append({"path": a.path, "format": a.format, "precision": a.precision, "size_bytes": a.size_bytes,
                     "string_accuracy": a.accuracy, "cer": a.extra.get("cer"), "parity": par,
                     "dynamic_width": a.extra.get("dynamic_width"), "p50_ms": b.get("p50_ms"),
                     "p99_ms": b.get("p99_ms"), "budget_ok": a.budget_ok})
        c = budget_checks.get(a.path)
        if c is not None and a.precision == prec:
            detail = "; ".join(c.problems()) or (
                f"{a.size_bytes / 1024:.1f} KiB file, {c.predicted_ram_bytes / 1024:.1f} KiB peak RAM"
                + (f", {c.predicted_latency_ms:.3f} ms predicted per line on {profile.name}"
                   if c.predicted_latency_ms is not None else ""))
            checks.append({"name": f"budget after conversion: {a.path}", "ok": c.budget_ok, "detail": detail})
        if par:
            checks.append({"name": f"parity: {a.path}", "ok": bool(par.get("passed")), "detail": _parity_text(par)})
    return rows, checks


def _parity_text(par: dict[str, Any]) -> str:
    inc = par.get("cer_increase")
    return (f"max abs diff {par.get('max_abs_diff', float('nan')):.2e}, strings agree on "
            f"{100 * par.get('string_agreement', 0):.2f}% of the lines"
            + ("" if inc is None else f", CER {100 * inc:+.2f} pp") + f" vs {par.get('reference', '?')}")


def conversion_checks(manifest: Any, art: Any, prec: str, fits: bool | None = None) -> list[dict[str, Any]]:
    """`results.conversion_checks` (failed parity, the deployed precision, a fallback over the budget) in the lines
    report's dict form, with the strings' parity numbers."""
    return [c.to_dict() for c in results.conversion_checks(manifest, art, prec, _parity_text, fits)]


def deployed_checks(manifest: Any, art: Any, dep: dict[str, Any]) -> list[dict[str, Any]]:
    """The deployed artifact reads now what `edgekd convert` measured, and (int8) its CER is within
    INT8_CER_INCREASE_PP of torch fp32's on the same lines."""
    checks = [{"name": "deployed string accuracy = runtime measurement",
               "ok": art.accuracy is not None and abs(dep["string_accuracy"] - art.accuracy) < 1e-9,
               "detail": f"manifest {art.accuracy}, edgekd_runtime now {dep['string_accuracy']}"}]
    torch_cer = (manifest.extra or {}).get("torch_cer")
    if art.precision == "int8" and torch_cer is not None:
        inc = 100 * (dep["cer"] - torch_cer)
        checks.append({"name": f"int8 CER within {INT8_CER_INCREASE_PP} pp of fp32 torch",
                       "ok": inc <= INT8_CER_INCREASE_PP + 1e-9,
                       "detail": f"{100 * dep['cer']:.2f}% vs {100 * torch_cer:.2f}% ({inc:+.2f} pp)"})
    return checks


def line_latency(cost: Any, profile: Any, prec: str, width: int, interpreter_ms: float,
                 image_path: dict[str, Any] | None) -> dict[str, Any]:
    """The latency of an 8-character line: predicted on the board (the cost model at the reference width, which
    the fixed-width TFLite model always runs) and measured here on the photo of an 8-character test line through
    read()'s stages (image_path), beside the interpreter alone at the reference width and the host estimate."""
    from edgekd.budget.profiles import get_profile

    stages = (image_path or {}).get("stages") or {}
    return {"length": REPORT_LINE_LENGTH, "width_px": width, "board": profile.name, "precision": prec,
            "predicted_board_ms": profile.estimate_latency_ms(cost.features, prec),
            "host_estimate_ms": get_profile("host").estimate_latency_ms(cost.features, prec),
            "measured_inference_ms": (stages.get("inference") or {}).get("p50_ms"),
            "measured_total_ms": (stages.get("total") or {}).get("p50_ms"),
            "measured_interpreter_ms": interpreter_ms, "line": (image_path or {}).get("image")}
