"""Input files that are not what they seem: an image too big to decode (refused from its header before a pixel is
decoded, without a library warning), files this process may not read, named pipes, symbolic link loops. Each is a
typed error naming the file and what to do (exit 2 from the CLI), never a traceback, a hang or a wrong advice."""

from __future__ import annotations

import builtins
import errno
import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from rt_support import bars_image, make_line_bundle, png_header_only
from typer.testing import CliRunner

import edgekd_runtime as rt
from edgekd_runtime.cli import app
from edgekd_runtime.images import load_gray, load_levels
from edgekd_runtime.lines import _source_size, load_line_image

runner = CliRunner()
DENIED = "cannot be read: permission denied; check its permissions"


@pytest.fixture()
def no_decoding(monkeypatch):
    """Any pixel decoding by Pillow fails the test."""
    def load(self):
        raise AssertionError(f"pixels decoded: {self.format} {self.mode} {self.size}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.fixture()
def line_bundle(tmp_path) -> Path:
    return make_line_bundle(tmp_path / "lines")


def _exit_2(args: list[str], says: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and says in r.stderr and "Traceback" not in r.output, r.output


# ---- 1, 2: too big to decode ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bit_depth, color_type, mode", [(8, 6, "RGBA"), (16, 0, "I;16")])
def test_a_huge_line_image_is_refused_from_its_header_before_any_pixel_is_decoded(tmp_path, no_decoding, bit_depth,
                                                                                 color_type, mode):
    """The probe's 10000x10000 PNGs: reading a line's size used to decode the whole image looking for EXIF (459 MB
    peak for RGBA) before the decode budget refused it."""
    path = png_header_only(tmp_path / "huge.png", 10000, 10000, bit_depth, color_type)
    with pytest.raises(rt.ImageError, match=rf"a 10000x10000 px PNG image \({mode}\) would take about"):
        load_line_image(path)
    with pytest.raises(rt.ImageError, match="over the 128 MiB limit"):
        _source_size(path)


def test_a_huge_image_raises_no_library_warning(tmp_path):
    """100 million pixels is over Pillow's DecompressionBombWarning threshold: the runtime's own limits judge it,
    and no raw library warning reaches the user."""
    path = png_header_only(tmp_path / "huge.png", 10000, 10000, 16, 0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(rt.ImageError, match="MiB to decode"):
            load_line_image(path)
        with pytest.raises(rt.ImageError, match="MiB to decode"):
            load_levels(path)
    assert [str(w.message) for w in seen] == []


@pytest.mark.parametrize("load", [load_gray, load_levels, load_line_image])
def test_the_decode_budget_error_is_not_rewrapped(tmp_path, load):
    """Our own ImageError (a ValueError) passes through as it is: the file named once, no 'truncated' advice."""
    path = png_header_only(tmp_path / "gray.png", 15000, 15000)
    with pytest.raises(rt.ImageError) as e:
        load(path)
    message = str(e.value)
    assert message.startswith(f"{path}: a 15000x15000 px PNG image (L) would take about 257 MiB to decode")
    assert message.count(str(path)) == 1 and "truncated" not in message and "cannot decode" not in message


def test_cli_read_of_a_huge_image_is_one_clear_error(tmp_path, line_bundle):
    path = png_header_only(tmp_path / "gray.png", 15000, 15000)
    _exit_2(["read", str(path), "-m", str(line_bundle)], "would take about 257 MiB to decode")
    r = runner.invoke(app, ["read", str(path), "-m", str(line_bundle)])
    assert "truncated" not in r.stderr and r.stderr.count(str(path)) == 1


@pytest.mark.parametrize("suffix, orientation, size", [(".jpg", 6, (60, 100)), (".png", 8, (60, 100)),
                                                       (".png", 3, (100, 60)), (".webp", 5, (60, 100))])
def test_exif_orientation_still_turns_a_line_image_of_allowed_size(tmp_path, suffix, orientation, size):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"turned{suffix}"
    Image.fromarray(np.full((60, 100), 200, np.uint8)).save(path, exif=exif)
    assert _source_size(path) == size
    assert load_line_image(path).shape == size[::-1]


def _exif_after_pixels(png: bytes) -> bytes:
    """The PNG with its eXIf chunk moved after the pixel data (allowed by the PNG 1.5 extensions; Pillow writes it
    before), where reading it would mean decoding the image."""
    chunks, at = [], 8
    while at < len(png):
        n = int.from_bytes(png[at:at + 4], "big")
        chunks.append(png[at:at + 12 + n])
        at += 12 + n
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    return png[:8] + b"".join(rest[:-1] + exif + rest[-1:])  # ... IDAT, eXIf, IEND


def test_a_png_turned_by_exif_after_its_pixels_still_maps_characters_to_its_upright_pixels(tmp_path):
    """The size comes from the header without decoding (no second decode of every PNG line photo): an orientation
    stored after the pixel data is not seen there, and the line's geometry follows the loaded, upright image."""
    from edgekd_runtime.lines import line_canvas

    upright = bars_image([(50, 80), (200, 230)])  # 100 x 400, a line of two bars
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: stored turned back
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(buf, format="PNG", exif=exif)
    path = tmp_path / "late-exif.png"
    path.write_bytes(_exif_after_pixels(buf.getvalue()))
    assert _source_size(path) == (100, 400)  # the header: stored size, orientation unseen
    assert load_line_image(path).shape == upright.shape  # the loader turns it upright
    _, geom = line_canvas(path, 24, 192)
    assert geom.image_width == upright.shape[1]


# ---- 3: files this process may not read ----------------------------------------------------------------------------
def _deny(monkeypatch, path: Path, *calls: str) -> None:
    """Make `os.<call>` (and Python's `open` for "open") raise PermissionError for `path`, as for a user without
    the right to search its folder ("stat") or to read it ("open"): the tests run as root, where chmod 000 does not
    stop anything."""
    def denying(real):
        def call(p, *args, **kwargs):
            if not isinstance(p, int) and os.path.abspath(os.fspath(p)) == str(path.absolute()):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(p))
            return real(p, *args, **kwargs)
        return call

    for name in calls:
        monkeypatch.setattr(os, name, denying(getattr(os, name)))
        if name == "open":
            monkeypatch.setattr(builtins, "open", denying(builtins.open))  # Pillow's open
            monkeypatch.setattr(io, "open", denying(io.open))  # pathlib's


def _line_png(path: Path) -> Path:
    Image.fromarray(bars_image([(50, 80), (200, 230)])).save(path)
    return path


@pytest.mark.parametrize("denied", ["stat", "open"])
@pytest.mark.parametrize("load", [load_levels, load_line_image])
def test_an_unreadable_image_says_permission_denied(tmp_path, monkeypatch, denied, load):
    """'stat': an image in a folder this user cannot search (was a PermissionError traceback); 'open': an image
    without read permission (was "cannot decode ...; the file is truncated or corrupt")."""
    path = _line_png(tmp_path / "line.png")
    _deny(monkeypatch, path, denied)
    with pytest.raises(rt.ImageError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}: {DENIED}") and "truncated" not in str(e.value)


def test_cli_read_of_an_unreadable_image_in_a_folder_is_exit_2(tmp_path, monkeypatch, line_bundle):
    folder = tmp_path / "scans"
    folder.mkdir()
    path = _line_png(folder / "line.png")
    _deny(monkeypatch, path, "open")
    _exit_2(["read", str(folder), "-m", str(line_bundle)], f"{path}: {DENIED}")


@pytest.mark.parametrize("denied", ["stat", "open"])
@pytest.mark.parametrize("which, error", [("manifest.json", rt.ManifestError), ("student.onnx", rt.ModelLoadError)])
def test_an_unreadable_bundle_file_says_permission_denied(monkeypatch, line_bundle, which, error, denied):
    _deny(monkeypatch, line_bundle / which, denied)
    with pytest.raises(error, match=f"{which}: {DENIED}"):
        rt.load(line_bundle)
    _exit_2(["info", str(line_bundle)], f"{which}: {DENIED}")


@pytest.mark.parametrize("denied", ["stat", "open"])
def test_an_unreadable_model_file_says_permission_denied(monkeypatch, line_bundle, denied):
    model = line_bundle / "student.onnx"
    (line_bundle / "manifest.json").unlink()
    _deny(monkeypatch, model, denied)
    with pytest.raises(rt.ModelLoadError, match=f"student.onnx: {DENIED}"):
        rt.load(model)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_chmod_000_files_and_folders(tmp_path, line_bundle):
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    inside = _line_png(hidden / "line.png")
    unreadable = _line_png(tmp_path / "unreadable.png")
    unreadable.chmod(0)
    hidden.chmod(0)
    try:
        rec = rt.load(line_bundle)
        for path in (inside, unreadable):
            with pytest.raises(rt.ImageError, match=DENIED):
                rec.read(path)
        (line_bundle / "student.onnx").chmod(0)
        with pytest.raises(rt.ModelLoadError, match=DENIED):
            rt.load(line_bundle)
    finally:
        hidden.chmod(0o755)
        (line_bundle / "student.onnx").chmod(0o644)


# ---- 4, 5: named pipes, symbolic link loops ------------------------------------------------------------------------
def _returns_in_time(call) -> str:
    """`call()`'s ImageError/ModelLoadError message; fails (after releasing the blocked open) if it hangs."""
    out: dict[str, str] = {}

    def run() -> None:
        try:
            call()
        except rt.UserInputError as e:
            out["error"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5)
    return out.get("error", "") if not t.is_alive() else "hung"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_is_refused_not_waited_on(tmp_path, line_bundle):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    model_fifo = tmp_path / "pipe.onnx"
    os.mkfifo(model_fifo)
    try:
        for call in (lambda: load_line_image(fifo), lambda: load_levels(fifo), lambda: rt.load(model_fifo)):
            said = _returns_in_time(call)
            assert "is a named pipe (FIFO), not a regular file" in said, said
        assert _returns_in_time(lambda: rt.load(model_fifo)).startswith("ModelLoadError")
        _exit_2(["read", str(fifo), "-m", str(line_bundle)], f"{fifo}: is a named pipe (FIFO)")
        _exit_2(["bench", str(line_bundle), "--image", str(fifo), "--runs", "1", "--json"], f"{fifo}: is a named pipe")
    finally:  # release an open() still blocked on a pipe (the bug), so the run can go on
        for p in (fifo, model_fifo):
            try:
                os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


def test_a_symlink_loop_is_not_called_missing(tmp_path, line_bundle):
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    (tmp_path / "m.onnx").symlink_to("m.onnx")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    for load in (load_levels, load_line_image):
        with pytest.raises(rt.ImageError, match="a.png: a symbolic link loop .* cannot be resolved"):
            load(tmp_path / "a.png")
        with pytest.raises(rt.ImageError, match=r"gone.png: a symbolic link to .*nowhere.png, which does not exist"):
            load(tmp_path / "gone.png")
    with pytest.raises(rt.ModelLoadError, match="m.onnx: a symbolic link loop"):
        rt.load(tmp_path / "m.onnx")
    _exit_2(["read", str(tmp_path / "a.png"), "-m", str(line_bundle)], "a symbolic link loop")


def test_cli_lists_a_folder_it_cannot_search_as_one_error(tmp_path, monkeypatch):
    from edgekd_runtime.cli import expand_images
    from edgekd_runtime.errors import ImageError

    (tmp_path / "in").mkdir()

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(ImageError, match="cannot list the folder \\(Permission denied\\); check its permissions"):
        expand_images([tmp_path / "in"])
