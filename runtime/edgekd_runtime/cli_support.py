"""What every edgekd CLI shares: user errors become a one-line message and exit code 2, never a traceback."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, TypeVar

import typer

from .errors import EdgekdError, UserInputError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def handle_errors(fn: F) -> F:
    """Decorate a Typer command: UserInputError -> stderr message + exit 2; other EdgekdError -> exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserInputError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        except EdgekdError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(EXIT_FAILURE) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Machine output for --json: one JSON document on stdout."""
    from .atomic import _json_default

    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
