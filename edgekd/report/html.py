"""report.html: the report's markdown as one HTML page (figures linked beside it, as in report.md)."""

from __future__ import annotations

import html
from pathlib import Path

from edgekd_runtime.atomic import atomic_write_text

STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f3f3f3}code{background:#f5f5f5;padding:0 3px}img{max-width:100%}h1{font-size:1.6em}"""


def write_html(markdown: str, path: Path, title: str) -> Path:
    """Render `markdown` (CommonMark with tables, as report.md is written) to a standalone page at `path`."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    atomic_write_text(path, f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}"
                            f"</body></html>\n")
    return path
