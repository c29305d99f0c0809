"""The webpad HTTP endpoint with good, malformed, empty, oversized and hostile requests; it must keep serving."""

from __future__ import annotations

import http.client
import io
import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from image_intake import IntakeLimits
from samples_support import WEBPAD, png_bytes
from webpad_server import ServerLimits, make_server

LIMITS = ServerLimits(intake=IntakeLimits(max_body_bytes=64 * 1024, max_side_px=1024, max_pixels=1024 * 1024),
                      max_connections=8, socket_timeout_s=1.0)


@pytest.fixture(scope="module")
def server(digit_model):
    import edgekd_runtime

    srv = make_server(edgekd_runtime.load(digit_model.bundle), "127.0.0.1", 0, LIMITS)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _request(server, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        ctype = resp.getheader("Content-Type", "")
        return resp.status, (json.loads(raw) if ctype.startswith("application/json") else {"raw": raw}), \
            dict(resp.getheaders())
    finally:
        conn.close()


def _predict(server, body: bytes) -> tuple[int, dict]:
    status, payload, _ = _request(server, "POST", "/api/predict", body, {"Content-Type": "image/png"})
    return status, payload


def _raw(server, data: bytes, wait_s: float = 0.0) -> bytes:
    """Send raw bytes on a fresh socket (optionally pause), return everything the server answers."""
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(data)
        if wait_s:
            time.sleep(wait_s)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _assert_still_serving(server, digit_model) -> None:
    canvas, label = digit_model.clear_digits(1)[7]
    status, payload = _predict(server, png_bytes(canvas))
    assert status == 200 and payload["label"] == str(label)


def test_clear_digits_get_correct_labels_with_top3_and_latency(server, digit_model):
    for canvas, label in digit_model.clear_digits(per_class=2):
        status, payload = _predict(server, png_bytes(canvas))
        assert status == 200, payload
        assert payload["label"] == str(label) and payload["index"] == label
        probs = [t["probability"] for t in payload["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert payload["top_k"][0] == {"label": payload["label"], "probability": payload["probability"]}
        assert 0.5 < payload["probability"] <= 1.0 and sum(probs) <= 1.0 + 1e-5
        assert 0 < payload["latency_ms"] <= payload["server_ms"] < 5_000


def test_jpeg_photo_of_dark_ink_on_white_is_accepted(server, digit_model):
    from PIL import Image

    canvas, label = digit_model.clear_digits(1)[4]
    buf = io.BytesIO()
    Image.fromarray(255 - canvas).resize((140, 140)).convert("RGB").save(buf, format="JPEG", quality=90)
    status, payload = _predict(server, buf.getvalue())
    assert status == 200 and payload["label"] == str(label)


def test_page_assets_and_health(server):
    status, payload, headers = _request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"<canvas id=\"pad\"" in payload["raw"] and b"app.js" in payload["raw"]
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, payload, headers = _request(server, "GET", "/app.js")
    assert status == 200 and b"api/predict" in payload["raw"]
    status, health, _ = _request(server, "GET", "/api/health")
    assert status == 200 and health["status"] == "ok" and health["labels"] == [str(i) for i in range(10)]
    assert health["model"] == "logreg-test"
    assert health["artifact"] == "student.onnx" and health["deployed"] is None  # the bundle records none


def test_health_says_whether_the_deployed_artifact_is_served(digit_model, tmp_path):
    import shutil

    from webpad_server import WebpadApp

    import edgekd_runtime

    bundle = tmp_path / "bundle"
    shutil.copytree(digit_model.bundle, bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**m, "deployed": "student.onnx"}))
    info = WebpadApp(edgekd_runtime.load(bundle)).info()
    assert info["artifact"] == "student.onnx" and info["deployed"] is True and info["precision"] == "fp32"


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "empty body"),
    (b"hello, this is not an image", 415, "not a PNG"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 400, "malformed"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", 415, "not a PNG"),
])
def test_malformed_and_empty_bodies_get_4xx_json(server, digit_model, body, status, words):
    got, payload = _predict(server, body)
    assert got == status and words in payload["error"] and payload["status"] == status
    _assert_still_serving(server, digit_model)


def test_truncated_png_is_400_and_names_the_problem(server, digit_model):
    canvas, _ = digit_model.clear_digits(1)[0]
    body = png_bytes(canvas)
    status, payload = _predict(server, body[: len(body) // 2])
    assert status == 400 and ("truncated" in payload["error"] or "malformed" in payload["error"])
    _assert_still_serving(server, digit_model)


def test_oversized_body_is_413_before_it_is_read(server, digit_model):
    limit = LIMITS.intake.max_body_bytes
    head = (f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            f"Content-Length: {100 * limit}\r\n\r\n").encode()
    answer = _raw(server, head + b"\x89PNG\r\n\x1a\n" + b"\0" * 1000)  # 100x the limit announced, 1 KB sent
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert f"exceeds the limit of {limit} bytes".encode() in answer
    _assert_still_serving(server, digit_model)


def test_image_dimensions_over_the_limit_are_413(server, digit_model):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (4000, 300)).save(buf, format="PNG")  # compresses to ~2 KB: only the header check stops it
    assert len(buf.getvalue()) < LIMITS.intake.max_body_bytes
    status, payload = _predict(server, buf.getvalue())
    assert status == 413 and "4000x300" in payload["error"]
    _assert_still_serving(server, digit_model)


def test_tiny_and_blank_images_are_rejected(server, digit_model):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (3, 3), 255).save(buf, format="PNG")
    status, payload = _predict(server, buf.getvalue())
    assert status == 400 and "3x3" in payload["error"]
    status, payload = _predict(server, png_bytes(np.zeros((28, 28), np.uint8)))
    assert status == 422 and "no digit" in payload["error"]
    _assert_still_serving(server, digit_model)


def test_missing_content_length_is_411(server, digit_model):
    answer = _raw(server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 ") and b"Content-Length" in answer
    answer = _raw(server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    _assert_still_serving(server, digit_model)


def test_client_that_stalls_mid_body_is_dropped(server, digit_model):
    head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n\x89PNG"
    t0 = time.monotonic()
    answer = _raw(server, head)  # 4 of 5000 bytes, then silence
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert LIMITS.socket_timeout_s * 0.9 < time.monotonic() - t0 < 10
    _assert_still_serving(server, digit_model)


def test_unknown_paths_and_methods(server, digit_model):
    assert _request(server, "GET", "/etc/passwd")[0] == 404
    assert _request(server, "GET", "/../samples/webpad/webpad.py")[0] == 404
    assert _request(server, "POST", "/api/other", b"x")[0] == 404
    status, payload, _ = _request(server, "DELETE", "/api/predict")
    assert status == 405 and "POST /api/predict" in payload["error"]
    _assert_still_serving(server, digit_model)


def _serve(recognizer, limits: ServerLimits):
    srv = make_server(recognizer, "127.0.0.1", 0, limits)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


def _stop(srv) -> None:
    srv.shutdown()
    srv.server_close()


class _BlockingRecognizer:
    """The real recognizer, whose predict() waits until the test releases it: requests being answered."""

    def __init__(self, real):
        self.real, self.entered, self.release = real, threading.Semaphore(0), threading.Event()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def predict(self, image, top_k=3):
        self.entered.release()
        self.release.wait(30)
        return self.real.predict(image, top_k=top_k)


def test_connections_beyond_the_limit_get_503_then_service_resumes(digit_model):
    """When every slot holds a request being answered (nothing to reclaim), a new connection gets an
    immediate 503 with Retry-After; service resumes as those requests finish."""
    import edgekd_runtime

    rec = _BlockingRecognizer(edgekd_runtime.load(digit_model.bundle))
    srv = _serve(rec, ServerLimits(max_connections=2, inference_slots=2, socket_timeout_s=5.0))
    health = b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    body = png_bytes(digit_model.clear_digits(1)[5][0])
    try:
        busy = [threading.Thread(target=_predict, args=(srv, body)) for _ in range(2)]
        for t in busy:
            t.start()
        assert rec.entered.acquire(timeout=20) and rec.entered.acquire(timeout=20)  # both inside predict()
        answer = _raw(srv, health)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"too many connections" in answer, answer[:200]
        assert b"Retry-After: 1" in answer
        rec.release.set()
        for t in busy:
            t.join(20)
        deadline = time.monotonic() + 5
        while not _raw(srv, health).startswith(b"HTTP/1.1 200 "):  # slots come back as the requests end
            assert time.monotonic() < deadline
            time.sleep(0.05)
        _assert_still_serving(srv, digit_model)
    finally:
        rec.release.set()
        _stop(srv)


def _trickle(sock: socket.socket, data: bytes, interval_s: float, max_s: float) -> tuple[bytes, float]:
    """Send `data` one byte every `interval_s` until the server answers (or `max_s` passes); return everything
    the server sent until it closed, and the seconds from the first byte to the answer."""
    import select

    t0 = time.monotonic()
    for byte in data:
        sock.sendall(bytes([byte]))
        if select.select([sock], [], [], interval_s)[0] or time.monotonic() - t0 > max_s:
            break
    answered_s = time.monotonic() - t0
    sock.settimeout(10)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks), answered_s


def _json_answer(answer: bytes) -> tuple[int, dict, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head, head
    return int(head.split()[1]), json.loads(body), head


def test_a_trickling_request_gets_408_at_its_whole_request_deadline(digit_model):
    """One byte every 0.25 s never trips the 3 s silence timeout, which restarts with every byte; the 1 s
    whole-request deadline stops it with the documented 408 (before: never dropped)."""
    import edgekd_runtime

    srv = _serve(edgekd_runtime.load(digit_model.bundle), ServerLimits(socket_timeout_s=3.0, request_timeout_s=1.0))
    try:
        with socket.create_connection(srv.server_address[:2], timeout=10) as s:
            answer, answered_s = _trickle(s, b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100,
                                          interval_s=0.25, max_s=6.0)
        status, payload, head = _json_answer(answer)
        assert status == 408 and payload["status"] == 408 and b"Connection: close" in head
        assert "did not arrive whole within 1 s of its first byte" in payload["error"]  # not the silence one
        assert answered_s < 6.0  # answered while it was still trickling
        _assert_still_serving(srv, digit_model)
    finally:
        _stop(srv)


def test_tricklers_holding_every_slot_do_not_lock_out_real_requests(digit_model):
    """Three connections trickling their requests hold all three slots (deadlines far away): a real request
    is still served, by evicting the one waiting longest, which gets a 408 saying why."""
    import edgekd_runtime

    srv = _serve(edgekd_runtime.load(digit_model.bundle),
                 ServerLimits(max_connections=3, socket_timeout_s=30.0, request_timeout_s=30.0))
    stop = threading.Event()
    slow = [socket.create_connection(srv.server_address[:2], timeout=10) for _ in range(3)]

    def trickle() -> None:
        data = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        for byte in data:
            for s in slow:
                try:
                    s.sendall(bytes([byte]))
                except OSError:
                    pass  # evicted
            if stop.wait(0.3):
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        # the server has read the first bytes of all three (else the oldest is evicted as an idle connection,
        # closed without a 408: a race on a loaded machine)
        deadline = time.monotonic() + 20
        while srv.connections.partial() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.connections.partial() == 3
        status, health, _ = _request(srv, "GET", "/api/health")
        assert status == 200 and health["status"] == "ok"
        slow[0].settimeout(10)
        status, payload, _ = _json_answer(slow[0].recv(65536))
        assert status == 408 and "server was full and this connection had waited longest" in payload["error"]
        _assert_still_serving(srv, digit_model)  # evicts the next trickler
    finally:
        stop.set()
        sender.join(5)
        for s in slow:
            s.close()
        _stop(srv)


def test_a_silent_partial_request_gets_408_and_an_idle_connection_is_just_closed(server):
    t0 = time.monotonic()
    answer = _raw(server, b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    status, payload, _ = _json_answer(answer)
    assert status == 408 and "sent nothing for 1 s in the middle of a request" in payload["error"]
    assert time.monotonic() - t0 >= LIMITS.socket_timeout_s * 0.9
    assert _raw(server, b"") == b""  # nothing sent at all: closed without an answer, as http.server does


@pytest.mark.parametrize("request_bytes, status, words", [
    (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "method 'TRACE' not supported"),
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", 501, "method 'CONNECT' not supported"),
    (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501, "method 'BREW' not supported"),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request line longer than 65536 bytes"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n", 431,
     "got more than 100 headers"),
    (b"GET / HTTP/1.1\r\nX-Long: " + b"v" * 70_000 + b"\r\n\r\n", 431, "header line"),
])
def test_refusals_made_by_http_server_itself_are_json(server, digit_model, request_bytes, status, words):
    got, payload, head = _json_answer(_raw(server, request_bytes))
    assert got == status and payload["status"] == status and words in payload["error"], payload
    assert b"Connection: close" in head and b"<html" not in head.lower()
    _assert_still_serving(server, digit_model)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_content_length_with_chunked_transfer_encoding_is_one_400_and_a_closed_connection(server, digit_model,
                                                                                        method):
    """RFC 9112 6.3: a message framed both ways is refused and the connection closed, so the chunked body can
    never be read as a second request (before: two responses on one connection)."""
    smuggled = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    answer = _raw(server, b"%s /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n%s" % (method.encode(), chunked))
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # _raw read until the server closed the connection
    status, payload, head = _json_answer(answer)
    assert status == 400 and "both Content-Length and Transfer-Encoding" in payload["error"]
    assert b"Connection: close" in head
    answer = _raw(server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                          b"Content-Length: 40\r\n\r\n" + b"x" * 40)
    assert answer.count(b"HTTP/1.1 ") == 1 and _json_answer(answer)[0] == 400
    _assert_still_serving(server, digit_model)


def _webpad_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WEBPAD), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def test_cli_bad_model_and_busy_port_exit_2_without_traceback(digit_model, tmp_path):
    done = _webpad_cli(tmp_path / "no-bundle")
    assert done.returncode == 2 and "no-bundle" in done.stderr and "Traceback" not in done.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _webpad_cli(digit_model.bundle, "--port", port)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr and "pick another --port" in done.stderr
    import edgekd_runtime
    from edgekd_runtime.errors import UserInputError

    for host in ("256.1.1.1", "192.0.2.1"):  # no such address / not one of this machine's
        with pytest.raises(UserInputError, match="give --host an address of this machine"):
            make_server(edgekd_runtime.load(digit_model.bundle), host, 0, LIMITS)


def test_cli_threads_over_the_cores_are_capped_with_a_one_line_warning(digit_model, tmp_path):
    from samples_support import start_webpad, stop_webpad

    from edgekd_runtime.backends import usable_cores

    server = start_webpad(digit_model.bundle, tmp_path / "server.log", "--threads", "100000")
    try:
        log = server.log()  # it started serving: the warning came first
    finally:
        stop_webpad(server)
    cores = usable_cores()
    assert f"warning: threads=100000 is more than the {cores} cores this process may use; using {cores}" in log
    assert "Traceback" not in log and "Warning:" not in log
    done = _webpad_cli(digit_model.bundle, "--threads", "0")
    assert done.returncode == 2 and "--threads" in done.stderr


def test_cli_help_lists_the_limits():
    done = _webpad_cli("--help")
    assert done.returncode == 0
    for flag in ("--host", "--port", "--max-body-bytes", "--max-side-px", "--max-connections"):
        assert flag in done.stdout


def test_a_crash_inside_the_model_is_a_500_for_that_request_only(digit_model):
    import edgekd_runtime

    class CrashesOnce:
        """The real recognizer, except that its first predict() fails the way a driver bug would."""

        def __init__(self, real):
            self.real, self.calls = real, 0

        def __getattr__(self, name):
            return getattr(self.real, name)

        def predict(self, image, top_k=3):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("simulated interpreter failure")
            return self.real.predict(image, top_k=top_k)

    srv = make_server(CrashesOnce(edgekd_runtime.load(digit_model.bundle)), "127.0.0.1", 0, LIMITS)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        status, payload = _predict(srv, png_bytes(digit_model.clear_digits(1)[2][0]))
        assert status == 500 and "RuntimeError: simulated interpreter failure" in payload["error"]
        _assert_still_serving(srv, digit_model)
    finally:
        srv.shutdown()
        srv.server_close()


def _nan_bundle(digit_model, tmp_path):
    """The test bundle with NaN weights: a broken model that outputs NaN for every class."""
    import shutil

    from samples_support import write_logreg_onnx

    from edgekd_runtime.manifest import Artifact, Manifest

    bundle = tmp_path / "nan_bundle"
    shutil.copytree(digit_model.bundle, bundle)
    write_logreg_onnx(bundle / "student.onnx", digit_model.weights * np.float32("nan"), digit_model.bias)
    m = Manifest.load(bundle)
    m.artifacts = [Artifact.from_file(bundle, "student.onnx", "fp32")]
    m.save(bundle)
    return bundle


def test_a_model_that_outputs_nan_is_a_500_json_and_the_server_keeps_serving(digit_model, tmp_path):
    import edgekd_runtime

    srv = make_server(edgekd_runtime.load(_nan_bundle(digit_model, tmp_path)), "127.0.0.1", 0, LIMITS)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        host, port = srv.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("POST", "/api/predict", body=png_bytes(digit_model.clear_digits(1)[3][0]),
                     headers={"Content-Type": "image/png"})
        resp = conn.getresponse()
        raw = resp.read().decode()
        conn.close()
        assert resp.status == 500 and resp.getheader("Content-Type") == "application/json"
        body = json.loads(raw, parse_constant=lambda c: pytest.fail(f"bare {c} in the answer"))
        assert "NaN scores" in body["error"] and "label" not in body
        status, health, _ = _request(srv, "GET", "/api/health")
        assert status == 200 and health["status"] == "ok"
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_non_finite_number_in_an_answer_is_a_500_json_never_bare_nan(digit_model):
    """Whatever slips through (here a recognizer wrapper that reports a NaN latency), the page gets valid JSON."""
    import dataclasses

    import edgekd_runtime

    class NanLatency:
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def predict(self, image, top_k=3):
            return dataclasses.replace(self.real.predict(image, top_k=top_k), latency_ms=float("nan"))

    srv = make_server(NanLatency(edgekd_runtime.load(digit_model.bundle)), "127.0.0.1", 0, LIMITS)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        png = png_bytes(digit_model.clear_digits(1)[1][0])
        request = (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nConnection: close\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(png))
        head, _, body = _raw(srv, request + png).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 500 ") and b"NaN" not in body  # the raw bytes, before any JSON parser
        assert "internal error" in json.loads(body)["error"]
    finally:
        srv.shutdown()
        srv.server_close()


def test_get_with_a_body_does_not_smuggle_a_second_request(server):
    smuggled = b"GET /etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = _raw(server, b"GET /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
                  + smuggled)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 1
