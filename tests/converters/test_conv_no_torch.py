"""The converters never import torch: a whole conversion runs in a process where torch cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

MEAN, STD = 0.1307, 0.3081  # the normalisation the tiny models in conftest.py were trained with


@pytest.mark.tflite
def test_conversion_runs_with_torch_unimportable(tiny_models, digits, tmp_path):
    np.save(tmp_path / "calib.npy", digits[0][:200])
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        from edgekd_converters.cli import main
        sys.argv = ["edgekd-convert", {str(tiny_models["nchw"])!r}, "--to", "tflite", "--to", "onnx-int8",
                    "--calib", {str(tmp_path / "calib.npy")!r}, "--mean", "{MEAN}", "--std", "{STD}",
                    "--out", {str(tmp_path / "out")!r}, "--json"]
        try:
            main()
        except SystemExit as e:
            assert not e.code, e.code
        assert "torch" not in {{k for k, v in sys.modules.items() if v is not None}}
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "manifest.json", "tiny_float16.tflite", "tiny_float32.tflite", "tiny_int8.onnx", "tiny_int8.tflite"]
    assert '"passed": true' in r.stdout and '"passed": false' not in r.stdout
