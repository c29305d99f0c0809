"""Metrics of line recognizers: greedy decoding in torch, character error rate, string accuracy per length."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgekd.data.lines import LineSplit


def greedy_paths(logits: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Best-path decoding on the device: (N, T, C) logits -> (sequences (N, T) with the decoded class ids first,
    lengths (N,)). Repeats are merged and blanks (0) dropped."""
    import torch

    p = logits.argmax(-1)
    keep = p != 0
    keep[:, 1:] &= p[:, 1:] != p[:, :-1]
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    return torch.gather(p, 1, order), keep.sum(1)


def exact_matches(logits: "torch.Tensor", targets: "torch.Tensor", lengths: "torch.Tensor") -> "torch.Tensor":
    """How many lines of the batch the greedy decoding reads exactly (a 0-dim tensor on the device, no sync)."""
    import torch

    seq, n = greedy_paths(logits)
    k = min(targets.shape[1], seq.shape[1])
    pos = torch.arange(k, device=targets.device)[None, :] < lengths[:, None]
    same = ((seq[:, :k] == targets[:, :k]) | ~pos).all(1)
    return ((n == lengths) & same).sum()


def decode(seq: "torch.Tensor", n: "torch.Tensor", charset: str) -> list[str]:
    """Decoded sequences (from `greedy_paths`) -> texts."""
    seq, n = seq.cpu().numpy(), n.cpu().numpy()
    return ["".join(charset[c - 1] for c in row[:k]) for row, k in zip(seq, n)]


def char_errors(refs: list[str], hyps: list[str]) -> np.ndarray:
    """Levenshtein distance per pair (rapidfuzz)."""
    from rapidfuzz.distance import Levenshtein

    return np.array([Levenshtein.distance(r, h) for r, h in zip(refs, hyps)], np.int64)


@dataclass
class LineMetrics:
    """CER (edit distance / reference characters), whole-string accuracy, the same per string length, CTC loss."""

    cer: float
    string_acc: float
    n_lines: int
    n_chars: int
    loss: float = float("nan")
    per_length: dict[int, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per_length"] = {str(k): v for k, v in self.per_length.items()}
        return d


def line_metrics(refs: list[str], hyps: list[str], loss: float = float("nan")) -> LineMetrics:
    """Metrics of `hyps` against `refs` (same order)."""
    errs = char_errors(refs, hyps)
    lens = np.array([len(r) for r in refs], np.int64)
    ok = np.array([r == h for r, h in zip(refs, hyps)])
    per = {int(k): {"n": int((lens == k).sum()), "string_acc": float(ok[lens == k].mean()),
                    "cer": float(errs[lens == k].sum() / max(1, lens[lens == k].sum()))} for k in np.unique(lens)}
    return LineMetrics(float(errs.sum() / max(1, lens.sum())), float(ok.mean()) if len(ok) else float("nan"),
                       len(refs), int(lens.sum()), loss, per)


def line_logits(model: "nn.Module", x_u8: "np.ndarray | torch.Tensor", device: "torch.device",
                batch_size: int = 256) -> "torch.Tensor":
    """A line model's (N, T, C) logits (float32, on `device`) on uint8 line canvases (N, H, W), in inference mode
    and eval mode (half precision on GPU); the model's training mode is restored."""
    import torch

    from .batches import model_input

    x_u8 = torch.as_tensor(x_u8)
    was_training = model.training
    model.eval()
    outs = []
    half = device.type == "cuda"
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=half):
        for s in range(0, len(x_u8), batch_size):
            out = model(model_input(x_u8[s:s + batch_size].to(device)))
            outs.append((out[0] if isinstance(out, (tuple, list)) else out).float())
    model.train(was_training)
    return torch.cat(outs)


def predict_lines(model: "nn.Module", x: np.ndarray, charset: str, device: "torch.device",
                  targets: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[list[str], float]:
    """Greedy readings of uint8 line canvases (N, H, W); with (targets, lengths), also the mean CTC loss."""
    import torch

    from edgekd.kd.ctc_losses import ctc

    logits = line_logits(model, x, device)
    texts = decode(*greedy_paths(logits), charset)
    if targets is None:
        return texts, float("nan")
    tg, ln = (torch.from_numpy(a).to(device) for a in targets)
    return texts, float(ctc(logits, tg, ln))


def evaluate_lines(model: "nn.Module", split: "LineSplit", charset: str, device: "torch.device") -> LineMetrics:
    """Greedy-decode `split` and score it against its texts."""
    from edgekd.data.lines import encode_texts

    targets = encode_texts(split.texts, charset, "evaluation lines")
    hyps, loss = predict_lines(model, split.x, charset, device, targets)
    return line_metrics(split.texts, hyps, loss)
