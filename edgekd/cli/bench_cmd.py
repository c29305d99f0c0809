"""`edgekd bench BUNDLE`: latency of every artifact in a bundle on this machine, through edgekd_runtime."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edgekd_runtime.cli_support import handle_errors, print_json


def register(app: typer.Typer) -> None:
    @app.command("bench")
    @handle_errors
    def bench(
        bundle: Path = typer.Argument(..., help="Bundle directory (manifest.json + artifacts)."),
        runs: int = typer.Option(200, "--runs", "-n", min=1, help="Measured runs per artifact."),
        warmup: Optional[int] = typer.Option(None, "--warmup", "-w", min=0, help="Warm-up runs (default runs/10)."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                              help="Interpreter threads (default: cores, <= 4)."),
        json_out: bool = typer.Option(False, "--json", help="Full reports with per-run samples as JSON."),
    ) -> None:
        """Benchmark every artifact of a bundle (the fields of benchmark_model / onnxruntime_perf_test).

        For one artifact with all the options, run `edgekd-rt bench` (on the board too).
        """
        from edgekd.bench import bench_bundle
        from edgekd_runtime.manifest import Manifest

        reports = bench_bundle(bundle, runs, warmup, threads)
        if json_out:
            print_json({p: r.to_dict() for p, r in reports.items()})
            return
        from rich.console import Console
        from rich.table import Table

        acc = {a.path: a.accuracy for a in Manifest.load(bundle).artifacts}
        t = Table(title=f"{bundle} on this machine ({runs} runs each)")
        for col in ("artifact", "backend", "threads", "size kB", "test acc.", "init ms", "p50 ms", "p90 ms",
                    "p99 ms", "inf/s"):
            t.add_column(col, justify="left" if col in ("artifact", "backend") else "right")
        for p, r in reports.items():
            a = acc.get(p)
            t.add_row(p, f"{r.backend} ({r.delegate})", str(r.threads), f"{r.model_size_bytes / 1024:.1f}",
                      "—" if a is None else f"{100 * a:.2f}%", f"{r.init_ms:.1f}", f"{r.p50_ms:.3f}",
                      f"{r.p90_ms:.3f}", f"{r.p99_ms:.3f}", f"{r.inferences_per_s:,.0f}")
        Console(width=None if sys.stdout.isatty() else 160).print(t)
