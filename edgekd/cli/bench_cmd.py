"""`edgekd bench` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("bench", help="(not implemented yet)")
    def bench_placeholder() -> None:
        typer.echo("edgekd bench is not implemented yet", err=True)
        raise typer.Exit(1)
