"""`edgekd-rt calibrate`: measure this board's latency model and write a device profile JSON.

    edgekd-rt calibrate --out my-board.json [--backend tflite|onnx] [--threads T] [--precision int8 ...]
                        [--full] [--name NAME] [--json]

Then on the workstation: ``edgekd budget --profile my-board.json --latency-ms 5 ...``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from .cli_support import LeanCommand, handle_errors, print_json


def register(app: typer.Typer) -> None:
    @app.command("calibrate", cls=LeanCommand,
                 help="Run the micro-model suite on this board with the backend and threads you will deploy with, "
                      "fit the latency model (non-negative least squares) and write a device profile JSON for "
                      "`edgekd budget --profile`.")
    @handle_errors
    def calibrate_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Profile JSON to write (atomically)."),
        backend: str = typer.Option("tflite", "--backend", "-b", help="tflite or onnx (onnxruntime)."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                              help="Interpreter threads (default: cores, at most 4)."),
        precision: Optional[List[str]] = typer.Option(None, "--precision", "-p",
                                                      help="Precision(s) to calibrate; repeat. Default: fp32 and "
                                                           "int8."),
        full: bool = typer.Option(False, "--full", help="The whole suite, longer timing windows, two rounds "
                                                        "(minutes on a Pi) instead of the quick one (seconds)."),
        name: Optional[str] = typer.Option(None, "--name", help="Profile name (default: --out's file stem)."),
        json_out: bool = typer.Option(False, "--json", help="Print the profile as JSON on stdout."),
    ) -> None:
        from .calibrate import CalibrationConfig, calibrate

        target = profile_target(out)  # before any measuring
        here = target.parent.resolve()
        flash_dir = next(d for d in (here, *here.parents) if d.is_dir())  # a folder --out makes is not there yet
        precs = tuple(dict.fromkeys(precision)) if precision else ("fp32", "int8")
        kw: dict[str, Any] = dict(backend=backend, threads=threads, precisions=precs)
        config = CalibrationConfig.full(**kw) if full else CalibrationConfig(**kw)
        from .calibrate import load_suite

        n_total = len(load_suite(config.quick)) * len(precs) * config.rounds
        if json_out:
            profile = calibrate(config, name=name or out.stem, out_dir_for_flash=flash_dir)
        else:
            from rich.console import Console
            from rich.progress import Progress

            with Progress(console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task(f"calibrating ({backend})", total=n_total)
                profile = calibrate(config, name=name or out.stem, out_dir_for_flash=flash_dir,
                                    progress=lambda p, m, ms: bar.update(task, advance=1,
                                                                         description=f"{p} {m}"))
        profile.save(profile_target(out))  # again: the measuring took a while
        if json_out:
            print_json(profile.to_dict())
            return
        from rich.console import Console
        from rich.table import Table

        con = Console(highlight=False)
        if not con.is_terminal:
            con = Console(highlight=False, width=160)
        cal = profile.calibration or {}
        t = Table(title=f"{profile.name}: {cal.get('cpu')} | {cal.get('backend_version')} | "
                        f"{profile.threads} threads | {cal.get('duration_s')} s")
        from .profile import COEFFICIENTS

        short = {"per_invoke_ms": "invoke ms", "per_layer_us": "layer us", "conv_ns_per_mac": "conv ns/MAC",
                 "dwconv_ns_per_mac": "dw ns/MAC", "dense_ns_per_mac": "dense ns/MAC",
                 "elementwise_ns_per_elem": "elem ns/el", "conv_ns_per_position": "conv ns/pixel",
                 "pointwise_ns_per_mac": "1x1 ns/MAC", "io_ns_per_elem": "io ns/el",
                 "activation_ns_per_elem": "act ns/el"}
        for col in ("precision", "samples", "median err %", "max err %", "margin %",
                    *(short.get(c, c) for c in COEFFICIENTS)):
            t.add_column(col, justify="right")
        for p, c in profile.latency.items():
            f = cal.get("fit", {}).get(p, {})
            t.add_row(p, str(f.get("samples")), f"{f.get('median_ape_pct', 0):.1f}", f"{f.get('max_ape_pct', 0):.1f}",
                      f"+{100 * profile.latency_margin(p):.1f}", *(f"{getattr(c, k):.4g}" for k in COEFFICIENTS))
        con.print(t)
        con.print(f"note: {profile.sources[-1]}; `edgekd budget --profile` adds them to its predictions")
        con.print(f"wrote {out}  (use it on the workstation: edgekd budget --profile {out.name} ...)")


#: A device profile is a few KiB; a larger file at --out is not one (and is not read to find out).
MAX_PROFILE_BYTES = 16 << 20


def profile_target(out: Path) -> Path:
    """The file to write for `--out`, checked before any measuring: a new file in a writable folder, or a device
    profile edgekd wrote (replaced, keeping its mode). Anything else there is refused, never overwritten. A
    symbolic link is written through: its target must be such a file (the link stays a link).

    Raises:
        ProfileError: `--out` is a folder, a dangling link, or a file that is not an edgekd device profile.
        UserInputError: the folder cannot be written (permission, a file where a folder must be).
    """
    from .atomic import check_writable
    from .errors import ProfileError

    target = Path(os.path.realpath(out)) if out.is_symlink() else out
    if out.is_symlink() and not target.exists():
        raise ProfileError(f"--out {out} is a symbolic link to {target}, which does not exist; give the path to "
                           f"write, not a dangling link")
    if target.is_dir():
        raise ProfileError(f"--out {out} is a directory; give a file name such as {out / 'board.json'}")
    check_writable(target, "--out")
    if target.exists() and not is_device_profile(target):
        shown = f"{out} (a link to {target})" if target != out else str(out)
        raise ProfileError(f"--out {shown} exists and is not an edgekd device profile; refusing to overwrite it: "
                           f"choose another path such as {out.with_name(out.stem + '-profile.json')}")
    return target


def is_device_profile(path: Path) -> bool:
    """Whether `path` is a regular file holding a device profile's JSON (its "format" is edgekd's)."""
    import json

    from .profile import FORMAT

    try:
        if not path.is_file() or path.stat().st_size > MAX_PROFILE_BYTES:
            return False
        d = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and d.get("format") == FORMAT
