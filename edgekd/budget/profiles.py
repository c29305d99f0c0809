"""The device-profile registry: built-in boards by name, or a JSON file made by `edgekd-rt calibrate`.

Built-in profiles (``rpi3b``, ``rpi4``, ``rpi5``, ``rpi-zero2w``, ``host``) are estimates from published CPU
figures, stored as JSON under ``edgekd_runtime/assets/profiles`` so the board reads the same numbers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from edgekd_runtime.errors import ProfileError
from edgekd_runtime.profile import DeviceProfile
from edgekd_runtime.registry import Registry

PROFILES: Registry[Callable[[], DeviceProfile]] = Registry("device profile")
PROFILES.register(DeviceProfile.rpi3b, key="rpi3b")
PROFILES.register(DeviceProfile.rpi4, key="rpi4")
PROFILES.register(DeviceProfile.rpi5, key="rpi5")
PROFILES.register(DeviceProfile.rpi_zero2w, key="rpi-zero2w")
PROFILES.register(DeviceProfile.host, key="host")


def list_profiles() -> list[str]:
    """Names of the registered board profiles."""
    return PROFILES.names()


def get_profile(name_or_path: str | os.PathLike) -> DeviceProfile:
    """A registered board by name, or a profile JSON file by path.

    Raises:
        UnknownNameError: not a known name (the message lists them). ProfileError: a bad or missing file.
    """
    s = str(name_or_path)
    if s in PROFILES:
        return PROFILES.get(s)()
    if s.endswith(".json") or os.sep in s or Path(s).exists():
        return DeviceProfile.load(s)
    return PROFILES.get(s)()  # raises UnknownNameError listing the boards


def resolve_profile(target: str | None, profile: str | os.PathLike | None,
                    default: str | None = None) -> DeviceProfile:
    """The profile a CLI means by ``--target NAME`` or ``--profile FILE`` (not both)."""
    if target and profile:
        raise ProfileError(f"give --target {target} or --profile {profile}, not both: --target names a built-in "
                           f"board estimate, --profile a JSON file calibrated on the board")
    if profile:
        return DeviceProfile.load(profile)
    if target:
        return PROFILES.get(target)()
    if default:
        return PROFILES.get(default)()
    raise ProfileError(f"no board given: pass --target ({', '.join(list_profiles())}) or --profile board.json "
                       f"(made by `edgekd-rt calibrate --out board.json` on the board)")
