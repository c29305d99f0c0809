"""The webpad HTTP server: the drawing page, and `POST /api/predict` (digits) or `POST /api/read[?pattern=P]` (text
lines, see `modes`) that takes a PNG and returns JSON.

Standard library only (`http.server.ThreadingHTTPServer`) plus `edgekd_runtime`. Built to stay up on a board
facing a LAN: bounded body size, image dimensions, connections and concurrent inferences; a whole-request
deadline, and the slowest waiting connection reclaimed when every slot is taken (`slow_clients`); every
refusal, the ones http.server itself makes included (400, 414, 431, 501), is a 4xx/503 with a JSON
`{"error": ...}` body, and an unexpected failure in one request is a 500 for that request only.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from image_intake import IntakeLimits, RequestRejected, check_content_length, decode_image
from modes import TOO_BIG_HINT, Mode, parse_query, pick_mode, run_answer, wrong_endpoint
from slow_clients import ConnectionTable, RequestTimedOut

from edgekd_runtime.errors import UserInputError

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The only files served: a fixed map, so no request path ever reaches the file system.
# "/" is the mode's page (index.html for digits, lines.html for text lines).
STATIC_FILES = {
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/lines.html": ("lines.html", "text/html; charset=utf-8"),
    "/pad.js": ("pad.js", "text/javascript; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/lines.js": ("lines.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
ENDPOINTS = ("/api/predict", "/api/read")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'",
    "Referrer-Policy": "no-referrer",
}
log = logging.getLogger("webpad")


@dataclass(frozen=True)
class ServerLimits:
    """Bounds that keep a small board responsive under load or abuse."""

    intake: IntakeLimits = field(default_factory=IntakeLimits)
    max_connections: int = 64  # simultaneous connections (one thread each); see BoundedThreadingHTTPServer
    inference_slots: int = 1  # concurrent predict() calls; 1 is safe for every backend (TFLite is not reentrant)
    queue_timeout_s: float = 10.0  # how long a request waits for an inference slot before a 503
    socket_timeout_s: float = 10.0  # a client silent for this long is disconnected (408 if mid-request)
    request_timeout_s: float = 10.0  # a request (line, headers, body) must arrive whole this soon after its first byte
    evict_wait_s: float = 2.0  # when full, how long a new connection waits for the evicted one's slot


class WebpadApp:
    """What the handler needs: the recognizer, its mode (digits or lines), the limits and the static files (read
    once at start)."""

    def __init__(self, recognizer: Any, limits: ServerLimits = ServerLimits(), mode: Mode | None = None) -> None:
        self.recognizer = recognizer
        self.mode = mode or pick_mode(recognizer, "auto", self.model_name)  # the recognizer's task
        self.limits = limits
        slots = limits.inference_slots
        if slots > 1 and getattr(getattr(recognizer, "backend", None), "format", None) == "tflite":
            log.warning("a TFLite interpreter is not reentrant: using 1 inference slot, not %d", slots)
            slots = 1
        self.inference_slots = slots
        self._slots = threading.BoundedSemaphore(slots)
        self.static = {route: ((STATIC_DIR / name).read_bytes(), ctype) for route, (name, ctype) in
                       STATIC_FILES.items()}
        self.static["/"] = self.static[f"/{self.mode.page}"]
        self.requests_served = 0
        self._count_lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """Model facts for `GET /api/health` and the page header."""
        rec = self.recognizer
        return {
            "status": "ok",
            "task": self.mode.name,
            "endpoint": self.mode.endpoint,
            "model": self.model_name,
            "backend": f"{getattr(rec, 'backend_name', 'unknown')} {getattr(rec, 'backend_version', '')}".strip(),
            "precision": getattr(rec, "precision", None),
            # the loaded file and whether it is the bundle's deployed (budget-fitting) artifact; None: not recorded
            "artifact": getattr(getattr(rec, "artifact", None), "path", None)
            or Path(str(getattr(rec, "model_path", "model"))).name,
            "deployed": getattr(rec, "is_deployed", None),
            "labels": list(rec.labels),
            **({"charset": rec.charset} if self.mode.name == "lines" else {}),
            "limits": {"max_body_bytes": self.limits.intake.max_body_bytes,
                       "max_side_px": self.limits.intake.max_side_px, "inference_slots": self.inference_slots},
            "requests_served": self.requests_served,
        }

    @property
    def model_name(self) -> str:
        manifest = getattr(self.recognizer, "manifest", None)
        return manifest.name if manifest else Path(str(getattr(self.recognizer, "model_path", "model"))).name

    def answer(self, path: str, body: bytes) -> dict[str, Any]:
        """`body` sent to `path` (an endpoint, with its query): check the endpoint and the query, decode the
        image, run the model, return the JSON-ready answer; raises RequestRejected (4xx, 500 or 503)."""
        t0 = time.perf_counter()
        route = path.split("?", 1)[0]
        if route != self.mode.endpoint:
            raise wrong_endpoint(self.mode, route, self.model_name)
        query = parse_query(path)
        self.mode.check_query(self.recognizer, query)
        image = decode_image(body, self.limits.intake, TOO_BIG_HINT[self.mode.name])
        if not self._slots.acquire(timeout=self.limits.queue_timeout_s):
            raise RequestRejected(503, f"server busy: no inference slot within {self.limits.queue_timeout_s} s; "
                                       f"retry shortly")
        try:
            result = run_answer(self.mode, self.recognizer, image, query)
        except RequestRejected as e:
            if e.status >= 500:
                log.error("model output refused: %s", e)
            raise
        finally:
            self._slots.release()
        with self._count_lock:
            self.requests_served += 1
        return {**result, "server_ms": (time.perf_counter() - t0) * 1e3}

    def predict(self, body: bytes) -> dict[str, Any]:
        """A digit image -> the JSON-ready prediction (`answer` on /api/predict); raises RequestRejected."""
        return self.answer("/api/predict", body)


class WebpadHandler(BaseHTTPRequestHandler):
    """Routes: GET / (the mode's page), GET /app.js, /lines.js, /pad.js, /style.css, GET /api/health, POST
    /api/predict (digits) or /api/read (lines)."""

    protocol_version = "HTTP/1.1"
    server_version = "edgekd-webpad/0.1"
    app: WebpadApp  # set on the subclass made by make_server

    def setup(self) -> None:
        self.timeout = self.app.limits.socket_timeout_s
        super().setup()
        self.rfile.close()  # read through the deadline reader instead (the socket stays open)
        self._reader = self.server.connections.reader(self.request)  # type: ignore[attr-defined]
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.begin()
        # what send_response needs should the request line itself time out
        self.command, self.requestline, self.request_version = "", "", self.protocol_version
        try:
            super().handle_one_request()
        except RequestTimedOut as e:
            self.close_connection = True
            if e.partial:  # a client that sent nothing is simply closed, as http.server does
                log.info("%s request timed out: %s", self.address_string(), e)
                self._send_error_json(408, f"request timed out: {e}")

    def parse_request(self) -> bool:
        """http.server's parsing, then: a message framed two ways (Content-Length and Transfer-Encoding, or two
        different Content-Lengths) is a request-smuggling attempt or a broken client: 400 and close (RFC 9112
        6.3), so its body is never read as a second request."""
        if not super().parse_request():
            return False
        lengths = set(self.headers.get_all("Content-Length") or ())
        if self.headers.get("Transfer-Encoding") is not None and lengths:
            self.send_error(400, "both Content-Length and Transfer-Encoding sent: ambiguous message framing "
                                 "(RFC 9112 6.3); send the body with Content-Length only")
            return False
        if len(lengths) > 1:
            self.send_error(400, f"Content-Length sent {len(lengths)} times with different values; send it once")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Refusals that http.server makes itself (400 bad request line, 414 URI too long, 431 header fields
        too large or too many, 501 unsupported method, 505) as JSON like every other error, then close."""
        self.close_connection = True
        reasons = {414: "request line longer than 65536 bytes; shorten the URL",
                   501: f"method {self.command!r} not supported; use GET / or POST {self.app.mode.endpoint}",
                   431: f"{message or 'header fields too large'} ({explain}); send fewer or shorter headers"}
        self._send_error_json(code, reasons.get(code) or message or self.responses.get(code, ("error",))[0])

    # ---- responses -------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.connection.settimeout(self.app.limits.socket_timeout_s)  # reads may have left a shorter one
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        try:
            body = json.dumps(obj, allow_nan=False)  # bare NaN is not JSON: the page's JSON.parse would fail
        except ValueError as e:
            log.error("non-finite number in a JSON answer: %s", obj)
            status, body = 500, json.dumps({"error": f"internal error: {e}", "status": 500})
        self._send(status, body.encode("utf-8"), "application/json", {"Cache-Control": "no-store", **(extra or {})})

    def _send_error_json(self, status: int, message: str) -> None:
        extra = {"Retry-After": "1"} if status == 503 else None
        self._send_json(status, {"error": message, "status": status}, extra)

    # ---- routes ----------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        route = self.path.split("?", 1)[0]
        self._reader.complete()
        if self.headers.get("Content-Length", "0") != "0" or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # an unread body must not be parsed as the next request
        if route in self.app.static:
            body, ctype = self.app.static[route]
            self._send(200, body, ctype, {"Cache-Control": "no-cache"})
        elif route == "/api/health":
            self._send_json(200, self.app.info())
        else:
            self._send_error_json(404, f"no such page {route!r}; the page is / and the API is POST "
                                       f"{self.app.mode.endpoint}")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        route = self.path.split("?", 1)[0]
        if route not in ENDPOINTS:
            self.close_connection = True  # the body is left unread
            self._send_error_json(404, f"no such endpoint {route!r}; POST a PNG to {self.app.mode.endpoint}")
            return
        try:
            length_bytes = check_content_length(self.headers.get("Content-Length"), self.app.limits.intake)
        except RequestRejected as e:
            self.close_connection = True  # never read an oversized or unknown-length body
            self._send_error_json(e.status, str(e))
            return
        body = self.rfile.read(length_bytes)  # RequestTimedOut for a slow or stalled body: 408 (handle_one_request)
        self._reader.complete()
        if len(body) < length_bytes:
            self.close_connection = True
            self._send_error_json(400, f"body ended after {len(body)} of {length_bytes} bytes")
            return
        try:
            result = self.app.answer(self.path, body)
        except RequestRejected as e:
            self._send_error_json(e.status, str(e))
        except Exception as e:  # one bad request must not take the server down
            log.error("predict failed: %s", traceback.format_exc())
            self._send_error_json(500, f"internal error: {type(e).__name__}: {e}")
        else:
            self._send_json(200, result)

    def _method_not_allowed(self) -> None:
        self.close_connection = True
        self._send_error_json(405, f"method {self.command} not allowed; use GET / or POST {self.app.mode.endpoint}")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base-class signature)
        log.info("%s %s", self.address_string(), format % args)


class BoundedThreadingHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most `max_connections` connections: when all are taken, the one waiting
    longest for its request is evicted (`slow_clients`), and only when every one is being answered does a new
    connection get an immediate 503."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog; socketserver's 5 makes a burst of clients wait 1 s for a SYN retry

    app: WebpadApp  # set by make_server

    def __init__(self, address: tuple[str, int], handler: type, limits: ServerLimits) -> None:
        self._connections = threading.BoundedSemaphore(limits.max_connections)
        self.connections = ConnectionTable(limits.socket_timeout_s, limits.request_timeout_s)
        self.evict_wait_s = limits.evict_wait_s
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False) and not (
                self.connections.evict_slowest() and self._connections.acquire(timeout=self.evict_wait_s)):
            body = json.dumps({"error": "server busy: too many connections; retry shortly", "status": 503})
            try:
                request.sendall((f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                 f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
                                 f"{body}").encode())
            except OSError:
                pass
            self.shutdown_request(request)
            return
        self.connections.add(request)  # here, in accept order, so the oldest is the first evicted
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.remove(request)  # before the close: an evictor never touches a closed socket
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # client went away or timed out: routine on a LAN, not worth a traceback
            log.info("%s connection dropped: %s", client_address[0], exc)
        else:
            log.error("error serving %s: %s", client_address[0], traceback.format_exc())

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()


def make_server(recognizer: Any, host: str = "127.0.0.1", port: int = 8000,
                limits: ServerLimits = ServerLimits(), mode: Mode | None = None) -> BoundedThreadingHTTPServer:
    """Bind a webpad server (port 0 picks a free port: read it from `server.server_address`); `mode` defaults to
    the recognizer's task (`modes.pick_mode`)."""
    app = WebpadApp(recognizer, limits, mode)
    handler = type("BoundWebpadHandler", (WebpadHandler,), {"app": app})
    try:
        server = BoundedThreadingHTTPServer((host, port), handler, limits)
    except OSError as e:
        fix = "pick another --port or stop what is using it" if e.errno == errno.EADDRINUSE else \
            "give --host an address of this machine (127.0.0.1 for this machine only, 0.0.0.0 for every interface)" \
            if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL else "check --host and --port"
        raise UserInputError(f"cannot listen on {host}:{port} ({e.strerror or e}); {fix}") from None
    server.app = app
    return server


def configure_access_log(enabled: bool) -> None:
    """One line per request on stderr (or only warnings and errors when disabled)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO if enabled else logging.WARNING)
    log.propagate = False
