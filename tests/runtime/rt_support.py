"""Helpers shared by the runtime tests (a uniquely named module: `conftest` names clash across test folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
MEAN, STD = 0.1307, 0.3081


def make_linear_onnx(path: Path, w: np.ndarray, b: np.ndarray, batch: int | str = "N", layout: str = "NCHW",
                     softmax: bool = False, size: int = 28) -> Path:
    """Flatten -> Gemm(w, b) [-> Softmax]: logits = x.reshape(N, -1) @ w + b; input NCHW (N,1,S,S) or NHWC."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = [batch, 1, size, size] if layout == "NCHW" else [batch, size, size, 1]
    nodes = [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("Gemm", ["flat", "W", "b"], ["z"])]
    nodes.append(helper.make_node("Softmax", ["z"], ["out"], axis=1) if softmax else
                 helper.make_node("Identity", ["z"], ["out"]))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, w.shape[1]])],
        [numpy_helper.from_array(w.astype(np.float32), "W"), numpy_helper.from_array(b.astype(np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def reference_logits(canvases: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """What the linear model must output, computed with numpy alone (float64)."""
    x = (canvases.astype(np.float64) - MEAN) / STD
    return x.reshape(x.shape[0], -1) @ w.astype(np.float64) + b


def tiny_reference(canvases: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The committed TFLite model in numpy: normalise -> 7x7 average pool -> (N, 16) @ w + b."""
    x = (canvases.astype(np.float64) - MEAN) / STD
    pooled = x.reshape(x.shape[0], 4, 7, 4, 7).mean(axis=(2, 4)).reshape(x.shape[0], 16)
    return pooled @ w + b


def digit_canvas() -> np.ndarray:
    """A hand-made MNIST-placed '0': an anti-aliased elliptical ring 20 px tall, 14 px wide, centred at 14."""
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32) + 0.5
    r = np.sqrt(((yy - 14.0) / 9.3) ** 2 + ((xx - 14.0) / 6.3) ** 2)
    return np.clip(1.0 - np.abs(r - 0.86) / 0.24, 0.0, 1.0).astype(np.float32)


def seven_canvas() -> np.ndarray:
    """A hand-made '7' (asymmetric: its centre of mass is up and to the right of its box centre)."""
    c = np.zeros((28, 28), np.float32)
    c[6:9, 8:21] = 1.0
    for r in range(9, 23):
        col = 19 - (r - 9) // 2
        c[r, col - 1:col + 2] = 1.0
    return c


def handwriting_photo(canvas: np.ndarray, height: int = 480, width: int = 640, scale: int = 10,
                      top: int = 60, left: int = 330, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """A synthetic "photo": the canvas drawn big in dark ink on light, unevenly lit, noisy paper, off centre."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    big = np.asarray(Image.fromarray(canvas.astype(np.float32), mode="F")
                     .resize((28 * scale, 28 * scale), Image.BILINEAR), dtype=np.float32)
    ink = np.zeros((height, width), np.float32)
    ink[top:top + big.shape[0], left:left + big.shape[1]] = np.clip(big, 0, 1)
    paper = 0.72 + 0.2 * np.linspace(0, 1, width)[None, :]  # lighting gradient across the page
    img = paper * (1.0 - 0.85 * ink) + rng.normal(0, noise, (height, width))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_line_onnx(path: Path, num_classes: int = 3, height: int = 24, width: int | str = "W",
                   nan: bool = False) -> Path:
    """A hand-made CTC "line model": mean over the height, average over each 4-column frame, then a 1x1
    convolution: a frame with some ink reads class 1 (charset[0]), an empty one the blank, class 2.. never.
    Input (N, 1, height, width) normalised; output (N, width / 4, num_classes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((num_classes, 1, 1, 1), np.float32)
    b = np.full(num_classes, -5.0, np.float32)
    w[0], b[0] = -2.0, -0.5  # blank: wins on empty frames (normalised column mean ~ -0.42)
    w[1], b[1] = 2.0, 0.0  # class 1: wins where a column holds a little ink (mean above ~ -0.13)
    if nan:  # a broken model: NaN scores for every frame
        b[0] = np.nan
    frames = "T" if isinstance(width, str) else width // 4
    nodes = [helper.make_node("ReduceMean", ["input", "axes"], ["col"], keepdims=1),
             helper.make_node("AveragePool", ["col"], ["frame"], kernel_shape=[1, 4], strides=[1, 4]),
             helper.make_node("Conv", ["frame", "W", "B"], ["z"]),
             helper.make_node("Transpose", ["z"], ["zt"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["zt", "shape"], ["logits"])]
    graph = helper.make_graph(
        nodes, "line", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", frames, num_classes])],
        [numpy_helper.from_array(np.array([2], np.int64), "axes"), numpy_helper.from_array(w, "W"),
         numpy_helper.from_array(b, "B"), numpy_helper.from_array(np.array([0, -1, num_classes], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def bars_image(spans: list[tuple[int, int]], height: int = 100, width: int = 400, top: int = 30,
               bottom: int = 70) -> np.ndarray:
    """Dark boxes drawn with a 3-px pen, columns (x0, x1), on light paper (pen strokes: line preprocessing refuses
    solid blocks): the hand-made line model reads each box as one character."""
    img = np.full((height, width), 230, np.uint8)
    for x0, x1 in spans:
        img[top:bottom, x0:x1] = 20
        img[top + 3:bottom - 3, x0 + 3:x1 - 3] = 230
    return img


def png_header_only(path: Path, width_px: int, height_px: int, bit_depth: int = 8, color_type: int = 0) -> Path:
    """A PNG that declares its size but carries almost no pixel data (a few hundred bytes on disk): decoding it
    would fail as truncated, so an error that names the size shows it was refused before decoding."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width_px, height_px, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def make_line_bundle(d: Path) -> Path:
    """A text-line bundle in `d` around the hand-made CTC line model (`make_line_onnx`: reads each dark box as 'a')."""
    from edgekd_runtime.manifest import LINE_TASK, Artifact, InputSpec, LinesSpec, Manifest

    d.mkdir(parents=True, exist_ok=True)
    make_line_onnx(d / "student.onnx", 3)
    spec = LinesSpec(charset="ab", height=24, width=96, max_width=384, dynamic_formats=("onnx",), max_len=12)
    m = Manifest(name="ctc-hand", labels=["a", "b"], input=InputSpec("input", (1, 1, 24, 96)),
                 output={"name": "logits", "kind": "logits"}, task=LINE_TASK, lines=spec)
    m.artifacts = [Artifact.from_file(d, "student.onnx", "fp32")]
    m.save(d)
    return d
