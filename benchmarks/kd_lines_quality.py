"""KD quality benchmark for CTC line recognizers on the embedded digit strings: teacher, scratch, each CTC KD loss.

Trains the line teacher (the mean-posterior ensemble of two `convctc` teachers of 60 epochs, seeds 0 and 1, a
fresh composition of the training digits every epoch; shared by the student seeds unless --teacher-seeds says
otherwise), then for each seed the default budget's
line student from scratch (CTC on the labels) and with each KD loss (`frame_kd`, `blank_kd`, `seq_kd`), all with
the same epochs, seed and fixed transfer views. Everything is scored on the fixed test split: 2,000 strings of
lengths 3-10 composed from test-split digits only (no digit image of the test strings is in training). Prints CER
and whole-string accuracy (mean +- std over seeds), paired 95 % intervals of each loss's gain over scratch
(per-line differences on the same test lines, pooled over seeds), and the KD/scratch cost per epoch.

Targets (issue #11): teacher CER <= 1.5 %; the best distilled student: string accuracy >= scratch + 3 pp and
CER <= 0.75 x scratch CER.

The student is the one the default line budget picks (rpi4, int8, 2.5 ms per 192-px line, 100 KiB flash) unless
--student is given.

    .venv/bin/python benchmarks/kd_lines_quality.py --workdir /tmp/kdl     # about 55 min (2 teachers) + 12 x 2-5 min
    # the same split over processes of 1 thread each: the two teachers, then the 3 seeds, then one report:
    for t in 0 1; do .venv/bin/python benchmarks/kd_lines_quality.py --workdir /tmp/kdl --threads 1 \
        --only-teacher $t & done; wait
    for s in 0 1 2; do .venv/bin/python benchmarks/kd_lines_quality.py --workdir /tmp/kdl --threads 1 \
        --seed-list $s --save /tmp/kdl/seed$s.json & done; wait
    .venv/bin/python benchmarks/kd_lines_quality.py --merge /tmp/kdl/seed*.json
    .venv/bin/python benchmarks/kd_lines_quality.py --seeds 1 --teacher crnn-small --teacher-epochs 3 \
        --student-epochs 2 --views 2                                       # quick look
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

LOSSES = ("frame_kd", "blank_kd", "seq_kd")


def default_student() -> str:
    """The line student the default line budget (`edgekd run --task lines`'s, on rpi4) picks."""
    from edgekd.cli.budget_cmd import run_search
    from edgekd.pipeline.tasks import DEFAULT_LINE_BUDGET

    b = DEFAULT_LINE_BUDGET.cli_units()
    return run_search("rpi4", None, b["latency_ms"], b["flash_kb"], b["ram_kb"], b["macs"], b["params"],
                      b["precision"], num_classes=11, task="lines").chosen.student_id


def paired_interval(a: list[list[float]], b: list[list[float]], weights: list[list[float]] | None = None
                    ) -> tuple[float, float]:
    """Mean and 95 % half-width of the per-item difference b - a, pooled over seeds (items paired by position).
    With `weights` (characters per line), the mean is a ratio estimate (sum d / sum w) with its linearised SE."""
    d = [y - x for sa, sb in zip(a, b) for x, y in zip(sa, sb)]
    w = [v for sw in weights for v in sw] if weights else [1.0] * len(d)
    n, sw = len(d), sum(w)
    mean = sum(d) / sw
    var = sum((di - mean * wi) ** 2 for di, wi in zip(d, w)) / max(1, n - 1)
    return mean, 1.96 * math.sqrt(var * n) / sw


def per_line(ckpt: str, split, charset: str) -> tuple[list[float], list[float]]:
    """(exact match per line, edit distance per line) of the checkpoint's greedy readings on `split`."""
    import torch

    from edgekd.train.checkpoint import load_student_checkpoint
    from edgekd.train.ctc_metrics import char_errors, predict_lines

    model, _ = load_student_checkpoint(ckpt, task="lines")
    hyps, _ = predict_lines(model, split.x, charset, torch.device("cpu"))
    return ([float(h == r) for h, r in zip(hyps, split.texts)],
            [float(e) for e in char_errors(split.texts, hyps)])


def train_teacher_once(splits, tdir: Path, arch: str, epochs: int, seed: int) -> dict:
    """Train (or reuse a finished / resume an interrupted) line teacher in `tdir`."""
    import torch

    from edgekd.train.line_pipeline import train_line_teacher
    from edgekd.train.trainer import TrainConfig

    if (tdir / "teacher.pt").is_file():
        ck = torch.load(tdir / "teacher.pt", weights_only=True)
        return dict(ck["metrics"], checkpoint=str(tdir / "teacher.pt"))
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, device="cpu", seed=seed)
    return train_line_teacher(splits, cfg, tdir, arch=arch, resume=(tdir / "last.pt").is_file(), progress=False)


def build_teacher(splits, t_seed: int, tmp: Path, args: argparse.Namespace):
    """Teacher number `t_seed`: one trained model, or the ensemble of `--teacher-members` models (seeds
    t_seed * K .. t_seed * K + K - 1); returns it with its test CER and string accuracy."""
    import torch

    from edgekd.models.line_models import load_line_teacher
    from edgekd.train.ctc_metrics import evaluate_lines

    k = args.teacher_members
    runs = [train_teacher_once(splits, tmp / f"{args.teacher}{s}", args.teacher, args.teacher_epochs, s)
            for s in range(t_seed * k, t_seed * k + k)]
    teacher = load_line_teacher(",".join(r["checkpoint"] for r in runs), splits.num_classes, splits.spec.height,
                                splits.spec.width)
    if k == 1:
        return teacher, runs[0]
    m = evaluate_lines(teacher.model, splits.test, splits.charset, torch.device("cpu"))
    print(f"teacher ensemble of {k}: member test CER " + ", ".join(f"{r['test_cer']:.4f}" for r in runs)
          + f"; ensemble {m.cer:.4f} (string acc {m.string_acc:.4f})", flush=True)
    return teacher, {"test_cer": m.cer, "test_string_acc": m.string_acc}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from edgekd.pipeline.tasks import LINE_RUN
    from edgekd.train.line_pipeline import DEFAULT_LINE_STUDENT_LR

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default=None, help="default: the default line budget's choice")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--teacher", default="convctc", help="line teacher architecture")
    ap.add_argument("--teacher-epochs", type=int, default=60)
    ap.add_argument("--teacher-seeds", type=int, default=1,
                    help="train this many teachers and give seed s the teacher s %% N (default: 1, shared)")
    ap.add_argument("--teacher-members", type=int, default=2,
                    help="each teacher is an ensemble (mean posterior) of this many runs of the architecture with "
                         "different seeds (default: 2; 1 for a single model)")
    ap.add_argument("--student-epochs", type=int, default=LINE_RUN["student_epochs"], help="default: edgekd run's")
    ap.add_argument("--views", type=int, default=8, help="fixed transfer views (fresh compositions)")
    ap.add_argument("--losses", default=",".join(LOSSES))
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=DEFAULT_LINE_STUDENT_LR, help="the students' (default: edgekd run's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep runs here; a finished {teacher}{seed}/teacher.pt is reused, an interrupted one resumed")
    ap.add_argument("--seed-list", default=None, help="run only these seeds (e.g. 0,1), to split the work "
                                                       "across processes; combine with --save and --merge")
    ap.add_argument("--save", type=Path, default=None, help="write the raw per-seed results to this JSON file")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="no training: report on the --save files of runs split by --seed-list")
    ap.add_argument("--only-teacher", type=int, default=None, metavar="SEED",
                    help="train (or finish) only the teacher of this seed in --workdir, then stop")
    ap.add_argument("--json", action="store_true", help="also print one JSON line with every number")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        res = {r: {k: sum((p["res"][r][k] for p in parts), []) for k in parts[0]["res"][r]} for r in parts[0]["res"]}
        meta = parts[0]["meta"]
    elif args.only_teacher is not None:
        import torch

        from edgekd.data.lines import LineSpec, load_lines

        torch.set_num_threads(args.threads)

        if args.workdir is None:
            raise SystemExit("--only-teacher needs --workdir (where the seed runs will find the teacher)")
        m = train_teacher_once(load_lines(LineSpec(seed=0)), args.workdir / f"{args.teacher}{args.only_teacher}",
                               args.teacher, args.teacher_epochs, args.only_teacher)
        print(f"teacher {args.teacher} seed {args.only_teacher}: test CER {m['test_cer']:.4f}")
        return 0
    else:
        res, meta = run(args)
        if args.save:
            args.save.write_text(json.dumps({"res": res, "meta": meta}))
    return report(res, meta, args.json)


def run(args: argparse.Namespace) -> tuple[dict, dict]:
    """Train the teacher(s) and every student run of every seed; returns the raw results and what they were."""
    import torch

    from edgekd.data.lines import LineSpec, load_lines
    from edgekd.models.students import build_student, count_params

    torch.set_num_threads(args.threads)
    losses = [x.strip() for x in args.losses.split(",") if x.strip()]
    student = args.student or default_student()
    seeds = [int(x) for x in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    splits = load_lines(LineSpec(seed=0))  # the fixed digit split and the fixed val/test strings
    params = count_params(build_student(student, splits.num_classes))
    print(f"data: embedded digit strings, train {len(splits.train)} lines per view x {args.views} views / val "
          f"{len(splits.val)} / test {len(splits.test)} (lengths {splits.spec.test_min_len}-"
          f"{splits.spec.test_max_len}, {sum(map(len, splits.test.texts))} characters); student {student} "
          f"({params} parameters); seeds {seeds}; cpu x {args.threads} threads", flush=True)
    runs = ["scratch", *losses]
    res: dict[str, dict[str, list]] = {r: {"cer": [], "acc": [], "ok": [], "err": [], "epoch_s": []}
                                       for r in ["teacher", *runs]}
    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="edgekd-kdl-"))
    for seed in seeds:
        teacher, tm = build_teacher(splits, seed % args.teacher_seeds, tmp, args)
        res["teacher"]["cer"].append(tm["test_cer"])
        res["teacher"]["acc"].append(tm["test_string_acc"])
        line = f"seed {seed}: teacher CER {tm['test_cer']:.4f} acc {tm['test_string_acc']:.4f}"
        for r in runs:
            m = run_student(splits, student, r, teacher, seed, tmp / f"{r}{seed}", args)
            for k, v in m.items():
                res[r][k].append(v)
            line += f" | {r} CER {m['cer']:.4f} acc {m['acc']:.4f}"
        print(line, flush=True)
    meta = {"runs": runs, "losses": losses, "student": student, "params": params, "teacher": args.teacher,
            "teacher_members": args.teacher_members, "teacher_epochs": args.teacher_epochs,
            "student_epochs": args.student_epochs,
            "chars": [float(len(t)) for t in splits.test.texts], "temperature": args.temperature,
            "alpha": args.alpha, "views": args.views}
    return res, meta


def run_student(splits, student: str, loss: str, teacher, seed: int, out: Path, args: argparse.Namespace) -> dict:
    """One student run (`scratch` or a KD loss) and its test numbers, per line too."""
    from edgekd.train.line_pipeline import distill_lines
    from edgekd.train.pipeline import DistillOptions
    from edgekd.train.trainer import TrainConfig

    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainConfig(epochs=args.student_epochs, batch_size=64, lr=args.lr, device="cpu", seed=seed)
    opts = DistillOptions(loss="none" if loss == "scratch" else loss, temperature=args.temperature, alpha=args.alpha,
                          transfer_views=args.views)
    m = distill_lines(splits, student, cfg, out, teacher=None if loss == "scratch" else teacher, opts=opts,
                      progress=False)
    ok, err = per_line(m["checkpoint"], splits.test, splits.charset)
    return {"cer": m["test_cer"], "acc": m["test_string_acc"], "ok": ok, "err": err,
            "epoch_s": statistics.median(m["epoch_time_s"])}


def report(res: dict, meta: dict, as_json: bool = False) -> int:
    """Print the table, the paired intervals and the targets; exit code 0 when every target is met."""
    runs, losses, student, chars = meta["runs"], meta["losses"], meta["student"], meta["chars"]
    def ms(v: list[float]) -> str:
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{statistics.mean(v) * 100:6.2f} +- {sd * 100:.2f}"

    scratch_epoch = statistics.mean(res["scratch"]["epoch_s"])
    print(f"\n{'run':28s} {'CER %':>16s} {'string acc %':>16s} {'epoch s':>8s} {'cost/scratch':>12s}")
    n_teachers = len(set(map(str, res["teacher"]["cer"])))
    k = meta.get("teacher_members", 1)
    arch = meta["teacher"] if k == 1 else f"{k} x {meta['teacher']}"
    name = f"teacher {arch} ({meta['teacher_epochs']} ep, {n_teachers} run)"
    print(f"{name:28s} {ms(res['teacher']['cer']):>16s} {ms(res['teacher']['acc']):>16s}")
    for r in runs:
        e = statistics.mean(res[r]["epoch_s"])
        print(f"{r + ' ' + student:28s} {ms(res[r]['cer']):>16s} {ms(res[r]['acc']):>16s} {e:8.2f} "
              f"{e / scratch_epoch:12.2f}")
    s_cer, s_acc = (statistics.mean(res["scratch"][k]) for k in ("cer", "acc"))
    summary = {}
    for r in losses:
        d_acc, h_acc = paired_interval(res["scratch"]["ok"], res[r]["ok"])
        d_err, h_err = paired_interval(res["scratch"]["err"], res[r]["err"], [chars] * len(res[r]["err"]))
        cer = statistics.mean(res[r]["cer"])
        summary[r] = {"gain_pp": d_acc * 100, "gain_ci_pp": h_acc * 100, "cer_change_pp": d_err * 100,
                      "cer_ci_pp": h_err * 100, "cer_ratio": cer / s_cer if s_cer else float("nan")}
        noise = " (within noise)" if abs(d_acc) <= h_acc else ""
        print(f"{r:9s} vs scratch: string acc {d_acc * 100:+.2f} pp (95% CI +- {h_acc * 100:.2f}){noise}; "
              f"CER {d_err * 100:+.2f} pp (+- {h_err * 100:.2f}), {summary[r]['cer_ratio']:.2f} x scratch CER")
    best = max(losses, key=lambda r: summary[r]["gain_pp"])
    t_cer = statistics.mean(res["teacher"]["cer"])
    ok = {"teacher_cer<=1.5%": t_cer <= 0.015, "best_gain>=3pp": summary[best]["gain_pp"] >= 3.0,
          "best_cer<=0.75xscratch": summary[best]["cer_ratio"] <= 0.75}
    print(f"best loss: {best} ({summary[best]['gain_pp']:+.2f} pp string accuracy, "
          f"{summary[best]['cer_ratio']:.2f} x scratch CER); scratch {s_acc * 100:.2f} % / CER {s_cer * 100:.2f} %")
    print("targets met:", "all" if all(ok.values()) else {k: v for k, v in ok.items()})
    print(f"settings: student {student} ({meta['params']} parameters), {meta['student_epochs']} epochs over "
          f"{meta['views']} views, T {meta['temperature']}, alpha {meta['alpha']}")
    if as_json:
        slim = {r: {k: v for k, v in d.items() if k not in ("ok", "err")} for r, d in res.items()}
        print(json.dumps({"meta": {k: v for k, v in meta.items() if k != "chars"}, "runs": slim,
                          "summary": summary, "best": best, "targets": ok}))
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
