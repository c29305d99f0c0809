"""`edgekd budget`: the most capable student that fits a board's budget (table, --json, PNG plot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edgekd_runtime.cli_support import handle_errors, print_json

TARGET_HELP = "Built-in board estimate: rpi3b, rpi4, rpi5, rpi-zero2w, host."
PROFILE_HELP = "Profile JSON measured on the board with `edgekd-rt calibrate --out board.json`."


def budget_options() -> dict[str, Any]:
    """The budget flags, shared with `edgekd distill` (name -> typer.Option)."""
    return {
        "target": typer.Option(None, "--target", "-t", help=TARGET_HELP),
        "profile": typer.Option(None, "--profile", help=PROFILE_HELP),
        "latency_ms": typer.Option(None, "--latency-ms", help="Latency limit per image (ms), predicted."),
        "flash_kb": typer.Option(None, "--flash-kb", help="Model file size limit (KiB) at --precision."),
        "ram_kb": typer.Option(None, "--ram-kb", help="Peak activation RAM limit (KiB) at --precision."),
        "macs": typer.Option(None, "--macs", help="Multiply-accumulates per image limit."),
        "params": typer.Option(None, "--params", help="Parameter count limit."),
        "precision": typer.Option(None, "--precision", "-p", help="Deployed precision: int8 (default), fp16 or "
                                                                    "fp32."),
    }


def run_search(target: Optional[str], profile: Optional[Path], latency_ms: Optional[float],
               flash_kb: Optional[float], ram_kb: Optional[float], macs: Optional[float], params: Optional[float],
               precision: str, num_classes: int = 10, proxy_epochs: int = 0, log: Any = None,
               default_target: Optional[str] = None, task: str = "digits", line_height: int = 24,
               line_width: int = 192):
    """Resolve the board and budget from CLI values and run the search (raises typed errors on bad input).
    For task `lines` the candidates are the line students at `line_height`, costed per line of `line_width` px."""
    from edgekd.budget.profiles import resolve_profile
    from edgekd.budget.search import Budget, search

    if task == "lines" and proxy_epochs:
        from edgekd_runtime.errors import UserInputError

        raise UserInputError("--proxy-epochs ranks digit students only; drop it for --task lines")
    prof = resolve_profile(target, profile, default=default_target)
    budget = Budget.from_cli(latency_ms=latency_ms, flash_kb=flash_kb, ram_kb=ram_kb, macs=macs, params=params,
                             precision=precision)
    if task == "lines":
        check_line_size(line_height, line_width)
        from functools import partial

        from edgekd.budget.cost import student_cost
        from edgekd.models.line_models import line_search_space

        return search(budget, prof, candidates=line_search_space(line_height), num_classes=num_classes,
                      cost_fn=partial(student_cost, line_width=line_width))
    proxy = None
    if proxy_epochs:
        from edgekd.budget.proxy import proxy_ranker

        proxy = proxy_ranker(proxy_epochs, log=log)
    return search(budget, prof, num_classes=num_classes, proxy=proxy)


def check_line_size(line_height: int, line_width: int) -> None:
    """Refuse a line size no line student is costed on, before any is built: the lines config's rule (LineSpec:
    the heights the line students take, a width of whole CTC frames) and the cost model's widest line."""
    from edgekd.budget.cost import MAX_LINE_WIDTH
    from edgekd.data.lines import LineSpec
    from edgekd_runtime.errors import UserInputError

    flags = f"--line-height {line_height}, --line-width {line_width}"
    try:
        LineSpec(source="folder", height=line_height, width=line_width)  # folder: no composed digit strings to fit
    except UserInputError as e:
        raise UserInputError(f"{flags}: {e}") from None
    if line_width > MAX_LINE_WIDTH:
        raise UserInputError(f"{flags}: lines are costed up to {MAX_LINE_WIDTH} px wide; pass a smaller --line-width "
                             f"(latency is per line of that width)")


def _class_count(value: float) -> int:
    """--num-classes as a whole number within MAX_CLASSES (given as 10, or 1e3 like --macs and --params)."""
    import math

    from edgekd.data.split import check_num_classes
    from edgekd_runtime.errors import UserInputError

    if not math.isfinite(value) or value != int(value):
        raise UserInputError(f"--num-classes {value:g}: pass a whole number of classes")
    return check_num_classes(int(value), "--num-classes")


def _table(result: Any, show_all: bool) -> Any:
    from rich.table import Table

    from edgekd.budget.search import LIMITS

    limits = [k for k in LIMITS if k in result.limits]
    t = Table(title=f"students on {result.profile.name} at {result.budget.precision} "
                    f"({len(result.feasible)}/{len(result.candidates)} fit; ranked by {result.ranked_by})")
    t.add_column("candidate")
    t.add_column("params", justify="right")
    t.add_column("MACs", justify="right")
    t.add_column("latency ms", justify="right")
    for k in limits:
        t.add_column(f"{k.replace('_bytes', '').replace('_ms', '')} %", justify="right")
    if result.ranked_by == "proxy_accuracy":
        t.add_column("proxy acc", justify="right")
    t.add_column("fits")
    t.add_column("chosen")
    rows = result.candidates if show_all else [c for c in result.candidates if c.feasible][:15]
    if result.chosen not in rows:
        rows = [result.chosen, *rows]
    for c in rows:
        cells = [c.student_id, f"{c.cost.params:,}", f"{c.cost.macs:,}", f"{c.latency_ms:.4f}"]
        for k in limits:
            u = 100 * c.usage[k]
            cells.append(f"[red]{u:.1f}[/red]" if u > 100 else f"{u:.1f}")
        if result.ranked_by == "proxy_accuracy":
            cells.append("-" if c.proxy_accuracy is None else f"{c.proxy_accuracy:.3f}")
        cells += ["yes" if c.feasible else "[red]no[/red]", "<==" if c is result.chosen else ""]
        t.add_row(*cells)
    return t


def register(app: typer.Typer) -> None:
    opts = budget_options()

    @app.command("budget", help="Pick the most capable student that fits a board's latency/flash/RAM/MACs/params "
                                "budget. Prints a table (or --json) and writes a PNG plot. Impossible budgets exit 2 "
                                "naming the binding limit and the nearest students.")
    @handle_errors
    def budget_cmd(
        target: Optional[str] = opts["target"],
        profile: Optional[Path] = opts["profile"],
        latency_ms: Optional[float] = opts["latency_ms"],
        flash_kb: Optional[float] = opts["flash_kb"],
        ram_kb: Optional[float] = opts["ram_kb"],
        macs: Optional[float] = opts["macs"],
        params: Optional[float] = opts["params"],
        precision: Optional[str] = opts["precision"],
        num_classes: Optional[float] = typer.Option(None, "--num-classes", min=2,
                                                  help="Output classes of the student (default 10 digits; lines: "
                                                       "charset + blank, 11 for digit strings)."),
        task: str = typer.Option("digits", "--task", help="digits, or lines (CTC line students, costed per line)."),
        line_height: int = typer.Option(24, "--line-height", help="Lines: input height in px."),
        line_width: int = typer.Option(192, "--line-width", help="Lines: reference line width in px (costs and "
                                                                  "latency are per line of this width)."),
        proxy_epochs: int = typer.Option(0, "--proxy-epochs", min=0,
                                         help="Rank the 6 most capable feasible students by a short training "
                                              "(this many epochs on the embedded digits) instead of capacity."),
        plot: Optional[Path] = typer.Option(Path("budget.png"), "--plot", help="Where to write the PNG plot."),
        no_plot: bool = typer.Option(False, "--no-plot", help="Do not write the plot."),
        show_all: bool = typer.Option(False, "--all", help="List every candidate, not just the feasible ones."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output on stdout."),
    ) -> None:
        from rich.console import Console

        err = Console(stderr=True, highlight=False)
        log = None if json_out else (lambda m: err.print(m))
        from edgekd.config import check_task_name

        check_task_name(task)
        classes = _class_count(num_classes) if num_classes is not None else (11 if task == "lines" else 10)
        result = run_search(target, profile, latency_ms, flash_kb, ram_kb, macs, params, precision or "int8",
                            num_classes=classes, proxy_epochs=proxy_epochs, log=log,
                            default_target=None, task=task, line_height=line_height, line_width=line_width)
        plot_path = None
        if plot is not None and not no_plot:
            from edgekd.budget.plot import plot_search

            plot_path = str(plot_search(result, plot))
        _show(result, plot_path, show_all, json_out, (line_width, line_height) if task == "lines" else None)


def _show(result: Any, plot_path: str | None, show_all: bool, json_out: bool,
          line_size: tuple[int, int] | None) -> None:
    """The search result as JSON, or as the table, the chosen student and the notes; a line student's MACs and
    latency are per line of `line_size` (width, height) px, also shown per pixel column."""
    from rich.console import Console

    c = result.chosen
    lines = None
    if line_size is not None:
        w, h = line_size
        lines = {"task": "lines", "line_height": h, "line_width": w, "per": f"one line of {w} x {h} px",
                 "chosen_per_column": {"macs": c.cost.macs / w, "latency_us": 1000 * c.latency_ms / w}}
    if json_out:
        print_json({**result.to_dict(), "plot": plot_path, **({"lines": lines} if lines else {})})
        return
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=160)
    out.print(_table(result, show_all))
    bound = f" ({c.bound_ms:.4f} ms with the margin)" if c.bound_ms != c.latency_ms else ""
    out.print(f"chosen: [bold]{c.student_id}[/bold]  {c.cost.params:,} params, {c.cost.macs:,} MACs, "
              f"{c.latency_ms:.4f} ms predicted{bound}, {c.flash_bytes / 1024:.1f} KiB flash, "
              f"{c.ram_bytes / 1024:.1f} KiB RAM at {result.budget.precision}")
    if line_size is not None:
        w, h = line_size
        out.print(f"lines: MACs and latency are per line of {w} x {h} px ({c.cost.macs / w:,.0f} MACs and "
                  f"{1000 * c.latency_ms / w:.2f} us per pixel column)")
    for n in result.notes:
        out.print(f"note: {n}")
    if plot_path:
        out.print(f"plot: {plot_path}")
