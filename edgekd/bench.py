"""Benchmark every artifact of a bundle on this machine through edgekd_runtime (what the board would run)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgekd_runtime.bench import LatencyReport


def bench_bundle(bundle: str | Path, runs: int = 200, warmup: int | None = None, threads: int | None = None,
                 on_result: Callable[[str, LatencyReport], None] | None = None,
                 image: str | Path | None = None) -> dict[str, LatencyReport]:
    """Latency report per artifact path, in manifest order; `warmup` defaults to max(5, runs // 10).

    With `image`, the deployed artifact's report (the manifest's record, else its first) also holds the image
    path of that file, stage by stage (`LatencyReport.image_path`, as `edgekd-rt bench --image` measures it)."""
    import edgekd_runtime
    from edgekd_runtime.bench import run_image_benchmark
    from edgekd_runtime.manifest import Manifest

    bundle = Path(bundle)
    m = Manifest.load(bundle)
    deployed = (m.deployed_artifact() or m.artifacts[0]).path if m.artifacts else None
    warmup = max(5, runs // 10) if warmup is None else warmup
    out: dict[str, LatencyReport] = {}
    for a in m.artifacts:
        rec = edgekd_runtime.load(bundle, backend=a.format, precision=a.precision, threads=threads)
        out[a.path] = rep = rec.benchmark(runs=runs, warmup=warmup)
        if image is not None and a.path == deployed:
            rep.image_path = run_image_benchmark(rec, image, runs=runs, warmup=warmup)
        if on_result:
            on_result(a.path, rep)
    return out
