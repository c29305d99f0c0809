"""What every edgekd CLI shares: user errors become a one-line message and exit code 2, never a traceback."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import re
import sys
import types
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable, List, Optional, TypeVar, Union, get_args, get_origin, get_type_hints

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import ParameterInfo

from .errors import EdgekdError, EdgekdWarning, UserInputError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def handle_errors(fn: F) -> F:
    """Decorate a Typer command: UserInputError -> stderr message + exit 2; other EdgekdError -> exit 1;
    an `EdgekdWarning` -> one `warning: <message>` line on stderr (other warnings as Python shows them)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():  # restores showwarning on the way out
                warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
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


def _show_warning(show_other: Callable[..., None], message: Warning | str, category: type[Warning],
                  *args: Any, **kwargs: Any) -> None:
    if issubclass(category, EdgekdWarning):
        typer.echo(f"warning: {message}", err=True)
    else:
        show_other(message, category, *args, **kwargs)


def print_json(obj: Any) -> None:
    """Machine output for --json: one valid JSON document on stdout. JSON has no NaN or infinity (Python's bare
    `NaN` breaks JSON.parse and strict parsers): a non-finite number that reaches here is written as null."""
    from .atomic import json_default

    try:
        text = json.dumps(obj, indent=2, default=json_default, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite_or_null(obj), indent=2, default=json_default, allow_nan=False)
    sys.stdout.write(text + "\n")


def table_names(paths: List[str]) -> List[str]:
    """How a results table names each image: its file name, or the path as given where two images share a file name;
    escaped, so that a name like `[red]x.png` is shown as it is, not read as rich markup."""
    from rich.markup import escape

    names = [Path(p).name for p in paths]
    shared = {n for n in names if names.count(n) > 1}
    return [escape(p if n in shared else n) for p, n in zip(paths, names)]


def _finite_or_null(obj: Any) -> Any:
    """`obj` with every NaN/inf float (numpy ones included) replaced by None."""
    if isinstance(obj, float):
        return obj if obj - obj == 0.0 else None  # inf - inf and NaN - NaN are NaN
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalars and arrays
        return _finite_or_null(obj.tolist())
    return obj


# ---- lean parameter coercion -------------------------------------------------------------------------------------
# typer >= 0.2x coerces every command parameter through a pydantic TypeAdapter: pydantic and pydantic-core get
# imported and a schema is built for each parameter, ~9 MiB of RSS on a board for `edgekd-rt bench 100` (over the
# 1.3x RSS target of benchmarks/runtime_overhead.py). `LeanCommand` (`@app.command(..., cls=LeanCommand)`) reads
# the plain cases itself (an int given as an int or as decimal digits within min/max, a float given as a plain
# decimal number, a str, a bool, a Path without path checks, and lists of them) to exactly what typer would
# produce; anything else (a malformed or out-of-range value, other types) goes to the parameter's own
# `process_value`, so errors and their messages are typer's. Only public APIs: click's `Command.params`,
# `Command.callback`, `Parameter.process_value` / `value_is_missing` / `callback`, and typer's
# `typer.models.ParameterInfo` (what `typer.Option(...)` returns) read from the command function's signature.

_NOT_PLAIN = object()
_DECIMAL = re.compile(r"-?[0-9]+\Z")
_REAL = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE]-?[0-9]+)?\Z")  # what float() and pydantic read alike
_PLAIN_KINDS = (int, float, str, bool, Path)
_UNIONS = (Union, getattr(types, "UnionType", Union))  # Optional[X] and, on Python >= 3.10, X | None


@dataclasses.dataclass(frozen=True)
class _Plain:
    """How to read one parameter without pydantic: its scalar type, whether it takes many values, its limits."""

    kind: type
    many: bool = False
    min: Any = None
    max: Any = None


def _in_range(v: Any, plain: _Plain) -> bool:
    return (plain.min is None or v >= plain.min) and (plain.max is None or v <= plain.max)


def _plain_leaf(plain: _Plain, value: Any) -> Any:
    kind = plain.kind
    if kind is int or kind is float:
        if type(value) is kind:
            v = value
        elif type(value) is str and (_DECIMAL if kind is int else _REAL).match(value):
            v = kind(value)
        else:  # nan, inf, " 1", "1_0", "+5", ...: typer's own reading
            return _NOT_PLAIN
        return v if _in_range(v, plain) else _NOT_PLAIN  # out of range: typer's error message
    if kind is str or kind is bool:
        return value if type(value) is kind else _NOT_PLAIN
    if isinstance(value, str):  # kind is Path: what pydantic makes of a str
        value = Path(value)
    if not isinstance(value, Path) or (os.path.exists(value) and not os.access(value, os.R_OK)):
        return _NOT_PLAIN  # typer's "is not readable" error
    return value


def _plain_value(plain: _Plain, value: Any) -> Any:
    if not plain.many:
        return _plain_leaf(plain, value)
    if not isinstance(value, (list, tuple)):
        return _NOT_PLAIN
    vs = [_plain_leaf(plain, item) for item in value]
    return _NOT_PLAIN if any(v is _NOT_PLAIN for v in vs) else vs


def _plain_of(annotation: Any, info: Optional[ParameterInfo]) -> Optional[_Plain]:
    """The plain reading of a parameter annotated `annotation` with typer's `info`, or None to leave it to typer."""
    if get_origin(annotation) is Annotated:
        annotation, *meta = get_args(annotation)
        info = next((m for m in meta if isinstance(m, ParameterInfo)), info)
    args = get_args(annotation)
    if get_origin(annotation) in _UNIONS and len(args) == 2 and type(None) in args:  # Optional[X]
        annotation = args[0] if args[1] is type(None) else args[1]
    many = get_origin(annotation) in (list, List) and len(get_args(annotation)) == 1
    if many:
        annotation = get_args(annotation)[0]
    if annotation not in _PLAIN_KINDS or info is None or info.parser is not None:
        return None
    if annotation in (int, float) and info.clamp:
        return None
    if annotation is Path and (info.exists or info.resolve_path or info.allow_dash or info.writable or
                               info.path_type is not None or not (info.file_okay and info.dir_okay)):
        return None
    return _Plain(annotation, many, info.min, info.max)


def _declared_params(callback: Optional[Callable[..., Any]]) -> dict[str, Optional[_Plain]]:
    """name -> plain reading, from the command function's signature (typer's and our wrappers unwrapped)."""
    if callback is None:
        return {}
    fn = inspect.unwrap(callback)
    try:
        hints = get_type_hints(fn, include_extras=True)
    except (NameError, TypeError):  # an annotation that does not resolve: leave every parameter to typer
        return {}
    params = inspect.signature(fn).parameters
    return {name: _plain_of(hints.get(name), p.default if isinstance(p.default, ParameterInfo) else None)
            for name, p in params.items()}


def _make_lean(param: Any, plain: Optional[_Plain]) -> None:
    """Read `param`'s plain values without typer's pydantic coercion; the rest goes to its own process_value."""
    if param is None or plain is None or getattr(param.process_value, "edgekd_lean", False):
        return
    typer_process = param.process_value

    def process_value(ctx: Any, value: Any) -> Any:
        if value is None:  # not given: what typer's coercion returns for it
            v: Any = () if plain.many else None
        else:
            v = _plain_value(plain, value)
            if v is _NOT_PLAIN:
                return typer_process(ctx, value)
        if param.required and param.value_is_missing(v):
            return typer_process(ctx, value)  # typer's "Missing argument" error
        return param.callback(ctx, param, v) if param.callback is not None else v

    # marked so that the cached option get_help_option returns is wrapped once
    process_value.edgekd_lean = True  # type: ignore[attr-defined]
    param.process_value = process_value


class _LeanParams:
    """Mixin for Typer's command/group classes: plain parameters, the --help option included (typer coerces
    every parameter, including ones left at None), skip pydantic."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        declared = _declared_params(self.callback)  # type: ignore[attr-defined]
        for param in self.params:  # type: ignore[attr-defined]
            _make_lean(param, declared.get(param.name))

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        _make_lean(option, _Plain(bool))
        return option


class LeanCommand(_LeanParams, TyperCommand):
    """A Typer command whose plain parameters are read without pydantic (see above); same options,
    defaults, help, errors and exit codes as a plain `TyperCommand`. `@app.command(..., cls=LeanCommand)`."""


class LeanGroup(_LeanParams, TyperGroup):
    """The same for a Typer app's group (its --help option): `typer.Typer(..., cls=LeanGroup)`."""
