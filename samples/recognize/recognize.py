#!/usr/bin/env python3
r"""recognize: read handwritten digits or digit strings from image files, a (watched) folder or a camera.

    python3 samples/recognize/recognize.py BUNDLE digits/            # every image in a folder
    python3 samples/recognize/recognize.py BUNDLE a.png b.jpg        # some files
    python3 samples/recognize/recognize.py BUNDLE inbox/ --watch     # and new files as they arrive
    python3 samples/recognize/recognize.py BUNDLE --camera auto      # picamera2 or OpenCV device 0
    python3 samples/recognize/recognize.py LINE_BUNDLE meters/ --pattern '\d{6}'   # text lines, constrained

With a digit bundle: label, confidence, top-3 and latency per image. With a line-recognition bundle (`lines`):
the string, its confidence, each character's probability and the latency per image (`--pattern` constrains the
string; camera frames are kept whole, not cropped to a square). Then a summary (count, errors, p50/p99 latency).
`--json` prints one JSON object per line (one per image, then {"summary": ...}).
Exit codes: 0 every image recognised; 1 failure; 2 bad usage, or at least one image file could not be
read (the others are still recognised and reported).
Uses only edgekd_runtime and the standard library (OpenCV or picamera2 for --camera).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, when run as a script

from frame_sources import for_each_frame  # noqa: E402
from lines import refuse_pattern_for_digits  # noqa: E402

from edgekd_runtime.cli_support import EXIT_USAGE, handle_errors  # noqa: E402
from edgekd_runtime.errors import EdgekdError, ModelOutputError, UserInputError  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


def _result_line(source: str, pred: Any, total_ms: float) -> dict[str, Any]:
    return {
        "source": source, "label": str(pred.label), "index": int(pred.index),
        "probability": float(pred.probability),
        "top_k": [{"label": str(lbl), "probability": float(p)} for lbl, p in pred.top_k],
        "latency_ms": float(pred.latency_ms), "preprocess_ms": float(getattr(pred, "preprocess_ms", 0.0)),
        "total_ms": total_ms,
    }


def _human(res: dict[str, Any], width: int) -> str:
    top = "  ".join(f"{t['label']} {100 * t['probability']:5.1f}%" for t in res["top_k"])
    return (f"{res['source']:<{width}}  {res['label']:>3}  {100 * res['probability']:5.1f}%  "
            f"top-{len(res['top_k'])}: {top}  {res['latency_ms']:7.2f} ms")


def _share(value: float) -> float:
    """--crop: a share of the frame, in (0, 1]."""
    if not 0.0 < value <= 1.0:
        raise typer.BadParameter(f"{value} is not a share of the frame in (0, 1] (1 keeps the whole frame)")
    return value


def _model_facts(rec: Any) -> dict[str, Any]:
    """Which file was loaded, and whether it is the bundle's deployed (budget-fitting) artifact (None: not recorded)."""
    return {"artifact": rec.artifact.path if rec.artifact else rec.model_path.name, "precision": rec.precision,
            "backend": f"{rec.backend_name} {rec.backend_version}", "deployed": rec.is_deployed}


@app.command()
@handle_errors
def recognize(
    model: Path = typer.Argument(..., help="Bundle directory (with manifest.json) or a .onnx/.tflite file."),
    inputs: Optional[List[Path]] = typer.Argument(None, help="Image files and/or folders of images."),
    camera: Optional[str] = typer.Option(None, help="Read a camera instead: auto, picamera2, or an OpenCV "
                                                    "device index/path such as 0 or /dev/video0."),
    watch: bool = typer.Option(False, help="Keep watching the (single) input folder for new images."),
    new_only: bool = typer.Option(False, help="With --watch: skip the images already in the folder."),
    recursive: bool = typer.Option(False, help="Include images in sub-folders."),
    interval_s: float = typer.Option(0.5, min=0.01, help="Watch poll period / camera frame period."),
    crop: float = typer.Option(1.0, callback=_share, help="Camera: share of the frame kept around its centre, in "
                                                          "(0, 1] (a square for digits, the whole shape for lines)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Stop after this many images."),
    duration_s: Optional[float] = typer.Option(None, min=0.0, help="Stop watching / filming after this long."),
    top_k: int = typer.Option(3, min=1, help="Digit bundles: how many classes to list per image (a line is read "
                                             "as one string, with a probability per character)."),
    pattern: Optional[str] = typer.Option(None, help="Line bundles: a pattern the string must match, e.g. "
                                                     "'\\d{6}' or '\\d+[.,]\\d\\d' (greedy reading without)."),
    backend: str = typer.Option("auto", help="auto, onnx or tflite."),
    precision: Optional[str] = typer.Option(None, help="fp32, fp16 or int8: which artifact of the bundle."),
    threads: Optional[int] = typer.Option(None, min=1, help="Interpreter threads (default: the runtime's)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per line instead of text."),
) -> None:
    """Recognise each image and print label, confidence, top-k and latency, then a summary."""
    from frame_sources import file_frames

    import edgekd_runtime

    inputs = list(inputs or [])
    _check_sources(inputs, camera, watch)
    # files are listed now: bad paths fail before the model loads
    listed = None if (camera is not None or watch) else list(file_frames(inputs, recursive=recursive))
    width = 24 if listed is None else min(60, max(len(f.source) for f in listed))
    recognizer = edgekd_runtime.load(model, backend=backend, threads=threads, precision=precision)
    is_lines = getattr(recognizer, "task", "digits") == "lines"
    frames = _frames(listed, inputs, camera, new_only, recursive, interval_s, crop, duration_s, square=not is_lines)
    if not is_lines:
        refuse_pattern_for_digits(model, pattern)
    if watch:
        typer.echo(f"watching {inputs[0]} every {interval_s} s for new images (Ctrl-C stops)", err=True)
    if is_lines:
        from lines import LineOptions, read_lines

        opts = LineOptions(pattern, json_out, limit, width, camera is not None)
        if read_lines(recognizer, frames, opts, _model_facts(recognizer)):
            raise typer.Exit(EXIT_USAGE)
        return
    tally = _Tally()
    for_each_frame(frames, lambda frame: _recognise_frame(recognizer, frame, top_k, tally, json_out, width),
                   lambda: limit is not None and tally.count >= limit)
    _print_summary(tally, recognizer, camera is not None, json_out)
    if tally.failed_files:
        raise typer.Exit(EXIT_USAGE)


def _check_sources(inputs: list[Path], camera: str | None, watch: bool) -> None:
    if camera is not None and inputs:
        raise UserInputError("give either image paths or --camera, not both")
    if camera is None and not inputs:
        raise UserInputError("nothing to recognise: pass image files or folders, or --camera auto")
    if watch and (len(inputs) != 1 or not inputs[0].is_dir()):
        raise UserInputError("--watch takes exactly one folder, e.g. `recognize.py BUNDLE inbox/ --watch`")


def _frames(listed: list[Any] | None, inputs: list[Path], camera: str | None, new_only: bool, recursive: bool,
            interval_s: float, crop: float, duration_s: float | None, square: bool) -> Iterator[Any]:
    """The frames to recognise: the camera's (cropped to a central square when `square`), the watched folder's
    (`listed` is None for both), or the listed files."""
    from frame_sources import camera_frames, watch_frames

    stop_at = time.monotonic() + duration_s if duration_s is not None else None
    if camera is not None:  # a text line is wide: keep the whole frame, not its central square
        return camera_frames(camera, every_s=interval_s, crop=crop, stop_at=stop_at, square=square)
    if listed is None:
        return watch_frames(inputs[0], interval_s=interval_s, include_existing=not new_only, recursive=recursive,
                            stop_at=stop_at)
    return iter(listed)


@dataclass
class _Tally:
    """What the run has seen: model and per-image latencies of the recognised images, unreadable files and
    camera frames without a digit."""

    latencies_ms: list[float] = field(default_factory=list)
    totals_ms: list[float] = field(default_factory=list)
    failed_files: int = 0
    no_digit_frames: int = 0

    @property
    def count(self) -> int:
        return len(self.latencies_ms) + self.failed_files + self.no_digit_frames


def _recognise_frame(recognizer: Any, frame: Any, top_k: int, tally: _Tally, json_out: bool, width: int) -> None:
    """Predict one frame and print the result (or the error, for an unreadable file or a blank camera frame)."""
    t0 = time.perf_counter()
    try:
        pred = recognizer.predict(frame.image, top_k=top_k)
    except (EdgekdError, OSError, ValueError) as e:
        if isinstance(e, ModelOutputError):  # the model is broken, not this image: stop (exit 2)
            raise
        if not frame.from_camera:
            tally.failed_files += 1
        elif isinstance(e, UserInputError):  # blank or unusable frame: normal for a camera
            tally.no_digit_frames += 1
        else:
            raise
        msg = str(e) if isinstance(e, EdgekdError) else f"cannot read image: {e}"
        if msg.startswith(f"{frame.source}: "):  # the runtime's messages already name the file
            msg = msg[len(frame.source) + 2:]
        if json_out:
            typer.echo(json.dumps({"source": frame.source, "error": msg, "error_type": type(e).__name__},
                                  allow_nan=False))
        else:
            typer.echo(f"error: {frame.source}: {msg}", err=True)
        return
    total_ms = (time.perf_counter() - t0) * 1e3
    res = _result_line(frame.source, pred, total_ms)
    tally.latencies_ms.append(res["latency_ms"])
    tally.totals_ms.append(total_ms)
    typer.echo(json.dumps(res, allow_nan=False) if json_out else _human(res, width))


def _print_summary(tally: _Tally, recognizer: Any, from_camera: bool, json_out: bool) -> None:
    from latency_stats import LatencySummary

    model_lat, total_lat = LatencySummary.of(tally.latencies_ms), LatencySummary.of(tally.totals_ms)
    summary = {"count": tally.count, "recognised": len(tally.latencies_ms), "errors": tally.failed_files,
               "no_digit": tally.no_digit_frames, "latency_ms": model_lat.to_dict(), "total_ms": total_lat.to_dict(),
               "model": _model_facts(recognizer)}
    if json_out:
        typer.echo(json.dumps({"summary": summary}, allow_nan=False))
        return
    extra = f", {tally.no_digit_frames} frames without a digit" if from_camera else ""
    typer.echo(f"\n{summary['count']} images, {len(tally.latencies_ms)} recognised, {tally.failed_files} errors{extra}")
    m = summary["model"]
    deployed = {True: ", the bundle's deployed artifact", False: ", NOT the bundle's deployed artifact"}
    typer.echo(f"model: {m['artifact']} ({m['precision']}, {m['backend']}{deployed.get(m['deployed'], '')})")
    typer.echo(f"model latency: {model_lat.describe()}")
    typer.echo(f"per image (read + preprocess + model): {total_lat.describe()}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
