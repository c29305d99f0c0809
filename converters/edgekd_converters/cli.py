"""`edgekd-convert`: ONNX -> TFLite (float32/float16/int8) or ONNX int8 for any ONNX image classifier."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from edgekd_runtime.cli_support import handle_errors, print_json

from .calibration import MAX_CALIBRATION_SAMPLES, MIN_CALIBRATION_SAMPLES

app = typer.Typer(name="edgekd-convert", add_completion=False, pretty_exceptions_enable=False,
                  help="Convert an ONNX image classifier to TFLite (float32, float16, full-int8) and/or ONNX int8 "
                       "(QDQ, per-channel); every artifact is checked against the ONNX model on real inputs.")


class Target(str, Enum):
    tflite = "tflite"
    onnx_int8 = "onnx-int8"


class Preprocess(str, Enum):
    mnist = "mnist"
    resize = "resize"


@app.command()
@handle_errors
def convert(
    model: Path = typer.Argument(..., help="The ONNX model (one 4-D image input, NCHW or NHWC; one output)."),
    to: List[Target] = typer.Option(..., "--to", help="Target; repeat for several (tflite, onnx-int8)."),
    calib: Path = typer.Option(..., "--calib", help="Calibration images: a .npy array (N, H, W[, C]) in [0, 1] "
                               "(or uint8 0..255), or a folder of images; at least 200 representative samples."),
    calib_samples: int = typer.Option(MAX_CALIBRATION_SAMPLES, "--calib-samples", min=MIN_CALIBRATION_SAMPLES,
                                      help="Calibrate int8 on at most this many of the --calib samples (a seeded "
                                           "random draw; all of them when fewer)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: <model>_converted next "
                                       "to the model). Refused if it exists, unless --force."),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help="Samples to check parity on (.npy or folder; "
                                             "default: the calibration samples)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Integer labels (.npy) of the --eval samples: "
                                          "report each artifact's accuracy."),
    mean: float = typer.Option(0.0, "--mean", help="Input normalisation x = (pixel/255 - mean) / std."),
    std: float = typer.Option(1.0, "--std", help="Input normalisation std (see --mean)."),
    preprocess: Preprocess = typer.Option(Preprocess.mnist, "--preprocess",
                                          help="How images in a folder become canvases: mnist (handwriting "
                                               "procedure, 1 channel) or resize."),
    force: bool = typer.Option(False, "--force", help="Replace the output directory if edgekd wrote it (never a "
                               "folder holding the inputs or files of yours)."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Write the artifacts that pass and list the ones "
                                    "that miss their tolerance (still exit 1), instead of writing none."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Convert MODEL and check every artifact (exit 1 on a parity failure, 2 on bad input). OUT also gets a
    manifest.json (normalisation, preprocessing, labels, every artifact) that `edgekd-rt` and
    `edgekd_runtime.load` read with the directory or with any one artifact in it."""
    from rich.console import Console

    from edgekd_runtime.manifest import check_normalization

    from .calibration import load_labels, load_samples
    from .convert import convert_model, prepare
    from .errors import CalibrationDataError
    from .staging import check_output_dir

    check_normalization(mean, std, "--mean/--std", CalibrationDataError)
    targets = [t.value for t in dict.fromkeys(to)]
    out = out or model.with_name(f"{model.stem}_converted")
    check_output_dir(out, force, inputs=[p for p in (model, calib, eval_data, labels) if p is not None])
    info = prepare(model, targets)
    calib_x = load_samples(calib, info, preprocess.value)
    eval_x = load_samples(eval_data, info, preprocess.value) if eval_data else None
    eval_y = load_labels(labels, len(eval_x if eval_x is not None else calib_x)) if labels else None
    err = Console(stderr=True)
    with err.status(f"converting {model.name} to {', '.join(targets)} ...", spinner="dots"):
        report = convert_model(model, out, targets, calib_x, eval_x, eval_y, mean=mean, std=std, force=force,
                               preprocess=preprocess.value, strict=not keep_going, max_calib_samples=calib_samples)
    if json_out:
        print_json(report.to_dict())
    else:
        _print_report(report, out)
    for w in report.extra.get("warnings", []):
        typer.echo(f"warning: {w}", err=True)
    for f in report.failed:
        p = f.parity
        typer.echo(f"error: {f.name} missed its tolerance and was not written: max abs diff {p.max_abs_diff:.3g}, "
                   f"top-1 agreement {p.top1_agreement:.2%} (required {p.tolerance.min_top1_agreement:.2%})", err=True)
    if report.failed:
        raise typer.Exit(1)


def _print_report(report, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report.source} -> {out}")
    for col in ("artifact", "prec", "KiB", "max|diff|", "top-1", "acc", "ok"):
        table.add_column(col, justify="left" if col == "artifact" else "right", no_wrap=True)
    for a in report.artifacts:
        p = a.parity
        table.add_row(a.path.name, a.precision, f"{a.size_bytes / 1024:.1f}", f"{p.max_abs_diff:.2e}",
                      f"{p.top1_agreement:.2%}", "-" if a.accuracy is None else f"{a.accuracy:.2%}",
                      "[green]ok[/green]" if p.passed else "[red]FAIL[/red]")
    console = Console()
    console.print(table)
    ref = "" if report.reference_accuracy is None else f"; reference accuracy {report.reference_accuracy:.2%}"
    console.print(f"parity on {report.extra.get('num_eval_samples')} samples against the ONNX model{ref}; "
                  f"{report.wall_s:.1f} s")
    if report.extra.get("normalized"):
        console.print(f"converted from a normalised copy: {'; '.join(report.extra['normalized'])}")


def main() -> None:
    app()
