"""Turn an untrusted HTTP request body into a PIL image, within limits, or a typed error with an HTTP status.

Checks run cheapest first: body size (before reading it), magic bytes, then the header's width and height
(Pillow reads only the header on `Image.open`), and only then the pixels are decoded.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from edgekd_runtime.errors import ImageError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
ACCEPTED_FORMATS = ("PNG", "JPEG")


@dataclass(frozen=True)
class IntakeLimits:
    """What the server accepts. Defaults suit a phone/desktop canvas (a 280x280 PNG is ~10 KB)."""

    max_body_bytes: int = 1 << 20
    max_side_px: int = 2048
    max_pixels: int = 2048 * 2048
    min_side_px: int = 8


class RequestRejected(ImageError):
    """A request the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_content_length(header_value: str | None, limits: IntakeLimits) -> int:
    """Validate the Content-Length header before any body byte is read; return it in bytes."""
    if header_value is None:
        raise RequestRejected(411, "missing Content-Length header; send the PNG as the request body")
    try:
        length_bytes = int(header_value)
    except ValueError:
        raise RequestRejected(400, f"Content-Length {header_value!r} is not an integer") from None
    if length_bytes < 0:
        raise RequestRejected(400, f"Content-Length {length_bytes} is negative")
    if length_bytes == 0:
        raise RequestRejected(400, "empty body; send a PNG image (Content-Type: image/png)")
    if length_bytes > limits.max_body_bytes:
        raise RequestRejected(413, f"body of {length_bytes} bytes exceeds the limit of {limits.max_body_bytes} "
                                   f"bytes; send a smaller image (a 280x280 PNG is about 10 KB)")
    return length_bytes


def decode_image(body: bytes, limits: IntakeLimits, too_big_hint: str = "scale it down"):
    """Decode a PNG or JPEG body into a loaded PIL image, enforcing the dimension limits (`too_big_hint` ends the
    413's message: what to do with an image over them).

    Raises:
        RequestRejected: 400 for an empty or corrupt image, 413 for one too large, 415 for a non-image.
    """
    from PIL import Image, UnidentifiedImageError

    if not body:
        raise RequestRejected(400, "empty body; send a PNG image (Content-Type: image/png)")
    if not (body.startswith(PNG_MAGIC) or body.startswith(JPEG_MAGIC)):
        raise RequestRejected(415, f"body is not a PNG or JPEG image (starts with {body[:8]!r}); "
                                   f"send the canvas as image/png")
    try:
        image = Image.open(io.BytesIO(body), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as e:
        raise RequestRejected(413, f"image refused as a decompression bomb ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        why = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", " the body", str(e))  # Pillow names its buffer
        raise RequestRejected(400, f"cannot read the image header ({why}); the PNG/JPEG is malformed") from None
    width_px, height_px = image.size
    if width_px > limits.max_side_px or height_px > limits.max_side_px or width_px * height_px > limits.max_pixels:
        raise RequestRejected(413, f"image is {width_px}x{height_px} px; the limit is {limits.max_side_px} px "
                                   f"a side and {limits.max_pixels} pixels; {too_big_hint}")
    if width_px < limits.min_side_px or height_px < limits.min_side_px:
        raise RequestRejected(400, f"image is {width_px}x{height_px} px; at least {limits.min_side_px} px "
                                   f"a side is needed to recognise anything")
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise RequestRejected(400, f"cannot decode the image ({e}); it is truncated or corrupt") from None
    return image
