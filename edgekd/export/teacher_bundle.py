"""A teacher deployed as it is (`edgekd run` when the teacher fits the budget and is the more accurate candidate):
the same bundle, checks and conversions as a student's.

A torch teacher (an edgekd teacher.pt, TorchScript, ExportedProgram, a state_dict of a built-in architecture,
wrapped in its declared input scaling) goes through the student's export (`bundle.export_digits`: ONNX checked
against torch on the test split). An ONNX teacher already is the file to deploy: its graph, normalised as the
converters normalise a foreign graph (`edgekd_converters.normalize`), becomes the bundle's `student.onnx` with its
own input (layout, shape), output kind (logits or probabilities) and declared scaling as the normalisation. A
TFLite teacher has no ONNX graph to convert from and is not deployed (`deploy_choice.cost_teacher` says so).

The manifest records `extra.deployed_model = "teacher"` and `extra.checkpoint = {path, sha256, kind: "teacher",
source, arch, scale}`, which `edgekd convert` reads to take its parity reference from the teacher file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgekd_runtime.atomic import sha256_file
from edgekd_runtime.manifest import Artifact, InputSpec, Manifest, Normalization, PreprocessSpec
from edgekd_runtime.sysinfo import utc_timestamp

from .bundle import ONNX_NAME, export_digits, export_versions
from .onnx_export import MIN_OPSET
from .samples import bundle_samples


def _files_record(ref: str) -> dict[str, str]:
    """Path and sha256 of the teacher file, or of each of an ensemble's (joined by commas, as `load_teacher`
    reads them)."""
    from edgekd.models.teachers import teacher_files

    parts = [Path(p).expanduser() for p in teacher_files(ref)]
    return {"path": ",".join(str(p.resolve()) for p in parts), "sha256": ",".join(sha256_file(p) for p in parts)}


def export_teacher_bundle(teacher_file: str | os.PathLike, out_dir: str | os.PathLike, *, data: dict[str, Any],
                          labels: list[str], budget: dict[str, Any] | None = None,
                          profile: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
                          arch: str | None = None, scale: str | None = None, force: bool = False,
                          opset: int = MIN_OPSET, max_samples: int | None = None) -> Manifest:
    """Export a digit teacher file as a deployable bundle (see the module doc).

    Args:
        teacher_file: any file `load_teacher` reads except TFLite.
        data: the DataSpec dict that rebuilds the splits it is checked on; labels: its classes.
        budget, profile: recorded in the manifest for the budget check after conversion.
        arch, scale: as `load_teacher` takes them (`--teacher-arch`, `--teacher-scale`).
    """
    from edgekd.models.teachers import TEACHER_INPUT_SIZE, load_teacher
    from edgekd_converters.staging import check_output_dir

    check_output_dir(out_dir, force, inputs=[teacher_file])
    t = load_teacher(str(teacher_file), len(labels), arch, scale)
    extra = {"data": data, "metrics": metrics or {}, "deployed_model": "teacher",
             "checkpoint": {**_files_record(str(teacher_file)),
                            "kind": "teacher", "source": t.source, "arch": arch, "scale": scale}}
    ck = {"arch": t.name, "labels": labels, "input_size": TEACHER_INPUT_SIZE, "data": data, "budget": budget,
          "profile": profile}
    if t.source == "onnx":
        return _export_onnx_teacher(Path(teacher_file), t, ck, extra, out_dir, force, scale, max_samples)
    if t.source == "tflite":
        from edgekd_runtime.errors import UserInputError

        raise UserInputError(f"teacher {teacher_file} is a TFLite file: there is no ONNX graph to deploy and convert "
                             f"from; give the teacher's ONNX file instead")
    return export_digits(t.model, {**ck, "normalization": t.normalization}, extra, out_dir, force, opset,
                         max_samples)


def _export_onnx_teacher(path: Path, teacher: Any, ck: dict[str, Any], extra: dict[str, Any],
                         out_dir: str | os.PathLike, force: bool, scale: str | None,
                         max_samples: int | None) -> Manifest:
    """The teacher's normalised ONNX graph as `student.onnx`, its accuracy measured through edgekd_runtime."""
    import onnx

    from edgekd.models.foreign_teachers import parse_teacher_scale
    from edgekd_converters.bundle import runtime_accuracy
    from edgekd_converters.model_info import inspect_model, load_onnx
    from edgekd_converters.normalize import normalize_model
    from edgekd_converters.staging import staged_directory

    model, steps = normalize_model(load_onnx(path), str(path))
    info = inspect_model(model, path)
    s = parse_teacher_scale(scale)
    samples = bundle_samples(ck["data"], info.height)
    test_x, test_y = samples.test_x[:max_samples], samples.test_y[:max_samples]
    kind = "probs" if getattr(teacher.model, "outputs_probabilities", False) else "logits"
    with staged_directory(out_dir, force) as stage:
        onnx.save(model, str(stage / ONNX_NAME))
        manifest = Manifest(
            name=str(ck["arch"]), labels=[str(x) for x in ck["labels"]],
            input=InputSpec(info.input_name, tuple(info.input_shape), info.layout, "float32"),
            output={"name": info.output_name, "kind": kind}, normalization=Normalization(s.mean, s.std),
            preprocessing=PreprocessSpec(),
            artifacts=[Artifact.from_file(stage, ONNX_NAME, "fp32", accuracy=None,
                                          extra={"accuracy_source": "onnxruntime", "normalized": steps})],
            budget=ck.get("budget"), profile=ck.get("profile"), versions=export_versions(), created=utc_timestamp(),
            extra={**extra, "eval_split": samples.split, "num_eval_samples": int(len(test_y))})
        manifest.save(stage)
        runtime_accuracy(stage, manifest, test_x, test_y, source="onnxruntime")
        fp32 = manifest.artifacts[0].accuracy  # the teacher file itself: the reference for int8's accuracy check
        manifest.extra["torch_accuracy"] = fp32
        manifest.save(stage)
    return manifest


def reference_model(ck: dict[str, Any], num_classes: int) -> Any:
    """The torch module a deployed teacher's artifacts are checked against (None for an ONNX teacher: its ONNX
    file is the reference itself)."""
    from edgekd.models.teachers import load_teacher

    if ck.get("source") == "onnx":
        return None
    return load_teacher(str(ck["path"]), num_classes, ck.get("arch"), ck.get("scale")).model
