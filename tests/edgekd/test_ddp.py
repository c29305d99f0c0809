"""DDP (gloo, 2 processes on CPU, launched by torchrun) gives the same weights as 1 process on the same global batch."""

from __future__ import annotations

import textwrap

import torch
from ddp_support import run_one_and_two_processes

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    from edgekd.data import DataSpec, load_data
    from edgekd.data.augment import AugmentConfig
    from edgekd.kd import build_loss
    from edgekd.models.students import build_student
    from edgekd.train.batches import OnlineSource
    from edgekd.train.trainer import TrainConfig, fit, seed_everything
    torch.set_num_threads(1)
    out = sys.argv[1]
    s = load_data(DataSpec(limit_per_class=8, val_fraction=0.0, test_fraction=0.25))
    cfg = TrainConfig(epochs=2, batch_size=20, lr=1e-2, device="cpu", seed=3)
    seed_everything(cfg.seed)
    model = build_student("mlp-w16-d2-r16", 10)  # no BatchNorm: per-rank batch statistics would differ
    src = OnlineSource(s.train.x, s.train.y, torch.device("cpu"), AugmentConfig(mixup_p=0.5), cfg.seed, 16)
    res = fit(model, src, build_loss("none"), cfg, out, input_size=16, progress=False)
    if int(os.environ.get("RANK", 0)) == 0:
        torch.save(model.state_dict(), os.path.join(out, "final.pt"))
        print(json.dumps({"n": src.n, "world": int(os.environ.get("WORLD_SIZE", 1)),
                          "loss": [h["train_loss"] for h in res.history]}))
""")


def test_ddp_two_processes_match_one_process(tmp_path):
    r1, r2 = run_one_and_two_processes(SCRIPT, tmp_path)
    assert (r1["world"], r2["world"], r1["n"]) == (1, 2, 60)
    b = torch.load(tmp_path / "two" / "final.pt", weights_only=True)
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2  # rank 0 wrote it, once
    start = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert start["epoch"] == 1 and not torch.equal(start["model"]["head.weight"], torch.zeros_like(b["head.weight"]))
