"""Build the calibration suite that `edgekd-rt calibrate` runs on the board (a maintainer script, not runtime).

Micro-models cover each op class of the latency model (conv, depthwise conv, dense, pooling/elementwise, chains
of small layers for the per-layer cost, and a few student-shaped composites) over a range of sizes. They are
built with onnx.helper, their features computed with `edgekd.budget.cost.analyze_onnx`, quantized to ONNX int8
(onnxruntime, QDQ) and converted to TFLite fp32/fp16/int8 with onnx2tf, then shipped under
``runtime/edgekd_runtime/assets/calibration/`` with ``suite.json``, because the board has neither onnx nor
tensorflow. Rebuild with::

    .venv/bin/python -m edgekd.budget.suite                    # everything (a few minutes)
    .venv/bin/python -m edgekd.budget.suite --features-only    # only suite.json's features
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

SUITE_FORMAT = "edgekd-calibration-suite"
ASSET_DIR = Path(__file__).resolve().parents[2] / "runtime" / "edgekd_runtime" / "assets" / "calibration"
OPSET = 17


@dataclass(frozen=True)
class Spec:
    name: str
    group: str
    quick: bool
    build: Callable[["_G"], None]
    input_shape: tuple[int, ...]


class _G:
    """A tiny graph builder over onnx.helper with seeded random weights."""

    def __init__(self, input_shape: tuple[int, ...], seed: int) -> None:
        from onnx import TensorProto, helper

        self.h, self.tp = helper, TensorProto
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self.shape = {"input": tuple(input_shape)}
        self.cur = "input"
        self.k = 0

    def _name(self, op: str) -> str:
        self.k += 1
        return f"{op.lower()}{self.k}"

    def _const(self, arr: np.ndarray, stem: str) -> str:
        from onnx import numpy_helper

        name = f"{stem}_{len(self.inits)}"
        # 16 levels: timing does not depend on the values, and the shipped files compress ~8x in git and wheels.
        levels = np.linspace(-1.0, 1.0, 16) * float(np.std(arr) or 1.0) * 1.7
        q = levels[np.clip(np.round((arr / (np.std(arr) or 1.0) / 1.7 + 1) * 7.5), 0, 15).astype(int)]
        self.inits.append(numpy_helper.from_array(q.astype(np.float32), name))
        return name

    def conv(self, cout: int, k: int = 3, stride: int = 1, groups: int = 1, relu: bool = True) -> "_G":
        n, cin, h, w = self.shape[self.cur]
        fan_in = cin // groups * k * k
        wt = self._const(self.rng.normal(0, (2 / fan_in) ** 0.5, (cout, cin // groups, k, k)), "w")
        b = self._const(self.rng.normal(0, 0.01, (cout,)), "b")
        out = self._name("conv")
        p = k // 2
        self.nodes.append(self.h.make_node("Conv", [self.cur, wt, b], [out], kernel_shape=[k, k],
                                           pads=[p, p, p, p], strides=[stride, stride], group=groups))
        self.shape[out] = (n, cout, (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1)
        self.cur = out
        return self.relu() if relu else self

    def dw(self, k: int = 3, stride: int = 1) -> "_G":
        return self.conv(self.shape[self.cur][1], k, stride, groups=self.shape[self.cur][1])

    def relu(self) -> "_G":
        out = self._name("relu")
        self.nodes.append(self.h.make_node("Relu", [self.cur], [out]))
        self.shape[out] = self.shape[self.cur]
        self.cur = out
        return self

    def maxpool(self, k: int = 2) -> "_G":
        n, c, h, w = self.shape[self.cur]
        out = self._name("pool")
        self.nodes.append(self.h.make_node("MaxPool", [self.cur], [out], kernel_shape=[k, k], strides=[k, k]))
        self.shape[out] = (n, c, h // k, w // k)
        self.cur = out
        return self

    def gap(self) -> "_G":
        n, c, _, _ = self.shape[self.cur]
        out = self._name("gap")
        self.nodes.append(self.h.make_node("GlobalAveragePool", [self.cur], [out]))
        self.shape[out] = (n, c, 1, 1)
        self.cur = out
        return self

    def add_const(self) -> "_G":
        s = self.shape[self.cur]
        c = self._const(self.rng.normal(0, 0.1, (1, s[1]) + (1,) * (len(s) - 2)), "c")
        out = self._name("add")
        self.nodes.append(self.h.make_node("Add", [self.cur, c], [out]))
        self.shape[out] = s
        self.cur = out
        return self

    def flatten(self) -> "_G":
        s = self.shape[self.cur]
        out = self._name("flat")
        self.nodes.append(self.h.make_node("Flatten", [self.cur], [out], axis=1))
        self.shape[out] = (s[0], int(np.prod(s[1:])))
        self.cur = out
        return self

    def dense(self, n_out: int, relu: bool = True) -> "_G":
        n, k = self.shape[self.cur]
        wt = self._const(self.rng.normal(0, (2 / k) ** 0.5, (n_out, k)), "w")
        b = self._const(self.rng.normal(0, 0.01, (n_out,)), "b")
        out = self._name("gemm")
        self.nodes.append(self.h.make_node("Gemm", [self.cur, wt, b], [out], transB=1))
        self.shape[out] = (n, n_out)
        self.cur = out
        return self.relu() if relu else self

    def model(self, name: str):
        import onnx

        h, tp = self.h, self.tp
        self.nodes.append(h.make_node("Identity", [self.cur], ["output"]))
        graph = h.make_graph(self.nodes, name, [h.make_tensor_value_info("input", tp.FLOAT, self.shape["input"])],
                             [h.make_tensor_value_info("output", tp.FLOAT, self.shape[self.cur])], self.inits)
        m = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="edgekd-suite")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def _specs() -> list[Spec]:
    s: list[Spec] = []

    def add(name, group, quick, shape, fn):
        s.append(Spec(name, group, quick, fn, shape))

    for cin, cout, hw, k, st, q in [(1, 8, 28, 3, 1, True), (1, 32, 28, 3, 1, False), (8, 16, 28, 3, 1, True),
                                    (16, 32, 14, 3, 1, False), (32, 64, 7, 3, 1, False), (16, 16, 28, 3, 1, False),
                                    (32, 32, 14, 3, 1, True), (16, 32, 28, 3, 2, True), (32, 64, 14, 3, 2, False),
                                    (64, 128, 14, 3, 2, True), (16, 32, 14, 1, 1, False), (64, 64, 14, 1, 1, True),
                                    (128, 256, 4, 1, 1, False), (1, 16, 20, 3, 1, False), (32, 64, 7, 1, 1, True),
                                    (8, 16, 28, 1, 1, False)]:
        add(f"conv{k}x{k}_{cin}to{cout}_{hw}s{st}", "conv", q, (1, cin, hw, hw),
            lambda g, cout=cout, k=k, st=st: g.conv(cout, k, st))
    for c, hw, st, q in [(8, 28, 1, True), (32, 28, 1, False), (64, 14, 1, True), (128, 7, 2, False),
                         (16, 28, 2, False), (32, 28, 2, True), (64, 10, 2, False)]:
        add(f"dw3x3_{c}_{hw}s{st}", "dwconv", q, (1, c, hw, hw), lambda g, st=st: g.dw(3, st))
    for k, n, q in [(784, 32, True), (784, 128, False), (256, 256, True), (64, 10, False), (3136, 10, True),
                    (256, 64, False), (576, 10, True)]:
        add(f"dense_{k}to{n}", "dense", q, (1, k), lambda g, n=n: g.dense(n, relu=False))
    add("maxpool_16x28", "elementwise", True, (1, 16, 28, 28), lambda g: g.maxpool())
    add("maxpool_64x14", "elementwise", False, (1, 64, 14, 14), lambda g: g.maxpool())
    add("gap_64x14", "elementwise", True, (1, 64, 14, 14), lambda g: g.gap())
    add("gap_256x4", "elementwise", False, (1, 256, 4, 4), lambda g: g.gap())
    # No stand-alone ReLU/Add: students fuse them, and int8 TFLite runs them unusually slowly (a skewed fit).
    add("maxpool_8x20", "elementwise", True, (1, 8, 20, 20), lambda g: g.maxpool())
    for n, q in [(2, True), (6, False), (12, True)]:
        add(f"chain_dense16_x{n}", "layers", q, (1, 16), lambda g, n=n: [g.dense(16) for _ in range(n)])
    for n, q in [(4, False), (10, True)]:
        add(f"chain_conv4_x{n}", "layers", q, (1, 4, 7, 7), lambda g, n=n: [g.conv(4) for _ in range(n)])
    # Shapes like the student family's, at widths it does not use (12, 24), so they are not the test points.
    add("cnn_like_w12", "composite", True, (1, 1, 28, 28),
        lambda g: g.conv(12).conv(24, 3, 2).conv(48, 3, 2).gap().flatten().dense(10, relu=False))
    add("dscnn_like_w12", "composite", True, (1, 1, 24, 24),
        lambda g: g.conv(12).dw(3, 2).conv(24, 1).dw(3, 2).conv(48, 1).dw(3, 2).conv(96, 1).gap().flatten()
        .dense(10, relu=False))
    add("mlp_like_w48", "composite", False, (1, 576), lambda g: g.dense(48).dense(48).dense(10, relu=False))
    add("pool_cnn_like", "composite", False, (1, 1, 14, 14),
        lambda g: g.conv(8).conv(16).maxpool().flatten().dense(10, relu=False))
    return s


def _quantize_onnx(src: Path, dst: Path, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": rng.random(shape).astype(np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def _to_tflite(src: Path, out_dir: Path, shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, Path]:
    import onnx2tf

    nhwc = (8,) + (tuple(shape[2:]) + (shape[1],) if len(shape) == 4 else tuple(shape[1:]))
    out_dir.mkdir(parents=True, exist_ok=True)
    calib = out_dir / "calib.npy"
    np.save(calib, rng.random(nhwc).astype(np.float32))
    onnx2tf.convert(input_onnx_file_path=str(src), output_folder_path=str(out_dir),
                    copy_onnx_input_output_names_to_tflite=True, non_verbose=True,
                    output_integer_quantized_tflite=True,
                    custom_input_op_name_np_data_path=[["input", str(calib), 0.0, 1.0]])
    stem = src.stem
    return {"fp32": out_dir / f"{stem}_float32.tflite", "fp16": out_dir / f"{stem}_float16.tflite",
            "int8": out_dir / f"{stem}_full_integer_quant.tflite"}


def build(out_dir: Path = ASSET_DIR) -> Path:
    """Build every micro-model and write them with suite.json into `out_dir` (replacing what is there)."""
    import onnx

    from .cost import analyze_onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, spec in enumerate(_specs()):
        g = _G(spec.input_shape, seed=i)
        spec.build(g)
        model = g.model(spec.name)
        feats = analyze_onnx(model, name=spec.name).features
        rng = np.random.default_rng(1000 + i)
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td)
            src = tmp / f"{spec.name}.onnx"
            onnx.save(model, str(src))
            _quantize_onnx(src, tmp / f"{spec.name}_int8.onnx", spec.input_shape, rng)
            tfl = _to_tflite(src, tmp / "tf", spec.input_shape, rng)
            files = {"onnx": {"fp32": f"{spec.name}.onnx", "int8": f"{spec.name}_int8.onnx"},
                     "tflite": {p: f"{spec.name}_{p}.tflite" for p in tfl}}
            shutil.copy(src, out_dir / files["onnx"]["fp32"])
            shutil.copy(tmp / f"{spec.name}_int8.onnx", out_dir / files["onnx"]["int8"])
            for p, f in tfl.items():
                shutil.copy(f, out_dir / files["tflite"][p])
        entries.append({"name": spec.name, "group": spec.group, "quick": spec.quick,
                        "input_shape": list(spec.input_shape), "features": feats.to_dict(), "files": files})
        print(f"{spec.name:28s} {feats}", file=sys.stderr)
    suite = {"format": SUITE_FORMAT, "format_version": 1, "opset": OPSET, "models": entries}
    (out_dir / "suite.json").write_text(json.dumps(suite, indent=1) + "\n", encoding="utf-8")
    return out_dir / "suite.json"


def refresh_features(out_dir: Path = ASSET_DIR) -> Path:
    """Recompute suite.json's features from the shipped .onnx files (after a change to the feature set)."""
    from .cost import analyze_onnx

    path = out_dir / "suite.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    for m in suite["models"]:
        m["features"] = analyze_onnx(out_dir / m["files"]["onnx"]["fp32"], name=m["name"]).features.to_dict()
    path.write_text(json.dumps(suite, indent=1) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(refresh_features() if "--features-only" in sys.argv else build())
