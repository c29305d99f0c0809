"""Helpers for the export/convert tests: a tiny student trained on real digits, saved as a checkpoint.

The student is fit on the test split too: export and convert check parity on that split, and int8 parity (the
product's default: >= 99 % top-1 agreement) only has a clear margin on digits the student is sure of. Measured on
the 120 test digits over 6 seeds: fit on them (30 epochs), every top-2 logit gap >= 1.5 and 0 int8 flips, with
onnxruntime's exact int8 arithmetic and with its AVX2 kernels on a CPU without VNNI (whose u8*s8 pair sums saturate
at int16 in the first layer); trained on the 420 training digits only (~83 % accurate), 2-3 of the 120 flipped on
AVX2 (97.5-98.3 %) and 0-1 elsewhere, a 99 % bar sitting on the edge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STUDENT = "mlp-w32-d1-r16"
SPEC = {"source": "embedded", "seed": 0, "limit_per_class": 60}  # 420 train / 60 val / 120 test real digits


def make_student_checkpoint(path: Path, student_id: str = STUDENT, epochs: int = 30) -> Path:
    """Train `student_id` briefly on real digits, the test split included (cross-entropy), and save a
    DESIGN-contract checkpoint."""
    import torch

    from edgekd.data import DataSpec, load_data
    from edgekd.export.samples import bundle_samples, normalise
    from edgekd.models.students import build_student, parse_student_id
    from edgekd.train.checkpoint import model_checkpoint, save_torch

    torch.manual_seed(0)
    spec = DataSpec.from_dict(SPEC)
    splits = load_data(spec)
    size = parse_student_id(student_id).input_size
    samples = bundle_samples(SPEC, size, calib_samples=10**9)  # every training digit, in order, and the test split
    x = torch.from_numpy(normalise(np.concatenate([samples.calib, samples.test_x]), 0.1307, 0.3081))
    y = torch.from_numpy(np.concatenate([splits.train.y, samples.test_y]))
    model = build_student(student_id, 10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(32):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    ck = model_checkpoint("student", student_id, model, num_classes=10, labels=splits.class_names, input_size=size,
                          data=spec.to_dict(), metrics={"test_accuracy": None}, config={"epochs": epochs})
    save_torch(ck, path)
    return path
