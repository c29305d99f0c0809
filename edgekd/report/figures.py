"""PNG figures of a run report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from edgekd_runtime.atomic import atomic_path

if TYPE_CHECKING:
    import numpy as np

ROLE_STYLE = {"teacher": ("#444444", "--"), "scratch": ("#d62728", "-"), "distilled": ("#1f77b4", "-")}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _plt().close(fig)
    return path


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Epoch records from a trainer's metrics.jsonl (records without an `epoch` are skipped)."""
    rows: list[dict[str, Any]] = []
    p = Path(path)
    if not p.is_file():
        return rows
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by an interruption
            continue
        if "epoch" in rec:
            rows.append(rec)
    return rows


def training_curves(curves: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Validation accuracy and training loss per epoch, one line per model role."""
    plt = _plt()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    for role, rows in curves.items():
        if not rows:
            continue
        color, ls = ROLE_STYLE.get(role, (None, "-"))
        ep = [r["epoch"] for r in rows]
        acc = [100 * r["val_acc"] for r in rows if "val_acc" in r]
        loss = [r["train_loss"] for r in rows if "train_loss" in r]
        if acc:
            ax_acc.plot(ep[: len(acc)], acc, ls, color=color, label=role, marker="o", ms=3)
        if loss:
            ax_loss.plot(ep[: len(loss)], loss, ls, color=color, label=role, marker="o", ms=3)
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss (own objective)")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def confusion_matrix_png(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str, path: Path) -> Path:
    """Counts with row-normalised colour (true class per row)."""
    import numpy as np

    plt = _plt()
    m = np.asarray(matrix, dtype=np.int64)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(0.55 * n + 2.5, 0.55 * n + 2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def confusion_matrix(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                     num_classes: int) -> list[list[int]]:
    import numpy as np

    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m.tolist()


def coverage_png(confidence: dict[str, Any], path: Path) -> Path:
    """String accuracy of the accepted readings against the share rejected (least confident first), from the
    manifest's `extra.confidence` block; the 99 % / 95 % thresholds as dotted lines when reached."""
    plt = _plt()
    curve = confidence["coverage"]
    x = [c["reject_percent"] for c in curve]
    y = [100 * c["accuracy"] for c in curve]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(x, y, "-", color=ROLE_STYLE["distilled"][0], marker="o", ms=4, label="accepted readings")
    for key, target in (("threshold_99", 99), ("threshold_95", 95)):
        if confidence.get(key):
            ax.axhline(target, ls=":", color="#888888", lw=1)
            ax.text(x[-1], target, f" {target} % at conf >= {confidence[key]['threshold']:.3f}", va="bottom",
                    ha="right", fontsize=8, color="#555555")
    ax.set(xlabel="least confident readings rejected (%)", ylabel="string accuracy of the rest (%)",
           title=f"Coverage vs accuracy (T = {confidence['temperature']:.2f}, ECE "
                 f"{confidence['ece_before']:.3f} -> {confidence['ece_after']:.3f})")
    ax.set_ylim(min(min(y), 94.0) - 1.0, 100.5)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)
