"""The run report: `report.json` (machine truth), `report.md` and PNG figures rendered from it."""

from .render import render_report

__all__ = ["render_report"]
