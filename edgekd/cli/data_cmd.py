"""`edgekd data info SOURCE`: counts per class and split, and a sample grid PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgekd_runtime.cli_support import handle_errors, print_json


def guess_source(source: str, path: Optional[str], task: Optional[str] = None) -> tuple[str, Optional[str]]:
    """SOURCE is a source name, or a path whose kind is guessed (.npz, IDX directory, class folders; a folder with
    labels.tsv for the lines task)."""
    from edgekd.data import SOURCES
    from edgekd.data.lines import LINE_SOURCES

    if source in SOURCES or (task == "lines" and source in LINE_SOURCES):
        return source, path
    if task == "lines":
        if Path(source).expanduser().is_dir():
            return "folder", str(Path(source).expanduser())
        from edgekd_runtime.errors import UserInputError

        raise UserInputError(f"{source!r} is neither a line data source ({', '.join(LINE_SOURCES.names())}) nor an "
                             f"existing folder of line images with a labels.tsv")
    p = Path(source).expanduser()
    if p.suffix == ".npz":
        return "npz", str(p)
    if p.is_dir():
        kids = list(p.iterdir())
        if any("idx" in k.name for k in kids if k.is_file()):
            return "idx", str(p)
        return "folder", str(p)
    if p.is_file() and "idx" in p.name:
        return "idx", str(p)
    from edgekd_runtime.errors import UserInputError

    raise UserInputError(f"{source!r} is neither a data source ({', '.join(SOURCES.names())}) nor an existing "
                         f".npz file, IDX file/directory or class-folder directory")


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Inspect data sources (embedded, idx, folder, npz).", no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("info", help="Counts per class and split for a data source, and a sample grid PNG.")
    @handle_errors
    def info(
        source: str = typer.Argument("embedded", help="Source name (embedded, idx, folder, npz) or a path."),
        path: Optional[str] = typer.Option(None, "--path", help="File or directory for idx/folder/npz."),
        seed: int = typer.Option(0, help="Split seed."),
        val_fraction: float = typer.Option(0.1, help="Share of each class for validation."),
        test_fraction: float = typer.Option(0.2, help="Share of each class for test."),
        grid: Optional[Path] = typer.Option(Path("data_grid.png"), help="Where to write the sample grid PNG "
                                            "(--no-grid: none)."),
        no_grid: bool = typer.Option(False, "--no-grid", help="Do not write the grid."),
        task: str = typer.Option("digits", "--task", help="digits, or lines (SOURCE: embedded digit strings, or a "
                                                           "folder of line images with labels.tsv)."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        from edgekd.config import check_task_name
        from edgekd.train.trainer import check_seed
        from edgekd_runtime.atomic import check_writable

        check_seed(seed, "--seed")
        if grid is not None and not no_grid:
            check_writable(grid, "--grid")  # before the data is read
        if check_task_name(task) == "lines":
            return _line_info(source, path, seed, None if no_grid else grid, json_out)
        from edgekd.data import DataSpec, load_data
        from edgekd.data.grid import sample_grid

        name, p = guess_source(source, path)
        spec = DataSpec(name, p, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
        s = load_data(spec)
        c = s.num_classes
        per_split = {k: getattr(s, k).counts(c) for k in ("train", "val", "test")}
        out = {"source": name, "path": p, "num_classes": c, "class_names": s.class_names,
               "counts": per_split, "totals": {k: int(sum(v)) for k, v in per_split.items()},
               "shape": list(s.train.x.shape[1:]), "spec": spec.to_dict()}
        if grid is not None and not no_grid:
            out["grid"] = str(sample_grid(s.train.x, s.train.y, c, grid))
        if json_out:
            print_json(out)
            return
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"{name}{' ' + p if p else ''}: {c} classes, 28x28 canvases")
        for col in ("class", "train", "val", "test"):
            t.add_column(col, justify="right")
        for i, n in enumerate(s.class_names):
            t.add_row(n, *(str(per_split[k][i]) for k in ("train", "val", "test")))
        t.add_row("total", *(str(out["totals"][k]) for k in ("train", "val", "test")))
        con = Console()
        con.print(t)
        if "grid" in out:
            con.print(f"sample grid: {out['grid']}")


def _line_info(source: str, path: Optional[str], seed: int, grid: Optional[Path], json_out: bool) -> None:
    """`edgekd data info --task lines`: charset, lines and characters per split, the length histogram, a grid."""
    import numpy as np

    from edgekd.data.lines import LINE_SOURCES, LineSpec, load_lines

    name, p = (source, path) if source in LINE_SOURCES else ("folder", source)
    s = load_lines(LineSpec(name, p, seed=seed))
    splits = {k: getattr(s, k) for k in ("train", "val", "test")}
    lengths: dict[str, dict[int, int]] = {}
    for k, sp in splits.items():
        ls = np.bincount([len(t) for t in sp.texts])
        lengths[k] = {int(n): int(c) for n, c in enumerate(ls) if c}
    out = {"source": name, "path": p, "task": "lines", "charset": s.charset, "num_classes": s.num_classes,
           "lines": {k: len(v) for k, v in splits.items()},
           "characters": {k: sum(len(t) for t in v.texts) for k, v in splits.items()},
           "length_histogram": lengths, "shape": list(s.train.x.shape[1:]), "spec": s.spec.to_dict()}
    if grid is not None:
        from edgekd.data.grid import line_grid

        out["grid"] = str(line_grid(s.train.x, s.train.texts, grid))
    if json_out:
        print_json(out)
        return
    from rich.console import Console
    from rich.table import Table

    h, w = out["shape"]
    t = Table(title=f"{name}{' ' + p if p else ''}: lines of {h}x{w} px, charset {s.charset!r} (+ CTC blank)")
    for col in ("length", "train", "val", "test"):
        t.add_column(col, justify="right")
    for n in sorted({n for v in lengths.values() for n in v}):
        t.add_row(str(n), *(str(lengths[k].get(n, 0)) for k in splits))
    t.add_row("lines", *(str(out["lines"][k]) for k in splits))
    t.add_row("characters", *(str(out["characters"][k]) for k in splits))
    con = Console()
    con.print(t)
    if "grid" in out:
        con.print(f"sample lines: {out['grid']}")
