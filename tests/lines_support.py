"""A tiny CTC line student for the export/convert/runtime tests of text lines, saved as a lines checkpoint.

Like the digit export tests' student, it is fit on the test lines too: export and convert check parity on that
split, and int8 must read the same strings on >= 99 % of them (no flip at all on 64 lines). Measured: after 50
epochs it reads all 64 test lines right, and its strings survive uniform +-1.0 noise on every logit (20 draws),
twice the int8 artifacts' max logit error (~0.5), so CPU int8 kernel rounding (AVX2 vs VNNI) cannot flip one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STUDENT = "ctc-w8-d2-r24"
SPEC = {"train_lines": 256, "val_lines": 16, "test_lines": 64, "min_len": 3, "max_len": 8, "test_min_len": 3,
        "test_max_len": 8}  # 256 lines to calibrate int8 (>= 200), 64 test lines


def make_line_student_checkpoint(path: Path, epochs: int = 50) -> Path:
    """Train the student with CTC on the train + test lines and save it with the lines checkpoint contract."""
    import torch

    from edgekd.data.lines import LineSpec, encode_texts, load_lines
    from edgekd.models.students import build_student
    from edgekd.train.checkpoint import model_checkpoint, save_torch
    from edgekd.train.line_pipeline import line_task_fields

    torch.manual_seed(0)
    spec = LineSpec(**SPEC)
    splits = load_lines(spec)
    x = torch.from_numpy(np.concatenate([splits.train.x, splits.test.x])).float().div(255.0)
    x = ((x - 0.1307) / 0.3081)[:, None]
    tg, ln = (torch.from_numpy(a) for a in encode_texts(splits.train.texts + splits.test.texts, splits.charset,
                                                          "test lines"))
    model = build_student(STUDENT, splits.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(16):
            lp = model(x[idx]).log_softmax(-1).transpose(0, 1)
            loss = ctc(lp, tg[idx], torch.full((len(idx),), lp.shape[0], dtype=torch.long), ln[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    ck = model_checkpoint("student", STUDENT, model, num_classes=splits.num_classes, labels=list(splits.charset),
                          input_size=spec.height, data=spec.to_dict(), metrics={}, config={"epochs": epochs},
                          task=line_task_fields(splits))
    save_torch(ck, path)
    return path


def softmax_reading(rec, canvas: np.ndarray, scores: np.ndarray | None = None
                    ) -> tuple[str, float, list[tuple[str, float, tuple[int, int]]]]:
    """One line canvas read as `LineRecognizer.read` did before it decoded straight from the scores, written out
    here on its own: best path on softmax(scores) (argmax, repeats merged, blanks dropped), each character's
    probability its peak over its frames in softmax(scores / T), the confidence their product (an empty reading's:
    the lowest tempered blank probability), spans in the canvas's columns. `read(canvas, preprocessed=True)` must
    give exactly this. `scores`: the canvas's (T, C) scores from a batch (default: `rec.forward` of it alone)."""
    from edgekd_runtime.confidence import softmax

    scores = rec.forward(canvas[None]) if scores is None else scores[None]
    probs, cal = softmax(scores)[0], softmax(scores, rec.lines.confidence_temperature)[0]
    blank, s, w = rec.lines.blank, rec.lines.frame_stride, canvas.shape[1]
    best = probs.argmax(1)
    starts = np.flatnonzero(np.r_[True, best[1:] != best[:-1]])
    ends = np.r_[starts[1:], len(best)] - 1
    keep = best[starts] != blank
    if not keep.any():
        return "", float(cal[:, blank].min()), []
    chars = [(rec.charset[c - (c > blank)], float(cal[a:b + 1, c].max()), (min(a * s, w), min((b + 1) * s, w)))
             for c, a, b in zip(best[starts][keep].tolist(), starts[keep].tolist(), ends[keep].tolist())]
    return "".join(c for c, _, _ in chars), float(np.prod([p for _, p, _ in chars], dtype=np.float64)), chars


def assert_same_readings(got: list, want: list, exact: bool) -> None:
    """Readings (text, confidence, [(char, probability, span)]) against `softmax_reading`'s: texts, characters and
    spans equal; the probabilities and confidences bit for bit (`exact`: float scores) or within float32 rounding
    (8-bit scores, whose softmax the recognizer looks up in a float64 table: `ctc_decode.quantized_best_path`)."""
    import pytest

    def layout(r):
        return r[0], [(c, span) for c, _, span in r[2]]

    def numbers(r):
        return [r[1], *(p for _, p, _ in r[2])]

    assert [layout(r) for r in got] == [layout(r) for r in want]
    flat_got, flat_want = [x for r in got for x in numbers(r)], [x for r in want for x in numbers(r)]
    assert flat_got == (flat_want if exact else pytest.approx(flat_want, rel=1e-5, abs=0.0))
