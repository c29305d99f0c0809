"""Export: a student checkpoint -> a bundle directory (`student.onnx` + `manifest.json`), then the converters
fill it with TFLite and ONNX int8 artifacts. torch is imported only inside the functions that need it.

    from edgekd.export import export_bundle, convert_exported_bundle
    manifest = export_bundle("runs/x/student.pt", "bundle/")
    manifest, report = convert_exported_bundle("bundle/")
"""

from __future__ import annotations

from .bundle import export_bundle
from .convert import convert_exported_bundle
from .onnx_export import export_onnx

__all__ = ["export_bundle", "convert_exported_bundle", "export_onnx"]
