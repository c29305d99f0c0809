"""`edgekd budget --task lines` checks --line-height / --line-width with the lines config's rule (LineSpec) and
the cost model's widest line before any student is built: no torch error, no huge allocation."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from edgekd.cli import app


@pytest.fixture()
def no_costing(monkeypatch):
    import edgekd.budget.cost as cost

    monkeypatch.setattr(cost, "student_cost", lambda *a, **k: pytest.fail("a student was costed"))


@pytest.mark.parametrize("flags, needle", [
    (["--line-width", "-192"], "line height must be 8..64 px"),
    (["--line-width", "3"], "a multiple of 4 (got height 24, width 3)"),
    (["--line-height", "0"], "line height must be 8..64 px"),
    (["--line-height", "100"], "line height must be 8..64 px"),
    (["--line-width", "1000000000"], "lines are costed up to 4096 px wide"),
])
def test_a_line_size_no_student_takes_is_refused_before_costing(tmp_path, no_costing, flags, needle):
    r = CliRunner().invoke(app, ["budget", "--target", "rpi4", "--task", "lines", "--plot", str(tmp_path / "p.png"),
                                 *flags])
    assert r.exit_code == 2 and "Traceback" not in r.output, (r.output, r.exception)
    errors = [line for line in r.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0] and "--line-width" in errors[0], r.output
    assert "student id" not in errors[0] and not (tmp_path / "p.png").exists()


def test_the_rule_is_the_lines_config_s():
    from edgekd.cli.budget_cmd import check_line_size
    from edgekd.data.lines import LineSpec
    from edgekd_runtime.errors import UserInputError

    check_line_size(24, 192)
    check_line_size(8, 8)  # the smallest LineSpec takes (no composed digit strings to fit)
    for h, w in ((24, 190), (7, 192), (24, 20)):
        with pytest.raises(UserInputError):
            LineSpec(source="folder", height=h, width=w)
        with pytest.raises(UserInputError):
            check_line_size(h, w)
