"""The `edgekd` command. Each sub-command lives in its own module and imports torch only inside its body."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="edgekd",
    help="Distill a handwriting recognizer into a student that fits a board's budget, export it, convert it, "
    "benchmark it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Order is the order of `edgekd --help`.
from . import (  # noqa: E402
    bench_cmd,
    budget_cmd,
    convert_cmd,
    data_cmd,
    distill_cmd,
    export_cmd,
    report_cmd,
    run_cmd,
    teacher_cmd,
)

for _mod in (run_cmd, data_cmd, teacher_cmd, budget_cmd, distill_cmd, export_cmd, convert_cmd, report_cmd, bench_cmd):
    _mod.register(app)


def main() -> None:
    app()
