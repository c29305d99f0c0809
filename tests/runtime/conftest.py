"""Fixtures for the runtime tests: tiny ONNX models built with onnx.helper, the committed tiny TFLite models,
a bundle directory, and synthetic handwriting "photos". No torch, no tensorflow."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from rt_support import ASSETS, make_linear_onnx


@pytest.fixture(scope="session")
def lin_weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.normal(0, 0.05, (784, 10)).astype(np.float32), rng.normal(0, 0.1, 10).astype(np.float32)


@pytest.fixture(scope="session")
def lin_onnx(tmp_path_factory, lin_weights) -> Path:
    return make_linear_onnx(tmp_path_factory.mktemp("onnx") / "lin.onnx", *lin_weights)


TFLITE_FIXTURES = {"tiny_tflite", "tiny_int8_tflite", "bundle"}


def pytest_collection_modifyitems(config, items):
    """Tests that use a TFLite model carry the `tflite` marker (so `-m "not tflite"` runs without LiteRT)."""
    here = Path(__file__).resolve().parent
    for item in items:  # this hook sees the whole session's items: touch only the runtime tests
        if here in Path(str(item.path)).resolve().parents and TFLITE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.tflite)


def _needs_tflite(request) -> None:
    """Skip the requesting test where no TFLite interpreter is installed."""
    from edgekd_runtime.backends import tflite_available

    if not tflite_available():
        pytest.skip("no TFLite interpreter (pip install 'edgekd-runtime[tflite]')")


@pytest.fixture()
def needs_tflite(request) -> None:
    """Skip where no TFLite interpreter is installed (for a test that picks its model from a parameter)."""
    _needs_tflite(request)


@pytest.fixture()
def tflite_name(needs_tflite) -> str:
    """The TFLite interpreter the runtime uses here: ai_edge_litert, else tflite_runtime (boards with numpy 1.x,
    scripts/test-tflite-runtime.sh), else tensorflow.lite."""
    from edgekd_runtime.backend_tflite import find_interpreter

    return find_interpreter()[1]


@pytest.fixture()
def tiny_tflite(request) -> Path:
    _needs_tflite(request)
    return ASSETS / "tiny_fp32.tflite"


@pytest.fixture()
def tiny_int8_tflite(request) -> Path:
    _needs_tflite(request)
    return ASSETS / "tiny_int8.tflite"


@pytest.fixture(scope="session")
def tiny_weights() -> tuple[np.ndarray, np.ndarray]:
    d = np.load(ASSETS / "tiny_weights.npz")
    return d["w"], d["b"]


@pytest.fixture()
def bundle(tmp_path, lin_onnx, tiny_tflite, tiny_int8_tflite) -> Path:
    """A bundle: student.onnx (fp32), student_float32.tflite, student_int8.tflite and manifest.json."""
    from edgekd_runtime.manifest import Artifact, Manifest

    d = tmp_path / "bundle"
    d.mkdir()
    shutil.copy(lin_onnx, d / "student.onnx")
    shutil.copy(tiny_tflite, d / "student_float32.tflite")
    shutil.copy(tiny_int8_tflite, d / "student_int8.tflite")
    m = Manifest(name="tiny", labels=[f"c{i}" for i in range(10)])
    m.artifacts = [Artifact.from_file(d, "student.onnx", "fp32"),
                   Artifact.from_file(d, "student_float32.tflite", "fp32"),
                   Artifact.from_file(d, "student_int8.tflite", "int8")]
    m.save(d)
    return d
