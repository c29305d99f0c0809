#!/usr/bin/env python3
"""loadtest: hammer a webpad's /api/predict with one image from N concurrent clients; print errors and p50/p99.

    python3 samples/webpad/loadtest.py http://raspberrypi.local:8000/ digit.png --requests 500 --concurrency 16

Standard library only. Point it only at a server you run.
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import typer

from edgekd_runtime.cli_support import handle_errors, print_json
from edgekd_runtime.errors import UserInputError

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


@dataclass
class LoadResult:
    requests: int
    concurrency: int
    ok: int
    errors: int
    wall_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int] = field(default_factory=dict)
    first_error: Optional[str] = None

    def describe(self) -> str:
        return (f"{self.requests} requests, {self.concurrency} concurrent: {self.errors} errors, "
                f"{self.requests_per_s:.0f} req/s, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
                f"max {self.max_ms:.1f} ms")


def run_load(url: str, body: bytes, requests: int = 500, concurrency: int = 16,
             timeout_s: float = 30.0, expect_label: Optional[str] = None) -> LoadResult:
    """POST `body` to `<url>api/predict` `requests` times from `concurrency` threads (one keep-alive
    connection each). A request counts as an error unless it answers 200 with a JSON prediction (whose
    label is `expect_label`, when given)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise UserInputError(f"{url!r} is not an http:// URL of a webpad server")
    path = parts.path.rstrip("/") + "/api/predict"
    local = threading.local()
    lock = threading.Lock()
    latencies_ms: list[float] = []
    statuses: dict[str, int] = {}
    first_error: list[str] = []

    def one(_: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": "image/png"})
            resp = conn.getresponse()
            payload = resp.read()
            status = str(resp.status)
            if resp.status == 200:
                label = json.loads(payload).get("label")
                if label is None:
                    status = "200-without-label"
                elif expect_label is not None and label != expect_label:
                    status = f"200-label-{label}"
        except (OSError, http.client.HTTPException, ValueError) as e:
            conn.close()
            local.conn = None
            status, payload = type(e).__name__, str(e).encode()
        ms = (time.perf_counter() - t0) * 1e3
        with lock:
            latencies_ms.append(ms)
            statuses[status] = statuses.get(status, 0) + 1
            if status != "200" and not first_error:
                first_error.append(f"{status}: {payload[:200]!r}")

    t_start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(requests)))
    wall_s = time.perf_counter() - t_start
    q = statistics.quantiles(latencies_ms, n=100, method="inclusive") if len(latencies_ms) > 1 else latencies_ms * 99
    ok = statuses.get("200", 0)
    return LoadResult(requests, concurrency, ok, requests - ok, wall_s, requests / wall_s, q[49], q[98],
                      max(latencies_ms), statuses, first_error[0] if first_error else None)


@app.command()
@handle_errors
def loadtest(
    url: str = typer.Argument(..., help="The webpad's address, e.g. http://127.0.0.1:8000/"),
    image: Path = typer.Argument(..., help="A PNG of a digit to send."),
    requests: int = typer.Option(500, min=1, max=100_000),
    concurrency: int = typer.Option(16, min=1, max=256),
    timeout_s: float = typer.Option(30.0, min=0.1, help="Per-request timeout."),
    expect_label: Optional[str] = typer.Option(None, help="Count answers with another label as errors."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Send the image REQUESTS times, CONCURRENCY at a time; exit 1 if any request failed."""
    if not image.is_file():
        raise UserInputError(f"{image}: no such file; pass a PNG of a digit")
    result = run_load(url, image.read_bytes(), requests, concurrency, timeout_s, expect_label)
    if json_out:
        print_json(asdict(result))
    else:
        typer.echo(result.describe())
        if result.first_error:
            typer.echo(f"first error: {result.first_error}", err=True)
    if result.errors:
        raise typer.Exit(1)


if __name__ == "__main__":
    sys.exit(app())
