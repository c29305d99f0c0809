"""Normalise a foreign ONNX graph (old opset, weights as graph inputs, constant subgraphs) before converting it.

Models from other frameworks (CNTK, old tf2onnx/keras2onnx, Caffe2) often come in shapes that onnx2tf and
onnxruntime's quantizer trip over although onnxruntime runs them: the ONNX model zoo's mnist-8 is opset 8 with
IR version 3 (so every weight is also a graph input), and its dense weight is a `Reshape` of a constant that
onnx2tf keeps as a constant graph output, while per-channel quantization cannot find the weights it should
quantize. The steps, each only when needed and each recorded in words for the conversion report:

1. opset upgrade to `TARGET_OPSET` with `onnx.version_converter` when the default-domain opset is below
   `MIN_OPSET` (the IR version is raised to what the new opset needs; a model the converter cannot upgrade is
   kept at its opset, and the step says so);
2. weights moved from the graph inputs to plain initializers (an input with an initializer of the same name is
   only an overridable default: nothing feeds it at run time);
3. constant folding with onnxruntime's own offline graph optimisation at the basic level
   (`SessionOptions.optimized_model_filepath`, `ORT_ENABLE_BASIC`: constant folding, redundant node elimination
   and fusions that keep standard ONNX ops, e.g. a bias `Add` into its `Conv`) when some node computes only from
   constants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd_runtime.errors import first_line

MIN_OPSET = 13  # per-channel QDQ quantization and onnx2tf's well-trodden paths start here
TARGET_OPSET = 17  # what `edgekd export` writes
ORT_MIN_OPSET = 7  # the oldest opset onnxruntime runs


def default_opset(model: Any) -> int:
    """The model's ai.onnx opset version (0 when it imports none)."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def upgrade_opset(model: Any, where: str) -> tuple[Any, str | None]:
    """`model` at `TARGET_OPSET` when its opset is below `MIN_OPSET`; (model, what was done or None). When the
    version converter cannot upgrade it, the model is kept at its opset (onnxruntime runs opsets from
    `ORT_MIN_OPSET`; older ones are refused) and the step says so."""
    import onnx
    from onnx import helper, version_converter

    from .errors import ModelLoadError

    old = default_opset(model)
    if old >= MIN_OPSET:
        return model, None
    try:
        new = version_converter.convert_version(model, TARGET_OPSET)
        new.ir_version = max(new.ir_version, helper.find_min_ir_version_for(list(new.opset_import)))
        onnx.checker.check_model(new)
    except Exception as e:  # noqa: BLE001 - the converter raises RuntimeError or its own errors per op
        why = first_line(e, 160)
        if old < ORT_MIN_OPSET:
            raise ModelLoadError(f"{where}: opset {old} is too old to run and onnx.version_converter could not "
                                 f"upgrade it to {TARGET_OPSET} ({why}); re-export the model at opset "
                                 f"{TARGET_OPSET}") from None
        return model, f"opset {old} kept: onnx.version_converter could not upgrade it ({why})"
    return new, f"opset {old} upgraded to {TARGET_OPSET} (onnx.version_converter)"


def weights_to_initializers(model: Any) -> str | None:
    """Drop (in place) graph inputs that are initializers; returns what was done, or None."""
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    weights = [i for i in model.graph.input if i.name in inits]
    if not weights:
        return None
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.ir_version = max(model.ir_version, 4, helper.find_min_ir_version_for(list(model.opset_import)))
    return f"{len(weights)} weights moved from graph inputs to initializers"


def has_constant_nodes(model: Any) -> bool:
    """Whether some node (other than a `Constant`) computes only from initializers and constants."""
    known = {i.name for i in model.graph.initializer} - {i.name for i in model.graph.input}
    for n in model.graph.node:
        if n.op_type == "Constant":
            known.update(n.output)
        elif n.input and all(not x or x in known for x in n.input):
            return True
    return False


def fold_constants(model: Any, work_dir: Path) -> tuple[Any, str | None]:
    """Constant folding by onnxruntime's offline basic-level optimisation, when some node is constant."""
    import onnx
    import onnxruntime as ort

    if not has_constant_nodes(model):
        return model, None
    src, dst = work_dir / "unfolded.onnx", work_dir / "folded.onnx"
    onnx.save(model, str(src))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dst)
    opts.log_severity_level = 3
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    folded = onnx.load(str(dst))
    used = {n.domain for n in folded.graph.node} | {"", "ai.onnx"}
    keep = [o for o in folded.opset_import if o.domain in used]  # onnxruntime lists every domain it knows
    del folded.opset_import[:]
    folded.opset_import.extend(keep)
    return folded, (f"constants folded by onnxruntime's basic graph optimisation ({len(model.graph.node)} -> "
                    f"{len(folded.graph.node)} nodes)")


def normalize_model(model: Any, where: str, work_dir: Path | None = None) -> tuple[Any, list[str]]:
    """Every step of the module doc that `model` needs (constant folding only with a `work_dir` for onnxruntime's
    files); returns (the model, what was done). `model` itself is not changed."""
    import onnx

    upgraded, step = upgrade_opset(model, where)
    steps = [step] if step else []
    model = onnx.ModelProto()
    model.CopyFrom(upgraded)  # the next step edits in place
    step = weights_to_initializers(model)
    if step:
        steps.append(step)
    if work_dir is not None:
        model, step = fold_constants(model, work_dir)
        if step:
            steps.append(step)
    return model, steps


def normalized_file(path: str, work_dir: Path) -> tuple[str, list[str]]:
    """`path`, or a normalised copy of it in `work_dir` when it needs any step; (path to convert, steps)."""
    import onnx

    model, steps = normalize_model(onnx.load(path), path, work_dir)
    if not steps:
        return path, []
    out = work_dir / "normalized.onnx"
    onnx.save(model, str(out))
    return str(out), steps
