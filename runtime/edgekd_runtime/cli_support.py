"""What every edgekd CLI shares: user errors become a one-line message and exit code 2, never a traceback."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, List, Optional, TypeVar, get_args, get_origin

import typer
from typer.core import TyperCommand, TyperGroup

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
    from .atomic import _json_default

    try:
        text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite_or_null(obj), indent=2, default=_json_default, allow_nan=False)
    sys.stdout.write(text + "\n")


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
# imported and a schema is built for each parameter, ~9 MiB of RSS on a board for `edgekd-rt bench 100`.
# `LeanCommand` (pass it as `@app.command(..., cls=LeanCommand)`) coerces the plain cases itself (an int given
# as an int or as decimal digits within min/max, a str, a Path, and lists of them) to exactly what typer would
# produce, a float given as a plain decimal number, keeping typer's own path checks (`coerce_cli_path`); anything
# else (a malformed or out-of-range value, other types) goes to typer's own pydantic coercion, so errors and their
# messages are typer's.
try:
    from typer._coercion import RuntimeParam as _RuntimeParam
    from typer._coercion import build_runtime_param as _build_runtime_param
    from typer._param_types import coerce_cli_path as _coerce_cli_path
except ImportError:  # a typer without pydantic coercion (click types): nothing to avoid
    _RuntimeParam = None  # type: ignore[assignment,misc]

_NOT_PLAIN = object()
_DECIMAL = re.compile(r"-?[0-9]+\Z")
_REAL = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE]-?[0-9]+)?\Z")  # what float() and pydantic read alike


def _plain_leaf(kind: type, value: Any, param: Any, ctx: Any) -> Any:
    info = param.type_descriptor.parameter_info
    if kind is int:
        if type(value) is int:
            v = value
        elif type(value) is str and _DECIMAL.match(value):
            v = int(value)
        else:
            return _NOT_PLAIN
        if (info.min is not None and v < info.min) or (info.max is not None and v > info.max):
            return _NOT_PLAIN  # typer's error message
        return v
    if kind is float:
        if type(value) is float:
            f = value
        elif type(value) is str and _REAL.match(value):
            f = float(value)
        else:
            return _NOT_PLAIN  # nan, inf, " 1", "1_0", ...: typer's own reading
        if (info.min is not None and f < info.min) or (info.max is not None and f > info.max):
            return _NOT_PLAIN
        return f
    if kind is str or kind is bool:
        return value if type(value) is kind else _NOT_PLAIN
    if isinstance(value, str):  # kind is Path: what pydantic makes of a str, then typer's own checks
        value = Path(value)
    elif not isinstance(value, Path):
        return _NOT_PLAIN
    return _coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)


if _RuntimeParam is not None:

    @dataclasses.dataclass(frozen=True)
    class _PlainRuntimeParam(_RuntimeParam):  # type: ignore[misc,valid-type]
        kind: type = int
        many: bool = False

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if not self.many:
                v = _plain_leaf(self.kind, value, param, ctx)
                if v is not _NOT_PLAIN:
                    return v
            elif isinstance(value, (list, tuple)):
                vs = [_plain_leaf(self.kind, item, param, ctx) for item in value]
                if all(v is not _NOT_PLAIN for v in vs):
                    return vs
            return _build_runtime_param(param.type_descriptor)._coerce_value(value, param=param, ctx=ctx)


def _plain_runtime_param(param: Any) -> Optional[Any]:
    desc = getattr(param, "type_descriptor", None)
    if _RuntimeParam is None or desc is None or getattr(param, "_runtime_param", 0) is not None:
        return None
    info, annotation, many = desc.parameter_info, desc.annotation, False
    if desc.file_annotation is not None or info.parser is not None:
        return None
    if get_origin(annotation) in (list, List) and len(get_args(annotation)) == 1:
        annotation, many = get_args(annotation)[0], True
    if annotation in (int, float) and not info.clamp:
        kind: type = annotation
    elif annotation is str or annotation is bool:
        kind = annotation
    elif annotation is Path and info.path_type is None:
        kind = Path
    else:
        return None
    return _PlainRuntimeParam(parameter_info=info, annotation=desc.annotation, kind=kind, many=many)


def _make_plain(param: Any) -> None:
    plain = _plain_runtime_param(param) if param is not None else None
    if plain is not None:
        param._runtime_param = plain


class _LeanParams:
    """Mixin for Typer's command/group classes: plain parameters, the --help option included (typer coerces
    every parameter, including ones left at None), skip pydantic."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        for param in self.params:  # type: ignore[attr-defined]
            _make_plain(param)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        _make_plain(option)
        return option


class LeanCommand(_LeanParams, TyperCommand):
    """A Typer command whose plain parameters are coerced without pydantic (see above); same options,
    defaults, help, errors and exit codes as a plain `TyperCommand`. `@app.command(..., cls=LeanCommand)`."""


class LeanGroup(_LeanParams, TyperGroup):
    """The same for a Typer app's group (its --help option): `typer.Typer(..., cls=LeanGroup)`."""
