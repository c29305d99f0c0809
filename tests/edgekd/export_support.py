"""Helpers for the export/convert tests: a tiny student trained on real digits, saved as a checkpoint."""

from __future__ import annotations

from pathlib import Path

STUDENT = "mlp-w32-d1-r16"
SPEC = {"source": "embedded", "seed": 0, "limit_per_class": 60}  # 420 train / 60 val / 120 test real digits


def make_student_checkpoint(path: Path, student_id: str = STUDENT, epochs: int = 10) -> Path:
    """Train `student_id` briefly on real digits (cross-entropy) and save a DESIGN-contract checkpoint."""
    import torch

    from edgekd.data import DataSpec, load_data
    from edgekd.export.samples import bundle_samples, normalise
    from edgekd.models.students import build_student, parse_student_id
    from edgekd.train.checkpoint import model_checkpoint, save_torch

    torch.manual_seed(0)
    spec = DataSpec.from_dict(SPEC)
    splits = load_data(spec)
    size = parse_student_id(student_id).input_size
    x = torch.from_numpy(normalise(bundle_samples(SPEC, size, calib_samples=10**9).calib, 0.1307, 0.3081))
    y = torch.from_numpy(splits.train.y)
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
