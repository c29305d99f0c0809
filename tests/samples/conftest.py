"""Fixtures for the sample apps: a real digit classifier bundle (see samples_support) and a running webpad."""

from __future__ import annotations

import pytest
from samples_support import DigitModel, board_env, build_digit_model, start_webpad, stop_webpad


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
