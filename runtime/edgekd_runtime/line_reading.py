"""`Reading`: what a `LineRecognizer` read in one line image, its characters' pixel spans made on first access."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, overload


class _Characters:
    """`Reading.characters`, built on first access: the recognizer hands over the decoded characters with their
    frames (`CharacterFrames`), and a loop that reads only the text and the confidence pays for no spans. A list
    given by the caller is kept as it is. (A dataclass field whose default is a descriptor, like `Prediction.top_k`.)"""

    @overload
    def __get__(self, obj: None, objtype: Any = None) -> tuple[()]: ...
    @overload
    def __get__(self, obj: Reading, objtype: Any = None) -> list[tuple[str, float, tuple[int, int]]]: ...

    def __get__(self, obj: Reading | None, objtype: Any = None) -> Any:
        if obj is None:
            return ()  # the field's default: no characters
        chars = obj.__dict__["_characters"]
        if type(chars) is CharacterFrames:
            chars = obj.__dict__["_characters"] = chars.spans()
        return chars

    def __set__(self, obj: Reading, value: Any) -> None:
        obj.__dict__["_characters"] = value if isinstance(value, (CharacterFrames, list)) else list(value)


class CharacterFrames(tuple):
    """(decoded characters (char, probability, first frame, last frame), LineGeometry, frame stride): a
    reading's characters before their spans are mapped to image pixels. (A tuple: made in C, no __init__.)"""

    def spans(self) -> list[tuple[str, float, tuple[int, int]]]:
        chars, geom, s = self
        return [(ch, p, geom.to_image(a * s, (b + 1) * s)) for ch, p, a, b in chars]


@dataclass
class Reading:
    """What a line recognizer read in one image.

    Attributes:
        text: the string.
        confidence: string-level confidence in [0, 1].
        characters: per character (char, probability, (x0, x1) its column span in the input image's pixels).
        latency_ms: model inference only (a batch's time shared out in `read_batch`).
        preprocess_ms: decoding the image and making the line canvas.
    """

    text: str
    confidence: float
    characters: _Characters = _Characters()  # [(char, probability, (x0, x1))]
    latency_ms: float = 0.0
    preprocess_ms: float = 0.0
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["characters"] = [{"char": c, "probability": p, "x0": x[0], "x1": x[1]} for c, p, x in self.characters]
        return d
