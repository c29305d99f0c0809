"""`load()`: pick the artifact (bundle) or take the file, open an interpreter, derive the input spec.

Everything about the model's input comes from the interpreter's own tensor details (layout, size, dtype,
quantization); a bundle's manifest adds labels, normalisation, preprocessing and the sha256 it must match.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .backends import Backend, TensorInfo, open_backend, resolve_format, resolve_threads, tflite_available
from .errors import (
    BackendUnavailableError,
    EdgekdWarning,
    ManifestError,
    ModelLoadError,
    UnknownNameError,
    UserInputError,
)
from .images import check_readable
from .manifest import (
    FORMAT,
    MANIFEST_NAME,
    PRECISIONS,
    Artifact,
    InputSpec,
    Manifest,
    Normalization,
    PreprocessSpec,
    check_normalization,
    verify_artifact,
)
from .recognizer import Recognizer

if TYPE_CHECKING:
    from .line_recognizer import LineRecognizer
from .sysinfo import rss_bytes

BACKEND_CHOICES = ("auto", "onnx", "tflite")
_INSTALL_HINT = {"onnx": "pip install onnxruntime", "tflite": "pip install 'edgekd-runtime[tflite]'"}


def load(path: str | os.PathLike, backend: str = "auto", threads: int | None = None,
         precision: str | None = None, *, mean: float | None = None, std: float | None = None
         ) -> Recognizer | LineRecognizer:
    """Load a student for recognition: a `Recognizer` (digits, `predict`), or a `LineRecognizer` (`read`) for a
    bundle whose manifest has the task `line-recognition`.

    Args:
        path: a bundle directory (with manifest.json) or a bare .onnx / .tflite file. A bare file listed in a
            manifest.json beside it (what `edgekd export` and `edgekd-convert` write) is read with that manifest.
        backend: "auto" (the bundle's deployed artifact, see below, or the file's format), "onnx" or "tflite".
        threads: interpreter threads; None = the cores this process may use (at most 4); more than those cores
            is capped at them with an `EdgekdWarning`.
        precision: in a bundle, pick the artifact with this precision (fp32, fp16, int8).
        mean, std: the input normalisation `x = (pixel/255 - mean) / std` of a bare model file without a
            manifest (default MNIST's, 0.1307 and 0.3081); give both or neither. A manifest carries its own.

    In a bundle, the artifact its manifest records as `deployed` (the one `edgekd convert` chose for the budget)
    is preferred among those that match `backend` and `precision`; bundles that record none use their first
    usable artifact. An explicit backend or precision that excludes the deployed artifact wins.

    Raises:
        ModelLoadError, ManifestError, ChecksumMismatchError, UserInputError (threads < 1) (user-fixable);
        BackendUnavailableError.
    """
    if backend not in BACKEND_CHOICES:
        raise UnknownNameError("backend", backend, BACKEND_CHOICES)
    if precision is not None and precision not in PRECISIONS:
        raise UserInputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    threads = resolve_threads(threads)
    norm = _given_normalization(mean, std)
    p = Path(path)
    is_bundle = os.path.isdir(p)  # (Path.is_dir raises where a folder above cannot be searched)
    if not is_bundle:  # a model file: missing, unreadable or not a regular file -> ModelLoadError saying which
        check_readable(p, ModelLoadError, "model")
    t0 = time.perf_counter()
    if is_bundle:
        _check_bundle_file(p / MANIFEST_NAME, ManifestError, "manifest")
        bundle_manifest = Manifest.load(p)
        be, bundle_art, model_path = _open_bundle_artifact(p, bundle_manifest, backend, precision, threads)
        manifest: Manifest | None = bundle_manifest
        art: Artifact | None = bundle_art
        prec: str | None = bundle_art.precision
    else:
        manifest, art = _manifest_beside(p)
        model_path, prec = p, precision or (art.precision if art else None)
        be = _open_file(p, resolve_format(p, backend), threads)
    load_ms = (time.perf_counter() - t0) * 1e3
    rss = rss_bytes()
    if manifest is not None and norm is not None and norm != manifest.normalization:
        raise UserInputError(f"{model_path}: its manifest sets the normalisation (mean {manifest.normalization.mean}"
                             f", std {manifest.normalization.std}); mean/std (--mean/--std) are for model files "
                             f"without a manifest: leave them out")
    if manifest is not None and manifest.lines is not None:  # a text-line bundle: read(), not predict()
        from .line_recognizer import make_line_recognizer

        return make_line_recognizer(be, model_path, prec or _guess_precision(be, model_path), manifest, load_ms, rss,
                                    art)
    spec = _input_spec(be.inputs[0], manifest, model_path)
    n_out = be.outputs[0].shape[-1] if be.outputs[0].shape else -1
    if manifest is not None:
        labels = list(manifest.labels)
        if n_out > 0 and n_out != len(labels):
            raise ManifestError(f"{model_path}: the model outputs {n_out} scores but {manifest.name!r}'s manifest "
                                f"lists {len(labels)} labels; re-export the bundle")
        kind = str(manifest.output.get("kind", "logits"))
        return Recognizer(be, model_path, prec or _guess_precision(be, model_path), labels, spec,
                          manifest.normalization, manifest.preprocessing, kind, manifest, load_ms, rss, artifact=art)
    if n_out <= 0:
        raise ModelLoadError(f"{model_path}: the output {be.outputs[0].name} has no fixed class dimension "
                             f"{be.outputs[0].shape}; use a bundle whose manifest lists the labels")
    return Recognizer(be, model_path, prec or _guess_precision(be, model_path), [str(i) for i in range(n_out)],
                      spec, norm or Normalization(), PreprocessSpec(), "auto", None, load_ms, rss)


def _given_normalization(mean: float | None, std: float | None) -> Normalization | None:
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise UserInputError(f"mean={mean}, std={std}: give the input normalisation's mean and std together "
                             f"(x = (pixel/255 - mean) / std), or neither for MNIST's")
    return check_normalization(mean, std, "mean/std (--mean/--std)")


def _manifest_beside(path: Path) -> tuple[Manifest | None, Artifact | None]:
    """The edgekd manifest.json next to a bare model file that lists it (checked against its sha256), or None.

    A manifest.json that is not an edgekd one (another tool's) or that does not list this file is not used."""
    import json

    mpath = path.parent / MANIFEST_NAME
    if not os.path.isfile(mpath):  # (a named pipe there would block the read)
        return None, None
    try:
        d = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None, None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        return None, None
    manifest = Manifest.from_dict(d, source=str(mpath))
    for art in manifest.artifacts:
        if (path.parent / art.path).resolve() == path.resolve():
            verify_artifact(path.parent, art)
            return manifest, art
    return None, None


def _open_file(path: Path, fmt: str, threads: int | None) -> Backend:
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: the model file is empty (0 bytes); copy it again")
    return open_backend(path, fmt, threads)


def _check_bundle_file(path: Path, error: type[UserInputError], what: str) -> None:
    """`check_readable` for a bundle's manifest or artifact before manifest.py reads it (its OSError would escape as
    a traceback); a file that is plainly missing is left to manifest.py's message, which says what the bundle lacks."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return
    except OSError:
        pass  # permission denied, a loop ...: check_readable says which
    check_readable(path, error, what)


def _open_bundle_artifact(bundle: Path, m: Manifest, backend: str, precision: str | None,
                          threads: int | None) -> tuple[Backend, Artifact, Path]:
    """Open the first candidate artifact; with backend="auto", an interpreter that is installed but cannot
    be imported (e.g. tflite_runtime under numpy 2) moves on to the next artifact instead of failing."""
    cands = _candidate_artifacts(m, backend, precision)
    for i, art in enumerate(cands):
        _check_bundle_file(bundle / art.path, ModelLoadError, "model")
        path = verify_artifact(bundle, art)
        try:
            opened = _open_file(path, art.format, threads)
        except BackendUnavailableError:
            if backend != "auto" or i == len(cands) - 1:
                raise
            continue
        dep = m.deployed_artifact()
        if dep is not None and art is not dep and backend == "auto" and precision is None:
            hint = _INSTALL_HINT.get(dep.format, "install its interpreter")
            warnings.warn(f"bundle {m.name!r}: its deployed artifact {dep.path} needs a {dep.format} interpreter "
                          f"that cannot be used here; loading {art.path} ({art.format}/{art.precision}) instead, "
                          f"which may not fit the budget ({hint})", EdgekdWarning, stacklevel=3)
        return opened, art, path
    raise AssertionError("unreachable: _candidate_artifacts never returns an empty list")


def _candidate_artifacts(m: Manifest, backend: str, precision: str | None) -> list[Artifact]:
    import importlib.util

    usable = {"onnx": importlib.util.find_spec("onnxruntime") is not None, "tflite": tflite_available()}
    cands = [a for a in m.artifacts if (backend == "auto" and usable.get(a.format, False)) or a.format == backend]
    cands = [a for a in cands if precision is None or a.precision == precision]
    if not cands:
        m.artifact(None if backend == "auto" else backend, precision)  # raises ManifestError listing them
        raise ManifestError(f"bundle {m.name!r}: no interpreter installed for its artifacts "
                            f"({', '.join(a.path for a in m.artifacts)}); `pip install onnxruntime` or "
                            f"`pip install 'edgekd-runtime[tflite]'`")
    failed = lambda a: isinstance(a.parity, dict) and a.parity.get("passed") is False  # noqa: E731
    dep = m.deployed_artifact()
    if dep is None:
        return sorted(cands, key=failed)  # stable: manifest order, parity failures last
    # the deployed artifact first; if it cannot be used here, one of its precision before the others
    return sorted(cands, key=lambda a: (a is not dep, a.precision != dep.precision, failed(a)))


def _input_spec(t: TensorInfo, manifest: Manifest | None, path: Path) -> InputSpec:
    shape = t.shape
    hint = manifest.input if manifest else InputSpec()
    if t.dtype not in ("float32", "float16") and not t.quantized:
        raise ModelLoadError(f"{path}: input {t.name} is {t.dtype} without quantization parameters; edgekd "
                             f"runs float or int8-quantized inputs (re-convert with `edgekd convert`)")
    if len(shape) == 4:
        if shape[3] in (1, 3) and shape[1] not in (1, 3):
            layout = "NHWC"
        elif shape[1] in (1, 3):
            layout = "NCHW" if (shape[3] not in (1, 3) or hint.layout == "NCHW") else "NHWC"
        else:
            raise ModelLoadError(f"{path}: input {t.name} has shape {shape}: not a 1- or 3-channel image in NCHW "
                                 f"or NHWC; edgekd students take (N, 1, S, S) or (N, S, S, 1)")
    elif len(shape) == 3:
        layout = "NHW"
    elif len(shape) == 2:
        layout = "NF"
    else:
        raise ModelLoadError(f"{path}: input {t.name} has shape {shape}; expected an image batch (rank 2 to 4)")
    dims = list(shape)
    if any(d <= 0 for d in dims[1:]):  # dynamic spatial size: take the manifest's / MNIST's
        side = hint.size
        fill = {"NCHW": [1, side, side], "NHWC": [side, side, 1], "NHW": [side, side], "NF": [side * side]}[layout]
        dims = [dims[0]] + [d if d > 0 else f for d, f in zip(dims[1:], fill)]
    spec = InputSpec(name=t.name, shape=tuple(dims), layout=layout, dtype=t.dtype)
    if layout in ("NCHW", "NHWC"):
        h, w = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])
        if h != w:
            raise ModelLoadError(f"{path}: input {t.name} is {h}x{w}; edgekd students take square canvases")
    elif layout == "NF" and int(round(dims[1] ** 0.5)) ** 2 != dims[1]:
        raise ModelLoadError(f"{path}: flat input {t.name} has {dims[1]} features, not a square image")
    return spec


def _guess_precision(be: Backend, path: Path) -> str:
    if be.inputs[0].quantized or be.outputs[0].quantized:
        return "int8"
    name = path.name.lower()
    if "int8" in name or "quant" in name:
        return "int8"
    if "float16" in name or "fp16" in name:
        return "fp16"
    return "fp32"
