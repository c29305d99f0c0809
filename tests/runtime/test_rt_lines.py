"""The runtime side of text-line bundles, on a hand-made CTC line model (no torch, no TFLite): the manifest's
lines block, `load` -> `LineRecognizer`, `forward`/`read`/`read_batch`/`benchmark`, where each character lies in
the image, the wrong-call errors both ways, and `edgekd-rt read` / `info` / `bench` / `predict`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rt_support import bars_image, make_line_onnx
from typer.testing import CliRunner

import edgekd_runtime as rt
from edgekd_runtime.cli import app
from edgekd_runtime.errors import BlankImageError, ManifestError, WrongTaskError
from edgekd_runtime.lines import LineTooWideError
from edgekd_runtime.manifest import LINE_TASK, Artifact, InputSpec, LinesSpec, Manifest

CHARSET = "ab"
SPEC = LinesSpec(charset=CHARSET, height=24, width=96, max_width=384, dynamic_formats=("onnx",), max_len=12)


def _line_manifest(d: Path, files: list[str], spec: LinesSpec = SPEC) -> Manifest:
    m = Manifest(name="ctc-hand", labels=list(spec.charset), input=InputSpec("input", (1, 1, 24, spec.width)),
                 output={"name": "logits", "kind": "logits"}, task=LINE_TASK, lines=spec)
    m.artifacts = [Artifact.from_file(d, f, "fp32") for f in files]
    m.save(d)
    return m


@pytest.fixture(scope="module")
def line_bundle(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("line_bundle")
    make_line_onnx(d / "student.onnx", len(CHARSET) + 1)
    _line_manifest(d, ["student.onnx"])
    return d


@pytest.fixture(scope="module")
def fixed_bundle(tmp_path_factory) -> Path:
    """The same model with a fixed 96-px input (what a TFLite artifact takes)."""
    d = tmp_path_factory.mktemp("fixed_bundle")
    make_line_onnx(d / "student.onnx", len(CHARSET) + 1, width=96)
    _line_manifest(d, ["student.onnx"], LinesSpec(CHARSET, 24, 96, 96, (), max_len=12))
    return d


def test_manifest_round_trips_the_lines_block_and_digit_manifests_keep_their_schema(line_bundle):
    m = Manifest.load(line_bundle)
    assert m.task == LINE_TASK and m.lines == SPEC
    d = json.loads((line_bundle / "manifest.json").read_text())
    assert d["lines"] == {"charset": "ab", "height": 24, "width": 96, "max_width": 384, "dynamic_formats": ["onnx"],
                          "blank": 0, "frame_stride": 4, "max_len": 12, "text_height_share": 0.83,
                          "confidence_temperature": 1.0}
    digits = Manifest(name="tiny", labels=list("0123456789")).to_dict()
    assert "lines" not in digits and Manifest.from_dict(digits).lines is None


@pytest.mark.parametrize("change, says", [
    ({"lines": None}, "needs a \"lines\" block"),
    ({"task": "image-classification"}, "cannot have a \"lines\" block"),
    ({"lines": "ab"}, "must be an object"),
    ({"lines": {"charset": "ab", "height": 24, "width": 96}}, "lacks ['max_width']"),
    ({"lines": {**SPEC.to_dict(), "colour": 1}}, "unknown field(s) ['colour']"),
    ({"lines": {**SPEC.to_dict(), "blank": 3}}, "lines.blank is 3"),
    ({"lines": {**SPEC.to_dict(), "charset": "aa"}}, "distinct characters"),
    ({"lines": {**SPEC.to_dict(), "width": 90}}, "multiple of frame_stride"),
    ({"lines": {**SPEC.to_dict(), "max_width": 64}}, ">= width 96"),
    ({"lines": {**SPEC.to_dict(), "height": "24"}}, "height must be an integer"),
    ({"lines": {**SPEC.to_dict(), "dynamic_formats": ["gguf"]}}, "dynamic_formats"),
    ({"lines": {**SPEC.to_dict(), "text_height_share": 2}}, "text_height_share"),
    ({"lines": {**SPEC.to_dict(), "confidence_temperature": float("nan")}}, "confidence_temperature nan"),
    ({"lines": {**SPEC.to_dict(), "confidence_temperature": 0}}, "confidence_temperature 0 must be"),
    ({"lines": {**SPEC.to_dict(), "confidence_temperature": -1.5}}, "confidence_temperature -1.5"),
    ({"lines": {**SPEC.to_dict(), "confidence_temperature": "2"}}, "confidence_temperature '2'"),
    ({"labels": ["x", "y"]}, "not the characters of lines.charset"),
    ({"input": {"name": "input", "shape": [1, 1, 32, 96]}}, "does not have the height"),
])
def test_corrupt_line_manifests_are_refused_with_the_field_named(line_bundle, tmp_path, change, says):
    d = tmp_path / "b"
    shutil.copytree(line_bundle, d)
    m = {**json.loads((d / "manifest.json").read_text()), **change}
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=None) as e:
        rt.load(d)
    assert says in str(e.value) and "manifest.json" in str(e.value)
    r = CliRunner().invoke(app, ["read", str(tmp_path), "--model", str(d)])
    assert r.exit_code == 2 and says in r.stderr


def test_load_returns_a_line_recognizer_whose_forward_takes_any_width(line_bundle):
    rec = rt.load(line_bundle)
    assert isinstance(rec, rt.LineRecognizer) and rec.fixed_width is None and rec.max_width == 384
    c = np.zeros((2, 24, 96), np.float32)
    c[0, 4:20, 10:20] = 1.0
    for w in (96, 190, 384):
        cw = np.zeros((2, 24, w), np.float32)
        cw[:, :, :96] = c
        y = rec.forward(cw)
        assert y.shape == (2, -(-w // 4), 3) and y.dtype == np.float32
        assert np.array_equal(y[..., :24, :].argmax(-1), rec.forward(c).argmax(-1))
    with pytest.raises(LineTooWideError, match="at most 384"):
        rec.forward(np.zeros((1, 24, 388), np.float32))
    assert rec.evaluate(c, ["", ""])["cer"] >= 0.0
    with pytest.raises(rt.UserInputError, match=r"the texts use \['c', 'x'\], which .* cannot read"):
        rec.evaluate(c, ["ab", "cx"])  # the fixture's model reads "ab"


def test_line_canvases_outside_0_1_are_refused_like_digit_canvases(line_bundle):
    from edgekd_runtime.errors import ImageError, InputShapeError

    rec = rt.load(line_bundle)
    c = np.zeros((1, 24, 96), np.float32)
    c[0, 4:20, 10:20] = 1.0
    normalised = (c - rec.normalization.mean) / rec.normalization.std
    with pytest.raises(InputShapeError, match=r"line canvases must be un-normalised .* normalised already"):
        rec.forward(normalised)
    with pytest.raises(InputShapeError, match="divide 0..255 pixel values by 255"):
        rec.forward(c * 255.0)
    with pytest.raises(ImageError, match="NaN/inf"):
        rec.forward(np.where(c > 0, np.nan, c))
    assert rec.forward((c * 255).astype(np.uint8)).shape == rec.forward(c).shape  # uint8 pixels are read as /255


def test_a_line_bundle_refuses_a_normalisation_other_than_its_manifest(line_bundle):
    from edgekd_runtime.errors import UserInputError

    with pytest.raises(UserInputError, match="its manifest sets the normalisation"):
        rt.load(line_bundle, mean=0.5, std=0.5)


def test_a_fixed_width_artifact_pads_narrower_lines_and_refuses_wider_ones(fixed_bundle):
    rec = rt.load(fixed_bundle)
    assert rec.fixed_width == 96 and rec.canvas_shape == (24, 96)
    assert rec.forward(np.zeros((3, 24, 40), np.float32)).shape == (3, 24, 3)
    with pytest.raises(LineTooWideError, match="at most 96"):
        rec.forward(np.zeros((1, 24, 100), np.float32))


def test_read_gives_text_confidence_and_where_each_character_is(line_bundle):
    rec = rt.load(line_bundle)
    spans = [(50, 80), (200, 230), (300, 330)]
    r = rec.read(bars_image(spans))
    assert r.text == "aaa" and 0.0 < r.confidence <= 1.0  # the hand model is unsure on frames half on a bar
    assert [c for c, _, _ in r.characters] == ["a", "a", "a"]
    for (_, p, (x0, x1)), (b0, b1) in zip(r.characters, spans):
        assert 0.5 < p <= 1.0
        assert abs(x0 - b0) <= 12 and abs(x1 - b1) <= 12, (x0, x1, b0, b1)
    assert r.latency_ms > 0 and r.preprocess_ms > 0
    d = r.to_dict()
    assert d["characters"][0].keys() == {"char", "probability", "x0", "x1"}


def test_read_batch_matches_read_and_a_blank_or_too_wide_line_is_refused(line_bundle, fixed_bundle):
    rec = rt.load(line_bundle)
    imgs = [bars_image([(50, 80)]), bars_image([(50, 80), (200, 230)])]
    assert [r.text for r in rec.read_batch(imgs)] == ["a", "aa"] == [rec.read(i).text for i in imgs]
    with pytest.raises(BlankImageError):
        rec.read(np.full((100, 400), 200, np.uint8))
    wide = bars_image([(i, i + 10) for i in range(10, 3990, 40)], width=4000, top=45, bottom=55)
    with pytest.raises(LineTooWideError, match="split"):
        rec.read(wide)
    assert rt.load(fixed_bundle).read(imgs[1]).text == "aa"


def test_a_pattern_constrains_the_reading_and_a_bad_one_is_refused_before_decoding(line_bundle, tmp_path):
    from edgekd_runtime.errors import PatternError

    rec = rt.load(line_bundle)
    img = bars_image([(50, 80), (200, 230), (300, 330)])
    assert rec.read(img).text == "aaa"
    assert rec.read(img, pattern="a{2}").text == "aa"  # the constrained beam search keeps the best allowed reading
    assert rec.read(img, max_len=1).text == "a"
    with pytest.raises(PatternError):
        rec.read(img, pattern="c+")  # no string over "ab" matches
    Image.fromarray(img).save(tmp_path / "l.png")
    r = CliRunner().invoke(app, ["read", str(tmp_path / "l.png"), "--model", str(line_bundle), "--pattern", "a{2}",
                                 "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["results"][0]["text"] == "aa"
    r = CliRunner().invoke(app, ["read", str(tmp_path / "l.png"), "--model", str(line_bundle), "--max-len", "1"])
    assert r.exit_code == 0 and "│ a " in r.stdout
    r = CliRunner().invoke(app, ["read", str(tmp_path / "l.png"), "--model", str(line_bundle), "--allowed", "b"])
    assert r.exit_code == 0 and "(empty)" in r.stdout  # the likeliest reading using only "b" is the empty one
    r = CliRunner().invoke(app, ["read", str(tmp_path / "l.png"), "--model", str(line_bundle), "--pattern", "c+"])
    assert r.exit_code == 2 and "error: " in r.stderr and "'c+'" in r.stderr
    too_long = "a{%d}" % (rec.max_chars + 1)  # more characters than the model's frames hold: refused, not ""
    for args in (["--pattern", too_long], ["--pattern", "a{100000}"], ["--min-len", str(rec.max_chars + 1)]):
        r = CliRunner().invoke(app, ["read", str(tmp_path / "l.png"), "--model", str(line_bundle), *args])
        assert r.exit_code == 2 and f"holds at most {rec.max_chars} characters" in r.stderr, args


def _with_temperature(bundle: Path, out: Path, temperature: float) -> Path:
    shutil.copytree(bundle, out)
    d = json.loads((out / "manifest.json").read_text())
    d["lines"]["confidence_temperature"] = temperature
    (out / "manifest.json").write_text(json.dumps(d))
    return out


def _line_canvases(width: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """Canvases with bars of ink of random places, widths and strengths, specks of noise, and a blank one."""
    rng = np.random.default_rng(seed)
    out = [np.zeros((24, width), np.float32)]
    for _ in range(n):
        c = (rng.random((24, width)) < 0.05).astype(np.float32) * rng.random((24, width), dtype=np.float32) * 0.5
        for x0 in rng.integers(0, width - 6, int(rng.integers(1, 5))).tolist():
            c[4:20, x0:x0 + int(rng.integers(2, 12))] = rng.random(dtype=np.float32)
        out.append(c)
    return out


@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_read_of_a_canvas_is_the_softmax_reading_bit_for_bit(line_bundle, fixed_bundle, tmp_path, temperature):
    """read(canvas, preprocessed=True) decodes straight from the scores; text, confidence, characters and spans
    are what the greedy decoding on softmax(scores) (and on softmax(scores / T)) gives, for a dynamic- and a
    fixed-width artifact, narrower canvases (padded), a blank one, and read_batch on the batch's scores."""
    from lines_support import softmax_reading

    for name, bundle, widths in (("dynamic", line_bundle, (40, 96, 200)), ("fixed", fixed_bundle, (40, 96))):
        rec = rt.load(_with_temperature(bundle, tmp_path / name, temperature))
        assert rec.lines.confidence_temperature == temperature
        for w in widths:
            canvases = _line_canvases(w, 12, seed=w)
            reads = [rec.read(c, preprocessed=True) for c in canvases]
            want = [softmax_reading(rec, c) for c in canvases]
            assert [(r.text, r.confidence, r.characters) for r in reads] == want
            batch = [softmax_reading(rec, c, s) for c, s in zip(canvases, rec.forward(np.stack(canvases)))]
            assert [(r.text, r.confidence, r.characters) for r in rec.read_batch(canvases, preprocessed=True)
                    ] == batch  # (onnxruntime may round a batch's scores otherwise than one line's)
            assert want[0][0] == "" and sum(t != "" for t, _, _ in want) >= 10  # blank, and lines with readings


def test_nan_scores_are_never_a_reading(tmp_path):
    from edgekd_runtime.errors import ModelOutputError

    d = tmp_path / "nan"
    d.mkdir()
    make_line_onnx(d / "student.onnx", len(CHARSET) + 1, nan=True)
    _line_manifest(d, ["student.onnx"])
    rec = rt.load(d)
    with pytest.raises(ModelOutputError, match="non-finite scores"):
        rec.read(bars_image([(50, 80)]))
    with pytest.raises(ModelOutputError):
        rec.forward(np.zeros((1, 24, 96), np.float32))
    with pytest.raises(ModelOutputError, match="non-finite scores"):
        rec.read(np.zeros((24, 96), np.float32), preprocessed=True)
    Image.fromarray(bars_image([(50, 80)])).save(tmp_path / "l.png")
    r = CliRunner().invoke(app, ["read", str(tmp_path / "l.png"), "--model", str(d)])
    assert r.exit_code == 2 and "non-finite scores" in r.stderr


def test_the_wrong_call_says_which_one_to_use(line_bundle, bundle):
    with pytest.raises(WrongTaskError, match=r"call read\(\)"):
        rt.load(line_bundle).predict(bars_image([(50, 80)]))
    with pytest.raises(WrongTaskError, match=r"call predict\(\)"):
        rt.load(bundle, backend="onnx").read("x.png")


def test_benchmark_times_a_line_of_the_reference_width(line_bundle):
    rep = rt.load(line_bundle).benchmark(runs=3, warmup=1)
    assert rep.input_shape == [1, 1, 24, 96] and rep.runs == 3


def test_cli_read_info_bench_and_predict_on_line_bundles(line_bundle, bundle, tmp_path):
    img, blank = tmp_path / "two.png", tmp_path / "blank.png"
    Image.fromarray(bars_image([(50, 80), (200, 230)])).save(img)
    Image.fromarray(np.full((100, 400), 200, np.uint8)).save(blank)
    runner = CliRunner()
    r = runner.invoke(app, ["read", str(img), "--model", str(line_bundle), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)["results"][0]
    assert out["text"] == "aa" and len(out["characters"]) == 2
    wide = tmp_path / "wide.png"
    Image.fromarray(bars_image([(i, i + 10) for i in range(10, 3990, 40)], width=4000, top=45, bottom=55)).save(wide)
    r = runner.invoke(app, ["read", str(img), str(blank), str(wide), "--model", str(line_bundle)])
    assert r.exit_code == 2 and "aa" in r.stdout and "no ink" in r.stderr and "split it into shorter" in r.stderr
    r = runner.invoke(app, ["read", str(img), "--model", str(bundle), "--backend", "onnx"])
    assert r.exit_code == 2 and "single-digit model" in r.stderr and "edgekd-rt predict" in r.stderr
    r = runner.invoke(app, ["predict", str(img), "--model", str(line_bundle)])
    assert r.exit_code == 2 and "text-line model" in r.stderr and "edgekd-rt read" in r.stderr
    many = tmp_path / "many"
    many.mkdir()
    for i in range(21):  # past PROGRESS_MIN_IMAGES: read behind a progress bar, every line still reported
        shutil.copy(img, many / f"l{i:02d}.png")
    r = runner.invoke(app, ["read", str(many), "--model", str(line_bundle)])
    assert r.exit_code == 0 and all(f"l{i:02d}.png" in r.stdout for i in range(21))
    r = runner.invoke(app, ["info", str(line_bundle)])
    assert r.exit_code == 0 and "dynamic, up to 384 px" in r.stdout and "ab" in r.stdout
    r = runner.invoke(app, ["bench", str(line_bundle), "--runs", "3", "--batch", "2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    per = doc["lines"]
    assert per["line_width"] == 96 and per["chars_per_line"] == 4 and doc["input_shape"] == [2, 1, 24, 96]
    assert per["per_line_ms"] == pytest.approx(doc["mean_ms"] / 2)
    assert per["per_char_ms"] == pytest.approx(per["per_line_ms"] / 4)
    r = runner.invoke(app, ["bench", str(line_bundle), "--runs", "3"])
    assert r.exit_code == 0 and "per character" in r.stdout


def test_cli_read_refuses_a_photo_without_a_text_line_and_a_20000_px_line_with_one_message_each(line_bundle,
                                                                                                  tmp_path):
    """Issue 12's bad input that the tests above do not reach through `edgekd-rt read`: exit 2, one line each."""
    rng = np.random.default_rng(0)
    paper = np.clip(200 + 30 * np.linspace(0, 1, 900)[None, :] + rng.normal(0, 5, (300, 900)), 0, 255)
    thumb = paper.astype(np.uint8)
    thumb[90:180, 300:480] = 30  # a solid blob (a thumb, a sticker), no writing
    Image.fromarray(thumb).save(tmp_path / "thumb.png")
    wide = bars_image([(i, i + 10) for i in range(10, 19_990, 40)], width=20_000)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(bars_image([(50, 80)])).save(tmp_path / "one.png")
    r = CliRunner().invoke(app, ["read", str(tmp_path), "--model", str(line_bundle), "--json"])
    assert r.exit_code == 2
    out = {Path(x["image"]).name: x for x in json.loads(r.stdout)["results"]}
    assert out["one.png"]["text"] == "a"
    assert out["thumb.png"]["error_type"] == "ImageError" and "no text line found" in out["thumb.png"]["error"]
    assert out["wide.png"]["error_type"] == "LineTooWideError" and "split it into shorter" in out["wide.png"]["error"]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all("thumb.png" in e or "wide.png" in e for e in errors)


def test_read_of_a_preprocessed_canvas_skips_the_line_preprocessing(line_bundle):
    from edgekd_runtime.errors import InputShapeError

    rec = rt.load(line_bundle)
    canvas, _ = rec.canvas(bars_image([(50, 80), (200, 230)]))
    r = rec.read(canvas, preprocessed=True)
    assert r.text == rec.read(bars_image([(50, 80), (200, 230)])).text == "aa"
    assert r.source is not None and r.latency_ms > 0
    assert all(0 <= x0 < x1 <= canvas.shape[1] for _, _, (x0, x1) in r.characters)  # the canvas's own columns
    assert rec.read((canvas * 255).astype(np.uint8), preprocessed=True).text == "aa"
    with pytest.raises(InputShapeError, match="one canvas"):
        rec.read(canvas[None], preprocessed=True)
    with pytest.raises(InputShapeError, match="do not fit"):
        rec.read(canvas[:12], preprocessed=True)
