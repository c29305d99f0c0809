"""`edgekd export CKPT --out BUNDLE/`: student checkpoint -> bundle with `student.onnx` + `manifest.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgekd_runtime.cli_support import handle_errors, print_json


def register(app: typer.Typer) -> None:
    @app.command("export", help="Export a student checkpoint to ONNX (opset >= 17, dynamic batch) in a new bundle "
                                "directory, checked against torch on the real test split, with manifest.json.")
    @handle_errors
    def export(
        checkpoint: Path = typer.Argument(..., help="The student checkpoint (student.pt from `edgekd distill`)."),
        out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to create."),
        opset: int = typer.Option(17, "--opset", help="ONNX opset (>= 17)."),
        max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1,
                                                  help="Check parity on at most this many test samples."),
        force: bool = typer.Option(False, "--force", help="Replace --out if it is a bundle edgekd wrote (never a "
                                   "folder holding the checkpoint or files of yours)."),
        json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
    ) -> None:
        from rich.console import Console

        from edgekd.export import export_bundle

        with Console(stderr=True).status(f"exporting {checkpoint} ...", spinner="dots"):
            manifest = export_bundle(checkpoint, out, force=force, opset=opset, max_samples=max_samples)
        if json_out:
            print_json(manifest.to_dict())
            return
        art = manifest.artifacts[0]
        p = art.parity
        if manifest.lines is not None:
            ln = manifest.lines
            width = (f"any width up to {ln.max_width} px" if "onnx" in ln.dynamic_formats else f"{ln.width} px")
            Console().print(
                f"[bold]{out / art.path}[/bold] ({manifest.name}, text lines {ln.height} px high, {width}, "
                f"{art.size_bytes / 1024:.1f} KiB, opset {opset})\n"
                f"  parity vs torch on {p['num_samples']} test lines: max |logit diff| {p['max_abs_diff']:.2e}, "
                f"strings agree {p['string_agreement']:.2%}\n"
                f"  test CER {art.extra['cer']:.2%}, string accuracy {art.accuracy:.2%} "
                f"(torch {manifest.extra['torch_cer']:.2%} / {manifest.extra['torch_accuracy']:.2%})\n"
                f"  next: edgekd convert {out}")
            return
        Console().print(
            f"[bold]{out / art.path}[/bold] ({manifest.name}, {art.size_bytes / 1024:.1f} KiB, opset {opset})\n"
            f"  parity vs torch on {p['num_samples']} test samples: max |logit diff| {p['max_abs_diff']:.2e} "
            f"(tolerance {p['allowed_abs_diff']:.0e}), top-1 agreement {p['top1_agreement']:.2%}\n"
            f"  test accuracy {art.accuracy:.2%} (torch {manifest.extra['torch_accuracy']:.2%})\n"
            f"  next: edgekd convert {out}")
