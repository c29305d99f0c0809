"""A line bundle on the board: its deployed artifact reading photos of held-out strings through `read()`, and what
`read()` costs over the bare interpreter call (issue 12's numbers), side by side in one process.

    .venv/bin/python benchmarks/line_runtime.py --bundle runs/lines/bundle [--lines 2000] [--threads 1] [--json]

The bundle is an `edgekd run --task lines` (or `edgekd export` + `convert`) bundle; its deployed artifact is used
(the int8 TFLite model for the default budget). Prints:
  * photos: held-out strings (the bundle's test split: lengths 3-10, composed from test-split digits only) rendered
    by `edgekd.data.line_photos` as photos -- dark ink on noisy light paper, 2-3x larger than the canvas, rotated
    up to +-5 degrees, uneven light, desk margins, blur -- and read by `LineRecognizer.read(photo)` from the array
    (the runtime's preprocessing finds, straightens and scales the line). Whole-string accuracy (with its 95 %
    Wilson interval: 2,000 lines leave about +-1.7 pp at 80 %) and CER; targets >= 90 % and <= 2 %. Beside them,
    the same lines' clean canvases through `forward` (what the photos cost);
  * overhead: the median of `read(canvas, preprocessed=True)` (input tensor, interpreter, softmax, decoding, the
    Reading) against a bare LiteRT / onnxruntime loop on the same tensor, interleaved so that background load hits
    both alike; target <= 1.2x;
  * the full path for a 1000x200 photo of an 8-character line (the photo scaled to 200 px high, its sides extended
    to 1000 px; PNG file -> reading): decode, preprocess,
    inference and total p50 (`edgekd_runtime.bench.run_image_benchmark`), and `read(path)` as a whole.
Exit code 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_STRING_ACC, TARGET_CER, TARGET_OVERHEAD = 0.90, 0.02, 1.2


def test_lines(manifest, n: int):
    """The bundle's own test split (rebuilt from its LineSpec), first `n` lines."""
    from edgekd.data.lines import LineSpec, load_lines

    test = load_lines(LineSpec.from_dict(dict(manifest.extra["data"]))).test
    return test.x[:n], list(test.texts[:n])


def photo_figures(rec, x: np.ndarray, texts: list[str]) -> dict:
    """Held-out lines as photos through read(), and their clean canvases through forward()."""
    from edgekd.data.line_photos import render_line_photo
    from edgekd.report.stats import accuracy_interval
    from edgekd_runtime.line_metrics import char_error_rate, string_accuracy
    from edgekd_runtime.lines import greedy_decode

    photos = [render_line_photo(c, [i, 2026]) for i, c in enumerate(x)]
    t0 = time.perf_counter()
    reads = [rec.read(p).text for p in photos]
    ms = (time.perf_counter() - t0) * 1e3 / len(photos)
    clean = greedy_decode(rec.forward(x.astype(np.float32) / 255.0), rec.charset)
    acc, cer = string_accuracy(texts, reads), char_error_rate(texts, reads)
    ci = accuracy_interval([r == t for r, t in zip(reads, texts)])
    return {"lines": len(texts), "photo_shapes_min_max": [list(min(p.shape for p in photos)),
                                                          list(max(p.shape for p in photos))],
            "photo_string_accuracy": acc, "photo_string_accuracy_ci95": [ci.low, ci.high], "photo_cer": cer,
            "read_ms_mean": ms,
            "clean_string_accuracy": string_accuracy(texts, clean), "clean_cer": char_error_rate(texts, clean),
            "targets": {"string_accuracy": TARGET_STRING_ACC, "cer": TARGET_CER},
            "ok": acc >= TARGET_STRING_ACC and cer <= TARGET_CER}


def overhead_figures(rec, canvas: np.ndarray, threads: int, calls: int, rounds: int) -> dict:
    """read(canvas, preprocessed=True) against the bare interpreter loop on the same input tensor."""
    from runtime_overhead import bare_runner, interleaved_medians

    x = rec.to_input(canvas[None])
    bare = bare_runner(rec.artifact.format if rec.artifact else "tflite", rec.model_path, threads, x)
    bare_ms, read_ms = interleaved_medians(bare, lambda: rec.read(canvas, preprocessed=True), calls, rounds)
    return {"artifact": rec.model_path.name, "threads": threads, "bare_median_ms": bare_ms,
            "read_canvas_median_ms": read_ms, "ratio": read_ms / bare_ms, "target": TARGET_OVERHEAD,
            "ok": read_ms / bare_ms <= TARGET_OVERHEAD}


def full_path_figures(rec, canvas_u8: np.ndarray, text: str, tmp: Path, runs: int) -> dict:
    """A 1000x200 PNG photo of the line: run_image_benchmark's stages, and read(path) as a whole."""
    import cv2
    from PIL import Image

    from edgekd.data.line_photos import render_line_photo
    from edgekd_runtime.bench import run_image_benchmark

    png = tmp / "line_1000x200.png"
    photo = render_line_photo(canvas_u8, [0, 2026])  # scaled to 200 px high (its aspect kept), paper added to 1000
    photo = cv2.resize(photo, (round(photo.shape[1] * 200 / photo.shape[0]), 200), interpolation=cv2.INTER_CUBIC)
    side = max(0, 1000 - photo.shape[1])
    photo = cv2.copyMakeBorder(photo, 0, 0, side // 2, side - side // 2, cv2.BORDER_REPLICATE)[:, :1000]
    Image.fromarray(photo).save(png)
    ip = run_image_benchmark(rec, png, runs=runs, warmup=max(3, runs // 10))
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        reading = rec.read(png)
        t.append((time.perf_counter() - t0) * 1e3)
    return {"text": text, "reading": reading.text, "runs": runs,
            "stages_p50_ms": {k: s.p50_ms for k, s in ip.stages.items()}, "read_path_median_ms": float(np.median(t))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, type=Path, help="a line bundle (e.g. RUN_DIR/bundle)")
    ap.add_argument("--lines", type=int, default=2000,
                    help="held-out lines rendered as photos (default 2000: the default run's whole test split)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=50, help="runs of the 1000x200 full path")
    ap.add_argument("--calls", type=int, default=200, help="calls per round of the overhead comparison")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import edgekd_runtime
    from edgekd_runtime.manifest import Manifest

    manifest = Manifest.load(args.bundle)
    if manifest.lines is None:
        sys.exit(f"error: {args.bundle} is not a line bundle; make one with `edgekd run --task lines`")
    rec = edgekd_runtime.load(args.bundle, threads=args.threads)
    x, texts = test_lines(manifest, args.lines)
    eight = next((i for i, t in enumerate(texts) if len(t) == 8), 0)
    canvas = x[eight].astype(np.float32) / np.float32(255.0)
    with tempfile.TemporaryDirectory() as tmp:
        res = {"bundle": str(args.bundle), "deployed": rec.model_path.name,
               "photos": photo_figures(rec, x, texts),
               "overhead": overhead_figures(rec, canvas, args.threads, args.calls, args.rounds),
               "full_path_1000x200": full_path_figures(rec, x[eight], texts[eight], Path(tmp), args.runs)}
    ok = res["photos"]["ok"] and res["overhead"]["ok"]
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        p, o, f = res["photos"], res["overhead"], res["full_path_1000x200"]
        print(f"deployed {res['deployed']}; {p['lines']} held-out lines as photos through read(): string accuracy "
              f"{100 * p['photo_string_accuracy']:.2f}% (95 % CI {100 * p['photo_string_accuracy_ci95'][0]:.1f}-"
              f"{100 * p['photo_string_accuracy_ci95'][1]:.1f}; target >= 90), CER {100 * p['photo_cer']:.2f}% (target "
              f"<= 2) {'ok' if p['ok'] else 'MISSED'}; clean canvases {100 * p['clean_string_accuracy']:.2f}% / "
              f"CER {100 * p['clean_cer']:.2f}%; {p['read_ms_mean']:.1f} ms per photo")
        print(f"read(canvas) {o['read_canvas_median_ms']:.4f} ms vs bare interpreter {o['bare_median_ms']:.4f} ms: "
              f"{o['ratio']:.2f}x (target <= 1.2) {'ok' if o['ok'] else 'MISSED'}")
        print(f"1000x200 photo of {f['text']!r} (read {f['reading']!r}), p50 ms: "
              + ", ".join(f"{k} {v:.2f}" for k, v in f["stages_p50_ms"].items())
              + f"; read(path) median {f['read_path_median_ms']:.2f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
