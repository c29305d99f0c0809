"""How tests/runtime/assets/preprocess_reference.npz was made: canvases of synthetic photos (tests/runtime/rt_support)
by the numpy + Pillow preprocessing of commit 24fff8b, the implementation before OpenCV, so that the test can hold
today's preprocessing to it (test_rt_preprocess.py::test_canvases_equal_the_previous_implementations):

    git worktree add /tmp/edgekd-24fff8b 24fff8b
    PYTHONPATH=/tmp/edgekd-24fff8b/runtime:tests/runtime python tests/runtime/assets/make_preprocess_reference.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def cases() -> dict[str, np.ndarray]:
    """The photos: positions, scales, seeds, both polarities, a desk around the sheet, a fine pen, RGB, 16-bit and
    float arrays of the same kind of photo."""
    from PIL import Image, ImageDraw
    from rt_support import digit_canvas, handwriting_photo, seven_canvas

    out = {}
    for seed, top, left, scale in [(1, 10, 20, 6), (2, 150, 400, 8), (3, 40, 100, 15), (4, 60, 330, 10)]:
        out[f"ring_{seed}"] = handwriting_photo(digit_canvas(), top=top, left=left, scale=scale, seed=seed)
        out[f"seven_{seed}"] = handwriting_photo(seven_canvas(), top=top, left=left, scale=scale, seed=seed)
    out["ring_inverted"] = 255 - out["ring_4"]
    desk = handwriting_photo(digit_canvas(), height=480, width=640, scale=8, top=110, left=220)
    desk[:50], desk[-50:], desk[:, :70], desk[:, -70:] = 40, 40, 40, 40
    out["desk"] = desk
    im = Image.new("L", (600, 600), 235)
    ImageDraw.Draw(im).line([(250, 100), (350, 100), (300, 500)], fill=20, width=3)
    out["fine_pen"] = np.asarray(im)
    out["rgb"] = np.stack([out["seven_2"]] * 3, -1)
    out["uint16"] = out["ring_1"].astype(np.uint16) * 257
    out["float"] = out["seven_3"].astype(np.float32) / 255.0
    return out


def main() -> None:
    from edgekd_runtime.preprocess import preprocess

    canvases = {name: preprocess(image) for name, image in cases().items()}
    np.savez_compressed(Path(__file__).with_name("preprocess_reference.npz"), **canvases)


if __name__ == "__main__":
    main()
