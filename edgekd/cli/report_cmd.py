"""`edgekd report` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("report", help="(not implemented yet)")
    def report_placeholder() -> None:
        typer.echo("edgekd report is not implemented yet", err=True)
        raise typer.Exit(1)
