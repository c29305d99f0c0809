"""`edgekd run` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("run", help="(not implemented yet)")
    def run_placeholder() -> None:
        typer.echo("edgekd run is not implemented yet", err=True)
        raise typer.Exit(1)
