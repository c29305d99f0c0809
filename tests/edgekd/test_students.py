"""Every student id builds, trains a step (forward + backward) and exports to ONNX matching torch."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.export.onnx_export import export_onnx
from edgekd.models.students import STUDENTS, StudentIdError, build_student, count_params, parse_student_id, search_space

IDS = search_space()


def test_search_space_spans_the_family_with_stable_ids():
    assert 24 <= len(IDS) <= 100 and len(set(IDS)) == len(IDS)
    digit_families = {"linear", "mlp", "cnn", "dscnn"}  # the line families (ctc, dsctc) have their own space
    assert {parse_student_id(i).family for i in IDS} == set(STUDENTS.names()) - {"ctc", "dsctc"} == digit_families
    assert {parse_student_id(i).input_size for i in IDS} == {28, 20, 16}
    assert all(parse_student_id(i).id == i for i in IDS)
    sizes = [count_params(build_student(i, 10)) for i in IDS]
    assert min(sizes) < 2_000 and max(sizes) > 100_000  # from the extreme budget to a comfortable one


@pytest.mark.parametrize("student_id", IDS)
def test_student_forward_backward_and_onnx_export(student_id, tmp_path):
    import onnxruntime as ort
    import torch

    torch.manual_seed(0)
    m = build_student(student_id, 7)
    r = parse_student_id(student_id).input_size
    x = torch.randn(3, 1, r, r)
    logits, feats = m(x, with_features=True)
    assert logits.shape == (3, 7) and feats.shape[0] == 3
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    m.eval()
    path = tmp_path / "s.onnx"
    export_onnx(m, r, path)  # the product's export (the one `edgekd export` and the pipeline use)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = m(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    ops = {n.op_type for n in __import__("onnx").load(str(path)).graph.node}
    assert ops <= {"Conv", "Relu", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm", "Reshape", "MatMul", "Add"}, ops


@pytest.mark.parametrize("bad", ["dscnn", "dscnn-w16-d3", "resnet-w16-d3-r28", "linear-w4-d1-r28", "mlp-r28",
                                 "cnn-w16-d9-r28", "dscnn-w16-d3-r4", "cnn-w0-d2-r28"])
def test_bad_student_ids_name_the_valid_forms(bad):
    with pytest.raises(StudentIdError) as e:
        build_student(bad, 10)
    assert bad in str(e.value)


def test_width_depth_and_resolution_change_the_model():
    assert count_params(build_student("dscnn-w16-d3-r28", 10)) > count_params(build_student("dscnn-w8-d3-r28", 10))
    import torch

    def convs(sid: str) -> int:
        return sum(isinstance(m, torch.nn.Conv2d) for m in build_student(sid, 10).modules())

    assert convs("cnn-w8-d3-r28") == convs("cnn-w8-d2-r28") + 1  # one more stage (the flattened head shrinks)
    assert count_params(build_student("cnn-w8-d3-r16", 10)) > count_params(build_student("cnn-w8-d2-r16", 10))
    assert count_params(build_student("linear-r16", 10)) == 16 * 16 * 10 + 10
    assert count_params(build_student("mlp-w32-d1-r28", 10)) == 784 * 32 + 32 + 32 * 10 + 10


@pytest.mark.tflite
@pytest.mark.parametrize("student_id", ["linear-r16", "mlp-w32-d2-r20", "cnn-w8-d2-r28", "dscnn-w8-d4-r28"])
def test_each_family_converts_to_tflite_fp32_and_full_int8(student_id, tmp_path):
    """One student of each family (the dscnn one with a stride-1 fourth block) through onnx2tf: float32 within
    1e-4 of torch, full int8 with int8 input and output. Random weights, so int8 accuracy is not judged here
    (tests/edgekd/test_convert.py does that on a trained student)."""
    import math

    import torch

    from edgekd_converters import Tolerance
    from edgekd_converters.convert import convert_model
    from edgekd_converters.runners import make_tflite_interpreter

    torch.manual_seed(0)
    m = build_student(student_id, 10).eval()
    r = parse_student_id(student_id).input_size
    onnx_path = tmp_path / "s.onnx"
    export_onnx(m, r, onnx_path)
    rng = np.random.default_rng(0)
    calib = rng.random((200, r, r), dtype=np.float32)
    report = convert_model(onnx_path, tmp_path / "out", ["tflite"], calib, calib[:64],
                           tflite_precisions=("fp32", "int8"),
                           tolerances={"int8": Tolerance(atol=math.inf, min_top1_agreement=0.0)})
    arts = {a.precision: a for a in report.artifacts}
    assert set(arts) == {"fp32", "int8"} and not report.failed
    assert arts["fp32"].parity.max_abs_diff <= 1e-4 and arts["fp32"].parity.top1_agreement == 1.0
    it = make_tflite_interpreter(arts["int8"].path)
    assert it.get_input_details()[0]["dtype"] == np.int8 and it.get_output_details()[0]["dtype"] == np.int8
    assert list(it.get_input_details()[0]["shape"]) == [1, r, r, 1]
