"""The int8 artifacts compute the same numbers on every x86-64 CPU: here, and on an AVX2-only CPU without VNNI
(the kind that failed int8 parity checks before), emulated by qemu's `-cpu Haswell`.

onnxruntime's x86 int8 kernels multiply u8 x s8 pairs with VPMADDUBSW on AVX2, whose 16-bit sums saturate with
full-range weights; with VNNI they do not. With the converters' former full-range weights the tiny model's logits
differed between the two CPUs (and the committed digit student's by up to 2.27, 49 of 5,000 top-1 flips); with
7-bit weights (`reduce_range`, edgekd_converters/onnx_int8.py) they are equal to the bit.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

QEMU = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
RUN_ARTIFACTS = """
import sys
import numpy as np
import edgekd_runtime as rt
from numpy._core._multiarray_umath import __cpu_features__ as cpu
x = np.load(sys.argv[1])["x"]
out = {"avx512_vnni": np.array(cpu.get("AVX512VNNI", False)), "avx2": np.array(cpu.get("AVX2", False))}
for path in sys.argv[3:]:
    rec = rt.load(path, threads=1)
    out[path.rsplit("/", 1)[-1]] = rec.backend.invoke(rec.to_input(x))
np.savez(sys.argv[2], **out)
"""


def _outputs(tmp_path: Path, x: np.ndarray, paths: list[Path], emulate: str | None) -> dict[str, np.ndarray]:
    """Each artifact's raw outputs on `x` (canvases), from a fresh interpreter, under `qemu -cpu emulate` when
    given."""
    inp, out = tmp_path / "x.npz", tmp_path / f"out-{emulate or 'native'}.npz"
    np.savez(inp, x=x)
    cmd = [sys.executable, "-c", RUN_ARTIFACTS, str(inp), str(out), *map(str, paths)]
    if emulate:
        cmd = [QEMU, "-cpu", emulate, *cmd]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(np.load(out))


@pytest.mark.skipif(platform.machine() != "x86_64" or QEMU is None,
                    reason="needs x86-64 and qemu-user (Debian: qemu-user-static) to emulate an AVX2-only CPU")
def test_int8_artifacts_compute_the_same_on_an_avx2_only_cpu(converted, digits, tmp_path):
    out_dir, report = converted
    paths = [a.path for a in report.artifacts if a.precision == "int8"]
    assert sorted(p.suffix for p in paths) == [".onnx", ".tflite"]
    x_train, _, x_test, _ = digits
    x = np.concatenate([x_test, x_train[:700]])  # 1,000 digits, 300 of them never trained on
    here = _outputs(tmp_path, x, paths, None)
    avx2 = _outputs(tmp_path, x, paths, "Haswell")
    assert avx2["avx2"] and not avx2["avx512_vnni"], "qemu did not hide AVX-512/VNNI"
    for p in paths:
        np.testing.assert_array_equal(avx2[p.name], here[p.name], err_msg=f"{p.name}: AVX2-only vs this CPU")
