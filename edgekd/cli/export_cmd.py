"""`edgekd export` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("export", help="(not implemented yet)")
    def export_placeholder() -> None:
        typer.echo("edgekd export is not implemented yet", err=True)
        raise typer.Exit(1)
