"""Latency reports with the fields of TFLite's benchmark_model and onnxruntime_perf_test.

`run_benchmark` times the interpreter call alone on a fixed, already-laid-out input (like benchmark_model),
after a first inference and a warm-up; `LatencyReport` holds the statistics, the raw per-run samples and the
context a figure needs to be comparable (backend + version, delegate, threads, model hash, CPU, OS, Python).
`run_image_benchmark` times the whole image path of one image file, stage by stage (`ImagePathReport`: decode,
preprocess, inference and their total). Both time their calls with `time_stages`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .atomic import sha256_file
from .errors import UserInputError
from .sysinfo import peak_rss_bytes, system_info

if TYPE_CHECKING:
    from .line_recognizer import LineRecognizer
    from .recognizer import Recognizer

#: The most measured (or warm-up) runs and the largest batch a benchmark takes: the samples are kept in memory
#: (~16 bytes a run), and a batch is one input tensor built at once (~0.2 MiB of working memory a line of a
#: 24 x 192 line bundle: --batch 10000 took 2.2 GB).
MAX_RUNS, MAX_BATCH = 1_000_000, 1024
#: The stages of the image path, in order, and their total (the keys of `ImagePathReport.stages`).
IMAGE_STAGES = ("decode", "preprocess", "inference")


def time_stages(stages: Sequence[Callable[[Any], Any]], value: Any, runs: int,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Run the chain `stages[-1](...stages[0](value))` `runs` times; (runs, len(stages)) milliseconds per stage.

    One clock reading between consecutive stages (and none inside them), so a run's stage times add up to the
    time from the first stage's start to the last one's end. `progress(i)` after each run."""
    clock = time.perf_counter_ns
    marks = np.empty((runs, len(stages) + 1), np.int64)  # preallocated: RSS does not grow with the runs
    for i in range(runs):
        v = value
        t = [clock()]
        for stage in stages:
            v = stage(v)
            t.append(clock())
        marks[i] = t
        if progress is not None:
            progress(i + 1)
    return np.diff(marks, axis=1) / 1e6


@dataclass
class StageStats:
    """benchmark_model's statistics of one stage's per-run times (milliseconds)."""

    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples_ms: np.ndarray) -> "StageStats":
        p50, p90, p99 = np.percentile(samples_ms, [50, 90, 99])
        return cls(float(samples_ms.mean()), float(samples_ms.std()), float(samples_ms.min()), float(p50),
                   float(p90), float(p99), float(samples_ms.max()))


@dataclass
class ImagePathReport:
    """The image path of one file, run after run: `decode` (file -> grayscale array, through the runtime's own
    loader at the resolution its preprocessing works at), `preprocess` (array -> canvas), `inference` (canvas ->
    the model's input tensor -> the interpreter call) and `total` (the three back to back: per run, the sum)."""

    image: str
    decoded_shape: list[int]  # (height, width) of the decoded array
    canvas_shape: list[int]
    runs: int
    warmup_runs: int
    stages: dict[str, StageStats]  # IMAGE_STAGES + "total"
    samples_ms: dict[str, list[float]] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str]]:
        """(stage, "p50 / p90 / p99 / mean") pairs for a human table."""
        h, w = self.decoded_shape
        out = [("image", f"{self.image} ({w}x{h} px decoded, {self.runs} runs after {self.warmup_runs} warm-up)"),
               ("stage", "p50 / p90 / p99 / mean")]
        for name, s in self.stages.items():
            out.append((name, f"{s.p50_ms:.3f} / {s.p90_ms:.3f} / {s.p99_ms:.3f} / {s.mean_ms:.3f} ms"))
        return out


@dataclass
class LatencyReport:
    """One benchmark run. Times in milliseconds, sizes in bytes; `samples_ms` are the measured runs in order."""

    # model
    model_path: str
    model_size_bytes: int
    model_sha256: str
    format: str
    precision: str
    input_shape: list[int]
    input_dtype: str
    input_layout: str
    batch: int
    # interpreter
    backend: str
    backend_version: str
    delegate: str
    threads: int
    # timings
    init_ms: float  # model load + interpreter init
    first_inference_ms: float
    warmup_runs: int
    warmup_mean_ms: float | None
    runs: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float | None  # only with >= 1000 runs
    max_ms: float
    inferences_per_s: float  # batch * runs / total measured time
    # memory
    rss_after_load_bytes: int | None
    peak_rss_bytes: int | None
    # machine
    system: dict[str, Any] = field(default_factory=dict)
    samples_ms: list[float] = field(default_factory=list)
    # the image path of one file (`edgekd-rt bench --image`), None without one
    image_path: ImagePathReport | None = None

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not samples:
            d.pop("samples_ms")
            if d["image_path"] is not None:
                d["image_path"].pop("samples_ms")
        return d

    def rows(self) -> list[tuple[str, str]]:
        """(field, value) pairs for a human table, in benchmark_model's order."""
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f} ms"

        def mib(v: int | None) -> str:
            return "-" if v is None else f"{v / 2**20:.1f} MiB"

        s = self.system
        return [
            ("model", f"{self.model_path} ({self.format}, {self.precision}, {self.model_size_bytes:,} B)"),
            ("sha256", self.model_sha256[:16] + "..."),
            ("input", f"{self.input_shape} {self.input_dtype} {self.input_layout}, batch {self.batch}"),
            ("backend", f"{self.backend} {self.backend_version}, {self.delegate}, {self.threads} threads"),
            ("init (load)", ms(self.init_ms)),
            ("first inference", ms(self.first_inference_ms)),
            ("warm-up", f"{self.warmup_runs} runs, mean {ms(self.warmup_mean_ms)}"),
            ("runs", str(self.runs)),
            ("mean / std", f"{ms(self.mean_ms)} / {ms(self.std_ms)}"),
            ("min / max", f"{ms(self.min_ms)} / {ms(self.max_ms)}"),
            ("p50 / p90 / p95", f"{ms(self.p50_ms)} / {ms(self.p90_ms)} / {ms(self.p95_ms)}"),
            ("p99 / p99.9", f"{ms(self.p99_ms)} / {ms(self.p999_ms)}"),
            ("inferences/s", f"{self.inferences_per_s:,.1f}"),
            ("RSS after load / peak", f"{mib(self.rss_after_load_bytes)} / {mib(self.peak_rss_bytes)}"),
            ("machine", f"{s.get('cpu_model')}, {s.get('cpu_cores')} cores, {s.get('os')}, Python {s.get('python')}"),
        ] + (self.image_path.rows() if self.image_path is not None else [])


def benchmark_input(rec: "Recognizer | LineRecognizer", batch: int = 1, seed: int = 0) -> np.ndarray:
    """A fixed, digit-like random canvas batch (sparse bright strokes), laid out for the model (a line
    recognizer's canvases are (height, reference width): its `canvas_shape`)."""
    h, w = getattr(rec, "canvas_shape", None) or (rec.size, rec.size)  # type: ignore[union-attr]
    ink, level = _uniform((2, batch, h, w), seed)
    return rec.to_input(((ink < 0.2) * level).astype(np.float32))


def _uniform(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Deterministic uniform [0, 1) floats from a splitmix64 hash of (seed, index): what a benchmark input
    needs, without numpy.random (its generators cost a board process ~2 MiB of RSS that a bare interpreter
    loop does not pay)."""
    with np.errstate(over="ignore"):
        z = np.arange(int(np.prod(shape)), dtype=np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15 + 1) % 2**64)
        z *= np.uint64(0x9E3779B97F4A7C15)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return ((z >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(shape)


def _check_counts(runs: int, warmup: int, batch: int = 1) -> None:
    """The one home of the limits on a benchmark's counts (the CLI's options declare the same MAX_* bounds)."""
    if not 1 <= runs <= MAX_RUNS:
        raise UserInputError(f"runs={runs}: need 1 to {MAX_RUNS:,} measured runs (each keeps its sample)")
    if not 0 <= warmup <= MAX_RUNS:
        raise UserInputError(f"warmup={warmup}: must be 0 to {MAX_RUNS:,}")
    if not 1 <= batch <= MAX_BATCH:
        raise UserInputError(f"batch={batch}: must be 1 to {MAX_BATCH} (the whole batch is one input tensor in "
                             f"memory); time larger workloads as several runs")


def image_stages(rec: Any) -> tuple[Callable[[Any], Any], ...]:
    """The image path as three callables chained from a file: decode, preprocess, inference (see
    `ImagePathReport`); for a line recognizer preprocessing is the line canvas (its geometry dropped)."""
    run = rec.backend.run
    to_input = rec.to_input
    if getattr(rec, "task", "digits") == "lines":
        canvas = lambda gray: rec.canvas(gray)[0]  # noqa: E731
    else:
        canvas = rec.canvas
    return rec.load_image, canvas, lambda c: run(to_input(c[None]))


def run_image_benchmark(rec: Any, image: Any, runs: int = 100, warmup: int = 10,
                        progress: Callable[[int], None] | None = None) -> ImagePathReport:
    """Time the image path of `image` (a file) stage by stage, `runs` times after `warmup` (and one run that
    checks the image: an unreadable or blank one raises its ImageError before anything is timed).

    Raises:
        ImageError: the image cannot be decoded, or holds nothing to read (BlankImageError).
        UserInputError: runs or warmup outside 1..MAX_RUNS / 0..MAX_RUNS.
    """
    _check_counts(runs, warmup)
    stages = image_stages(rec)
    gray = stages[0](image)
    canvas = stages[1](image)  # from the file, not the array: its errors name the file
    first = time_stages(stages[2:], canvas, 1)[0, 0]
    if rec.first_inference_ms is None:
        rec.first_inference_ms = float(first)
    time_stages(stages, image, warmup)
    t = time_stages(stages, image, runs, progress)
    per = dict(zip(IMAGE_STAGES, t.T))
    per["total"] = t.sum(axis=1)
    return ImagePathReport(image=str(image), decoded_shape=[int(d) for d in gray.shape[:2]],
                           canvas_shape=[int(d) for d in canvas.shape], runs=runs, warmup_runs=warmup,
                           stages={k: StageStats.of(v) for k, v in per.items()},
                           samples_ms={k: [float(x) for x in v] for k, v in per.items()})


def run_benchmark(rec: "Recognizer | LineRecognizer", runs: int = 100, warmup: int = 10, batch: int = 1, seed: int = 0,
                  progress: Callable[[int], None] | None = None) -> LatencyReport:
    """Time `runs` interpreter calls after `warmup`; see the module docstring.

    Raises:
        UserInputError: runs, warmup or batch outside 1..MAX_RUNS, 0..MAX_RUNS, 1..MAX_BATCH.
    """
    _check_counts(runs, warmup, batch)
    x = benchmark_input(rec, batch, seed)
    run = (rec.backend.run,)
    if rec.first_inference_ms is None:
        rec.first_inference_ms = float(time_stages(run, x, 1)[0, 0])
    warm = time_stages(run, x, warmup)[:, 0]
    samples = time_stages(run, x, runs, progress)[:, 0]
    p50, p90, p95, p99, p999 = np.percentile(samples, [50, 90, 95, 99, 99.9])
    mp = rec.model_path
    inp = rec.backend.inputs[0]
    return LatencyReport(
        model_path=str(mp), model_size_bytes=mp.stat().st_size, model_sha256=sha256_file(mp),
        format=rec.backend.format, precision=rec.precision, input_shape=[int(d) for d in x.shape],
        input_dtype=inp.dtype, input_layout=rec.input_spec.layout, batch=batch,
        backend=rec.backend.name, backend_version=rec.backend.version, delegate=rec.backend.delegate,
        threads=rec.backend.threads, init_ms=rec.load_ms, first_inference_ms=float(rec.first_inference_ms),
        warmup_runs=warmup, warmup_mean_ms=float(warm.mean()) if warmup else None, runs=runs,
        mean_ms=float(samples.mean()), std_ms=float(samples.std()), min_ms=float(samples.min()),
        p50_ms=float(p50), p90_ms=float(p90), p95_ms=float(p95), p99_ms=float(p99),
        p999_ms=float(p999) if runs >= 1000 else None, max_ms=float(samples.max()),
        inferences_per_s=float(batch * runs * 1e3 / samples.sum()) if samples.sum() > 0 else float("inf"),
        rss_after_load_bytes=rec.rss_after_load_bytes, peak_rss_bytes=peak_rss_bytes(),
        system=system_info(), samples_ms=[float(v) for v in samples],
    )
