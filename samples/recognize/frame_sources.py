"""Where images come from: files, a folder (optionally watched for new files), or a camera.

Each source yields `Frame`s lazily, so a watched folder or a camera can run until stopped. Cameras use
picamera2 on a Raspberry Pi when it is installed, else OpenCV's `VideoCapture`; both are optional imports.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from edgekd_runtime.errors import UserInputError
from edgekd_runtime.images import IMAGE_SUFFIXES, has_image_suffix


@dataclass(frozen=True)
class Frame:
    """One image to recognise: `image` is a path or an (H, W) uint8 array; `source` names it in the output."""

    source: str
    image: Any
    from_camera: bool = False


def _is_image(path: Path) -> bool:
    return has_image_suffix(path) and not path.name.startswith(".")


def _list_folder(folder: Path, recursive: bool) -> list[Path]:
    paths = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in paths if p.is_file() and _is_image(p))


def file_frames(inputs: Iterable[Path], recursive: bool = False) -> Iterator[Frame]:
    """Files as given, folders expanded to their image files in name order.

    Raises:
        UserInputError: an input path that does not exist, or a folder with no images in it.
    """
    inputs = list(inputs)
    for p in inputs:  # check everything before the first prediction: fail fast on a typo
        if not p.exists():
            raise UserInputError(f"{p}: no such file or folder")
    for p in inputs:
        if p.is_dir():
            found = _list_folder(p, recursive)
            if not found:
                raise UserInputError(f"{p}: folder has no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...)"
                                     + ("" if recursive else "; use --recursive for sub-folders"))
            yield from (Frame(str(f), f) for f in found)
        else:
            yield Frame(str(p), p)


def _snapshot(folder: Path, recursive: bool) -> dict[Path, tuple[int, int]]:
    """{image path: (size in bytes, mtime in ns)} for the images in `folder` now."""
    sigs = {}
    for p in _list_folder(folder, recursive):
        try:
            st = p.stat()
        except OSError:  # removed between listing and stat
            continue
        sigs[p] = (st.st_size, st.st_mtime_ns)
    return sigs


def watch_frames(folder: Path, interval_s: float = 0.5, include_existing: bool = True,
                 recursive: bool = False, stop_at: float | None = None) -> Iterator[Frame]:
    """Images in `folder`, then each new or rewritten image as it appears, until the caller stops or the
    `time.monotonic()` deadline `stop_at` passes.

    The folder is listed when this is called (not at the first frame), so "existing" means existing now,
    even when loading the model takes a while. A new file is yielded once its size and modification time
    are the same on two polls in a row, so a file still being copied is not read half-written.
    """
    if not folder.is_dir():
        raise UserInputError(f"{folder}: --watch needs a folder")
    return _watch(folder, _snapshot(folder, recursive), interval_s, include_existing, recursive, stop_at)


def _watch(folder: Path, initial: dict[Path, tuple[int, int]], interval_s: float, include_existing: bool,
           recursive: bool, stop_at: float | None) -> Iterator[Frame]:
    done = dict(initial)  # reported, or present before the watch started and not wanted
    if include_existing:
        yield from (Frame(str(p), p) for p in initial)
    candidates: dict[Path, tuple[int, int]] = {}
    while stop_at is None or time.monotonic() < stop_at:
        for p, sig in _snapshot(folder, recursive).items():
            if done.get(p) == sig:
                continue
            if candidates.get(p) == sig and sig[0] > 0:
                done[p] = sig
                candidates.pop(p, None)
                yield Frame(str(p), p)
            else:
                candidates[p] = sig  # new or still changing: look again on the next poll
        time.sleep(interval_s)


def _to_gray(frame: Any, crop: float, square: bool = True) -> Any:
    """(H, W, 3) or (H, W) uint8 -> uint8 gray: the central square (S, S) scaled by `crop` (0 < crop <= 1), or
    with `square=False` the central (H * crop, W * crop) rectangle (a text line is wide)."""
    import numpy as np

    arr = np.asarray(frame)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=2)
    h, w = arr.shape[:2]
    side = max(1, int(min(h, w) * crop))
    keep_h, keep_w = (side, side) if square else (max(1, int(h * crop)), max(1, int(w * crop)))
    top, left = (h - keep_h) // 2, (w - keep_w) // 2
    return np.ascontiguousarray(arr[top:top + keep_h, left:left + keep_w]).astype(np.uint8)


def camera_frames(camera: str, every_s: float = 0.5, crop: float = 1.0,
                  stop_at: float | None = None, square: bool = True) -> Iterator[Frame]:
    """Frames from `camera`: "picamera2", an OpenCV device index ("0"), a device path or "auto" (picamera2
    when installed, else OpenCV device 0). One frame every `every_s` seconds, gray, centre-cropped to a square
    (digits) or, with `square=False`, to the frame's own shape scaled by `crop` (text lines).

    Raises:
        UserInputError: no camera library installed, or the camera cannot be opened or read.
    """
    if not 0.0 < crop <= 1.0:
        raise UserInputError(f"--crop {crop} must be in (0, 1]")
    use_picamera = camera == "picamera2"
    if camera == "auto":
        try:
            import picamera2  # noqa: F401

            use_picamera = True
        except ImportError:
            camera = "0"
    grab = _picamera_grabber() if use_picamera else _opencv_grabber(camera)
    n = 0
    try:
        while stop_at is None or time.monotonic() < stop_at:
            t0 = time.monotonic()
            frame = grab.read()
            yield Frame(f"camera:{n}", _to_gray(frame, crop, square), from_camera=True)
            n += 1
            time.sleep(max(0.0, every_s - (time.monotonic() - t0)))
    finally:
        grab.close()


class _OpenCVGrabber:
    def __init__(self, capture: Any, name: str) -> None:
        self.capture, self.name = capture, name

    def read(self) -> Any:
        ok, frame = self.capture.read()
        if not ok or frame is None:
            raise UserInputError(f"camera {self.name}: could not read a frame (unplugged, or in use by another "
                                 f"program?)")
        return frame[..., ::-1] if frame.ndim == 3 else frame  # BGR -> RGB

    def close(self) -> None:
        self.capture.release()


def _opencv_grabber(camera: str) -> _OpenCVGrabber:
    try:
        import cv2
    except ImportError:
        raise UserInputError("camera input needs OpenCV: `pip install opencv-python-headless` (or on a Pi, "
                             "`sudo apt install python3-picamera2` and --camera picamera2)") from None
    device: int | str = int(camera) if camera.isdigit() else camera
    capture = cv2.VideoCapture(device)
    if not capture.isOpened():
        capture.release()
        raise UserInputError(f"camera {camera!r}: OpenCV cannot open it; list devices with "
                             f"`ls /dev/video*` and pass --camera N")
    return _OpenCVGrabber(capture, camera)


class _PicameraGrabber:
    def __init__(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise UserInputError("--camera picamera2 needs picamera2: `sudo apt install python3-picamera2`, "
                                 "or use an OpenCV device index such as --camera 0") from None
        try:
            self.cam = Picamera2()
            self.cam.configure(self.cam.create_still_configuration(main={"format": "RGB888",
                                                                         "size": (640, 480)}))
            self.cam.start()
        except Exception as e:  # picamera2 raises plain RuntimeError/IndexError when no camera is attached
            raise UserInputError(f"picamera2 cannot start the camera ({e}); check the ribbon cable and "
                                 f"`rpicam-hello --list-cameras`") from None

    def read(self) -> Any:
        return self.cam.capture_array()

    def close(self) -> None:
        self.cam.stop()


def _picamera_grabber() -> _PicameraGrabber:
    return _PicameraGrabber()


def for_each_frame(frames: Iterable[Frame], handle: Callable[[Frame], None], done: Callable[[], bool]) -> None:
    """Hand every frame to `handle` until `done()` (--limit) or Ctrl-C, which ends a watch or a camera run and
    still lets the caller print its summary; the source (a camera) is closed whatever happens."""
    try:
        for frame in frames:
            handle(frame)
            sys.stdout.flush()
            if done():
                break
    except KeyboardInterrupt:
        pass
    finally:
        close = getattr(frames, "close", None)
        if close:
            close()
