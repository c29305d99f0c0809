"""Helpers for the workstation CLI's refusal tests (a uniquely named module: `conftest` names clash across test
folders). The `no_work` fixture that goes with them is in conftest.py."""

from __future__ import annotations

from typer.testing import CliRunner

from edgekd.cli import app


def refused(args, *needles: str, one_line: bool = False) -> str:
    """Run `edgekd ARGS`: exit 2, no traceback, one `error:` line holding every needle (and nothing else printed
    when `one_line`); returns that line."""
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 2 and "Traceback" not in r.output, (args, r.output, r.exception)
    errors = [line for line in r.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.output
    if one_line:
        assert len(r.output.strip().splitlines()) == 1, r.output  # no parser dump after it
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]
