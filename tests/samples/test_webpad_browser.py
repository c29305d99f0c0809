"""The webpad in real headless Chromium (Debian's /usr/bin/chromium through Playwright): draw, see the result."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser  # Chromium: the `browser` fixture (conftest) skips where there is none

# Strokes in canvas pixels (the canvas is 280x280): a "1" and a "7".
ONE = [[(140, 40), (140, 240)]]
SEVEN = [[(70, 50), (210, 50), (120, 240)]]


@pytest.fixture(scope="module")
def page(browser, webpad_server):  # the page CSP forbids eval: wait with locator expectations, not JS strings
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 720, "height": 520})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.goto(webpad_server.url)
    header = r"^model logreg-test · student\.onnx \(fp32\) · backend onnxruntime \d"
    expect(pg.locator("#model")).to_have_text(re.compile(header))
    pg.js_errors = errors  # type: ignore[attr-defined]
    yield pg
    context.close()


def _draw(pg, strokes: list[list[tuple[int, int]]]) -> dict:
    """Drag the mouse along each polyline on the canvas; return the /api/predict JSON the page received."""
    box = pg.locator("#pad").bounding_box()
    sx, sy = box["width"] / 280, box["height"] / 280
    with pg.expect_response(lambda r: r.url.endswith("/api/predict")) as resp_info:
        for line in strokes:
            x0, y0 = line[0]
            pg.mouse.move(box["x"] + x0 * sx, box["y"] + y0 * sy)
            pg.mouse.down()
            for x, y in line[1:]:
                pg.mouse.move(box["x"] + x * sx, box["y"] + y * sy, steps=12)
            pg.mouse.up()
    resp = resp_info.value
    assert resp.status == 200, resp.text()
    return json.loads(resp.text())


def test_drawn_strokes_show_prediction_and_latency(page, tmp_path):
    page.click("#clear")
    assert page.inner_text("#label") == "?"
    server_json = _draw(page, ONE)
    page.wait_for_selector("#label[data-state='ok']")

    shown_label = page.inner_text("#label")
    assert shown_label == server_json["label"]
    assert shown_label == "1"  # a vertical bar is a one, even for logistic regression

    rows = page.locator("#topk li").all_inner_texts()
    assert len(rows) == 3
    shown = [re.match(r"\s*(\S+)\s+([\d.]+)%", r).groups() for r in rows]
    assert [lbl for lbl, _ in shown] == [t["label"] for t in server_json["top_k"]]
    probs = [float(p) for _, p in shown]
    assert probs == sorted(probs, reverse=True)
    assert probs[0] == pytest.approx(100 * server_json["top_k"][0]["probability"], abs=0.06)

    latency = page.inner_text("#latency")
    m = re.search(r"inference ([\d.]+) ms · server ([\d.]+) ms · round trip (\d+) ms", latency)
    assert m, latency
    assert 0 < float(m.group(1)) < 1000
    assert float(m.group(1)) == pytest.approx(server_json["latency_ms"], abs=0.006)
    assert page.is_hidden("#error")
    assert page.js_errors == []

    shot = Path(os.environ.get("WEBPAD_SCREENSHOT", tmp_path / "webpad.png"))
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 5_000


def test_clear_then_a_second_digit_updates_the_result(page):
    from playwright.sync_api import expect

    page.click("#clear")
    assert page.inner_text("#label") == "?" and page.locator("#topk li").count() == 0
    server_json = _draw(page, SEVEN)
    expect(page.locator("#label")).to_have_text(server_json["label"])
    assert page.get_attribute("#label", "data-state") == "ok"
    assert page.locator("#topk li").count() == 3


def test_recognise_on_an_empty_pad_asks_for_a_digit_without_a_request(page):
    page.click("#clear")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.click("#predict")
    page.wait_for_selector("#error:not([hidden])")
    assert "Draw a digit" in page.inner_text("#error")
    assert not any(u.endswith("/api/predict") for u in requests)


def test_finger_drawing_on_a_phone_sized_touch_screen(browser, webpad_server):
    """Touch events through the DevTools protocol, as a finger on a phone: pointer events reach the pad."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
                                  device_scale_factor=2)
    try:
        pg = context.new_page()
        pg.goto(webpad_server.url)
        box = pg.locator("#pad").bounding_box()
        assert box["x"] + box["width"] <= 390  # the pad fits a phone screen
        cdp = context.new_cdp_session(pg)
        x = box["x"] + box["width"] / 2
        ys = [box["y"] + box["height"] * f for f in np.linspace(0.15, 0.85, 15)]
        with pg.expect_response(lambda r: r.url.endswith("/api/predict")) as resp_info:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": ys[0]}]})
            for y in ys[1:]:
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        assert resp_info.value.status == 200
        expect(pg.locator("#label")).to_have_text("1")
        assert pg.locator("#topk li").count() == 3
        assert re.search(r"inference [\d.]+ ms", pg.inner_text("#latency"))
        shot = os.environ.get("WEBPAD_SCREENSHOT_PHONE")
        if shot:
            pg.screenshot(path=shot, full_page=True)
    finally:
        context.close()
