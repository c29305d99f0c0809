"""edgekd-rt predict / bench / info through the Typer app and as a real console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import numpy as np
import pytest
import typer
from PIL import Image
from rt_support import digit_canvas, handwriting_photo
from typer.testing import CliRunner

from edgekd_runtime.cli import app

runner = CliRunner()


@pytest.fixture()
def images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        Image.fromarray(handwriting_photo(digit_canvas(), seed=i)).save(d / f"digit{i}.png")
    (d / "readme.txt").write_text("not an image; ignored when expanding the directory")
    return d


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("cmd", [[], ["predict"], ["bench"], ["info"]])
def test_help(cmd):
    r = invoke(*cmd, "--help")
    assert r.exit_code == 0 and "Usage" in r.output


def test_predict_directory_and_file(images, bundle):
    r = invoke("predict", images, images / "digit0.png", "--model", bundle, "--top-k", 2)
    assert r.exit_code == 0, r.output
    assert r.output.count("digit0.png") == 2 and "digit1.png" in r.output and "readme" not in r.output


def test_predict_json(images, bundle, tflite_name):
    r = invoke("predict", images, "-m", bundle, "--json", "--backend", "tflite")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["backend"] == tflite_name and len(doc["results"]) == 2
    res = doc["results"][0]
    assert res["label"].startswith("c") and len(res["top_k"]) == 3 and res["latency_ms"] > 0


def test_predict_blank_page_exits_2_without_traceback(tmp_path, bundle, images):
    Image.new("L", (200, 200), 245).save(tmp_path / "blank.png")
    r = invoke("predict", images / "digit0.png", tmp_path / "blank.png", "-m", bundle, "--json")
    assert r.exit_code == 2
    doc = json.loads(r.stdout)  # the good image is still reported
    assert "label" in doc["results"][0] and doc["results"][1]["error_type"] == "BlankImageError"
    assert "blank.png: no ink found" in r.stderr and "Traceback" not in r.output


@pytest.mark.parametrize("case", ["missing_model", "bad_model", "checksum", "missing_image", "empty_dir"])
def test_bad_input_exits_2(case, tmp_path, bundle, images):
    model, imgs = bundle, [images]
    if case == "missing_model":
        model = tmp_path / "nope.onnx"
    elif case == "bad_model":
        model = tmp_path / "bad.tflite"
        model.write_bytes(b"garbage!" * 8)
    elif case == "checksum":
        (bundle / "student.onnx").write_bytes((bundle / "student.onnx").read_bytes() + b"\0")
    elif case == "missing_image":
        imgs = [tmp_path / "nope.png"]
    else:
        (tmp_path / "empty").mkdir()
        imgs = [tmp_path / "empty"]
    r = invoke("predict", *imgs, "-m", model)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and "Traceback" not in r.output


def test_bench_json_has_samples(bundle, tflite_name):
    r = invoke("bench", bundle, "--runs", 30, "--warmup", 2, "--threads", 1, "--backend", "tflite", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert len(doc["samples_ms"]) == 30 and doc["threads"] == 1 and doc["backend"] == tflite_name
    assert doc["format"] == "tflite" and doc["warmup_runs"] == 2


def test_threads_over_the_cores_warn_on_one_line_and_are_capped(tiny_tflite):
    from edgekd_runtime.backends import usable_cores

    r = invoke("bench", tiny_tflite, "-n", 3, "--warmup", 0, "--threads", 100_000, "--json")
    assert r.exit_code == 0, r.output
    cores = usable_cores()
    if cores < 100_000:
        assert f"warning: threads=100000 is more than the {cores} cores this process may use; using {cores}\n" \
            in r.stderr and "Warning:" not in r.stderr
    assert json.loads(r.stdout)["threads"] == cores
    r = invoke("bench", tiny_tflite, "--threads", 0)
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_bench_human_table(tiny_tflite):
    r = invoke("bench", tiny_tflite, "-n", 20)
    assert r.exit_code == 0, r.output
    for field in ("first inference", "p50", "p99", "inferences/s", "XNNPACK", "RSS"):
        assert field in r.stdout


def test_bench_bad_backend(bundle):
    r = invoke("bench", bundle, "--backend", "tpu")
    assert r.exit_code == 2 and "known backends: auto, onnx, tflite" in r.stderr


def test_info(bundle):
    r = invoke("info", bundle, "--precision", "int8")
    assert r.exit_code == 0, r.output
    assert "student_int8.tflite" in r.stdout and "int8" in r.stdout and "scale" in r.stdout
    doc = json.loads(invoke("info", bundle, "--json").stdout)
    assert doc["format"] == "onnx" and doc["labels"][0] == "c0" and len(doc["manifest"]["artifacts"]) == 3


def test_info_shows_the_deployed_artifact(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**m, "deployed": "student_int8.tflite"}))
    r = invoke("info", bundle)
    assert r.exit_code == 0, r.output
    assert "student_int8.tflite (loaded)" in r.stdout and "int8" in r.stdout
    r = invoke("info", bundle, "--precision", "fp32")
    assert r.exit_code == 0 and "student_int8.tflite (NOT loaded; student.onnx is)" in r.stdout
    doc = json.loads(invoke("info", bundle, "--json").stdout)
    assert doc["artifact"] == doc["deployed"] == "student_int8.tflite" and doc["is_deployed"] is True


def test_console_script_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "student.onnx"
    bad.write_bytes(b"\x08\x01" * 5)
    p = subprocess.run([sys.executable, "-m", "edgekd_runtime.cli", "info", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "student.onnx" in p.stderr


def test_predict_prints_the_reading(tmp_path, lin_onnx, lin_weights):
    from rt_support import reference_logits

    from edgekd_runtime.preprocess import preprocess

    photo = handwriting_photo(digit_canvas())
    Image.fromarray(photo).save(tmp_path / "p.png")
    z = reference_logits(preprocess(tmp_path / "p.png")[None], *lin_weights)[0]
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    doc = json.loads(invoke("predict", tmp_path / "p.png", "-m", lin_onnx, "--json", "-k", 4).stdout)
    res = doc["results"][0]
    assert res["index"] == int(p.argmax()) and res["image"] == str(tmp_path / "p.png")
    assert [c["label"] for c in res["top_k"]] == [str(i) for i in np.argsort(-p)[:4]]
    np.testing.assert_allclose([c["probability"] for c in res["top_k"]], np.sort(p)[::-1][:4], rtol=1e-4)


def test_predict_many_images_with_progress(tmp_path, lin_onnx):
    photo = Image.fromarray(handwriting_photo(digit_canvas(), height=120, width=160, scale=3, top=10, left=50))
    for i in range(21):
        photo.save(tmp_path / f"img{i:02d}.png")
    r = invoke("predict", tmp_path, "-m", lin_onnx)
    assert r.exit_code == 0, r.output
    assert all(f"img{i:02d}.png" in r.stdout for i in range(21))


@pytest.mark.parametrize("error,warned", [("ModuleNotFoundError('gone', name='edgekd_runtime.cli_calibrate')", False),
                                          ("ImportError('libfoo.so: cannot open shared object file')", True)])
def test_calibrate_command_missing_or_broken_keeps_the_others(error, warned):
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "edgekd_runtime.cli_calibrate":
            raise {error}
sys.meta_path.insert(0, Block())
import edgekd_runtime.cli as cli
print(sorted(c.name for c in cli.app.registered_commands))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "['bench', 'info', 'predict', 'read']"
    assert ("calibrate is unavailable" in p.stderr) == warned


def _coercion_apps():
    """The same parameters (every kind edgekd-rt uses) on a plain Typer app and on LeanCommand/LeanGroup."""
    from edgekd_runtime.cli_support import LeanCommand, LeanGroup

    apps = []
    for group, command in ((None, None), (LeanGroup, LeanCommand)):
        app_ = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                           **({"cls": group} if group else {}))

        @app_.command("cmd", **({"cls": command} if command else {}))
        def cmd(paths: List[Path] = typer.Argument(...), model: Path = typer.Option(Path("m"), "--model"),
                runs: int = typer.Option(100, "--runs", "-n", min=1), warmup: int = typer.Option(10, min=0, max=50),
                threads: Optional[int] = typer.Option(None, min=1), backend: str = typer.Option("auto"),
                precision: Optional[List[str]] = typer.Option(None, "--precision", "-p"),
                flag: bool = typer.Option(False, "--json"), mean: Optional[float] = typer.Option(None),
                limit: Annotated[int | None, typer.Option("--limit", max=9)] = None) -> None:
            print(repr((paths, model, runs, warmup, threads, backend, precision, flag, mean, limit)))

        @app_.command("other")
        def other() -> None:
            pass

        apps.append(app_)
    return apps


@pytest.mark.parametrize("argv", [
    ["cmd", "a.png", "b"], ["cmd", "x", "--runs", "7", "-n", "3", "--warmup", "0", "--threads", "2", "--json"],
    ["cmd", "x", "--model", "dir/sub", "--backend", "tflite", "-p", "fp32", "-p", "int8"], ["cmd", "x", "--runs", "0"],
    ["cmd", "x", "--runs", "abc"], ["cmd", "x", "--runs", " 5"], ["cmd", "x", "--runs", "+5"], ["cmd", "x", "-n", "-3"],
    ["cmd", "x", "--warmup", "51"], ["cmd", "x", "--threads", "1.5"], ["cmd", "x", "--runs", "1_000"], ["cmd"],
    ["cmd", "--help"], ["--help"], ["cmd", "x", "--nope"], ["cmd", "x", "--model", ""], ["cmd", "x", "--mean", "0"],
    ["cmd", "x", "--mean", "-0.25"], ["cmd", "x", "--mean", "1e-3"], ["cmd", "x", "--mean", "nan"],
    ["cmd", "x", "--mean", "-inf"], ["cmd", "x", "--mean", "abc"], ["cmd", "x", "--mean", ".5"],
    ["cmd", "x", "--limit", "9"], ["cmd", "x", "--limit", "10"], ["cmd", "x", "--limit", "x"]])
def test_lean_command_coerces_like_typer(argv):
    """LeanCommand takes the plain values without pydantic: the same values, errors and exit codes as typer."""
    plain, lean = _coercion_apps()
    a, b = CliRunner().invoke(plain, argv), CliRunner().invoke(lean, argv)
    assert (b.exit_code, b.output) == (a.exit_code, a.output)


def test_edgekd_rt_bench_does_not_import_pydantic(tiny_tflite):
    code = ("import sys\nsys.argv = ['edgekd-rt', 'bench', %r, '-n', '5', '--threads', '1', '--json']\n"
            "from edgekd_runtime.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('PYDANTIC', sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core')))"
            % str(tiny_tflite))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("PYDANTIC []"), p.stdout[-300:]


def test_no_private_module_of_another_package_is_imported():
    """Public APIs only: no `from typer._coercion import ...`-style import anywhere in the shipped code."""
    import ast

    root = Path(__file__).resolve().parents[2]
    own = ("edgekd", "edgekd_runtime", "edgekd_converters")
    bad = []
    for path in [*root.glob("edgekd/**/*.py"), *root.glob("runtime/**/*.py"), *root.glob("converters/**/*.py"),
                 *root.glob("samples/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                parts = name.split(".")
                if parts[0] not in own and any(p.startswith("_") and p != "__future__" for p in parts):
                    bad.append(f"{path.relative_to(root)}:{node.lineno} {name}")
    assert not bad, bad


def test_no_private_name_is_imported_from_another_module():
    """A name another module needs is public (one home, one contract): no `from .render import _pct`."""
    import ast

    root = Path(__file__).resolve().parents[2]
    bad = []
    for path in [*root.glob("edgekd/**/*.py"), *root.glob("runtime/edgekd_runtime/*.py"),
                 *root.glob("converters/edgekd_converters/*.py"), *root.glob("samples/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                bad += [f"{path.relative_to(root)}:{node.lineno} {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, bad


def test_results_tables_name_images_as_given_when_names_clash_and_never_as_markup():
    from edgekd_runtime.cli_support import table_names

    assert table_names(["x/a.png", "b.png"]) == ["a.png", "b.png"]
    assert table_names(["good.png", "sub/good.png", "c.png"]) == ["good.png", "sub/good.png", "c.png"]
    assert table_names(["[red]evil.png"]) == ["\\[red]evil.png"]  # rich prints it as "[red]evil.png"
