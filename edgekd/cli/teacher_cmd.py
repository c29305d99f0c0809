"""`edgekd teacher` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("teacher", help="(not implemented yet)")
    def teacher_placeholder() -> None:
        typer.echo("edgekd teacher is not implemented yet", err=True)
        raise typer.Exit(1)
