"""The one time stamp and the one version stamp (`edgekd_runtime.sysinfo`) that manifests, measured profiles and
run reports carry."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import numpy as np

from edgekd_runtime.sysinfo import package_versions, utc_timestamp


def test_utc_timestamp_is_iso_8601_to_the_second_with_a_z():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    stamp = utc_timestamp()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), stamp
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert 0 <= (parsed - before).total_seconds() <= 5


def test_package_versions_lists_what_is_installed_only():
    assert package_versions(["numpy", "edgekd-no-such-distribution"]) == {"numpy": np.__version__}
    assert package_versions([]) == {}
