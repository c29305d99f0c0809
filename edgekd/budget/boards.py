"""Regenerate the built-in board profiles (a maintainer script; the JSON files under
``runtime/edgekd_runtime/assets/profiles`` are what ships and what the board reads).

``host`` is a real calibration of an x86-64 workstation (`edgekd-rt calibrate --full --threads 1`, e.g. the one
`benchmarks/latency_model.py --json out.json` makes); the Raspberry Pi boards are ESTIMATES: the host's measured
coefficients times a per-board slowdown factor derived from published CPU figures. Each file records this::

    .venv/bin/python -m edgekd.budget.boards [calibrated_host.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgekd_runtime.profile import ASSETS_DIR, DeviceProfile

GIB = 1 << 30
FP16_NOTE = "fp16 models are dequantized to fp32 at load by the TFLite CPU kernels, so fp16 uses the fp32 coefficients"
ESTIMATE_NOTE = ("ESTIMATE, not measured: run `edgekd-rt calibrate --out board.json` on the board and use "
                 "`--profile board.json` for real numbers")
# key: (description, cpu, ram_bytes, flash_bytes, slowdown vs host, published figures and reasoning)
BOARDS = {
    "rpi3b": ("Raspberry Pi 3 Model B (estimate)", "Broadcom BCM2837, 4x Cortex-A53 @ 1.2 GHz", 1 * GIB, 8 * GIB, 25,
              ("Raspberry Pi 3 Model B product brief: BCM2837 quad Cortex-A53 1.2 GHz, 1 GB LPDDR2",
               "slowdown 25 = 2.5x the Pi 4's: in-order Cortex-A53 at 1.2 GHz with a 64-bit NEON datapath vs "
               "out-of-order A72 at 1.5 GHz with two 128-bit pipes")),
    "rpi4": ("Raspberry Pi 4 Model B, 4 GB (estimate)", "Broadcom BCM2711, 4x Cortex-A72 @ 1.5 GHz", 4 * GIB, 8 * GIB,
             10, ("Raspberry Pi 4 Model B product brief: BCM2711 quad Cortex-A72 1.5 GHz, 1/2/4/8 GB LPDDR4 "
                  "(4 GB assumed)",
                  "slowdown 10: conv at ~0.14 ns/MAC (~7 GMAC/s), i.e. MobileNet-v1 (569 M MACs) in ~80 ms, the "
                  "order of magnitude reported for TFLite fp32 at 4 threads on a Pi 4")),
    "rpi5": ("Raspberry Pi 5, 4 GB (estimate)", "Broadcom BCM2712, 4x Cortex-A76 @ 2.4 GHz", 4 * GIB, 8 * GIB, 4,
             ("Raspberry Pi 5 product brief: BCM2712 quad Cortex-A76 2.4 GHz, 2/4/8/16 GB LPDDR4X (4 GB assumed)",
              "slowdown 4 = the Pi 4's / 2.5, the CPU speed-up Raspberry Pi Ltd announced for the Pi 5 over the "
              "Pi 4")),
    "rpi_zero2w": ("Raspberry Pi Zero 2 W (estimate)", "Broadcom RP3A0, 4x Cortex-A53 @ 1.0 GHz", 512 << 20, 4 * GIB,
                   30, ("Raspberry Pi Zero 2 W product brief: RP3A0 (BCM2710A1) quad Cortex-A53 1 GHz, 512 MB LPDDR2",
                        "slowdown 30 = the Pi 3's x 1.2 (1.0 vs 1.2 GHz, same core)")),
}


def host_from_calibration(cal: DeviceProfile) -> DeviceProfile:
    """The built-in ``host`` estimate from a real 1-thread TFLite calibration (fp16 = fp32 coefficients)."""
    fit = (cal.calibration or {}).get("fit", {})
    c = cal.calibration or {}
    margin = {p: cal.latency_margin_pct[q] for p, q in (("fp32", "fp32"), ("fp16", "fp32"), ("int8", "int8"))
              if q in cal.latency_margin_pct}
    return DeviceProfile(
        name="host", description="an x86-64 workstation CPU, 1 thread, TFLite/XNNPACK (estimate)",
        cpu=f"x86-64 (measured on {c.get('cpu', 'an unnamed CPU')})", cores=2, threads=1, ram_bytes=8 * GIB,
        flash_bytes=64 * GIB,
        backend="tflite", estimate=True,
        latency={"fp32": cal.latency["fp32"], "fp16": cal.latency["fp32"], "int8": cal.latency["int8"]},
        latency_margin_pct=margin,
        sources=(f"fp32/int8 coefficients measured by `edgekd-rt calibrate --full --threads 1` on {c.get('cpu')} "
                 f"({c.get('backend_version')}, {c.get('date')}); fit median error "
                 f"{fit.get('fp32', {}).get('median_ape_pct', float('nan')):.1f} % (fp32), "
                 f"{fit.get('int8', {}).get('median_ape_pct', float('nan')):.1f} % (int8)",
                 FP16_NOTE, "ESTIMATE for any other x86-64 machine: run `edgekd-rt calibrate --out host.json` "
                 "(seconds) and use `--profile host.json` for real numbers"))


def boards_from_host(host: DeviceProfile) -> list[DeviceProfile]:
    """The Raspberry Pi estimates: the host's coefficients x each board's slowdown factor."""
    basis = (f"coefficients = the built-in host profile's (measured on x86-64 with LiteRT 2.3, 1 thread: "
             f"{host.coefficients('fp32').conv_ns_per_mac:.4f} ns/MAC for fp32 3x3 convs) x a board slowdown factor "
             f"(which folds in running 4 threads there)")
    out = []
    for key, (desc, cpu, ram, flash, factor, src) in BOARDS.items():
        lat = {p: host.coefficients(p).scaled(factor) for p in ("fp32", "fp16", "int8")}
        out.append(DeviceProfile(name=key.replace("_", "-"), description=desc, cpu=cpu, cores=4, threads=4,
                                 ram_bytes=ram, flash_bytes=flash, backend="tflite", latency=lat, estimate=True,
                                 latency_margin_pct=dict(host.latency_margin_pct),  # relative: scale-free
                                 sources=src + (basis, FP16_NOTE, ESTIMATE_NOTE)))
    return out


def main(argv: list[str]) -> None:
    import json

    if argv:
        d = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        host = host_from_calibration(DeviceProfile.from_dict(d.get("profile", d), source=argv[0]))
        host.save(ASSETS_DIR / "host.json")
    else:
        host = DeviceProfile.host()
    for p in boards_from_host(host):
        p.save(ASSETS_DIR / f"{p.name.replace('-', '_')}.json")
        print(f"{p.name}: fp32 conv {p.coefficients('fp32').conv_ns_per_mac:.3f} ns/MAC")


if __name__ == "__main__":
    main(sys.argv[1:])
