"""The webpad's line mode in real headless Chromium: write digit strings on the wide pad with the mouse, read the
string, each character's confidence and the latency from the page; the pattern field; errors on the page."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from samples_support import LINE_PAD, line_strokes

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(browser, line_webpad_server):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1100, "height": 760})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "400" not in m.text else None)
    pg.goto(line_webpad_server.url)
    expect(pg.locator("#model")).to_have_text(re.compile(r"^model ctc-w8-d2-r24 · student\.onnx \(fp32\) · backend "))
    pg.js_errors = errors  # type: ignore[attr-defined]
    yield pg
    context.close()


def _write(pg, text: str, status: int = 200) -> dict:
    """Write `text` with the mouse, stroke by stroke, on the wide pad; return the /api/read JSON the page got."""
    box = pg.locator("#pad").bounding_box()
    sx, sy = box["width"] / LINE_PAD[0], box["height"] / LINE_PAD[1]
    with pg.expect_response(lambda r: "/api/read" in r.url) as resp_info:
        for line in line_strokes(text):
            x0, y0 = line[0]
            pg.mouse.move(box["x"] + x0 * sx, box["y"] + y0 * sy)
            pg.mouse.down()
            for x, y in line[1:]:
                pg.mouse.move(box["x"] + x * sx, box["y"] + y * sy, steps=8)
            pg.mouse.up()
    resp = resp_info.value
    assert resp.status == status, resp.text()
    return json.loads(resp.text())


def _shown_chars(pg) -> list[tuple[str, float]]:
    rows = pg.locator("#chars li").all_inner_texts()
    return [(m.group(1), float(m.group(2))) for m in (re.match(r"\s*(\S)\s+([\d.]+)%", r) for r in rows)]


def test_a_written_string_shows_with_each_characters_confidence_and_the_latency(page, tmp_path):
    from playwright.sync_api import expect

    page.click("#clear")
    assert page.inner_text("#text") == "?"
    server = _write(page, "171")
    expect(page.locator("#text")).to_have_attribute("data-state", "ok")
    assert server["text"] == "171" and page.inner_text("#text") == "171"
    shown = _shown_chars(page)
    assert [c for c, _ in shown] == list("171")
    for (_, pct), c in zip(shown, server["characters"]):
        assert pct == pytest.approx(100 * c["probability"], abs=0.06)
    levels = page.locator("#text span").evaluate_all("els => els.map(e => e.dataset.level)")
    assert levels == ["high" if c["probability"] >= 0.9 else "mid" if c["probability"] >= 0.6 else "low"
                      for c in server["characters"]]
    assert re.fullmatch(r"confidence [\d.]+%", page.inner_text("#confidence"))
    # each character is marked under where it was written: left to right, inside the pad
    lefts = page.locator("#marks span").evaluate_all("els => els.map(e => parseFloat(e.style.left))")
    assert len(lefts) == 3 and lefts == sorted(lefts) and 0 <= lefts[0] and lefts[-1] < 100
    m = re.search(r"inference ([\d.]+) ms · preprocess ([\d.]+) ms · server ([\d.]+) ms · round trip (\d+) ms",
                  page.inner_text("#latency"))
    assert m and float(m.group(1)) == pytest.approx(server["latency_ms"], abs=0.006)
    assert page.is_hidden("#error") and page.js_errors == []
    shot = Path(os.environ.get("WEBPAD_LINES_SCREENSHOT", tmp_path / "lines.png"))
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 5_000


def test_the_pattern_field_constrains_the_reading(page):
    from playwright.sync_api import expect

    page.click("#clear")
    page.fill("#pattern", r"\d{3}")
    server = _write(page, "1234")
    assert server["pattern"] == r"\d{3}" and re.fullmatch(r"\d{3}", server["text"])
    expect(page.locator("#text")).to_have_text(server["text"])
    assert page.locator("#chars li").count() == 3
    assert r"pattern \d{3}" in page.inner_text("#confidence")
    page.fill("#pattern", "")
    page.click("#clear")
    assert _write(page, "1234")["text"] == "1234"


def test_a_pattern_no_string_can_match_is_shown_and_the_next_reading_works(page):
    from playwright.sync_api import expect

    page.click("#clear")
    page.fill("#pattern", "[a-z]+")
    server = _write(page, "171", status=400)
    assert "can match pattern '[a-z]+'" in server["error"]
    expect(page.locator("#error")).to_contain_text("use characters the model knows")
    page.fill("#pattern", "")
    page.click("#clear")
    assert _write(page, "7171")["text"] == "7171"
    assert page.is_hidden("#error")


def test_read_on_an_empty_pad_asks_for_writing_without_a_request(page):
    page.click("#clear")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.click("#read")
    page.wait_for_selector("#error:not([hidden])")
    assert "Write a line" in page.inner_text("#error")
    assert not any("/api/read" in u for u in requests)
