"""`edgekd budget` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("budget", help="(not implemented yet)")
    def budget_placeholder() -> None:
        typer.echo("edgekd budget is not implemented yet", err=True)
        raise typer.Exit(1)
