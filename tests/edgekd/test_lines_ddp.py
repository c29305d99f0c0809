"""DDP for the lines task (gloo, 2 processes, torchrun): the line source, the cached teacher and a CTC KD loss give
the same weights as 1 process on the same global batch."""

from __future__ import annotations

import textwrap

from ddp_support import run_one_and_two_processes

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    from torch import nn
    from edgekd.data.lines import LineSpec, load_lines
    from edgekd.kd import LossConfig, build_loss
    from edgekd.models.teachers import TEACHERS
    from edgekd.train.line_pipeline import LineSource
    from edgekd.train.trainer import TrainConfig, fit, seed_everything
    torch.set_num_threads(1)
    out = sys.argv[1]
    s = load_lines(LineSpec(train_lines=24, val_lines=4, test_lines=4, max_len=4))
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, device="cpu", seed=3)
    seed_everything(0)
    teacher = TEACHERS.get("crnn-small")(s.num_classes, height=24).eval()
    seed_everything(cfg.seed)
    # no BatchNorm: per-rank batch statistics would differ between 1 and 2 processes
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                          nn.Conv2d(8, s.num_classes, (6, 1)), nn.Flatten(2))
    class Lines(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model
        def forward(self, x, with_features=False):
            return self.m(x).transpose(1, 2)
    net = Lines()
    src = LineSource(s.train_view, 2, s.charset, torch.device("cpu"), teacher)
    res = fit(net, src, build_loss(LossConfig("frame_kd+0.5*seq_kd", alpha=0.7)), cfg, out, progress=False)
    if int(os.environ.get("RANK", 0)) == 0:
        torch.save(net.state_dict(), os.path.join(out, "final.pt"))
        print(json.dumps({"n": src.n, "world": int(os.environ.get("WORLD_SIZE", 1)),
                          "loss": [h["train_loss"] for h in res.history]}))
""")


def test_lines_ddp_two_processes_match_one_process(tmp_path):
    r1, r2 = run_one_and_two_processes(SCRIPT, tmp_path)
    assert (r1["world"], r2["world"], r1["n"]) == (1, 2, 24)
