"""`edgekd data` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("data", help="(not implemented yet)")
    def data_placeholder() -> None:
        typer.echo("edgekd data is not implemented yet", err=True)
        raise typer.Exit(1)
