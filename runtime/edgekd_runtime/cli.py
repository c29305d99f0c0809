"""`edgekd-rt`: recognise handwriting, benchmark and inspect a student on the board.

    edgekd-rt predict IMAGES... --model PATH [--top-k K] [--mean M --std S] [--json]
    edgekd-rt read IMAGES... --model LINE_BUNDLE [--pattern P] [--json]
    edgekd-rt bench PATH [--image FILE] [--runs N] [--warmup W] [--threads T] [--backend onnx|tflite] [--json]
    edgekd-rt info PATH [--json]

Exit codes: 0 ok, 1 failure (e.g. no interpreter installed), 2 bad input (message on stderr, no traceback).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from .bench import MAX_BATCH, MAX_RUNS
from .cli_support import EXIT_USAGE, LeanCommand, LeanGroup, handle_errors, print_json, table_names
from .errors import ImageError, UserInputError

app = typer.Typer(
    name="edgekd-rt",
    help="Run an edgekd student on this board: predict handwriting, benchmark latency, inspect a model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=LeanGroup,
)

MODEL_HELP = "Bundle directory (with manifest.json) or a .onnx / .tflite file."
BACKEND_HELP = "auto (bundle's first usable artifact / the file's format), onnx or tflite."
MEAN_HELP = ("Input normalisation x = (pixel/255 - mean) / std of a bare .onnx/.tflite file without a manifest "
             "(default MNIST's 0.1307); give --std too. A bundle's manifest carries its own.")
STD_HELP = "Input normalisation std of a bare model file (default MNIST's 0.3081); see --mean."
PROGRESS_MIN_IMAGES = 20  # show a progress bar (on stderr) from this many images on


def rich_console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def expand_images(paths: List[Path]) -> List[Path]:
    """Files as given, directories expanded to their image files (sorted); nothing found -> ImageError."""
    from .images import IMAGE_SUFFIXES, has_image_suffix

    out: List[Path] = []
    for p in paths:
        if os.path.isdir(p):  # (Path.is_dir raises where a folder above it cannot be searched)
            try:
                found = sorted(f for f in p.iterdir() if os.path.isfile(f) and has_image_suffix(f))
            except OSError as e:
                raise ImageError(f"{p}: cannot list the folder ({e.strerror or e}); check its permissions") from None
            if not found:
                raise ImageError(f"{p}: directory has no image files ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        else:
            out.append(p)
    return out


@app.command("predict", cls=LeanCommand)
@handle_errors
def predict_cmd(
    images: List[Path] = typer.Argument(..., help="Image files or directories of images (PNG, JPEG, ...)."),
    model: Path = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="How many candidates to show per image."),
    backend: str = typer.Option("auto", "--backend", "-b", help=BACKEND_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1, help="Interpreter threads."),
    precision: Optional[str] = typer.Option(None, "--precision", help="In a bundle: fp32, fp16 or int8."),
    mean: Optional[float] = typer.Option(None, "--mean", help=MEAN_HELP),
    std: Optional[float] = typer.Option(None, "--std", help=STD_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Recognise handwriting in images. Exits 2 if any image cannot be read (the others are still shown)."""
    from .loader import load

    rec = load(model, backend=backend, threads=threads, precision=precision, mean=mean, std=std)
    if getattr(rec, "task", "digits") == "lines":
        raise rec.wrong_call("predict")
    files = expand_images(images)
    results: List[dict] = []

    def read(f: Path) -> None:
        try:
            results.append({"image": str(f), **rec.predict(f, top_k=top_k).to_dict()})
        except UserInputError as e:
            results.append({"image": str(f), "error": str(e), "error_type": type(e).__name__})

    if as_json or len(files) < PROGRESS_MIN_IMAGES:
        for f in files:
            read(f)
    else:
        from rich.progress import track

        for f in track(files, description="recognising", console=rich_console(stderr=True), transient=True):
            read(f)
    failed = [r for r in results if "error" in r]
    if as_json:
        print_json({"model": str(rec.model_path), "backend": rec.backend_name, "precision": rec.precision,
                    "results": results})
    else:
        _print_predictions(rec, results, top_k)
    for r in failed:
        typer.echo(f"error: {r['error']}", err=True)
    if failed:
        raise typer.Exit(EXIT_USAGE)


def _print_predictions(rec: Any, results: List[dict], top_k: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"{rec.model_path.name} ({rec.backend_name} {rec.backend_version}, {rec.precision})")
    for col in ("image", "label", "probability", f"top-{top_k}", "latency"):
        t.add_column(col, justify="right" if col in ("probability", "latency") else "left",
                     overflow="fold" if col == "image" else "ellipsis")
    for r, name in zip(results, table_names([r["image"] for r in results])):  # full paths are in --json
        if "error" in r:
            t.add_row(name, "[red]error[/]", "-", r["error_type"], "-")
            continue
        top = escape(", ".join(f"{c['label']} {c['probability']:.2f}" for c in r["top_k"]))
        t.add_row(name, f"[bold]{escape(str(r['label']))}[/]", f"{r['probability']:.3f}", top,
                  f"{r['latency_ms']:.2f} ms (+{r['preprocess_ms']:.1f} prep)")
    rich_console().print(t)


@app.command("bench", cls=LeanCommand)
@handle_errors
def bench_cmd(
    model: Path = typer.Argument(..., help=MODEL_HELP),
    runs: int = typer.Option(100, "--runs", "-n", min=1, max=MAX_RUNS, help=f"Measured runs (1 to {MAX_RUNS:,})."),
    warmup: int = typer.Option(10, "--warmup", "-w", min=0, max=MAX_RUNS,
                               help=f"Warm-up runs, not measured (0 to {MAX_RUNS:,})."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1, help="Interpreter threads."),
    backend: str = typer.Option("auto", "--backend", "-b", help=BACKEND_HELP),
    precision: Optional[str] = typer.Option(None, "--precision", help="In a bundle: fp32, fp16 or int8."),
    batch: int = typer.Option(1, "--batch", min=1, max=MAX_BATCH, help=f"Batch size per run (1 to {MAX_BATCH})."),
    mean: Optional[float] = typer.Option(None, "--mean", help=MEAN_HELP),
    std: Optional[float] = typer.Option(None, "--std", help=STD_HELP),
    image: Optional[Path] = typer.Option(None, "--image", "-i", help=(
        "Also time the whole image path of this file, stage by stage: decode (file -> array), preprocess "
        "(array -> canvas; a line bundle's line preprocessing), inference (the interpreter call) and the total.")),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output with every per-run sample."),
) -> None:
    """Measure latency like TFLite's benchmark_model: init, first run, warm-up, mean/std/percentiles, RSS."""
    from .loader import load

    rec = load(model, backend=backend, threads=threads, precision=precision, mean=mean, std=std)
    lines = getattr(rec, "task", "digits") == "lines"
    if as_json:
        path_report = _image_path(rec, image, runs, warmup)  # first: a bad image fails before the long part
        report = rec.benchmark(runs=runs, warmup=warmup, batch=batch)
        report.image_path = path_report
        if lines:
            from .cli_lines import print_json_bench

            return print_json_bench(rec, report)
        print_json(report.to_dict())
        return
    from rich.progress import Progress

    with Progress(console=rich_console(stderr=True), transient=True) as bar:
        task = bar.add_task("image path" if image is not None else "benchmarking", total=runs)
        step = max(1, runs // 50)
        show = lambda i: bar.update(task, completed=i) if i % step == 0 else None  # noqa: E731
        path_report = _image_path(rec, image, runs, warmup, show)
        bar.update(task, completed=0, description="benchmarking")
        report = rec.benchmark(runs=runs, warmup=warmup, batch=batch, progress=show)
        report.image_path = path_report
    rows = report.rows()
    if lines:
        from .cli_lines import line_latency

        per = line_latency(rec, report.mean_ms / report.batch)
        rows += [("per line", f"{per['per_line_ms']:.3f} ms ({per['line_height']}x{per['line_width']} px line)"),
                 ("per character", f"{per['per_char_ms']:.3f} ms (~{per['chars_per_line']:.0f} characters a line)")]
    _print_rows("latency", rows)


def _image_path(rec: Any, image: Optional[Path], runs: int, warmup: int, progress: Any = None) -> Any:
    """The image path's stage timings of `--image` (None without it)."""
    if image is None:
        return None
    from .bench import run_image_benchmark

    return run_image_benchmark(rec, image, runs=runs, warmup=warmup, progress=progress)


@app.command("info", cls=LeanCommand)
@handle_errors
def info_cmd(
    model: Path = typer.Argument(..., help=MODEL_HELP),
    backend: str = typer.Option("auto", "--backend", "-b", help=BACKEND_HELP),
    precision: Optional[str] = typer.Option(None, "--precision", help="In a bundle: fp32, fp16 or int8."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a model's inputs, outputs, precision, size, interpreter and (for a bundle) its manifest."""
    from .loader import load

    info = load(model, backend=backend, precision=precision).info()
    if as_json:
        print_json(info)
        return
    if info.get("task") == "lines":
        from .cli_lines import info_rows

        _print_rows("model", info_rows(info))
        return
    tensors = lambda ts: "; ".join(  # noqa: E731
        f"{t['name']} {t['shape']} {t['dtype']}" + (f" (scale {t['scale']:.4g}, zp {t['zero_point']})"
                                                      if "scale" in t else "") for t in ts)
    rows = [
        *model_rows(info),
        ("inputs", tensors(info["inputs"])),
        ("layout", f"{info['input_layout']}, {info['input_size']}x{info['input_size']}"),
        ("outputs", tensors(info["outputs"]) + f" ({info['output_kind']})"),
        ("labels", " ".join(info["labels"])),
        ("normalization", f"mean {info['normalization']['mean']}, std {info['normalization']['std']}"),
        ("preprocessing", ", ".join(f"{k}={v}" for k, v in info["preprocessing"].items())),
    ]
    accuracy = lambda a: f"accuracy {a.get('accuracy') if a.get('accuracy') is not None else '-'}"  # noqa: E731
    _print_rows("model", rows + bundle_rows(info, accuracy))


def model_rows(info: dict) -> list[tuple[str, str]]:
    """The first rows of `edgekd-rt info` for any model: file, size, checksum, interpreter."""
    return [
        ("model", f"{info['model_path']} ({info['format']}, {info['precision']})"),
        ("size", f"{info['size_bytes']:,} B"), ("sha256", info["sha256"]),
        ("backend", f"{info['backend']} {info['backend_version']}, {info['delegate']}, {info['threads']} threads"),
    ]


def bundle_rows(info: dict, measured: Any) -> list[tuple[str, str]]:
    """The bundle rows of `edgekd-rt info` (none for a bare model file): name, deployed artifact, and a row per
    artifact with what `measured(artifact_dict)` says of its accuracy."""
    m = info["manifest"]
    if not m:
        return []
    rows = [("bundle", f"{m['name']} ({m['task']}), created {m.get('created') or '-'}"),
            ("deployed", _deployed_row(info))]
    for a in m["artifacts"]:
        par = a.get("parity") or {}
        rows.append((f"  {a['path']}", f"{a['format']}/{a['precision']}, {a['size_bytes']:,} B, {measured(a)}, "
                     f"parity {'ok' if par.get('passed') else ('FAILED' if par else '-')}"
                     + (", deployed" if a["path"] == info["deployed"] else "")))
    return rows


def _deployed_row(info: dict) -> str:
    """Which artifact the bundle deploys, and whether it is the one loaded."""
    if info["deployed"] is None:
        return "not recorded (an older bundle): its first usable artifact is loaded"
    if info["is_deployed"]:
        return f"{info['deployed']} (loaded)"
    return f"{info['deployed']} (NOT loaded; {info['artifact']} is)"


def _print_rows(title: str, rows: List[tuple]) -> None:
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, str(v))
    rich_console().print(t)


def _register_calibrate() -> None:
    """`edgekd-rt calibrate` lives in its own module (device profiles); add it when that module imports.

    A module that exists but fails to import (a missing optional dependency) must not take predict/bench/info
    down with it: the other commands keep working and one line on stderr says why calibrate is missing."""
    import importlib

    name = f"{__package__}.cli_calibrate"
    try:
        cli_calibrate = importlib.import_module(name)
    except ImportError as e:
        if not (isinstance(e, ModuleNotFoundError) and e.name == name):  # present but broken: say so
            sys.stderr.write(f"warning: edgekd-rt calibrate is unavailable ({type(e).__name__}: {e})\n")
        return
    if hasattr(cli_calibrate, "register"):
        cli_calibrate.register(app)


_register_calibrate()

from .cli_lines import register as _register_read  # noqa: E402

_register_read(app, MODEL_HELP, BACKEND_HELP)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
