"""`edgekd distill` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("distill", help="(not implemented yet)")
    def distill_placeholder() -> None:
        typer.echo("edgekd distill is not implemented yet", err=True)
        raise typer.Exit(1)
