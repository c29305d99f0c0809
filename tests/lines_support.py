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
