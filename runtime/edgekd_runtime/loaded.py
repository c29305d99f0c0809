"""What every loaded model (digit `Recognizer`, text-line `LineRecognizer`) says about itself: its interpreter,
its file and whether it is the artifact its bundle deploys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import sha256_file

if TYPE_CHECKING:
    from .backends import Backend
    from .manifest import Artifact, InputSpec, Manifest


class LoadedModel:
    """Mixin for the recognizer dataclasses, which hold these attributes (annotated here for readers and type
    checkers only: a plain base class adds no dataclass fields)."""

    backend: Backend
    model_path: Path
    precision: str
    input_spec: InputSpec
    manifest: Manifest | None
    artifact: Artifact | None
    load_ms: float

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def backend_version(self) -> str:
        return self.backend.version

    @property
    def threads(self) -> int:
        return self.backend.threads

    @property
    def is_deployed(self) -> bool | None:
        """Whether the loaded file is the artifact its bundle records as deployed (None: no such record)."""
        if self.manifest is None or self.manifest.deployed is None:
            return None
        return self.artifact is not None and self.artifact.path == self.manifest.deployed

    def model_info(self) -> dict[str, Any]:
        """The file, interpreter and tensor part of `info()`, the same for every kind of model."""
        b, m = self.backend, self.manifest
        return {
            "model_path": str(self.model_path), "format": b.format, "precision": self.precision,
            "artifact": self.artifact.path if self.artifact else None, "deployed": m.deployed if m else None,
            "is_deployed": self.is_deployed, "size_bytes": self.model_path.stat().st_size,
            "sha256": sha256_file(self.model_path), "backend": b.name, "backend_version": b.version,
            "delegate": b.delegate, "threads": b.threads, "input_layout": self.input_spec.layout,
            "inputs": [t.to_dict() for t in b.inputs], "outputs": [t.to_dict() for t in b.outputs],
            "load_ms": self.load_ms, "manifest": m.to_dict() if m else None,
        }
