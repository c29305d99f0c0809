"""`edgekd run`: the whole pipeline, resumable, with a report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from edgekd.train.kd_mode import KD_MODE_HELP
from edgekd_runtime.cli_support import handle_errors, print_json

if TYPE_CHECKING:
    from edgekd.report.schema import Report


def register(app: typer.Typer) -> None:
    @app.command("run")
    @handle_errors
    def run(
        config: Optional[Path] = typer.Option(None, "--config", "-c",
                                              help="YAML config (see docs); flags override it."),
        task: Optional[str] = typer.Option(None, "--task", help="digits (default: one digit per image) or lines "
                                           "(a string per image, CTC line recognizers); default: the config's."),
        data: Optional[str] = typer.Option(None, "--data", help="embedded (default), idx/folder/npz, or a path to "
                                           "an .npz, IDX directory or class-folder directory (--task lines: "
                                           "embedded digit strings, or a folder of line images + labels.tsv)."),
        teacher: Optional[Path] = typer.Option(None, "--teacher", help="Your teacher (ONNX or TFLite from any "
                                               "framework, TorchScript, ExportedProgram .pt2, or edgekd checkpoint); "
                                               "default: train the built-in one."),
        teacher_scale: Optional[str] = typer.Option(None, "--teacher-scale", help="The input your teacher file "
                                                    "takes: 0-1, 0-255 or MEAN,STD of pixels/255 (default MNIST's "
                                                    "0.1307,0.3081); checked on the val split."),
        target: Optional[str] = typer.Option(None, "--target", "-t", help="Built-in board: rpi3b, rpi4 (default), "
                                             "rpi5, rpi-zero2w, host."),
        profile: Optional[Path] = typer.Option(None, "--profile", help="Board profile JSON from `edgekd-rt "
                                               "calibrate` (instead of --target)."),
        latency_ms: Optional[float] = typer.Option(None, "--latency-ms", help="Latency limit on the board (default "
                                                   "1.0; per line of the reference width, 2.0, for --task lines)."),
        flash_kb: Optional[float] = typer.Option(None, "--flash-kb", help="Model file limit in KiB (default 32)."),
        ram_kb: Optional[float] = typer.Option(None, "--ram-kb", help="Peak activation RAM limit in KiB."),
        macs: Optional[float] = typer.Option(None, "--macs", help="MACs per image limit."),
        params: Optional[float] = typer.Option(None, "--params", help="Parameter count limit."),
        precision: Optional[str] = typer.Option(None, "--precision", "-p", help="Deployed precision: int8 "
                                                "(default), fp16, fp32."),
        student: Optional[str] = typer.Option(None, "--student", help="Force a student id, skipping the search."),
        deploy_teacher: Optional[str] = typer.Option(None, "--deploy-teacher", help="When the teacher fits the "
                                                     "budget: auto (default: deploy it unless a more capable "
                                                     "student fits, then the more accurate on val), compare "
                                                     "(always train and compare), never."),
        epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Student epochs (default 20)."),
        teacher_epochs: Optional[int] = typer.Option(None, "--teacher-epochs", min=1,
                                                     help="Teacher epochs (default 40; 10 for --task lines)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Data split and training seed."),
        kd_mode: Optional[str] = typer.Option(None, "--kd-mode", help=KD_MODE_HELP),
        device: Optional[str] = typer.Option(None, "--device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1."),
        out: Path = typer.Option(Path("runs/default"), "--out", "-o", help="Run directory."),
        quick: bool = typer.Option(False, "--quick", help="A short run (few epochs) to try the pipeline."),
        force: bool = typer.Option(False, "--force", help="Replace a run directory made with another configuration."),
        json_out: bool = typer.Option(False, "--json", help="Print report.json at the end."),
    ) -> None:
        """Data -> teacher -> budget search -> distill (+ scratch baseline) -> export -> convert -> bench -> report.

        The teacher is a candidate too: when it fits the budget and no more capable student does, it is deployed
        without training a student; when a more capable student fits as well, the more accurate of the two on the
        val split is deployed. --student always deploys that student. Running the same command again skips
        finished steps and resumes an interrupted training.
        """
        from edgekd.cli.data_cmd import guess_source
        from edgekd.pipeline import load_pipeline_config

        over: dict = {"task": task, "teacher": str(teacher) if teacher else None, "teacher_scale": teacher_scale,
                      "target": target,
                      "profile": str(profile) if profile else None, "student": student,
                      "deploy_teacher": deploy_teacher,
                      "quick": True if quick else None,
                      "budget": {"latency_ms": latency_ms, "flash_kb": flash_kb, "ram_kb": ram_kb, "macs": macs,
                                 "params": params, "precision": precision},
                      "distill": {"kd_mode": kd_mode},
                      "student_train": {"epochs": epochs, "seed": seed, "device": device},
                      "teacher_train": {"epochs": teacher_epochs, "seed": seed, "device": device}}
        if data is not None or seed is not None:
            src, path = guess_source(data, None, task) if data is not None else (None, None)
            over["data"] = {"source": src, "path": path, "seed": seed}
        _run_and_report(load_pipeline_config(config, over), out, force, json_out)


def _run_and_report(cfg: Any, out: Path, force: bool, json_out: bool) -> None:
    """Run the pipeline (its `check_inputs` refuses bad settings and files before the run directory is touched),
    then print the summary or report.json; exit 1 when a check of the written report failed."""
    from edgekd.cli.teacher_cmd import resumable
    from edgekd.pipeline import run_pipeline

    log = (lambda s: None) if json_out else (lambda s: typer.echo(s))
    with resumable(lambda: "re-run the same command to resume (finished steps are kept)"):
        rep = run_pipeline(cfg, out, force=force, progress=not json_out, log=log)
    if isinstance(rep, dict):  # a lines run's report (edgekd.pipeline.lines_report)
        return _lines_summary(rep, json_out)
    if json_out:
        print_json(rep.to_dict())
    else:
        _summary(rep)
    if rep.failed_checks:
        raise typer.Exit(1)  # the report is written; something in it is not deployable as asked


def _summary(rep: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    def ms(x: float | None) -> str:
        return "—" if x is None else f"{x:.3f}"

    t = Table(title="edgekd run")
    for col in ("model", "arch", "test acc.", "params", "predicted ms", "measured ms"):
        t.add_column(col)
    for m in rep.models:
        acc = m.test_accuracy
        t.add_row(m.role, m.arch, "—" if acc is None else f"{100 * acc:.2f}%", f"{m.params or 0:,}",
                  ms(m.predicted_latency_ms), ms(m.measured_latency_ms))
    c = Console(width=None if sys.stdout.isatty() else 160)
    c.print(t)
    d = rep.deployed
    if d is not None:
        c.print(f"deployed: {d.path} — {100 * d.accuracy:.2f}% on {d.num_samples} {d.split} samples")
    if rep.deployment is not None:
        c.print(f"why: {rep.deployment.reason}")
    bad = rep.failed_checks
    c.print("checks: all passed" if not bad else "checks FAILED: " + "; ".join(f"{x.name} ({x.detail})" for x in bad))


def _lines_summary(rep: dict, json_out: bool) -> None:
    """Print a lines run's report (the table, or --json); exit 1 when a check failed, as for digits."""
    from rich.console import Console
    from rich.table import Table

    if json_out:
        print_json(rep)
        if any(not c["ok"] for c in rep["checks"]):
            raise typer.Exit(1)
        return

    t = Table(title="edgekd run --task lines")
    for col in ("model", "arch", "CER", "string acc.", "params", "predicted ms/line", "measured ms/line"):
        t.add_column(col)
    pct = lambda x: "—" if x is None else f"{100 * x:.2f}%"  # noqa: E731
    ms = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
    for m in rep["models"]:
        t.add_row(m["role"], m["arch"], pct(m.get("test_cer")), pct(m.get("test_string_accuracy")),
                  f"{m.get('params') or 0:,}", ms(m.get("predicted_latency_ms")), ms(m.get("measured_latency_ms")))
    c = Console(width=None if sys.stdout.isatty() else 160)
    c.print(t)
    d, lat = rep["deployed"], rep.get("line_latency") or {}
    c.print(f"deployed: {d['path']} — CER {pct(d['cer'])}, string accuracy {pct(d['string_accuracy'])} on "
            f"{d['num_samples']} {d['split']} lines; an {lat.get('length')}-character line: "
            f"{ms(lat.get('predicted_board_ms'))} ms predicted on {lat.get('board')}, "
            f"{ms(lat.get('measured_inference_ms'))} ms measured here")
    bad = [x for x in rep["checks"] if not x["ok"]]
    c.print("checks: all passed" if not bad else "checks FAILED: " + "; ".join(f"{x['name']} ({x['detail']})"
                                                                              for x in bad))
    if bad:
        raise typer.Exit(1)  # the report is written; something in it is not deployable as asked
