"""`edgekd convert BUNDLE/`: add TFLite fp32/fp16/int8 and ONNX int8 artifacts, each checked, to a bundle."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from edgekd_runtime.cli_support import handle_errors, print_json


class Target(str, Enum):
    tflite = "tflite"
    onnx_int8 = "onnx-int8"


def register(app: typer.Typer) -> None:
    @app.command("convert", help="Convert an exported bundle to TFLite (float32, float16, full-int8) and ONNX int8; "
                                 "each artifact's parity and test accuracy (through edgekd_runtime) go to the "
                                 "manifest. Exit 1 if an artifact misses its tolerance (nothing is written).")
    @handle_errors
    def convert(
        bundle: Path = typer.Argument(..., help="Bundle directory made by `edgekd export`."),
        to: Optional[List[Target]] = typer.Option(None, "--to", help="Targets (default: tflite and onnx-int8)."),
        calib_samples: Optional[int] = typer.Option(None, "--calib-samples", min=200,
                                                    help="Training samples used to calibrate int8 (>= 200; "
                                                         "default 500 digits, 2000 text lines)."),
        max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1,
                                                  help="Check on at most this many test samples."),
        force: bool = typer.Option(False, "--force", help="Replace artifacts of an earlier conversion."),
        keep_going: bool = typer.Option(False, "--keep-going", help="Write the artifacts that pass and list the "
                                        "ones that miss their tolerance (still exit 1), instead of writing none."),
        json_out: bool = typer.Option(False, "--json", help="Print the updated manifest as JSON."),
    ) -> None:
        from rich.console import Console
        from rich.table import Table

        from edgekd.export import convert_exported_bundle

        targets = [t.value for t in dict.fromkeys(to)] if to else ["tflite", "onnx-int8"]
        with Console(stderr=True).status(f"converting {bundle} to {', '.join(targets)} ...", spinner="dots"):
            manifest, report = convert_exported_bundle(bundle, targets=targets, force=force,
                                                       calib_samples=calib_samples, max_samples=max_samples,
                                                       strict=not keep_going)
        if json_out:
            print_json(manifest.to_dict())
            raise typer.Exit(1 if report.failed else 0)
        conv = manifest.extra.get("conversion", {})
        lines = manifest.lines is not None  # text lines: strings agree, CER, string accuracy
        table = Table(title=f"{bundle} ({manifest.name})")
        cols = ("artifact", "prec", "KiB", "max|diff|", "strings", "CER", "string acc", "ok") if lines else \
            ("artifact", "prec", "KiB", "max|diff|", "top-1", "test acc", "ok")
        for col in cols:
            table.add_column(col, justify="left" if col == "artifact" else "right", no_wrap=True)
        for a in manifest.artifacts:
            p = a.parity or {}
            agree = p.get("string_agreement" if lines else "top1_agreement", 0)
            cer = [] if not lines else ["-" if a.extra.get("cer") is None else f"{a.extra['cer']:.2%}"]
            table.add_row(a.path, a.precision, f"{a.size_bytes / 1024:.1f}", f"{p.get('max_abs_diff', 0):.2e}",
                          f"{agree:.1%}", *cer, "-" if a.accuracy is None else f"{a.accuracy:.1%}",
                          ("[green]ok[/green]" if p.get("passed") else "[red]FAIL[/red]")
                          + (" deployed" if a.path == manifest.deployed else ""))
        console = Console()
        console.print(table)
        console.print(f"parity against {conv.get('reference')} on {conv.get('num_eval_samples')} test samples; "
                      f"int8 calibrated on {conv.get('num_calibration_samples')} training samples; "
                      f"{conv.get('wall_s', 0):.1f} s")
        console.print(f"deployed (what edgekd_runtime.load and edgekd-rt use by default): {manifest.deployed}")
        for f in report.failed:
            typer.echo(f"error: {f.name} missed its tolerance and was not written: {f.parity.summary()}", err=True)
        if report.failed:
            raise typer.Exit(1)
