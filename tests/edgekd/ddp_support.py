"""Runs a training script alone and under torchrun with 2 gloo processes, for the DDP tests."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_one_and_two_processes(script_text: str, tmp_path) -> tuple[dict, dict]:
    """Run a training script once alone and once under torchrun with 2 gloo processes; check that the epoch
    losses (all-reduced) and the final weights (`final.pt`) agree. Returns the two JSON records it printed."""
    script = tmp_path / "job.py"
    script.write_text(script_text)
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                          "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(script),
                          str(tmp_path / "two")], capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    r1 = json.loads(one.stdout.strip().splitlines()[-1])
    r2 = json.loads(two.stdout.strip().splitlines()[-1])
    # all-reduced metrics: the 2-process epoch loss is the mean over the same samples
    assert all(abs(a - b) < 1e-4 for a, b in zip(r1["loss"], r2["loss"])), (r1, r2)
    a = torch.load(tmp_path / "one" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "final.pt", weights_only=True)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), (k, (a[k] - b[k]).abs().max())
    return r1, r2
