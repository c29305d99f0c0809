"""What machine this is and how much memory the process holds, without psutil (Linux /proc, else resource); the
time and package-version stamps every manifest, profile and report carries."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from typing import Any, Iterable


def utc_timestamp() -> str:
    """Now in UTC to the second, ISO 8601 with a Z (e.g. "2026-12-01T11:17:45Z"): the one stamp format of
    manifests (`created`), measured profiles (`calibration.date`) and run reports."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def package_versions(dists: Iterable[str]) -> dict[str, str]:
    """{distribution: installed version} for those of `dists` that are installed (the others are left out)."""
    from importlib import metadata  # lazily: it pulls in tempfile, which a board's benchmark process does not need

    out: dict[str, str] = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def rss_bytes() -> int | None:
    """Current resident set size of this process."""
    v = _proc_status_kb("VmRSS")
    return v * 1024 if v is not None else None


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process so far."""
    v = _proc_status_kb("VmHWM")
    if v is not None:
        return v * 1024
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(r if sys.platform == "darwin" else r * 1024)
    except (ImportError, OSError):
        return None


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """CPU model name ("Cortex-A72" style on a Raspberry Pi, "Intel(R) Xeon(R) ..." on x86)."""
    model = hardware = board = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip().lower(), val.strip()
                if key == "model name" and not model:
                    model = val
                elif key == "hardware" and not hardware:
                    hardware = val
                elif key == "model" and not board and not val.isdigit():
                    board = val  # Raspberry Pi: "Raspberry Pi 4 Model B Rev 1.4"
    except OSError:
        pass
    if not model and not board:
        try:
            with open("/sys/firmware/devicetree/base/model", encoding="utf-8", errors="replace") as f:
                board = f.read().strip("\x00\n ")
        except OSError:
            pass
    parts = [p for p in (board, model or hardware) if p]
    return " / ".join(parts) or platform.processor() or platform.machine() or "unknown"


def system_info() -> dict[str, Any]:
    """Context a latency figure needs to be comparable: CPU, cores, OS, Python, numpy."""
    import numpy as np

    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
