"""Cost model: numbers checked by hand on a linear layer, one conv, one depthwise conv and a branching graph."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekd.budget import cost as C
from edgekd_runtime.errors import ModelLoadError, UserInputError


def _file_overhead(p: str, layers: int) -> int:
    return C.FILE_BASE_BYTES[p] + C.FILE_BYTES_PER_LAYER[p] * layers


def test_linear_layer_by_hand():
    from torch import nn

    c = C.module_cost(nn.Linear(20, 5), (1, 20))
    assert c.params == 105 and c.macs == 100
    f = c.features
    assert (f.dense_macs, f.conv_macs, f.dwconv_macs, f.elementwise_elems, f.layers) == (100, 0, 0, 0, 1)
    assert f.io_elems == 25  # 20 in, 5 out
    assert f.activation_elems == 5  # the one layer writes its 5 outputs
    assert c.flash_bytes["fp32"] == 105 * 4 + _file_overhead("fp32", 1)
    assert c.flash_bytes["fp16"] == 105 * 2 + _file_overhead("fp16", 1)
    # int8: 100 int8 weights + 5 int32 biases + 5 channels x (scale, zero point) for weights and for biases
    assert c.flash_bytes["int8"] == 100 + 5 * 4 + 5 * 24 + _file_overhead("int8", 1)
    # arena: the input (20) and the output (5) are live together
    assert c.peak_ram_bytes == {"fp32": 100, "fp16": 100, "int8": 25}


def test_one_conv_by_hand():
    from torch import nn

    c = C.module_cost(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()), (1, 3, 10, 10))
    # 8 x 10 x 10 outputs, each 3 x 3 x 3 MACs; the ReLU is fused (no layer, no buffer)
    assert c.macs == 800 * 27 == c.features.conv_macs
    assert c.params == 8 * 27 + 8
    assert c.features.layers == 1 and c.features.elementwise_elems == 0
    assert c.features.conv_positions == 100  # 10 x 10 output pixels
    assert c.features.activation_elems == 800  # written once by the conv; the fused ReLU adds none
    assert c.peak_ram_bytes["fp32"] == (300 + 800) * 4
    assert c.peak_ram_bytes["int8"] == 300 + 800


def test_depthwise_conv_is_its_own_class():
    from torch import nn

    c = C.module_cost(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), (1, 8, 6, 6))
    assert c.features.dwconv_macs == 8 * 6 * 6 * 9 and c.features.conv_macs == 0
    assert c.features.conv_positions == 0  # counted for dense convs only
    assert c.params == 72
    pw = C.module_cost(nn.Conv2d(8, 16, 1, bias=False), (1, 8, 6, 6))
    assert pw.features.pointwise_macs == 16 * 36 * 8 and pw.features.conv_macs == pw.features.conv_positions == 0
    grouped = C.module_cost(nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False), (1, 8, 6, 6))
    assert grouped.features.dwconv_macs == 0 and grouped.features.conv_macs == 288 * 4 * 9


def test_pooling_counts_window_reads_and_a_layer():
    from torch import nn

    c = C.module_cost(nn.MaxPool2d(2), (1, 4, 8, 8))
    assert c.features.elementwise_elems == 4 * 4 * 4 * 4 and c.features.layers == 1 and c.macs == 0
    g = C.module_cost(nn.AdaptiveAvgPool2d(1), (1, 4, 8, 8))
    assert g.features.elementwise_elems == 256


def _branching_model():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(8, 4, 1, 1)).astype(np.float32), "w1")
    w3 = numpy_helper.from_array(rng.normal(size=(8, 4, 3, 3)).astype(np.float32), "w3")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]),
             helper.make_node("Conv", ["x", "w3"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["a", "b"], ["c"]),
             helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    g = helper.make_graph(nodes, "branch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])], [w1, w3])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_peak_ram_on_a_branching_graph():
    c = C.analyze_onnx(_branching_model())
    # x=256, a=512, b=512, c=512, y=128 elements. x lives until b is computed; a and b until the Add.
    # node a: x+a=768; node b: x+a+b=1280; Add: a+b+c=1536 (the peak); pool: c+y=640
    assert c.peak_ram_bytes["fp32"] == 1536 * 4
    assert c.peak_ram_bytes["int8"] == 1536
    assert c.features.pointwise_macs == 512 * 4 and c.features.conv_macs == 512 * 36  # 1x1 vs 3x3 branch
    assert c.features.conv_positions == 64  # the 3x3 conv's output pixels
    assert c.features.elementwise_elems == 512 + 128 * 4 and c.features.layers == 4
    assert c.features.activation_elems == 512 + 512 + 512 + 128  # a, b, c and y: every layer's output


def test_a_chain_frees_what_it_no_longer_needs():
    from torch import nn

    # 1x1 convs 4 -> 4 -> 4 -> 4 on 8x8: never more than two 256-element tensors live
    m = nn.Sequential(*[nn.Conv2d(4, 4, 1) for _ in range(3)])
    assert C.module_cost(m, (1, 4, 8, 8)).peak_ram_bytes["fp32"] == 2 * 256 * 4


@pytest.mark.parametrize("sid", ["linear-r20", "mlp-w32-d2-r16", "cnn-w8-d3-r28", "dscnn-w16-d4-r20"])
def test_onnx_macs_equal_torch_flop_counter(sid):
    from edgekd.models.students import build_student

    r = C.student_resolution(sid)
    model = build_student(sid, 10)
    assert C.student_cost(sid).macs == C.torch_macs(model, (1, 1, r, r)) > 0


def test_student_cost_is_json_and_folds_batchnorm():
    c = C.student_cost("cnn-w8-d2-r16")
    d = json.loads(json.dumps(c.to_dict()))
    assert d["input_shape"] == [1, 1, 16, 16] and d["features"]["layers"] >= 3
    # BatchNorm folds into the conv on export: fewer stored params than torch's trainable count
    assert c.extra["onnx_params"] < c.params
    assert c.flash_bytes["int8"] < c.flash_bytes["fp16"] < c.flash_bytes["fp32"]
    assert c.peak_ram_bytes["int8"] * 4 == c.peak_ram_bytes["fp32"]


def test_cost_exports_with_the_export_commands_exporter():
    """One torch -> ONNX call (`torch_to_onnx`): the cost model's in-memory export has `edgekd export`'s opset and
    tensor names, its shapes fixed at batch 1 (what the cost model counts)."""
    import onnx

    from edgekd.export.onnx_export import INPUT_NAME, MIN_OPSET, OUTPUT_NAME
    from edgekd.models.students import build_student

    proto = onnx.load_from_string(C.export_onnx_bytes(build_student("cnn-w4-d2-r16", 10), (1, 1, 16, 16)))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [MIN_OPSET]
    assert [i.name for i in proto.graph.input] == [INPUT_NAME] and [o.name for o in proto.graph.output] == [OUTPUT_NAME]
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 1, 16, 16]


def test_bad_models_are_typed_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        C.analyze_onnx(b"definitely not protobuf \xff\xff")
    with pytest.raises(ModelLoadError, match="no such ONNX file"):
        C.analyze_onnx(tmp_path / "missing.onnx")
    with pytest.raises(UserInputError, match=r"bad student id 'dscnn-w16-d3'; valid forms: .*-r\{R\}"):
        C.student_resolution("dscnn-w16-d3")
    with pytest.raises(UserInputError, match="r99 out of range"):  # the one grammar: cost refuses what build refuses
        C.student_resolution("cnn-w8-d2-r99")
    assert C.student_resolution("ctc-w8-d2-r24") == 24 and C.student_resolution(" linear-r16") == 16


def test_shipped_calibration_suite_features_match_the_cost_model():
    """The board reads features from suite.json; they must be what analyze_onnx computes (one definition)."""
    from edgekd_runtime.calibrate import SUITE_DIR, load_suite

    for m in load_suite(quick=False):
        assert C.analyze_onnx(SUITE_DIR / m.files["onnx"]["fp32"]).features == m.features, m.name
