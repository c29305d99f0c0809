#!/usr/bin/env python3
r"""webpad: serve a drawing page that recognises handwritten digits or digit strings with an edgekd bundle.

    python3 samples/webpad/webpad.py BUNDLE_OR_MODEL [--host 0.0.0.0] [--port 8000] [--mode auto|digits|lines]

Then open http://<board>:8000/ on a phone or laptop. With a digit bundle: draw a digit and see the top-3 and the
latency. With a line-recognition bundle (line mode): draw a string on the wide pad and see it with each
character's confidence and the latency; an optional pattern (e.g. \d{4}) constrains the reading.
API: `curl --data-binary @digit.png -H 'Content-Type: image/png' http://<board>:8000/api/predict` (digits),
`curl --data-binary @line.png -H 'Content-Type: image/png' 'http://<board>:8000/api/read?pattern=%5Cd%7B4%7D'`
(lines; the pattern URL-encoded).
Uses only edgekd_runtime and the standard library (no torch, no tensorflow).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Optional

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, when run as a script

from edgekd_runtime.cli_support import handle_errors, print_json  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])
_DEPLOYED_NOTE = {True: " (the deployed artifact)", False: " (NOT the bundle's deployed artifact)", None: ""}


@app.command()
@handle_errors
def serve(
    model: Path = typer.Argument(..., help="Bundle directory (with manifest.json) or a .onnx/.tflite file."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 serves the LAN."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port; 0 picks a free one."),
    backend: str = typer.Option("auto", help="auto, onnx or tflite."),
    precision: Optional[str] = typer.Option(None, help="fp32, fp16 or int8: which artifact of the bundle."),
    threads: Optional[int] = typer.Option(None, min=1, help="Interpreter threads (default: the runtime's)."),
    max_body_bytes: int = typer.Option(1 << 20, min=1024, help="Largest request body accepted."),
    max_side_px: int = typer.Option(2048, min=28, help="Largest image width or height accepted."),
    max_connections: int = typer.Option(64, min=1, help="Simultaneous connections; more get a 503."),
    inference_slots: int = typer.Option(1, min=1, help="Concurrent inferences (raise only for ONNX)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="One stderr line per request."),
    mode: str = typer.Option("auto", help="auto (from the bundle's task), digits (the square pad) or lines "
                                          "(the wide pad); a mode the bundle cannot serve is an error."),
    json_out: bool = typer.Option(False, "--json", help="Print the listening address as JSON on start."),
) -> None:
    """Serve the drawing page and the PNG -> JSON endpoint until Ctrl-C."""
    from image_intake import IntakeLimits
    from modes import check_mode_name, pick_mode
    from webpad_server import ServerLimits, configure_access_log, make_server

    import edgekd_runtime

    check_mode_name(mode)  # before the model loads
    recognizer = edgekd_runtime.load(model, backend=backend, threads=threads, precision=precision)
    served = pick_mode(recognizer, mode, str(model))
    intake = IntakeLimits(max_body_bytes=max_body_bytes, max_side_px=max_side_px,
                          max_pixels=max_side_px * max_side_px)
    limits = ServerLimits(intake=intake, max_connections=max_connections, inference_slots=inference_slots)
    configure_access_log(access_log)
    server = make_server(recognizer, host, port, limits, served)
    bound_host, bound_port = server.server_address[:2]
    url = f"http://{bound_host}:{bound_port}/"
    info = server.app.info()
    if json_out:
        print_json({"url": url, "host": bound_host, "port": bound_port, "mode": served.name, "model": info["model"],
                    "artifact": info["artifact"], "deployed": info["deployed"], "backend": info["backend"]})
    else:
        typer.echo(f"webpad: serving {url} ({served.name} mode; model {info['model']}, {info['artifact']}"
                   f"{_DEPLOYED_NOTE[info['deployed']]}, backend {info['backend']}); Ctrl-C stops")
        if bound_host == "127.0.0.1":
            typer.echo("webpad: only this machine can connect; use --host 0.0.0.0 to serve the LAN")
        elif bound_host in ("0.0.0.0", "::"):
            typer.echo(f"webpad: on the LAN open http://{socket.gethostname()}.local:{bound_port}/ "
                       f"(or this board's IP address); there is no authentication")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        typer.echo("webpad: stopped")
    finally:
        server.server_close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
