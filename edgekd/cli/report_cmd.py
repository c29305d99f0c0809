"""`edgekd report RUN_DIR`: re-render report.md and the figures from report.json."""

from __future__ import annotations

from pathlib import Path

import typer

from edgekd_runtime.cli_support import handle_errors, print_json
from edgekd_runtime.errors import UserInputError


def register(app: typer.Typer) -> None:
    @app.command("report")
    @handle_errors
    def report(
        run_dir: Path = typer.Argument(..., help="A run directory made by `edgekd run`."),
        json_out: bool = typer.Option(False, "--json", help="Print report.json instead of rendering."),
    ) -> None:
        """Re-render a run's report.md and PNGs from its report.json."""
        from edgekd.report.render import render_report, report_json

        if not run_dir.is_dir():
            raise UserInputError(f"{run_dir}: no such run directory")
        if json_out:
            print_json(report_json(run_dir))
            return
        path = render_report(run_dir)
        typer.echo(f"wrote {path}")
