"""Why a line student's int8 artifacts miss the string-agreement rule, and what post-training options and
quantization-aware fine-tuning (torchao pt2e) do about it (issue #12, item 1).

For one CTC line student (a checkpoint of `edgekd distill --task lines` / `edgekd run --task lines`) on its own
test split, every row is the share of test lines whose greedy-decoded string equals torch fp32's (the rule:
>= 99 %), and the int8 CER beside fp32's (the rule: at most +0.3 pp):

* post-training ONNX int8 through onnxruntime.quantization: the first row is what `edgekd_converters.onnx_int8`
  does for a line bundle (2,000 training lines, 7-bit weights for x86 CPUs without VNNI, the first and last conv
  left float), the second the same with every conv quantized; the TFLite int8 of
  onnx2tf has 8-bit weights and reads about what the 8-bit rows read. MinMax / Entropy / Percentile calibration,
  500, 2,000 or all training lines, per-channel or per-tensor weights, asymmetric or symmetric activations;
* sensitivity: fp32 with only one layer's weights rounded to int8 (per channel), and fp32 logits plus Gaussian
  noise, which show how close to a tie the student's decisions are;
* with `--qat-epochs N`: N epochs of QAT (torchao `prepare_qat_pt2e` with `X86InductorQuantizer`'s QAT config,
  CTC on the labels + frame KD to the starting model + a fp32/fake-quant consistency term), then the usual PTQ of
  the fine-tuned fp32 weights, judged against the fine-tuned fp32 model.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/line_int8.py --checkpoint RUN/distilled/student.pt --qat-epochs 5
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

# name, calibration method, per-channel weights, calibration lines (None: all), symmetric activations, 7-bit weights
PTQ_VARIANTS = (
    ("MinMax, 2,000 lines, per-channel, 7-bit, every conv", "MinMax", True, 2000, False, True),
    ("MinMax, 2,000 lines, per-channel, 8-bit", "MinMax", True, 2000, False, False),
    ("MinMax, 500 lines, per-channel, 8-bit", "MinMax", True, 500, False, False),
    ("MinMax, 2,000 lines, per-tensor, 8-bit", "MinMax", False, 2000, False, False),
    ("MinMax, all training lines, per-channel, 8-bit", "MinMax", True, None, False, False),
    ("MinMax, 2,000 lines, symmetric activations", "MinMax", True, 2000, True, False),
    ("Entropy, 2,000 lines, per-channel, 8-bit", "Entropy", True, 2000, False, False),
    ("Percentile 99.99, 2,000 lines, per-channel, 8-bit", "Percentile", True, 2000, False, False),
)


def quantize(src: Path, dst: Path, calib: np.ndarray, method: str, per_channel: bool, symmetric: bool,
             reduce_range: bool = False) -> Path:
    """onnxruntime static int8 (QDQ) of `src` with one set of options."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self.rows, None)
            return None if row is None else {"input": row}

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    extra: dict[str, Any] = {"ActivationSymmetric": symmetric}
    if method == "Percentile":
        extra["CalibPercentile"] = 99.99
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                    calibrate_method=getattr(CalibrationMethod, method), extra_options=extra)
    return dst


def ptq_rows(onnx_path: Path, calib_all: np.ndarray, x_test: np.ndarray, judge: Callable, tmp: Path,
             frame_stride: int, variants: tuple = PTQ_VARIANTS) -> list[tuple[str, Any]]:
    from dataclasses import replace

    from edgekd.export.lines import LINE_CALIBRATION_SAMPLES
    from edgekd_converters.calibration import subsample
    from edgekd_converters.line_bundle import INT8_FLOAT_END_CONVS, fixed_width_copy
    from edgekd_converters.model_info import inspect_model, load_onnx
    from edgekd_converters.onnx_int8 import convert_onnx_int8
    from edgekd_converters.quiet import captured_output
    from edgekd_converters.runners import run_onnx

    ours = tmp / "edgekd.onnx"  # what `edgekd convert` writes for a line bundle (info from a fixed-width copy)
    fixed = fixed_width_copy(onnx_path, tmp / "fixed.onnx", x_test.shape[-1], frame_stride)
    info = replace(inspect_model(load_onnx(str(fixed)), str(fixed)), path=str(onnx_path))
    with captured_output():
        convert_onnx_int8(info, ours, subsample(calib_all, LINE_CALIBRATION_SAMPLES),
                          float_end_convs=INT8_FLOAT_END_CONVS)
    rows = [("edgekd's ONNX int8 (as above, end convs float)", judge(run_onnx(ours, x_test)))]
    for i, (name, method, per_channel, lines, symmetric, seven_bit) in enumerate(variants):
        calib = calib_all if lines is None else subsample(calib_all, lines)
        with captured_output():
            q = quantize(onnx_path, tmp / f"q{i}.onnx", calib, method, per_channel, symmetric, seven_bit)
        rows.append((name, judge(run_onnx(q, x_test))))
    return rows


def sensitivity_rows(model: Any, x_test: np.ndarray, ref: np.ndarray, judge: Callable) -> list[tuple[str, Any]]:
    """fp32 with one conv's weights (BatchNorm folded in) rounded to int8 per output channel; logits + noise."""
    import torch

    from edgekd.export.onnx_export import torch_logits

    fused = copy.deepcopy(model).eval()
    convs = [n for n, m in fused.named_modules() if isinstance(m, torch.nn.Conv2d)]
    pairs = [[c, n] for c, n in zip(convs, [n for n, m in fused.named_modules()
                                            if isinstance(m, torch.nn.BatchNorm2d)])]
    fused = torch.ao.quantization.fuse_modules(fused, pairs)
    rows = []
    for name in convs:
        m = copy.deepcopy(fused)
        w = dict(m.named_modules())[name].weight
        with torch.no_grad():
            s = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127
            w.copy_((w / s).round().clamp(-127, 127) * s)
        rows.append((f"fp32, only {name}'s weights int8", judge(torch_logits(m, x_test))))
    rng = np.random.default_rng(0)
    for sd in (0.02, 0.05):
        rows.append((f"fp32 logits + N(0, {sd}^2)", judge(ref + rng.normal(0, sd, ref.shape).astype(np.float32))))
    return rows


def qat_finetune(model: Any, x: Any, targets: Any, lengths: Any, epochs: int, lr: float = 3e-4,
                 consistency: float = 1.0, seed: int = 0) -> Any:
    """A copy of `model` fine-tuned `epochs` epochs with fake-quant (torchao pt2e QAT), its fp32 weights and
    BatchNorm statistics copied back from the QAT graph (the exported graph keeps the module's names)."""
    import torch
    from torchao.quantization.pt2e import (
        disable_fake_quant,
        enable_fake_quant,
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    from edgekd.kd.ctc_losses import ctc, frame_kl

    torch.manual_seed(seed)
    with torch.no_grad():
        start = model.eval()(x)
    batch = torch.export.Dim("batch", min=1, max=len(x))
    graph = torch.export.export(copy.deepcopy(model).train(), (x[:8],), dynamic_shapes={"x": {0: batch}}).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config(is_qat=True))
    graph = prepare_qat_pt2e(graph, quantizer)
    opt = torch.optim.Adam(graph.parameters(), lr=lr)
    for _ in range(epochs):
        move_exported_model_to_train(graph)
        for idx in torch.randperm(len(x)).split(64):
            graph.apply(enable_fake_quant)
            fq = graph(x[idx])
            graph.apply(disable_fake_quant)
            fp = graph(x[idx])
            loss = sum(0.5 * ctc(o, targets[idx], lengths[idx]) + 0.5 * frame_kl(o, start[idx], 2.0)
                       for o in (fq, fp))
            loss = loss + consistency * (frame_kl(fq, fp, 1.0) + frame_kl(fp, fq, 1.0))
            opt.zero_grad()
            loss.backward()
            opt.step()
    move_exported_model_to_eval(graph)
    state = {**dict(graph.named_parameters()), **dict(graph.named_buffers())}
    tuned = copy.deepcopy(model)
    tuned.load_state_dict({k: state[k].detach() for k in tuned.state_dict()})
    return tuned.eval()


def show(title: str, rows: list[tuple[str, Any]]) -> None:
    """Rows of (name, (SequenceParityResult, share of the lines fp32 reads right that the artifact reads right))."""
    print(f"\n{title}\n{'':52s} {'agreement':>9s} {'CER':>7s} {'fp32 CER':>8s} {'keeps fp32-right':>16s}  passes")
    for name, (r, kept) in rows:
        print(f"{name:52s} {r.string_agreement:9.2%} {r.cer:7.2%} {r.reference_cer:8.2%} {kept:16.2%}  {r.passed}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a lines student checkpoint (.pt)")
    ap.add_argument("--qat-epochs", type=int, default=0, help="also fine-tune with QAT (torchao pt2e)")
    args = ap.parse_args(argv)
    import torch

    from edgekd.data.lines import LineSpec, encode_texts, load_lines
    from edgekd.export.lines import line_samples
    from edgekd.export.onnx_export import export_line_onnx, torch_logits
    from edgekd.export.samples import normalise
    from edgekd.train.checkpoint import load_student_checkpoint
    from edgekd_converters.parity import SequenceScorer
    from edgekd_runtime.pixels import as_canvases

    model, ck = load_student_checkpoint(args.checkpoint, task="lines")
    norm, charset = ck["normalization"], str(ck["charset"])
    samples = line_samples(ck["data"], calib_samples=10**9)  # every training line; the variants subsample
    calib, x_test = normalise(samples.calib, **norm), normalise(samples.test_x, **norm)
    h, w = int(ck["input_height"]), int(ck["width_policy"]["width"])
    scorer = SequenceScorer(charset, samples.texts)

    def judged(m: Any, tmp: Path, title: str) -> None:
        ref = torch_logits(m, x_test)
        onnx_path = tmp / f"{title[:3]}.onnx"
        export_line_onnx(m, h, w, int(ck["num_classes"]), onnx_path, 17, dynamic_width=True)
        right = np.array([a == t for a, t in zip(scorer.strings(ref), samples.texts)])

        def judge(out: np.ndarray) -> tuple[Any, float]:
            kept = np.array([a == t for a, t in zip(scorer.strings(out), samples.texts)])[right].mean()
            return scorer.compare(ref, out, "int8", "torch"), float(kept)

        stride = int(ck["width_policy"].get("frame_stride", 4))
        show(f"{title}: post-training int8 (onnxruntime) vs torch fp32", ptq_rows(onnx_path, calib, x_test,
                                                                                   judge, tmp, stride))
        show(f"{title}: sensitivity of the fp32 decisions", sensitivity_rows(m, x_test, ref, judge))

    print(f"{args.checkpoint}: {ck['arch']}, {len(samples.calib)} training lines, {len(x_test)} test lines")
    with tempfile.TemporaryDirectory() as d:
        judged(model, Path(d), "PTQ")
        if args.qat_epochs:
            splits = load_lines(LineSpec.from_dict(dict(ck["data"])))
            tg, tl = encode_texts(list(splits.train.texts), charset, "training lines")
            x = torch.from_numpy(normalise(as_canvases(splits.train.x, what="training lines"), **norm))
            tuned = qat_finetune(model, x, torch.from_numpy(tg), torch.from_numpy(tl), args.qat_epochs)
            judged(tuned, Path(d), f"QAT ({args.qat_epochs} epochs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
