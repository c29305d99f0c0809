"""Ctrl-C (SIGINT) during `edgekd run`, `teacher train` or `distill` exits 130 and says how to go on: re-run the
same command (run), with --resume once an epoch has finished (teacher train, distill)."""

from __future__ import annotations

from typer.testing import CliRunner

from edgekd.cli import app

SMALL = "data: {limit_per_class: 20}\n"


def _interrupted(args) -> str:
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 130 and "Traceback" not in r.output, (r.output, r.exception)
    return r.output.strip()


def test_run_interrupted_says_re_run_to_resume(tmp_path, monkeypatch):
    import edgekd.pipeline

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(edgekd.pipeline, "run_pipeline", interrupt)
    out = _interrupted(["run", "--quick", "--out", tmp_path / "run"])
    assert out.startswith("interrupted; ") and "re-run the same command to resume" in out


def test_teacher_train_interrupted_says_resume_with_the_flag_once_an_epoch_is_saved(tmp_path, monkeypatch):
    import edgekd.train.pipeline

    def interrupt_after_an_epoch(splits, cfg, out_dir, **k):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "last.pt").write_bytes(b"")
        raise KeyboardInterrupt

    (tmp_path / "c.yaml").write_text(SMALL)
    monkeypatch.setattr(edgekd.train.pipeline, "train_teacher", interrupt_after_an_epoch)
    out = _interrupted(["teacher", "train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "t"])
    assert "re-run the same command with --resume" in out and str(tmp_path / "t" / "last.pt") in out


def test_distill_interrupted_before_an_epoch_says_start_again(tmp_path, monkeypatch):
    import edgekd.train.pipeline

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    (tmp_path / "c.yaml").write_text(SMALL)
    monkeypatch.setattr(edgekd.train.pipeline, "distill", interrupt)
    out = _interrupted(["distill", "--loss", "none", "--student", "linear-r16", "--config", tmp_path / "c.yaml",
                        "--out", tmp_path / "d"])
    assert "no epoch had finished: re-run the same command to start again" in out
