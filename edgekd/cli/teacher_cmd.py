"""`edgekd teacher train` (train a built-in teacher) and `edgekd teacher list`.

Also home of the option helpers that `edgekd distill` shares (data/train overrides -> RunConfig).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

from edgekd_runtime.cli_support import handle_errors, print_json


def data_overrides(source: Optional[str], data_path: Optional[str], data_seed: Optional[int]) -> dict[str, Any]:
    return {"source": source, "path": data_path, "seed": data_seed}


TASK_HELP = "digits (one digit per image) or lines (a string per image, CTC); default: digits or the config's."


def run_options() -> dict[str, Any]:
    """The task, config, data, training and output flags that `edgekd teacher train` and `edgekd distill` share
    (parameter name -> typer.Option; --epochs is each command's own: their defaults differ)."""
    return {
        "task": typer.Option(None, "--task", help=TASK_HELP),
        "config": typer.Option(None, "--config", help="YAML config; flags override it."),
        "source": typer.Option(None, "--data", help="Data source (embedded, idx, folder, npz)."),
        "data_path": typer.Option(None, "--data-path", help="File/directory for the data source."),
        "data_seed": typer.Option(None, "--data-seed", help="Split seed."),
        "batch_size": typer.Option(None, help="Global batch size."),
        "lr": typer.Option(None, help="Peak learning rate."),
        "device": typer.Option(None, help="auto, cpu, cuda, cuda:N, mps."),
        "amp": typer.Option(None, help="auto, bf16, fp16, off."),
        "seed": typer.Option(None, help="Training seed."),
        "patience": typer.Option(None, help="Early stopping patience in epochs."),
        "compile_": typer.Option(False, "--compile", help="torch.compile the model."),
        "threads": typer.Option(None, help="CPU threads."),
        "resume": typer.Option(False, "--resume", help="Continue OUT/last.pt exactly."),
        "quiet": typer.Option(False, "--quiet", help="No progress bar."),
        "json_out": typer.Option(False, "--json", help="Machine-readable output."),
    }


RUN_OPTS = run_options()


def task_overrides(task: Optional[str], source: Optional[str], data_path: Optional[str],
                   data_seed: Optional[int]) -> dict[str, Any]:
    """The task and the --data flags, which go to the `lines` section for --task lines and to `data` otherwise."""
    data = data_overrides(source, data_path, data_seed)
    return {"task": task, "lines": data} if task == "lines" else {"task": task, "data": data}


def resolve_task_config(config: Optional[Path], overrides: dict[str, Any], base: Any = None,
                        command: str = "edgekd distill"):
    """YAML + CLI overrides -> RunConfig, with the --data flags routed by the resolved task (the task may come
    from the file) and the task's own defaults (the line KD loss) under both. `command` says which training
    stage's section (`teacher_train` / `student_train`) goes on top of `train`; other commands' keys are ignored."""
    from dataclasses import replace

    from edgekd.config import RunConfig, read_yaml, resolve_config
    from edgekd.train.line_pipeline import DEFAULT_LINE_ALPHA, DEFAULT_LINE_LOSS, DEFAULT_LINE_TEMPERATURE

    file_values = read_yaml(config) if config else None
    task = config_task(file_values, overrides)
    if task == "lines" and "data" in overrides:
        overrides = {**overrides, "lines": overrides.pop("data")}
    stage = "teacher" if command == "edgekd teacher train" else "student"
    base = base or RunConfig(train=_run_student_train(task))
    if task == "lines":
        base = replace(base, task="lines", distill=replace(base.distill, loss=DEFAULT_LINE_LOSS,
                                                           temperature=DEFAULT_LINE_TEMPERATURE,
                                                           alpha=DEFAULT_LINE_ALPHA))
    return resolve_config(file_values, overrides, base=base, stage=stage, path=config)


def _run_student_train(task: str) -> Any:
    """The training settings `edgekd run` gives this task's student, the defaults of `edgekd distill` (one home: a
    student distilled by hand trains as long as the run's, 60 epochs for digits and 40 for lines). `edgekd teacher
    train` passes its own base."""
    from edgekd.pipeline.config import PipelineConfig
    from edgekd.pipeline.tasks import line_defaults

    return (line_defaults() if task == "lines" else PipelineConfig()).student_train


def config_task(file_values: dict[str, Any] | None, overrides: dict[str, Any]) -> str:
    """The task a command runs: --task, else the YAML's `task`, else digits."""
    return overrides.get("task") or (file_values or {}).get("task") or "digits"


def train_overrides(epochs, batch_size, lr, device, amp, seed, patience, compile_, threads) -> dict[str, Any]:
    return {"epochs": epochs, "batch_size": batch_size, "lr": lr, "device": device, "amp": amp, "seed": seed,
            "patience": patience, "compile": compile_ or None, "num_threads": threads}


#: What `teacher train` and `distill` write in their --out (the checkpoint is teacher.pt or student.pt).
TRAIN_OUTPUTS = ("last.pt", "config.yaml", "metrics.jsonl", "teacher.pt", "student.pt")


def check_out(out: Path, resume: bool) -> None:
    """Refuse an --out that cannot be written, or, when not resuming, one that holds any file training writes
    (TRAIN_OUTPUTS: an earlier run, or files of the user's that would be overwritten). Nothing is created."""
    from edgekd_runtime.atomic import check_writable
    from edgekd_runtime.errors import UserInputError

    check_writable(out, "--out", directory=True)
    taken = [n for n in TRAIN_OUTPUTS if (out / n).exists()] if not resume else []
    if taken:
        raise UserInputError(f"{out} already holds {', '.join(taken)}, which this command writes: pass --resume to "
                             f"continue the run there{'' if 'last.pt' in taken else ' (it has no last.pt)'}, or pick "
                             f"another --out (edgekd does not overwrite files it did not write)")


def prepare_out(out: Path, resume: bool) -> None:
    check_out(out, resume)
    out.mkdir(parents=True, exist_ok=True)


@contextmanager
def resumable(hint: Callable[[], str]) -> Iterator[None]:
    """Ctrl-C (SIGINT) during resumable work: `interrupted; <hint()>` on stderr (how to resume), exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        typer.echo(f"interrupted; {hint()}", err=True)
        raise typer.Exit(130) from None


def resume_hint(out: Path) -> str:
    """How to go on after an interrupted `teacher train` / `distill` in `out` (--resume needs a finished epoch)."""
    if (out / "last.pt").is_file():
        return f"re-run the same command with --resume to continue from {out / 'last.pt'}"
    return "no epoch had finished: re-run the same command to start again"


def report(metrics: dict[str, Any], title: str, json_out: bool) -> None:
    if json_out:
        print_json(metrics)
        return
    from rich.console import Console

    con = Console()
    con.print(f"[bold]{title}[/bold]")
    for k in ("test_acc", "best_val_acc", "test_cer", "test_string_acc", "best_val_cer", "best_epoch", "weights",
              "epochs_run", "params", "teacher_cache_s", "checkpoint"):
        if k in metrics and metrics[k] is not None:
            v = metrics[k]
            con.print(f"  {k:14s} {v:.4f}" if isinstance(v, float) else f"  {k:14s} {v}")


def register(app: typer.Typer) -> None:
    teacher_app = typer.Typer(help="Train or list teachers.", no_args_is_help=True)
    app.add_typer(teacher_app, name="teacher")

    @teacher_app.command("list", help="List the built-in teacher architectures.")
    @handle_errors
    def list_(json_out: bool = typer.Option(False, "--json")) -> None:
        from edgekd.models.teachers import TEACHERS

        names = TEACHERS.names()
        print_json({"teachers": names}) if json_out else typer.echo("\n".join(names))

    @teacher_app.command("train", help="Train a built-in teacher on a data source; writes OUT/teacher.pt.")
    @handle_errors
    def train(
        out: Path = typer.Option(Path("runs/teacher"), "--out", help="Output directory."),
        arch: Optional[str] = typer.Option(None, help="Teacher architecture (edgekd teacher list); default: the "
                                                      "config's teacher_arch, else cnn (convctc for --task lines)."),
        task: Optional[str] = RUN_OPTS["task"],
        config: Optional[Path] = RUN_OPTS["config"],
        source: Optional[str] = RUN_OPTS["source"],
        data_path: Optional[str] = RUN_OPTS["data_path"],
        data_seed: Optional[int] = RUN_OPTS["data_seed"],
        epochs: Optional[int] = typer.Option(None, help="Epochs (default 40; 60 for --task lines)."),
        batch_size: Optional[int] = RUN_OPTS["batch_size"],
        lr: Optional[float] = RUN_OPTS["lr"],
        device: Optional[str] = RUN_OPTS["device"],
        amp: Optional[str] = RUN_OPTS["amp"],
        seed: Optional[int] = RUN_OPTS["seed"],
        patience: Optional[int] = RUN_OPTS["patience"],
        compile_: bool = RUN_OPTS["compile_"],
        threads: Optional[int] = RUN_OPTS["threads"],
        resume: bool = RUN_OPTS["resume"],
        quiet: bool = RUN_OPTS["quiet"],
        json_out: bool = RUN_OPTS["json_out"],
    ) -> None:
        from edgekd.config import RunConfig, read_yaml
        from edgekd.models.teachers import TEACHERS
        from edgekd.train.line_pipeline import DEFAULT_LINE_TEACHER_EPOCHS
        from edgekd.train.trainer import TrainConfig

        lines = config_task(read_yaml(config) if config else None, {"task": task}) == "lines"
        base = RunConfig(train=TrainConfig(epochs=DEFAULT_LINE_TEACHER_EPOCHS if lines else 40, batch_size=64,
                                           lr=3e-3))
        cfg = resolve_task_config(config, {**task_overrides(task, source, data_path, data_seed),
                                           "train": train_overrides(epochs, batch_size, lr, device, amp, seed,
                                                                    patience, compile_, threads)}, base=base,
                                  command="edgekd teacher train")
        from edgekd.train.line_pipeline import DEFAULT_LINE_TEACHER

        arch = arch or cfg.teacher_arch or (DEFAULT_LINE_TEACHER if cfg.task == "lines" else "cnn")
        TEACHERS.get(arch)
        from edgekd.models.line_models import check_task

        check_task(arch, cfg.task)  # before anything is written
        check_out(out, resume)  # before the data is read
        with resumable(lambda: resume_hint(out)):
            m = _train_teacher(cfg, arch, out, resume, progress=not (quiet or json_out))
        report(m, f"teacher {arch} -> {m['checkpoint']}", json_out)


def _train_teacher(cfg: Any, arch: str, out: Path, resume: bool, progress: bool) -> dict[str, Any]:
    """Read the data (bad data fails here, before anything is written), then train the task's teacher in `out`
    with its resolved config saved beside it; returns the teacher's metrics."""
    if cfg.task == "lines":
        from edgekd.data.lines import load_lines
        from edgekd.train.line_pipeline import train_line_teacher

        splits = load_lines(cfg.lines)
        prepare_out(out, resume)
        cfg.save(out / "config.yaml")
        return train_line_teacher(splits, cfg.train, out, arch=arch, resume=resume, progress=progress,
                                  resolved_config=cfg.to_dict())
    from edgekd.data import load_data
    from edgekd.train.pipeline import train_teacher

    digits = load_data(cfg.data)
    prepare_out(out, resume)
    cfg.save(out / "config.yaml")
    return train_teacher(digits, cfg.train, out, arch=arch, aug=cfg.augment, resume=resume, progress=progress,
                         resolved_config=cfg.to_dict())
