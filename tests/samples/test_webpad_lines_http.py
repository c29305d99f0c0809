"""The webpad's line mode over HTTP (`POST /api/read[?pattern=P]`, the trained line bundle of tests/conftest.py):
strings written on the pad, the pattern, and issue 12's bad input (a blank page, a photo without a text line, a
20,000-px-wide image, a pattern no string of the charset can match, the other mode's endpoint): one clear 4xx
JSON each, and the server keeps serving. Plus `webpad.py --mode` and a corrupt lines manifest (exit 2)."""

from __future__ import annotations

import http.client
import json
import math
import shutil
import subprocess
import sys
import threading
from urllib.parse import quote

import numpy as np
import pytest
from samples_support import (
    WEBPAD,
    blank_paper_photo,
    blob_photo,
    line_image,
    line_strokes,
    png_bytes,
    png_of,
    very_wide_line,
)
from webpad_server import ServerLimits, make_server


def _serve(recognizer):
    srv = make_server(recognizer, "127.0.0.1", 0, ServerLimits(socket_timeout_s=2.0))
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def server(line_bundle):
    import edgekd_runtime

    srv = _serve(edgekd_runtime.load(line_bundle))
    yield srv
    srv.shutdown()
    srv.server_close()


def _post(server, path: str, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "image/png"})
        resp = conn.getresponse()
        assert resp.getheader("Content-Type") == "application/json"
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _read(server, text: str, pattern: str | None = None) -> tuple[int, dict]:
    query = "" if pattern is None else f"?pattern={quote(pattern, safe='')}"
    return _post(server, f"/api/read{query}", png_of(line_image(line_strokes(text))))


def _health(server) -> dict:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    try:
        conn.request("GET", "/api/health")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def test_a_written_line_is_read_with_each_characters_probability_and_place(server):
    status, res = _read(server, "171")
    assert status == 200, res
    assert res["text"] == "171" and res["pattern"] is None
    assert [c["char"] for c in res["characters"]] == list("171")
    for c, stroke_x in zip(res["characters"], (100, 200, 300)):  # where line_strokes wrote each digit
        assert 0 <= c["x0"] < c["x1"] <= 960 and c["x0"] - 40 <= stroke_x <= c["x1"] + 40
        assert 0.5 < c["probability"] <= 1.0
    assert res["confidence"] == pytest.approx(math.prod(c["probability"] for c in res["characters"]), rel=1e-5)
    assert 0 < res["latency_ms"] <= res["server_ms"] and res["preprocess_ms"] > 0
    health = _health(server)
    assert health["task"] == "lines" and health["endpoint"] == "/api/read" and health["charset"] == "0123456789"


def test_a_pattern_constrains_the_reading(server):
    status, res = _read(server, "1234", r"\d{2}")
    assert status == 200 and res["pattern"] == r"\d{2}" and len(res["text"]) == 2 and res["text"].isdigit()
    assert len(res["characters"]) == 2
    status, res = _read(server, "7171", "[17]+")
    assert status == 200 and res["text"] == "7171"


@pytest.mark.parametrize("pattern, says", [
    ("[a-z]+", "no reading over the model's characters '0123456789' can match pattern '[a-z]+'"),
    ("(", "pattern '('"),
    (r"\d{100000}", "needs at least 100000 characters"),  # refused at once, not an automaton of 100,000 states
    (r"\d{3}", None),  # a good pattern: the body is then decoded, and refused as not an image
])
def test_a_bad_pattern_is_a_400_before_the_image_is_even_decoded(server, pattern, says):
    status, res = _post(server, f"/api/read?pattern={quote(pattern, safe='')}", b"not an image at all")
    if says is None:
        assert status == 415 and "not a PNG or JPEG" in res["error"]
    else:
        assert status == 400 and says in res["error"] and res["status"] == 400


def test_a_pattern_given_twice_is_a_400_not_a_guess(server):
    status, res = _post(server, "/api/read?pattern=1&pattern=2", b"not an image at all")
    assert status == 400 and "?pattern= is given 2 times; give it once" in res["error"]


@pytest.mark.parametrize("image, status, says", [
    (lambda: line_image([]), 422, "no ink found"),  # a blank pad
    (blank_paper_photo, 422, "no ink found"),  # a photo of a blank page
    (blob_photo, 422, "no text line found: the largest dark region"),  # a photo without a text line
    (lambda: np.concatenate([line_image(line_strokes("171")), line_image(line_strokes("1234"))]), 422,
     "more than one line of writing"),  # two lines on one image: not the one with the most ink, silently
    (lambda: very_wide_line(20_000, 200), 413, "20000x200 px; the limit is 2048 px a side"),
    (lambda: very_wide_line(2000, 60, stroke_px=16), 422, "split it into shorter lines"),  # too wide for the model
])
def test_bad_images_get_one_clear_4xx_each_and_the_server_keeps_serving(server, image, status, says):
    served = _health(server)["requests_served"]
    got, res = _post(server, "/api/read", png_of(image()))
    assert got == status and says in res["error"], res
    assert "\n" not in res["error"]
    if status == 413:
        assert "split a long line into shorter ones" in res["error"]
    status, res = _read(server, "171")  # still reading
    assert status == 200 and res["text"] == "171"
    assert _health(server)["requests_served"] == served + 1  # the refused one is not counted


def test_each_mode_refuses_the_other_modes_endpoint(server, digit_model):
    import edgekd_runtime

    status, res = _post(server, "/api/predict", png_of(line_image(line_strokes("171"))))
    assert status == 400 and "reads text lines" in res["error"] and "POST the image to /api/read" in res["error"]
    digits = _serve(edgekd_runtime.load(digit_model.bundle))
    try:
        canvas, label = digit_model.clear_digits(1)[3]
        status, res = _post(digits, "/api/read", png_bytes(canvas))
        assert status == 400 and "single digits" in res["error"] and "POST the image to /api/predict" in res["error"]
        status, res = _post(digits, "/api/predict?pattern=%5Cd", png_bytes(canvas))
        assert status == 400 and "drop ?pattern=" in res["error"]
        assert _post(digits, "/api/predict", png_bytes(canvas))[1]["label"] == str(label)
        assert _health(digits)["task"] == "digits"
    finally:
        digits.shutdown()
        digits.server_close()
    assert _read(server, "171")[0] == 200


def _webpad_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WEBPAD), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def test_cli_mode_that_the_bundle_cannot_serve_and_a_corrupt_lines_manifest_exit_2(line_bundle, digit_model,
                                                                                    tmp_path):
    done = _webpad_cli(digit_model.bundle, "--mode", "lines", "--port", "0")
    assert done.returncode == 2 and "--mode lines but" in done.stderr and "single-digit bundle" in done.stderr
    done = _webpad_cli(line_bundle, "--mode", "digits", "--port", "0")
    assert done.returncode == 2 and "text-line (line-recognition) bundle" in done.stderr
    done = _webpad_cli(line_bundle, "--mode", "words")
    assert done.returncode == 2 and "--mode 'words' is unknown; use one of auto, digits, lines" in done.stderr
    corrupt = tmp_path / "corrupt"
    shutil.copytree(line_bundle, corrupt)
    manifest = json.loads((corrupt / "manifest.json").read_text())
    manifest["lines"]["blank"] = 3
    (corrupt / "manifest.json").write_text(json.dumps(manifest))
    done = _webpad_cli(corrupt, "--port", "0")
    assert done.returncode == 2 and "lines.blank is 3" in done.stderr and "manifest.json" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
