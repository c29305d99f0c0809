"""PNG plot of a search: predicted latency vs capacity, the feasible region shaded and the choice marked."""

from __future__ import annotations

import os
from pathlib import Path

from edgekd_runtime.atomic import atomic_path
from edgekd_runtime.errors import UserInputError

from .search import SearchResult


def plot_search(result: SearchResult, path: str | os.PathLike) -> Path:
    """Write the plot atomically to `path` (PNG, matplotlib Agg backend); return the path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fam_colors = {"linear": "#7f7f7f", "mlp": "#1f77b4", "cnn": "#d62728", "dscnn": "#2ca02c"}
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    try:
        for fam, color in fam_colors.items():
            for feas in (True, False):
                pts = [c for c in result.candidates if c.student_id.split("-")[0] == fam and c.feasible == feas]
                if pts:
                    ax.scatter([c.capacity for c in pts], [c.latency_ms for c in pts], s=28, c=color,
                               alpha=0.9 if feas else 0.25, marker="o" if feas else "x",
                               label=f"{fam} ({'fits' if feas else 'over budget'})")
        lat = result.limits.get("latency_ms")
        ys = [c.latency_ms for c in result.candidates] + ([result.teacher.latency_ms] if result.teacher else [])
        if lat is not None:
            ax.axhline(lat, color="black", lw=1, ls="--")
            ax.axhspan(min(min(ys), lat) * 0.8, lat, color="#2ca02c", alpha=0.07, label="latency budget")
        ch = result.chosen
        ax.scatter([ch.capacity], [ch.latency_ms], s=260, marker="*", c="gold", edgecolors="black", zorder=5,
                   label=f"chosen: {ch.student_id}")
        t = result.teacher
        if t is not None:  # the run's teacher, costed as a candidate
            ax.scatter([t.capacity], [t.latency_ms], s=120, marker="D", c="#9467bd" if t.feasible else "none",
                       edgecolors="#9467bd", zorder=5,
                       label=f"teacher: {t.student_id} ({'fits' if t.feasible else 'over budget'})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("capacity = sqrt(params x MACs)")
        ax.set_ylabel(f"predicted latency (ms), {result.budget.precision}")
        kind = "estimate" if result.profile.estimate else "calibrated"
        ax.set_title(f"{result.profile.name} ({kind}, {result.profile.backend}, {result.profile.threads} threads): "
                     f"{len(result.feasible)}/{len(result.candidates)} students fit", fontsize=10)
        ax.grid(True, which="both", alpha=0.2)
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        out = Path(path)
        try:
            with atomic_path(out) as tmp:
                fig.savefig(tmp, format="png")
        except OSError as e:
            raise UserInputError(f"cannot write the plot to {out} ({e.strerror or e}); pass --plot PATH in a "
                                 f"writable directory, or --no-plot") from None
    finally:
        plt.close(fig)
    return out
