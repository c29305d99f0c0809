"""DataSpec (what to load and how to split it) and Splits (the loaded train/val/test arrays)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgekd_runtime.errors import UserInputError


def path_hint(section: str) -> str:
    """How to give a data source its path, for every command (the one wording: an error cannot tell which ran)."""
    return (f"give it with --data PATH (edgekd run), --data-path PATH (teacher train, distill), --path PATH "
            f"(data info), or {section}.path in the YAML")


@dataclass(frozen=True)
class DataSpec:
    """Everything that rebuilds the same splits: source name, path, seed and split fractions.

    Attributes:
        source: data source name (`embedded`, `idx`, `folder`, `npz`).
        path: file or directory for sources that read files (None for `embedded`).
        seed: seed of the stratified split.
        val_fraction: share of each class that goes to validation.
        test_fraction: share of each class that goes to test (ignored when the source has its own test split).
        limit_per_class: keep at most this many samples per class (None: all), taken deterministically.
        transpose: for IDX files, transpose images (EMNIST stores them transposed); None = auto from the name.
    """

    source: str = "embedded"
    path: str | None = None
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    limit_per_class: int | None = None
    transpose: bool | None = None

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise UserInputError(f"data {name} must be in [0, 1), got {v}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise UserInputError(
                f"data val_fraction + test_fraction must be < 1 (got {self.val_fraction} + {self.test_fraction})")
        if self.limit_per_class is not None and self.limit_per_class < 1:
            raise UserInputError(f"data limit_per_class must be >= 1, got {self.limit_per_class}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSpec":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserInputError(f"unknown data option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class Split:
    """One split: `x` uint8 (N, 28, 28) canvases * 255, `y` int64 (N,)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.y, minlength=num_classes).tolist()


@dataclass(frozen=True)
class Splits:
    """train/val/test splits and the class names (index i = label i)."""

    train: Split
    val: Split
    test: Split
    class_names: list[str] = field(default_factory=list)
    spec: DataSpec = field(default_factory=DataSpec)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
