"""The converters' parity runner finds a TFLite interpreter as the board does (one discovery rule,
`edgekd_runtime.backend_tflite.find_interpreter`)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edgekd_converters.runners import run_tflite

TINY_TFLITE = Path(__file__).resolve().parents[1] / "runtime" / "assets" / "tiny_fp32.tflite"


@pytest.mark.tflite
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_a_broken_interpreter_is_skipped_as_the_board_skips_it(monkeypatch):
    """An ai_edge_litert that imports but fails on use (a binary built for another numpy raises, say, a
    RuntimeError, not an ImportError) is passed over for the next interpreter, with the same numbers."""
    pytest.importorskip("tensorflow")
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    want = run_tflite(TINY_TFLITE, x)

    def broken(name: str):
        raise RuntimeError("module compiled against ABI version 0x1000009 but this version of numpy is 0x2000000")

    litert = types.ModuleType("ai_edge_litert")
    litert.__getattr__ = broken  # type: ignore[attr-defined]  # PEP 562: `from ... import Interpreter` raises
    monkeypatch.setitem(sys.modules, "ai_edge_litert", litert)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", litert)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)  # not installed
    from edgekd_runtime.backend_tflite import find_interpreter

    assert find_interpreter()[1] == "tensorflow.lite"
    got = run_tflite(TINY_TFLITE, x)
    assert got.shape == want.shape == (3, 10) and np.allclose(got, want, atol=1e-5)
