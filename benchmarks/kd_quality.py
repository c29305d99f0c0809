r"""KD quality on held-out digits: teacher, scratch and distilled students of the default run, online and cached KD.

Every one of the 5,000 embedded digits is predicted once by each model from a run that did not train on it: fold k
of 5 (1,000 digits, stratified) is the test set, and the other 4,000 split 3,500 train / 500 val as `edgekd run`
splits them. Over 5 folds that is 5,000 held-out predictions per model, and the gain of the distilled student over
its scratch twin is estimated paired over the same digits (edgekd.report.stats: 95 % interval, "within noise" when
it contains 0). A 1,000-digit test split resolves about +-1 pp; 5,000 paired digits about +-0.4 pp. The gain also
moves with the students' training seed (by +-0.2 pp here, which one seed's interval does not cover), so every
student is trained with `--seeds` seeds (3 by default; fold + 0, 1, 2) from the same teachers, and the targets judge
the gain averaged over the seeds (its interval: the paired one of the per-digit difference averaged over seeds).

Settings are the default run's (edgekd.pipeline.config.PipelineConfig: teacher recipe and epochs, student epochs,
KD loss, transfer views) and its default student: what the budget search picks for the default budget (rpi4,
1 ms, 32 KiB at int8): cnn-w16-d2-r28. Both KD modes are trained: `online` (fresh views, teacher on every step) and
`cached` (fixed transfer set); each has its own scratch twin trained on the same views without the teacher.
Reported per mode: for each seed the accuracies with intervals, the gain and its interval, the share of the
teacher-scratch gap; the same averaged over the seeds; KD and scratch seconds per epoch (and their ratio); and what
`--kd-mode auto` picks here.

Targets (issue 13): distilled >= scratch + 1.0 pp and >= 50 % of the teacher-scratch gap (the mode auto picks, the
mean over the seeds); the default run within 10 minutes on 2 CPU cores.

Results of each model are kept in --workdir (fold{k}/results.json): an interrupted benchmark continues where it
stopped, and `--only 0,1` runs some folds now and the others later (the summary covers the folds present).

    .venv/bin/python benchmarks/kd_quality.py --workdir runs/kdq    # 5 folds x (3 teachers + 3 seeds x 4 students)
    .venv/bin/python benchmarks/kd_quality.py --workdir runs/kdq --only 0 --seeds 1 --student-epochs 5 \
        --teacher-epochs 5 --modes cached
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

TEACHER_AUGS = ("default", "strong")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from edgekd.pipeline.config import PipelineConfig

    d = PipelineConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="cnn-w16-d2-r28", help="the default budget's student")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only", default=None, help="comma-separated folds to run now (default: all; '' = none, "
                                                 "only the summary of what --workdir holds)")
    ap.add_argument("--modes", default="online,cached")
    ap.add_argument("--teacher-arch", default=d.teacher_arch)
    ap.add_argument("--teacher-members", type=int, default=d.teacher_members,
                    help="the teacher is an ensemble of this many (seeds fold + 100 i), as the default run's")
    ap.add_argument("--teacher-aug", default="default", choices=TEACHER_AUGS)
    ap.add_argument("--teacher-epochs", type=int, default=d.teacher_train.epochs)
    ap.add_argument("--student-epochs", type=int, default=d.student_train.epochs)
    ap.add_argument("--views", type=int, default=d.distill.transfer_views, help="transfer-set views (cached)")
    ap.add_argument("--loss", default=d.distill.loss)
    ap.add_argument("--temperature", type=float, default=d.distill.temperature)
    ap.add_argument("--alpha", type=float, default=d.distill.alpha)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3,
                    help="train every student with this many seeds (fold + 0, 1, ...), the same teachers: the gain "
                         "moves with the training seed by more than the paired interval of one seed says")
    ap.add_argument("--workdir", type=Path, required=True, help="results per fold and model (kept, resumable)")
    ap.add_argument("--json", action="store_true", help="also print one JSON line with every number")
    return ap.parse_args(argv)


def fold_splits(k: int, folds: int, seed: int = 0) -> Any:
    """Fold k of `folds` (stratified) as the test split; the rest split 7:1 into train and val."""
    from edgekd.data import DataSpec, Split, Splits, load_data
    from edgekd.data.split import stratified_indices

    spec = DataSpec("embedded", seed=seed, val_fraction=0.0, test_fraction=0.0)
    allx = load_data(spec).train
    parts = stratified_indices(allx.y, 10, (1.0 / folds,) * (folds - 1), seed)
    test = parts[k]
    pool = np.sort(np.concatenate([p for i, p in enumerate(parts) if i != k]))
    val, train = (pool[i] for i in stratified_indices(allx.y[pool], 10, (0.125,), seed + k))
    pick = lambda i: Split(allx.x[i], allx.y[i])  # noqa: E731
    return Splits(pick(train), pick(val), pick(test), [str(c) for c in range(10)], DataSpec("embedded", seed=seed))


def teacher_aug(name: str) -> Any:
    from edgekd.data.augment import AugmentConfig

    return AugmentConfig() if name == "default" else AugmentConfig(elastic_px=1.5, erase_p=0.25)


class FoldStore:
    """results.json of one fold: per model, its metrics and its per-digit hits on the fold's test split."""

    def __init__(self, root: Path, k: int) -> None:
        self.dir = root / f"fold{k}"
        self.path = self.dir / "results.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def put(self, name: str, rec: dict[str, Any]) -> None:
        from edgekd_runtime.atomic import atomic_write_text

        self.data[name] = rec
        atomic_write_text(self.path, json.dumps(self.data))


def _record(metrics: dict[str, Any], model: Any, splits: Any, input_size: int, wall_s: float) -> dict[str, Any]:
    import torch

    from edgekd.train.batches import predict_labels

    pred = predict_labels(model, splits.test.x, torch.device("cpu"), input_size)
    keep = ("epoch_time_s", "teacher_cache_s", "transfer_set_s", "kd_mode", "kd_mode_reason", "best_epoch")
    return {"hits": (pred == splits.test.y).astype(int).tolist(), "wall_s": wall_s,
            **{k: metrics[k] for k in keep if k in metrics}}


def run_fold(args: argparse.Namespace, k: int, modes: list[str]) -> None:
    from dataclasses import replace

    from edgekd.models.teachers import load_teacher
    from edgekd.pipeline.config import PipelineConfig
    from edgekd.train.pipeline import DistillOptions, train_teacher

    d = PipelineConfig()
    splits, store = fold_splits(k, args.folds), FoldStore(args.workdir, k)
    refs = [store.dir / "teacher" / "teacher.pt"] + [store.dir / f"teacher-m{i}" / "teacher.pt"
                                                     for i in range(1, args.teacher_members)]
    if "teacher" not in store.data:
        t0 = time.perf_counter()
        for i, ck in enumerate(refs):  # member i: seed fold + 100 i
            if not ck.is_file():
                tcfg = replace(d.teacher_train, epochs=args.teacher_epochs, device="cpu", seed=k + 100 * i)
                train_teacher(splits, tcfg, ck.parent, arch=args.teacher_arch, aug=teacher_aug(args.teacher_aug),
                              resume=(ck.parent / "last.pt").is_file(), progress=False)
        model = load_teacher(",".join(map(str, refs)), 10).model
        store.put("teacher", _record({}, model, splits, 28, time.perf_counter() - t0))
        print(f"fold {k}: teacher {np.mean(store.data['teacher']['hits']) * 100:.2f} %", flush=True)
    teacher = load_teacher(",".join(map(str, refs)), 10)
    for seed, mode, role in ((j, m, r) for j in range(args.seeds) for m in modes for r in ("scratch", "kd")):
        name, loss = model_name(role, mode, seed), args.loss if role == "kd" else "none"
        if name not in store.data:
            scfg = replace(d.student_train, epochs=args.student_epochs, device="cpu", seed=k + seed)
            train_student(args, k, splits, store, name, scfg, teacher if loss != "none" else None,
                          DistillOptions(loss=loss, temperature=args.temperature, alpha=args.alpha,
                                         transfer_views=args.views, kd_mode=mode))


def model_name(role: str, mode: str, seed: int) -> str:
    """A student's name in results.json: `kd-cached`, `scratch-online`, ... for seed 0, then `kd-cached-seed1`."""
    return f"{role}-{mode}" + (f"-seed{seed}" if seed else "")


def train_student(args: argparse.Namespace, k: int, splits: Any, store: FoldStore, name: str, scfg: Any,
                  teacher: Any, opts: Any) -> None:
    from edgekd.train.checkpoint import load_torch
    from edgekd.train.pipeline import distill

    t0 = time.perf_counter()
    out = store.dir / name
    m = distill(splits, args.student, scfg, out, teacher=teacher, opts=opts, resume=(out / "last.pt").is_file(),
                progress=False)
    model = _student(load_torch(out / "student.pt"))
    store.put(name, _record(m, model, splits, model.input_size, time.perf_counter() - t0))
    print(f"fold {k}: {name} {np.mean(store.data[name]['hits']) * 100:.2f} %  "
          f"{statistics.median(m['epoch_time_s']):.2f} s/epoch", flush=True)


def _student(ck: dict[str, Any]) -> Any:
    from edgekd.models.students import build_student

    model = build_student(ck["arch"], int(ck["num_classes"]))
    model.load_state_dict(ck["state_dict"])
    return model.eval()


def auto_mode(args: argparse.Namespace) -> str:
    """What `--kd-mode auto` picks on this machine for this teacher and student."""
    import torch

    from edgekd.models.students import build_student
    from edgekd.models.teachers import TEACHERS
    from edgekd.train.kd_mode import choose_kd_mode

    student = build_student(args.student, 10)
    c = choose_kd_mode("auto", TEACHERS.get(args.teacher_arch)(10).eval(), student, torch.device("cpu"),
                       student.input_size)
    print(f"--kd-mode auto on this machine: {c.mode} ({c.reason})")
    return c.mode


def summarize(args: argparse.Namespace, modes: list[str]) -> dict[str, Any]:
    """Pool the folds present in --workdir and print the paired estimates per mode: per seed, and averaged."""
    from edgekd.report.stats import accuracy_interval

    names = [model_name(r, m, j) for j in range(args.seeds) for m in modes for r in ("scratch", "kd")]
    done = [s for s in (FoldStore(args.workdir, k) for k in range(args.folds))
            if "teacher" in s.data and all(n in s.data for n in names)]
    if not done:
        print("no fold finished yet")
        return {}
    hits = lambda name: np.concatenate([s.data[name]["hits"] for s in done])  # noqa: E731
    teacher = accuracy_interval(hits("teacher"))
    print(f"{len(done)} of {args.folds} folds: {teacher.n:,} held-out digits per model; student "
          f"{args.student}, teacher {args.teacher_members} x {args.teacher_arch} ({args.teacher_aug} augmentation, "
          f"{args.teacher_epochs} epochs), students {args.student_epochs} epochs x {args.seeds} seeds, loss "
          f"{args.loss} T {args.temperature} alpha {args.alpha}")
    print(f"teacher      {_acc(teacher)}   (train {statistics.mean(s.data['teacher']['wall_s'] for s in done):.0f} s)")
    out: dict[str, Any] = {"folds": len(done), "n": teacher.n, "seeds": args.seeds,
                           "teacher": teacher.estimate, "modes": {}}
    for mode in modes:
        out["modes"][mode] = summarize_mode(args, mode, hits, done, teacher.estimate)
    if {"online", "cached"} <= set(modes):
        from edgekd.report.stats import seed_averaged_gain

        both = seed_averaged_gain(*([hits(model_name("kd", m, j)) for j in range(args.seeds)]
                                    for m in ("cached", "online")))
        print(both.describe("[both] distilled online - cached"))
    return out


def summarize_mode(args: argparse.Namespace, mode: str, hits: Any, done: list[FoldStore],
                   teacher: float) -> dict[str, Any]:
    """One KD mode: each seed's scratch, distilled and paired gain, then their average over the seeds (the
    figure the targets judge), and the KD / scratch seconds per epoch."""
    from edgekd.report.stats import accuracy_interval, paired_gain, seed_averaged_gain

    sc = [hits(model_name("scratch", mode, j)) for j in range(args.seeds)]
    kd = [hits(model_name("kd", mode, j)) for j in range(args.seeds)]
    seed_gains = [paired_gain(a, b) for a, b in zip(sc, kd)]
    for j, g in enumerate(seed_gains):
        print(f"[{mode}] seed {j}: scratch {_acc(accuracy_interval(sc[j]))}   distilled "
              f"{_acc(accuracy_interval(kd[j]))}")
        print(f"[{mode}] seed {j}: {g.describe('distilled - scratch')}; share of the gap "
              f"{g.share_of_gap(teacher) * 100:.0f} %")
    g = seed_averaged_gain(sc, kd)
    share = g.share_of_gap(teacher)
    print(f"[{mode}] mean of {args.seeds} seeds: scratch {g.acc_a * 100:.2f} %, distilled {g.acc_b * 100:.2f} %; "
          f"{g.describe('distilled - scratch')}; share of the teacher-scratch gap {share * 100:.0f} %")
    kd_s, sc_s = (statistics.mean(statistics.median(s.data[model_name(role, mode, j)]["epoch_time_s"])
                                  for s in done for j in range(args.seeds)) for role in ("kd", "scratch"))
    print(f"[{mode}] s/epoch: KD {kd_s:.2f}, scratch {sc_s:.2f}, ratio {kd_s / sc_s:.2f}")
    return {"scratch": g.acc_a, "kd": g.acc_b, "gain": g.gain.estimate, "low": g.gain.low, "high": g.gain.high,
            "share": share, "within_noise": g.within_noise, "kd_epoch_s": kd_s, "scratch_epoch_s": sc_s,
            "seed_gains": [sg.gain.estimate for sg in seed_gains]}


def _acc(iv: Any) -> str:
    return f"{iv.estimate * 100:6.2f} % (95 % CI {iv.low * 100:.2f} .. {iv.high * 100:.2f})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    only = range(args.folds) if args.only is None else [int(k) for k in args.only.split(",") if k.strip()]
    for k in only:
        run_fold(args, k, modes)
    res = summarize(args, modes)
    if not res:
        return 1
    picked = auto_mode(args)
    r = res["modes"].get(picked)
    ok = r is not None and r["gain"] >= 0.01 and r["share"] >= 0.5
    print(f"targets (auto = {picked}, the mean of {args.seeds} seeds: gain >= +1.0 pp and >= 50 % of the gap): "
          f"{'met' if ok else 'NOT met'}"
          + ("" if res["folds"] == args.folds else f" (on {res['folds']} of {args.folds} folds only)"))
    if args.json:
        print(json.dumps({**res, "auto": picked, "args": {k: str(v) for k, v in vars(args).items()}}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
