"""What the webpad does in each mode: single digits (`POST /api/predict`, the square pad) or text lines
(`POST /api/read[?pattern=P]`, the wide pad), chosen by the bundle's task.

Each mode is a `Mode`: the page it serves at `/`, the endpoint it answers, and how a decoded image becomes the
JSON answer. Errors that are the request's fault are `RequestRejected` with a 4xx status; the server keeps serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qs

from image_intake import RequestRejected

from edgekd_runtime.errors import BlankImageError, ImageError, ModelOutputError, PatternError, UserInputError

MODES = ("auto", "digits", "lines")
TOO_BIG_HINT = {"digits": "scale it down", "lines": "crop it to the line, or split a long line into shorter ones"}


@dataclass(frozen=True)
class Mode:
    """One way of serving a recognizer: `page` at `/`, `endpoint` for the image, `answer(rec, image, query)`."""

    name: str  # "digits" or "lines"
    page: str  # the static file served at /
    endpoint: str  # the POST route that takes an image
    answer: Callable[[Any, Any, dict[str, str]], dict[str, Any]]
    check_query: Callable[[Any, dict[str, str]], None]  # before the body is decoded: 400 for a bad query
    nothing_found: str  # what a blank image lacks, for its 422


def task_of(recognizer: Any) -> str:
    """`lines` for a text-line recognizer, else `digits` (what `edgekd_runtime.load` returned)."""
    return "lines" if getattr(recognizer, "task", "digits") == "lines" else "digits"


def check_mode_name(asked: str) -> None:
    """Raises UserInputError for a mode name that is not auto, digits or lines."""
    if asked not in MODES:
        raise UserInputError(f"--mode {asked!r} is unknown; use one of {', '.join(MODES)}")


def pick_mode(recognizer: Any, asked: str, model_name: str) -> Mode:
    """The mode for this recognizer; `asked` (auto, digits or lines) must agree with the bundle's task.

    Raises:
        UserInputError: an unknown mode, or one that the bundle cannot serve.
    """
    check_mode_name(asked)
    task = task_of(recognizer)
    if asked not in ("auto", task):
        kind = "a text-line (line-recognition)" if task == "lines" else "a single-digit"
        raise UserInputError(f"--mode {asked} but {model_name} is {kind} bundle; serve a "
                             f"{'line-recognition' if asked == 'lines' else 'single-digit'} bundle, or drop --mode "
                             f"(auto picks {task})")
    return LINES if task == "lines" else DIGITS


def parse_query(path: str) -> dict[str, str]:
    """`?pattern=%5Cd%7B3%7D` -> {"pattern": "\\d{3}"} (blank values dropped; a key given twice is refused: which
    one was meant is a guess)."""
    query = path.split("?", 1)[1] if "?" in path else ""
    try:
        parsed = parse_qs(query, keep_blank_values=False, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError) as e:
        raise RequestRejected(400, f"cannot parse the query string ({e}); URL-encode it as UTF-8") from None
    twice = sorted(k for k, v in parsed.items() if len(v) > 1)
    if twice:
        raise RequestRejected(400, f"?{twice[0]}= is given {len(parsed[twice[0]])} times; give it once")
    return {k: v[0] for k, v in parsed.items()}


def wrong_endpoint(mode: Mode, route: str, model_name: str) -> RequestRejected:
    """The 400 for an image sent to the other mode's endpoint (a line bundle's server asked to predict, ...)."""
    what = "reads text lines with a line-recognition" if mode.name == "lines" else "recognises single digits with a"
    return RequestRejected(400, f"{route} is not served here: this webpad {what} bundle ({model_name}); "
                                f"POST the image to {mode.endpoint}")


# ---- digits ------------------------------------------------------------------------------------------------------
def _digit_answer(rec: Any, image: Any, query: dict[str, str]) -> dict[str, Any]:
    pred = rec.predict(image, top_k=3)
    return {
        "label": str(pred.label),
        "index": int(pred.index),
        "probability": float(pred.probability),
        "top_k": [{"label": str(lbl), "probability": float(p)} for lbl, p in pred.top_k],
        "latency_ms": float(pred.latency_ms),
        "preprocess_ms": float(getattr(pred, "preprocess_ms", 0.0)),
    }


def _digit_query(rec: Any, query: dict[str, str]) -> None:
    if "pattern" in query:
        raise RequestRejected(400, "a pattern constrains text lines; this webpad serves a single-digit bundle, "
                                   "which reads one digit per image: drop ?pattern=")


# ---- lines -------------------------------------------------------------------------------------------------------
def _line_query(rec: Any, query: dict[str, str]) -> None:
    """A pattern no string of the charset can match is refused here, before the image is even decoded."""
    if "pattern" in query:
        try:
            rec.constraint(query["pattern"])  # cached: the read below does not compile it again
        except PatternError as e:
            raise RequestRejected(400, str(e)) from None


def _line_answer(rec: Any, image: Any, query: dict[str, str]) -> dict[str, Any]:
    reading = rec.read(image, query.get("pattern"))
    return {
        "text": reading.text,
        "confidence": float(reading.confidence),
        "characters": [{"char": c, "probability": float(p), "x0": int(x0), "x1": int(x1)}
                       for c, p, (x0, x1) in reading.characters],
        "pattern": query.get("pattern"),
        "latency_ms": float(reading.latency_ms),
        "preprocess_ms": float(reading.preprocess_ms),
    }


DIGITS = Mode("digits", "index.html", "/api/predict", _digit_answer, _digit_query, "no digit found")
LINES = Mode("lines", "lines.html", "/api/read", _line_answer, _line_query, "no text line found")


def run_answer(mode: Mode, rec: Any, image: Any, query: dict[str, str]) -> dict[str, Any]:
    """`mode.answer`, with the runtime's typed errors turned into HTTP statuses (422: the image, 500: the model)."""
    try:
        return mode.answer(rec, image, query)
    except BlankImageError as e:
        raise RequestRejected(422, f"{mode.nothing_found}: {e}") from None
    except ModelOutputError as e:  # the server's model is broken, not the drawing
        raise RequestRejected(500, f"the model cannot answer: {e}") from None
    except PatternError as e:
        raise RequestRejected(400, str(e)) from None
    except (ImageError, UserInputError) as e:
        raise RequestRejected(422, str(e)) from None
