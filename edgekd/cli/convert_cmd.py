"""`edgekd convert` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("convert", help="(not implemented yet)")
    def convert_placeholder() -> None:
        typer.echo("edgekd convert is not implemented yet", err=True)
        raise typer.Exit(1)
