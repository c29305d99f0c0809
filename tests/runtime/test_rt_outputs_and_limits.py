"""Bad input a probe found (2026-12): `edgekd-rt calibrate --out` paths checked before any measuring and never
overwriting a file edgekd did not write; atomic writes keep the mode of what they replace; manifest values of the
wrong JSON type (or a line canvas too large to allocate) refused at load; `bench`'s runs/warm-up/batch bounded."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from rt_support import make_line_onnx
from typer.testing import CliRunner

import edgekd_runtime as rt
from edgekd_runtime.atomic import atomic_write_json, atomic_write_text
from edgekd_runtime.bench import MAX_BATCH, MAX_RUNS
from edgekd_runtime.cli import app
from edgekd_runtime.manifest import LINE_TASK, Artifact, InputSpec, LinesSpec, Manifest
from edgekd_runtime.profile import DeviceProfile

runner = CliRunner()


# ---- calibrate --out ---------------------------------------------------------------------------------------------
@pytest.fixture()
def no_measuring(monkeypatch):
    """calibrate() fails the test if it is reached: a bad --out must be refused before any measuring."""
    import edgekd_runtime.calibrate as cal

    def measured(*a, **k):
        raise AssertionError("the calibration suite ran before --out was checked")

    monkeypatch.setattr(cal, "calibrate", measured)


@pytest.fixture()
def quick_calibrate(monkeypatch):
    """calibrate() returns the built-in host profile at once (renamed), so a test can check what is written."""
    import edgekd_runtime.calibrate as cal

    monkeypatch.setattr(cal, "calibrate", lambda config, name="b", **k: DeviceProfile.host().with_(name=name))


def _calibrate(out: Path | str):
    return runner.invoke(app, ["calibrate", "--out", str(out), "--backend", "onnx", "--precision", "fp32",
                               "--threads", "1", "--json"])


def _refused(r, *needles: str) -> None:
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in r.output, r.output


def test_calibrate_refuses_an_out_under_a_file_or_an_unwritable_folder_before_measuring(tmp_path, monkeypatch,
                                                                                       no_measuring):
    (tmp_path / "good.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    _refused(_calibrate(tmp_path / "good.png" / "p.json"), "good.png is a file, not a directory")
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == ro else real_access(p, mode, **k))
    _refused(_calibrate(ro / "p.json"), f"cannot write in {ro}")
    _refused(_calibrate(ro / "no" / "such" / "p.json"), f"cannot write in {ro}")  # a folder it would have to make
    assert sorted(p.name for p in ro.iterdir()) == []


def test_calibrate_never_overwrites_a_file_that_is_not_a_profile(tmp_path, no_measuring):
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"\x89PNG\r\n\x1a\n not json")
    victim.chmod(0o644)
    _refused(_calibrate(victim), "is not an edgekd device profile", "victim-profile.json")
    (tmp_path / "link.json").symlink_to(victim)
    _refused(_calibrate(tmp_path / "link.json"), f"a link to {victim}", "not an edgekd device profile")
    (tmp_path / "other.json").write_text(json.dumps({"format": "edgekd-bundle"}))
    _refused(_calibrate(tmp_path / "other.json"), "not an edgekd device profile")
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nowhere.json")
    _refused(_calibrate(tmp_path / "dangling.json"), "which does not exist")
    assert victim.read_bytes() == b"\x89PNG\r\n\x1a\n not json" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert (tmp_path / "link.json").is_symlink() and not (tmp_path / "nowhere.json").exists()


def test_calibrate_replaces_a_profile_keeping_its_mode_and_writes_through_a_link(tmp_path, quick_calibrate):
    board = tmp_path / "board.json"
    DeviceProfile.host().with_(name="old").save(board)
    board.chmod(0o640)
    r = _calibrate(board)
    assert r.exit_code == 0, r.output
    assert DeviceProfile.load(board).name == "board" and stat.S_IMODE(board.stat().st_mode) == 0o640
    link = tmp_path / "current.json"
    link.symlink_to(board)
    r = _calibrate(link)
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and os.readlink(link) == str(board)  # the link stays, its target is the new profile
    assert DeviceProfile.load(board).name == "current" and stat.S_IMODE(board.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.json", "current.json"]  # no temporary left


def test_atomic_writes_keep_the_mode_they_replace_and_new_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        new = tmp_path / "new.json"
        atomic_write_json(new, {"a": 1})
        assert stat.S_IMODE(new.stat().st_mode) == 0o644  # what open() gives, not mkstemp's 0600
        shared = tmp_path / "shared.txt"
        shared.write_text("old")
        shared.chmod(0o664)
        atomic_write_text(shared, "new")
        assert shared.read_text() == "new" and stat.S_IMODE(shared.stat().st_mode) == 0o664
    finally:
        os.umask(old)


# ---- manifest values of the wrong type ------------------------------------------------------------------------
SPEC = LinesSpec(charset="ab", height=24, width=96, max_width=384, dynamic_formats=("onnx",), max_len=12)
CONFIDENCE = {"temperature": 1.2, "fitted_on": "val",
              "threshold_99": {"threshold": 0.97, "coverage": 0.25, "accuracy": 0.99}, "threshold_95": None}


@pytest.fixture(scope="module")
def line_bundle(tmp_path_factory) -> Path:
    """A line bundle with what export writes and `info` reads: parity, accuracy and extra.confidence."""
    d = tmp_path_factory.mktemp("probe_line_bundle")
    make_line_onnx(d / "student.onnx", len(SPEC.charset) + 1)
    m = Manifest(name="ctc-hand", labels=list(SPEC.charset), input=InputSpec("input", (1, 1, 24, SPEC.width)),
                 task=LINE_TASK, lines=SPEC, extra={"confidence": CONFIDENCE})
    m.artifacts = [Artifact.from_file(d, "student.onnx", "fp32", parity={"passed": True, "cer": 0.01},
                                      accuracy=0.9, extra={"opset": 18})]
    m.save(d)
    return d


def _art(key, value):
    return lambda d: d["artifacts"][0].update({key: value})


BAD_TYPES = {
    "sha256 number": (_art("sha256", 5), "artifacts[0].sha256 is 5; expected a string"),
    "path number": (_art("path", 5), "artifacts[0].path is 5; expected a string"),
    "size_bytes text": (_art("size_bytes", "big"), "artifacts[0].size_bytes is 'big'; expected an integer"),
    "size_bytes negative": (_art("size_bytes", -1), "size_bytes -1"),
    "parity text": (_art("parity", "bad"), "artifacts[0].parity is 'bad'; expected an object or null"),
    "parity.cer text": (lambda d: d["artifacts"][0]["parity"].update(cer="x"), "artifacts[0].parity.cer is 'x'"),
    "accuracy text": (_art("accuracy", "high"), "artifacts[0].accuracy is 'high'; expected a number or null"),
    "artifact extra text": (_art("extra", "x"), "artifacts[0].extra is 'x'; expected an object"),
    "artifacts text": (lambda d: d.update(artifacts="student.onnx"), "artifacts must be a list of objects"),
    "extra text": (lambda d: d.update(extra="garbage"), "extra is 'garbage'; expected an object"),
    "extra.confidence text": (lambda d: d["extra"].update(confidence="x"), "extra.confidence is 'x'; expected an "
                                                                           "object or null"),
    "threshold text": (lambda d: d["extra"]["confidence"].update(threshold_99="x"),
                       "extra.confidence.threshold_99 is 'x'"),
    "threshold lacks coverage": (lambda d: d["extra"]["confidence"].update(threshold_95={"threshold": 0.5}),
                                 "extra.confidence.threshold_95 lacks ['coverage']"),
    "max_width 1e12": (lambda d: d["lines"].update(max_width=10**12), "lines.max_width 1000000000000 is more than"),
    "height 1e9": (lambda d: d["lines"].update(height=10**9), "lines.height 1000000000 is more than"),
    "path out of the bundle": (_art("path", "../../../etc/passwd"), "artifacts[0].path '../../../etc/passwd' "
                                                                     "leaves the bundle"),
    "unknown task": (lambda d: d.update(task="bogus"), "task 'bogus' is not one the runtime knows"),
}


@pytest.mark.parametrize("case", list(BAD_TYPES))
def test_manifest_values_of_the_wrong_type_are_refused_at_load(line_bundle, tmp_path, case):
    edit, message = BAD_TYPES[case]
    bundle = tmp_path / "b"
    shutil.copytree(line_bundle, bundle)
    d = json.loads((bundle / "manifest.json").read_text())
    edit(d)
    (bundle / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(rt.ManifestError, match="manifest.json") as e:
        rt.load(bundle, backend="onnx")
    assert message in str(e.value)
    for args in (["info", str(bundle)], ["info", str(bundle), "--json"],
                 ["read", str(bundle / "student.onnx"), "--model", str(bundle), "--backend", "onnx"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and r.output.startswith("error: ") and message in r.output, (args, r.output)


def test_well_typed_manifest_values_and_nulls_still_load(line_bundle, tmp_path):
    r = runner.invoke(app, ["info", str(line_bundle)])
    assert r.exit_code == 0 and "reject below 0.970" in r.stdout and "parity ok" in r.stdout, r.output
    bundle = tmp_path / "b"
    shutil.copytree(line_bundle, bundle)
    d = json.loads((bundle / "manifest.json").read_text())
    d["artifacts"][0].update(parity=None, accuracy=None, budget_ok=None, extra=None)
    d["extra"] = None
    d["lines"]["max_width"] = 32_768  # the largest canvas the runtime takes
    (bundle / "manifest.json").write_text(json.dumps(d))
    m = rt.load(bundle).manifest
    assert m.extra == {} and m.artifacts[0].extra == {} and m.lines.max_width == 32_768
    assert runner.invoke(app, ["info", str(bundle)]).exit_code == 0


# ---- bench bounds -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--runs", "99999999999999999999"], ["--runs", "1099511627776"],
                                  ["--runs", str(MAX_RUNS + 1)], ["--warmup", str(MAX_RUNS + 1)],
                                  ["--batch", str(MAX_BATCH + 1)], ["--batch", "100000"]])
def test_bench_counts_beyond_the_limits_exit_2_before_loading(tmp_path, args):
    r = runner.invoke(app, ["bench", str(tmp_path / "not-loaded"), *args])
    assert r.exit_code == 2 and "Invalid value" in r.output and "Traceback" not in r.output, r.output


def test_bench_help_states_the_limits():
    out = runner.invoke(app, ["bench", "--help"], terminal_width=200).output
    assert f"1<=x<={MAX_RUNS}" in out and f"0<=x<={MAX_RUNS}" in out and f"1<=x<={MAX_BATCH}" in out, out


@pytest.mark.parametrize("kw, needle", [({"runs": MAX_RUNS + 1}, "runs="), ({"warmup": MAX_RUNS + 1}, "warmup="),
                                        ({"batch": MAX_BATCH + 1}, "batch=")])
def test_benchmark_api_has_the_same_limits(line_bundle, kw, needle):
    from edgekd_runtime.bench import run_image_benchmark

    rec = rt.load(line_bundle)
    with pytest.raises(rt.UserInputError, match=needle):
        rec.benchmark(**{"runs": 1, "warmup": 0, **kw})
    if "batch" not in kw:
        with pytest.raises(rt.UserInputError, match=needle):
            run_image_benchmark(rec, "unused.png", **{"runs": 1, "warmup": 0, **kw})
