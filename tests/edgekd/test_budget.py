"""Budget search: every limit is respected, the most capable fit is chosen, impossible and contradictory budgets
and malformed profiles are exit-2 errors that say what to change. `edgekd budget` is tested through the app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgekd.budget import Budget, BudgetInfeasibleError, get_profile, list_profiles, search
from edgekd.budget.search import LIMITS, capacity_of, evaluate
from edgekd_runtime.errors import BudgetError, ProfileError, UnknownNameError, UserInputError
from edgekd_runtime.profile import DeviceProfile

SMALL = ["linear-r16", "linear-r28", "mlp-w16-d1-r16", "mlp-w64-d2-r28", "mlp-w128-d2-r28", "cnn-w4-d2-r16",
         "cnn-w8-d3-r28", "cnn-w32-d3-r28", "dscnn-w8-d2-r16", "dscnn-w16-d3-r28", "dscnn-w32-d4-r28"]


@pytest.fixture(scope="module")
def rpi4():
    return get_profile("rpi4")


def test_builtin_profiles_are_labelled_estimates_with_sources():
    assert list_profiles() == ["host", "rpi-zero2w", "rpi3b", "rpi4", "rpi5"]
    for name in list_profiles():
        p = get_profile(name)
        assert p.name == name and p.estimate and len(p.sources) >= 2
        assert any("ESTIMATE" in s for s in p.sources)
        assert set(p.precisions) == {"fp32", "fp16", "int8"}
    # slower boards predict slower for the same work
    f = {"conv_macs": 2_000_000, "dwconv_macs": 100_000, "dense_macs": 50_000, "layers": 8}
    lat = [get_profile(n).estimate_latency_ms(f, "fp32") for n in ("rpi5", "rpi4", "rpi3b", "rpi-zero2w")]
    assert lat == sorted(lat) and lat[0] < lat[-1] / 4
    assert DeviceProfile.rpi_zero2w().ram_bytes == 512 << 20


def test_search_respects_every_limit(rpi4):
    budget = Budget(latency_ms=0.25, flash_bytes=40 * 1024, ram_bytes=20 * 1024, macs=1_000_000, params=30_000,
                    precision="int8")
    res = search(budget, rpi4, candidates=SMALL)
    assert res.feasible, "this budget leaves room for some students"
    for c in res.feasible:
        assert c.latency_ms <= 0.25 and c.flash_bytes <= 40 * 1024 and c.ram_bytes <= 20 * 1024
        assert c.cost.macs <= 1_000_000 and c.cost.params <= 30_000
    for c in res.candidates:
        if not c.feasible:
            assert any(c.value(k) > lim for k, lim in res.limits.items())
    # the chosen one is the most capable of the feasible ones
    assert res.chosen.capacity == max(c.capacity for c in res.feasible)
    assert res.chosen.student_id == res.feasible[0].student_id


def test_tighter_budget_never_picks_a_bigger_student(rpi4):
    loose = search(Budget(latency_ms=0.5, precision="int8"), rpi4, candidates=SMALL).chosen
    tight = search(Budget(latency_ms=0.12, precision="int8"), rpi4, candidates=SMALL).chosen
    assert tight.capacity <= loose.capacity and tight.latency_ms <= 0.12


def test_precision_changes_flash_and_ram(rpi4):
    res8 = evaluate(["mlp-w64-d2-r28"], Budget(precision="int8"), rpi4)[0]
    res32 = evaluate(["mlp-w64-d2-r28"], Budget(precision="fp32"), rpi4)[0]
    assert res8.flash_bytes < res32.flash_bytes / 3 and res8.ram_bytes * 4 == res32.ram_bytes
    assert res8.capacity == res32.capacity == capacity_of(res8.cost)


def test_impossible_budget_names_the_binding_limit_and_nearest(rpi4):
    with pytest.raises(BudgetInfeasibleError) as ei:
        search(Budget(flash_bytes=2 * 1024, precision="fp32"), rpi4, candidates=SMALL)
    e = ei.value
    assert e.binding == "flash_bytes"
    smallest = min(evaluate(SMALL, Budget(precision="fp32"), rpi4), key=lambda c: c.flash_bytes)
    assert e.nearest[0].student_id == smallest.student_id
    assert e.nearest[0].flash_bytes > 2 * 1024
    assert "--flash-kb" in str(e) and smallest.student_id in str(e)


@pytest.mark.parametrize("kwargs, match", [
    ({"latency_ms": 0.001}, "fixed cost of one invoke"),
    ({"ram_bytes": 64 << 30}, "more RAM than rpi4 has"),
    ({"latency_ms": -1.0}, "finite number > 0"),
    ({"macs": float("nan")}, "finite number > 0"),
    ({"precision": "int4"}, "int4"),
])
def test_contradictory_or_invalid_budgets(rpi4, kwargs, match):
    with pytest.raises(BudgetError, match=match):
        search(Budget(**kwargs), rpi4, candidates=SMALL)


def test_budget_round_trips_and_cli_units():
    b = Budget.from_cli(latency_ms=2.5, flash_kb=64, ram_kb=0.5, macs=1e6, params=5e4, precision="fp16")
    assert (b.flash_bytes, b.ram_bytes, b.macs, b.params) == (65536, 512, 1_000_000, 50_000)
    assert Budget.from_dict(b.to_dict()) == b
    with pytest.raises(BudgetError, match="--ram-kb -3"):
        Budget.from_cli(ram_kb=-3)
    with pytest.raises(BudgetError, match="unknown field"):
        Budget.from_dict({"latency": 3})
    assert set(LIMITS) == {"latency_ms", "flash_bytes", "ram_bytes", "macs", "params"}


def test_profile_lookup_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="rpi4"):
        get_profile("rpi9")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProfileError, match="not valid JSON"):
        get_profile(str(bad))


# ---- the CLI ----------------------------------------------------------------------------------------------------
runner = CliRunner()


def _app():
    from edgekd.cli import app

    return app


def test_cli_budget_table_json_and_plot(tmp_path):
    png = tmp_path / "b.png"
    r = runner.invoke(_app(), ["budget", "--target", "rpi4", "--latency-ms", "0.3", "--flash-kb", "64",
                               "--precision", "int8", "--plot", str(png), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["total"] == 70 and 0 < d["feasible"] < 70
    chosen = next(c for c in d["candidates"] if c["student"] == d["chosen"])
    assert chosen["feasible"] and chosen["latency_ms"] <= 0.3 and chosen["flash_bytes"] <= 64 * 1024
    assert max(c["capacity"] for c in d["candidates"] if c["feasible"]) == chosen["capacity"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and d["plot"] == str(png)

    r = runner.invoke(_app(), ["budget", "--target", "rpi4", "--latency-ms", "0.3", "--no-plot"])
    assert r.exit_code == 0 and d["chosen"] in r.stdout and "latency %" in r.stdout and "ESTIMATE" in r.stdout


def test_cli_calibrated_profile_file_is_used(tmp_path):
    prof = get_profile("rpi4").with_(name="fast-board", estimate=False, latency={
        "int8": get_profile("rpi4").coefficients("int8").scaled(0.1)})
    path = prof.save(tmp_path / "fast.json")
    r = runner.invoke(_app(), ["budget", "--profile", str(path), "--latency-ms", "0.05", "--no-plot", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["profile"]["name"] == "fast-board" and not d["profile"]["estimate"] and d["feasible"] > 0


@pytest.mark.parametrize("args, needle", [
    (["--target", "rpi4", "--macs", "100"], "macs is the binding limit"),
    (["--target", "rpi4", "--latency-ms", "0.001"], "contradictory"),
    (["--target", "rpi4", "--profile", "x.json"], "not both"),
    (["--target", "rpi9"], "known device profiles"),
    (["--target", "rpi4", "--precision", "int3"], "int3"),
    (["--flash-kb", "10"], "no board given"),
    (["--target", "rpi4", "--params", "-5"], "--params -5"),
    (["--target", "rpi-zero2w", "--ram-kb", "1048576"], "more RAM than rpi-zero2w has"),
])
def test_cli_bad_budgets_exit_2_without_traceback(args, needle):
    r = runner.invoke(_app(), ["budget", *args, "--no-plot"])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("value, needle", [
    ("1000000", "1,000,000 classes is more than edgekd supports (MAX_CLASSES = 10,000)"),
    ("100000000", "100,000,000 classes"), ("1e8", "100,000,000 classes"), ("2.5", "whole number"),
    ("inf", "whole number"),
])
def test_cli_huge_or_fractional_num_classes_is_one_line_exit_2(value, needle):
    r = runner.invoke(_app(), ["budget", "--target", "rpi4", "--num-classes", value, "--no-plot"])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: --num-classes") and r.stderr.count("\n") == 1 and needle in r.stderr


def test_search_refuses_a_class_count_over_the_maximum_before_costing(rpi4):
    def never(*a):
        raise AssertionError("costed a student with 10^8 classes")

    with pytest.raises(UserInputError, match="MAX_CLASSES"):
        search(Budget(latency_ms=1.0), rpi4, num_classes=10**8, cost_fn=never)
    assert runner.invoke(_app(), ["budget", "--target", "rpi4", "--num-classes", "1e3", "--no-plot",
                                  "--json"]).exit_code == 0  # a whole number written like --macs 1e6


@pytest.mark.parametrize("content, needle", [
    ("[1, 2]", "not an edgekd device profile"),
    ('{"format": "edgekd-device-profile", "format_version": 1, "name": "b"}', "missing field"),
    ("PROFILE", "bad latency"),
    ("\x00\x01", "not valid JSON"),
])
def test_cli_malformed_profile_files_exit_2(tmp_path, content, needle):
    path = tmp_path / "board.json"
    if content == "PROFILE":
        d = get_profile("rpi4").to_dict()
        d["latency"]["int8"]["conv_ns_per_mac"] = -1
        content, needle = json.dumps(d), "latency.int8.conv_ns_per_mac"
    path.write_text(content)
    r = runner.invoke(_app(), ["budget", "--profile", str(path), "--no-plot"])
    assert r.exit_code == 2, r.output
    assert needle in r.output and str(path) in r.output and "Traceback" not in r.output


def test_proxy_training_ranks_feasible_students_by_accuracy(rpi4):
    from edgekd.budget.proxy import proxy_ranker

    cands = ["linear-r16", "mlp-w16-d1-r16", "mlp-w32-d1-r16"]
    res = search(Budget(latency_ms=1.0, precision="int8"), rpi4, candidates=cands,
                 proxy=proxy_ranker(epochs=1, top_k=2, limit_per_class=30))
    assert res.ranked_by == "proxy_accuracy"
    trained = [c for c in res.candidates if c.proxy_accuracy is not None]
    assert len(trained) == 2 and all(0.0 <= c.proxy_accuracy <= 1.0 for c in trained)
    # the two most capable were trained, and the chosen one is the better of them
    assert {c.student_id for c in trained} == {"mlp-w32-d1-r16", "mlp-w16-d1-r16"}
    assert res.chosen.proxy_accuracy == max(c.proxy_accuracy for c in trained)
    assert res.chosen.proxy_accuracy > 0.2  # learned something in one epoch (chance is 0.1)
    with pytest.raises(UserInputError, match="proxy-epochs"):
        proxy_ranker(epochs=0)


def test_cli_unwritable_plot_path_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = runner.invoke(_app(), ["budget", "--target", "rpi4", "--plot", str(blocker / "sub" / "b.png")])
    assert r.exit_code == 2 and "cannot write the plot" in r.output and "--no-plot" in r.output


def test_shipped_board_profiles_are_what_the_generator_makes():
    """The Pi estimates are the host's coefficients x a documented slowdown, not hand-edited numbers."""
    from edgekd.budget.boards import BOARDS, boards_from_host

    made = {p.name: p for p in boards_from_host(DeviceProfile.host())}
    for key, (*_, factor, _src) in BOARDS.items():
        name = key.replace("_", "-")
        assert get_profile(name) == made[name]
        assert get_profile(name).coefficients("int8").conv_ns_per_position == pytest.approx(
            DeviceProfile.host().coefficients("int8").conv_ns_per_position * factor)


def test_search_holds_prediction_plus_the_calibration_margin_against_the_latency_limit(rpi4):
    """A student whose prediction fits but whose prediction + margin does not is refused, and the search says
    what margin its latency figures carry."""
    plain = search(Budget(latency_ms=0.5, precision="int8"), rpi4, candidates=SMALL)
    assert not any("margin" in n for n in plain.notes)
    chosen = plain.chosen
    assert chosen.bound_ms == chosen.latency_ms  # no margin recorded: the bound is the prediction
    # a limit between the chosen student's prediction and its prediction + 20 %
    limit = chosen.latency_ms * 1.1
    margined = rpi4.with_(latency_margin_pct={"int8": 20.0})
    res = search(Budget(latency_ms=limit, precision="int8"), margined, candidates=SMALL)
    assert chosen.student_id not in [c.student_id for c in res.feasible]
    by_id = {c.student_id: c for c in res.candidates}
    assert by_id[chosen.student_id].latency_ms == pytest.approx(chosen.latency_ms)  # the prediction is unchanged
    assert by_id[chosen.student_id].bound_ms == pytest.approx(1.2 * chosen.latency_ms)
    assert by_id[chosen.student_id].usage["latency_ms"] == pytest.approx(1.2 / 1.1)
    for c in res.feasible:
        assert c.latency_ms * 1.2 <= limit * (1 + 1e-12)
    assert ("latency predictions carry a +20.0 % margin from the calibration fit's residuals (rpi4, int8); a "
            "student fits a latency limit when its prediction plus the margin does") in res.notes
    d = res.to_dict()
    assert d["candidates"][0]["latency_bound_ms"] == pytest.approx(1.2 * d["candidates"][0]["latency_ms"], rel=1e-4)
    # the margin is per precision: fp32 has none here
    assert not any("margin" in n for n in search(Budget(latency_ms=limit, precision="fp32"), margined,
                                                  candidates=SMALL).notes)


def test_cli_budget_prints_the_margin_of_a_calibrated_profile(tmp_path):
    prof = DeviceProfile.rpi4().with_(name="my-board", estimate=False, latency_margin_pct={"int8": 14.4})
    path = prof.save(tmp_path / "board.json")
    r = runner.invoke(_app(), ["budget", "--profile", str(path), "--latency-ms", "0.5", "--precision", "int8",
                               "--no-plot"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "latency predictions carry a +14.4 % margin from the calibration fit's residuals" in text
    d = json.loads(runner.invoke(_app(), ["budget", "--profile", str(path), "--latency-ms", "0.5", "--precision",
                                          "int8", "--no-plot", "--json"]).stdout)
    chosen = next(c for c in d["candidates"] if c["student"] == d["chosen"])
    assert chosen["latency_bound_ms"] <= 0.5 and f"{chosen['latency_bound_ms']:.4f} ms with the margin" in text


def test_the_run_report_lists_the_search_notes_with_the_margin(tmp_path):
    """build_report copies the search's notes into report.json's budget block; the rendered report lists them."""
    from edgekd.pipeline.results import _budget_summary
    from edgekd.report.render import render_report
    from edgekd.report.schema import Report, Target

    prof = DeviceProfile.rpi4().with_(name="my-board", estimate=False, latency_margin_pct={"int8": 14.4})
    res = search(Budget(latency_ms=0.5, precision="int8"), prof, candidates=SMALL)
    summary = _budget_summary(res.to_dict())  # what build_report writes from budget.json
    assert summary.notes == list(res.notes) and summary.chosen == res.chosen.student_id
    rep = Report(target=Target(prof.to_dict(), res.budget.to_dict(), "int8"), budget=summary)
    (tmp_path / "report.json").write_text(json.dumps(rep.to_dict()))
    md = render_report(tmp_path).read_text()
    assert "## Budget" in md
    assert ("- latency predictions carry a +14.4 % margin from the calibration fit's residuals (my-board, int8)"
            in md)


def test_regenerated_builtin_profiles_carry_the_calibration_margin():
    """`python -m edgekd.budget.boards calibrated.json`: host and the Pi estimates keep the calibration's margins
    (relative, so a board's slowdown factor leaves them unchanged; fp16 runs on the fp32 kernels)."""
    from edgekd.budget.boards import boards_from_host, host_from_calibration

    rpi4 = DeviceProfile.rpi4()
    cal = rpi4.with_(name="lab", estimate=False, latency={p: rpi4.coefficients(p) for p in ("fp32", "int8")},
                     latency_margin_pct={"fp32": 30.0, "int8": 12.5}, calibration={"cpu": "AMD EPYC", "fit": {}})
    host = host_from_calibration(cal)
    assert host.latency_margin_pct == {"fp32": 30.0, "fp16": 30.0, "int8": 12.5}
    assert host.cpu == "x86-64 (measured on AMD EPYC)"
    assert all(b.latency_margin_pct == host.latency_margin_pct for b in boards_from_host(host))
