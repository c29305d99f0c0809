"""Silence a noisy converter at the file-descriptor level (onnx2tf and TensorFlow's C++ logs bypass sys.stdout)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Redirect fds 1 and 2 (and sys.stdout/err) to a temp file; yields a list filled with the text on exit."""
    sink: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    old_env = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            # Python-level writers too (sys.stdout may not be fd 1, e.g. under pytest): same file, shared offset
            with os.fdopen(os.dup(tmp.fileno()), "w", encoding="utf-8", errors="replace") as stream, \
                    contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                try:
                    yield sink
                finally:
                    stream.flush()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if old_env is None:
                os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
            else:
                os.environ["TF_CPP_MIN_LOG_LEVEL"] = old_env
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", "replace"))
