"""Fixtures for the sample apps: a real digit classifier bundle (see samples_support), a running webpad for it and
one for the trained line bundle of tests/conftest.py, and headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from samples_support import DigitModel, board_env, build_digit_model, start_webpad, stop_webpad

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def digit_model(tmp_path_factory: pytest.TempPathFactory) -> DigitModel:
    return build_digit_model(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def webpad_server(digit_model: DigitModel, tmp_path_factory: pytest.TempPathFactory):
    """The real webpad CLI serving the test bundle on 127.0.0.1 (shared by the load and browser tests), in a
    process where torch, tensorflow, onnx and the workstation packages cannot be imported, as on a board."""
    work = tmp_path_factory.mktemp("webpad")
    server = start_webpad(digit_model.bundle, work / "server.log", env=board_env(work / "blocked"))
    yield server
    stop_webpad(server)


@pytest.fixture(scope="session")
def line_webpad_server(line_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    """The webpad CLI serving the trained line bundle in line mode (`--mode lines`), as on a board."""
    work = tmp_path_factory.mktemp("line_webpad")
    server = start_webpad(line_bundle, work / "server.log", "--mode", "lines", env=board_env(work / "blocked"))
    yield server
    stop_webpad(server)


@pytest.fixture(scope="module")
def browser():
    """Debian's /usr/bin/chromium, headless, through Playwright (its own browser download fails here)."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
