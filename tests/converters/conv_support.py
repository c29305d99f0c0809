"""Helpers shared by the converter tests (a uniquely named module: `conftest` names clash across test folders).

int8 agreement and its margins. The tiny CNN of conftest.py is trained until it fits its 1,200 training digits with
a clear margin (top-2 logit gap >= 2.3 on every one, measured over 4 seeds), so the product's default int8
tolerance (>= 99 % top-1 agreement) is tested on those digits: 0 of 1,200 flip, with onnxruntime's exact int8
arithmetic and with its AVX2 kernels on a CPU without VNNI, whose u8*s8 pair sums saturate at int16 in the first
conv (logit errors up to ~9 there instead of ~1).
On the 300 held-out digits the CNN (~92 % accurate) is unsure of a dozen or two: 0-3 of them flip with exact int8
arithmetic, 3-11 on AVX2 without VNNI, so a 99 % bar there sits on the edge on every CPU. The tests about the
mechanics of a conversion (files, layouts, a fixed batch, report fields) that check held-out digits pass
`mechanics_tolerances()` instead: 90 % is clear of the worst measured (96 % on 101 digits) and still far above a
broken calibration (73-88 %: dimmed, inverted or unnormalised calibration canvases).
"""

from __future__ import annotations

import math

MECHANICS_MIN_TOP1 = 0.90


def mechanics_tolerances() -> dict:
    """The explicit int8 tolerance of the mechanics tests on held-out digits (see the module docstring)."""
    from edgekd_converters import Tolerance

    return {"int8": Tolerance(atol=math.inf, rtol=0.0, min_top1_agreement=MECHANICS_MIN_TOP1)}


def foreign_onnx():
    """tests/fixtures/foreign_onnx.py (the mnist-8-shaped model generator), imported by path."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "fixtures" / "foreign_onnx.py"
    spec = importlib.util.spec_from_file_location("foreign_onnx", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
