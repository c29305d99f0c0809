"""Line canvases on the board: geometry of simple lines, chunking long lines, options (photos: test_line_photos.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd_runtime.errors import UserInputError
from edgekd_runtime.lines import LineGeometry, LineTooWideError, line_canvas, line_chunks, preprocess_line

H, W = 24, 192


def _bars(width: int, xs: list[int], height: int = 100) -> np.ndarray:
    """Dark 8 x 40 px bars on white paper at columns `xs`."""
    page = np.full((height, width), 255, np.uint8)
    for x in xs:
        page[30:70, x:x + 8] = 0
    return page


def _runs(canvas: np.ndarray) -> list[np.ndarray]:
    cols = np.flatnonzero(canvas.max(0) > 0.5)
    return np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)


def test_preprocess_line_is_the_canvas_of_line_canvas():
    page = _bars(400, [20, 60, 100])
    canvas, geom = line_canvas(page, H, W)
    assert np.array_equal(preprocess_line(page, H, W), canvas) and isinstance(geom, LineGeometry)
    # bar k starts at pixel 20 + 40 k: its canvas columns map back there
    for run, x in zip(_runs(canvas), (20, 60, 100)):
        x0, x1 = geom.to_image(run[0], run[-1] + 1)
        assert abs(x0 - x) <= 1 and abs(x1 - (x + 8)) <= 1


def test_a_long_line_is_read_in_pieces_cut_between_characters():
    xs = list(range(50, 2900, 60))
    page = _bars(3000, xs)
    with pytest.raises(LineTooWideError, match="line_chunks|split it"):
        line_canvas(page, H, W)
    pieces = line_chunks(page, H, W)
    assert len(pieces) > 1
    found, last_x = [], -1
    for canvas, geom in pieces:
        assert canvas.shape == (H, W)
        for run in _runs(canvas):  # every bar whole, in one piece, in order
            x0, x1 = geom.to_image(run[0], run[-1] + 1)
            assert abs((x1 - x0) - 8) <= 2 and x0 > last_x
            found.append(x0)
            last_x = x0
    assert len(found) == len(xs) and max(abs(a - b) for a, b in zip(found, xs)) <= 1
    short = _bars(400, [20, 60, 100])
    (canvas, geom), = line_chunks(short, H, W)
    assert np.array_equal(canvas, line_canvas(short, H, W)[0])


def test_an_unknown_polarity_is_refused():
    with pytest.raises(UserInputError, match="polarity 'inverse' is unknown"):
        line_canvas(_bars(400, [20]), H, W, polarity="inverse")
