"""Teachers separated by commas are one teacher: the mean of their posteriors (edgekd.models.ensemble)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.models.teachers import load_teacher


class _Fixed(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(28 * 28, 10)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 28 * 28, generator=g) * 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_comma_separated_teachers_average_their_posteriors(tmp_path):
    paths = []
    for seed in (0, 1, 2):
        paths.append(tmp_path / f"t{seed}.pt")
        torch.jit.save(torch.jit.script(_Fixed(seed)), str(paths[-1]))
    t = load_teacher(",".join(map(str, paths)), 10)
    assert t.source == "ensemble" and t.name == "ensemble(t0+t1+t2)" and not t.has_features
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        want = torch.stack([load_teacher(str(p), 10).model(x).softmax(-1) for p in paths]).mean(0)
        got = t.model(x)
    torch.testing.assert_close(got.exp(), want)  # log of the mean posterior: its softmax is that mean
    torch.testing.assert_close(got.softmax(-1), want)
    assert t.model(x).argmax(1).shape == (5,)


def test_an_ensemble_with_a_missing_member_names_it(tmp_path):
    good = tmp_path / "t0.pt"
    torch.jit.save(torch.jit.script(_Fixed(0)), str(good))
    with pytest.raises(Exception, match="nope.pt"):
        load_teacher(f"{good},{tmp_path / 'nope.pt'}", 10)
