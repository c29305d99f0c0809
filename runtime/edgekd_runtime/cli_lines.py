"""`edgekd-rt read`: read handwritten text lines with a line-recognition bundle; and what `info` / `bench` show
for one.

    edgekd-rt read IMAGES... --model BUNDLE [--pattern P] [--allowed CHARS] [--min-len N] [--max-len N] [--json]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from .cli_support import EXIT_USAGE, LeanCommand, handle_errors, print_json, table_names
from .errors import PatternError, UserInputError


def register(app: typer.Typer, model_help: str, backend_help: str) -> None:
    @app.command("read", cls=LeanCommand,
                 help="Read the handwritten text line in each image with a line-recognition bundle: the string, "
                      "its confidence, each character's probability and position, the latency. Exits 2 if any "
                      "image cannot be read (the others are still shown).")
    @handle_errors
    def read_cmd(
        images: List[Path] = typer.Argument(..., help="Line images or directories of them (PNG, JPEG, ...)."),
        model: Path = typer.Option(..., "--model", "-m", help=model_help),
        pattern: Optional[str] = typer.Option(None, "--pattern", "-p",
                                              help="Constrain the string, e.g. '\\d{6}' (greedy without)."),
        allowed: Optional[str] = typer.Option(None, "--allowed", help="Characters the string may use."),
        min_len: Optional[int] = typer.Option(None, "--min-len", min=0, help="Shortest string to accept."),
        max_len: Optional[int] = typer.Option(None, "--max-len", min=1, help="Longest string to accept."),
        backend: str = typer.Option("auto", "--backend", "-b", help=backend_help),
        threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1, help="Interpreter threads."),
        precision: Optional[str] = typer.Option(None, "--precision", help="In a bundle: fp32, fp16 or int8."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        from .cli import expand_images
        from .loader import load

        rec = load(model, backend=backend, threads=threads, precision=precision)
        if getattr(rec, "task", "digits") != "lines":
            raise rec.wrong_call("read")
        files = expand_images(images)
        results: List[dict] = []
        for f in _progress(files, quiet=as_json):
            try:
                reading = rec.read(f, pattern, allowed=allowed, min_len=min_len, max_len=max_len)
                results.append({"image": str(f), **reading.to_dict()})
            except PatternError:
                raise  # the pattern itself is wrong: the same for every image
            except UserInputError as e:
                results.append({"image": str(f), "error": str(e), "error_type": type(e).__name__})
        if as_json:
            print_json({"model": str(rec.model_path), "backend": rec.backend_name, "precision": rec.precision,
                        "pattern": pattern, "results": results})
        else:
            _print_readings(rec, results)
        failed = [r for r in results if "error" in r]
        for r in failed:
            typer.echo(f"error: {r['error']}", err=True)
        if failed:
            raise typer.Exit(EXIT_USAGE)


def _progress(files: List[Path], quiet: bool) -> Any:
    """The files, behind a progress bar on stderr from `cli.PROGRESS_MIN_IMAGES` images on (as `predict` does)."""
    from .cli import PROGRESS_MIN_IMAGES, rich_console

    if quiet or len(files) < PROGRESS_MIN_IMAGES:
        return files
    from rich.progress import track

    return track(files, description="reading", console=rich_console(stderr=True), transient=True)


def _print_readings(rec: Any, results: List[dict]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"{rec.model_path.name} ({rec.backend_name} {rec.backend_version}, {rec.precision})")
    for col in ("image", "text", "confidence", "characters (p)", "latency"):
        t.add_column(col, justify="right" if col in ("confidence", "latency") else "left",
                     overflow="fold" if col == "image" else "ellipsis")
    for r, name in zip(results, table_names([r["image"] for r in results])):
        if "error" in r:
            t.add_row(name, "[red]error[/]", "-", r["error_type"], "-")
            continue
        chars = escape(" ".join(f"{c['char']}:{c['probability']:.2f}" for c in r["characters"]))
        t.add_row(name, f"[bold]{escape(r['text']) or '(empty)'}[/]", f"{r['confidence']:.3f}", chars,
                  f"{r['latency_ms']:.2f} ms (+{r['preprocess_ms']:.1f} prep)")
    Console(highlight=False).print(t)


def confidence_row(info: dict) -> str:
    """The calibration temperature and the reject thresholds that reach 99 % / 95 % string accuracy."""
    t = info.get("confidence_temperature", 1.0)
    conf = info.get("confidence") or {}
    text = f"temperature {t:g}" + (" (calibrated on the val split)" if conf.get("fitted_on") else " (uncalibrated)")
    for key, target in (("threshold_99", 99), ("threshold_95", 95)):
        th = conf.get(key)
        if th:
            text += (f"; {target} % accuracy: reject below {th['threshold']:.3f} (keeps "
                     f"{100 * th['coverage']:.0f} % of the test lines)")
        elif conf:
            text += f"; {target} % accuracy: not reached on the test lines"
    return text


def info_rows(info: dict) -> list[tuple[str, str]]:
    """`edgekd-rt info` rows for a line recognizer."""
    lines = info["lines"]
    width = (f"fixed {info['input_width']} px" if info["input_width"] else
             f"dynamic, up to {info['max_width']} px (reference {lines['width']})")
    tensors = "; ".join(f"{t['name']} {t['shape']} {t['dtype']}" for t in info["inputs"] + info["outputs"])
    from .cli import bundle_rows, model_rows

    rows = [
        *model_rows(info),
        ("task", "line-recognition (CTC, blank 0)"), ("tensors", tensors),
        ("line", f"height {info['input_height']} px, width {width}, {info['input_layout']}, one frame per "
                 f"{lines['frame_stride']} columns, up to {lines['max_len']} characters at the reference width"),
        ("charset", info["charset"]),
        ("normalization", f"mean {info['normalization']['mean']}, std {info['normalization']['std']}"),
        ("confidence", confidence_row(info)),
    ]
    return rows + bundle_rows(info, _string_accuracy)


def _string_accuracy(a: dict) -> str:
    cer = (a.get("parity") or {}).get("cer")
    acc = a.get("accuracy")
    return f"string acc {'-' if acc is None else acc}, CER {'-' if cer is None else f'{cer:.4f}'}"


def line_latency(rec: Any, mean_ms: float) -> dict[str, float]:
    """Latency per line at the reference width and per character (a character is about as wide as the line is
    high, so a reference-width line holds width / height of them)."""
    h, w = rec.canvas_shape
    chars = w / h
    return {"line_width": w, "line_height": h, "per_line_ms": mean_ms, "chars_per_line": chars,
            "per_char_ms": mean_ms / chars}


def print_json_bench(rec: Any, report: Any) -> None:
    """The latency report, plus `lines`: per line of the reference width and per character (a run's mean time
    shared by the lines of its batch)."""
    print_json({**report.to_dict(), "lines": line_latency(rec, report.mean_ms / report.batch)})
