"""Line mode of recognize.py: with a line-recognition bundle, read the string in each image (a file, a folder, a
watched folder or camera frames), optionally constrained by `--pattern` (e.g. `\\d{6}`), and print the text, its
confidence, each character's probability and position, and the latency; then a summary.

A pattern no string of the bundle's characters can match is refused before the first image is read (exit 2).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import typer
from frame_sources import for_each_frame
from latency_stats import LatencySummary

from edgekd_runtime.errors import EdgekdError, ModelOutputError, UserInputError


@dataclass(frozen=True)
class LineOptions:
    """How to read and print: the pattern, --json, --limit, the width of the source column, camera or files."""

    pattern: Optional[str]
    json_out: bool
    limit: Optional[int]
    width: int
    camera: bool


@dataclass
class LineTally:
    """What a run read: model latencies, whole-path times, files that failed, camera frames with no text line."""

    latencies_ms: list[float]
    totals_ms: list[float]
    failed_files: int = 0
    no_text_frames: int = 0

    @property
    def count(self) -> int:
        return len(self.latencies_ms) + self.failed_files + self.no_text_frames


def check_pattern(rec: Any, pattern: Optional[str]) -> None:
    """Refuse a malformed pattern, or one no string of the bundle's characters can match, before any image is
    read (errors.PatternError, exit 2)."""
    if pattern is not None:
        rec.constraint(pattern)


def refuse_pattern_for_digits(model: Any, pattern: Optional[str]) -> None:
    """A digit bundle reads one digit per image: `--pattern` (for text lines) is a usage error there."""
    if pattern is not None:
        raise UserInputError(f"--pattern constrains text lines, but {model} is a single-digit bundle (one digit per "
                             f"image); drop --pattern or pass a line-recognition bundle")


def reading_result(source: str, reading: Any, total_ms: float) -> dict[str, Any]:
    """One reading as a JSON-ready line: text, confidence, characters (char, probability, x0, x1), timings."""
    return {"source": source, **reading.to_dict(), "total_ms": total_ms}


def human_line(res: dict[str, Any], width: int) -> str:
    chars = " ".join(f"{c['char']}:{100 * c['probability']:.0f}%" for c in res["characters"])
    return (f"{res['source']:<{width}}  {res['text'] or '(empty)':<12}  {100 * res['confidence']:5.1f}%  "
            f"[{chars}]  {res['latency_ms']:7.2f} ms")


def _print_error(source: str, e: Exception, json_out: bool) -> None:
    msg = str(e) if isinstance(e, EdgekdError) else f"cannot read image: {e}"
    if msg.startswith(f"{source}: "):  # the runtime's messages already name the file
        msg = msg[len(source) + 2:]
    if json_out:
        typer.echo(json.dumps({"source": source, "error": msg, "error_type": type(e).__name__}, allow_nan=False))
    else:
        typer.echo(f"error: {source}: {msg}", err=True)


def _read_one(rec: Any, frame: Any, opts: LineOptions, tally: LineTally) -> None:
    """Read one frame and print its line, or its error (a broken model or a bad pattern stops the run)."""
    t0 = time.perf_counter()
    try:
        reading = rec.read(frame.image, opts.pattern)
    except (EdgekdError, OSError, ValueError) as e:
        if isinstance(e, ModelOutputError) or (frame.from_camera and not isinstance(e, UserInputError)):
            raise  # the model is broken, or the camera is: not this image's fault
        if frame.from_camera:
            tally.no_text_frames += 1  # a frame without a readable line: normal for a camera
        else:
            tally.failed_files += 1
        _print_error(frame.source, e, opts.json_out)
        return
    total_ms = (time.perf_counter() - t0) * 1e3
    res = reading_result(frame.source, reading, total_ms)
    tally.latencies_ms.append(res["latency_ms"])
    tally.totals_ms.append(total_ms)
    typer.echo(json.dumps(res, allow_nan=False) if opts.json_out else human_line(res, opts.width))


def read_lines(rec: Any, frames: Iterable[Any], opts: LineOptions, model_facts: dict[str, Any]) -> int:
    """Read every frame (until --limit or Ctrl-C), print each reading and the summary; return how many files
    could not be read (the caller exits 2 when any)."""
    check_pattern(rec, opts.pattern)
    tally = LineTally([], [])
    for_each_frame(frames, lambda frame: _read_one(rec, frame, opts, tally),
                   lambda: opts.limit is not None and tally.count >= opts.limit)
    _print_summary(tally, opts, model_facts)
    return tally.failed_files


def _print_summary(tally: LineTally, opts: LineOptions, model_facts: dict[str, Any]) -> None:
    model_lat, total_lat = LatencySummary.of(tally.latencies_ms), LatencySummary.of(tally.totals_ms)
    summary = {"count": tally.count, "recognised": len(tally.latencies_ms), "errors": tally.failed_files,
               "no_text": tally.no_text_frames, "pattern": opts.pattern, "latency_ms": model_lat.to_dict(),
               "total_ms": total_lat.to_dict(), "model": model_facts}
    if opts.json_out:
        typer.echo(json.dumps({"summary": summary}, allow_nan=False))
        return
    extra = f", {tally.no_text_frames} frames without a text line" if opts.camera else ""
    typer.echo(f"\n{tally.count} images, {len(tally.latencies_ms)} lines read, {tally.failed_files} errors{extra}"
               + (f" (pattern {opts.pattern})" if opts.pattern else ""))
    deployed = {True: ", the bundle's deployed artifact", False: ", NOT the bundle's deployed artifact"}
    typer.echo(f"model: {model_facts['artifact']} ({model_facts['precision']}, {model_facts['backend']}"
               f"{deployed.get(model_facts['deployed'], '')})")
    typer.echo(f"model latency per line: {model_lat.describe()}")
    typer.echo(f"per image (read + preprocess + model): {total_lat.describe()}")
