"""Data sources, splits, augmentation and `edgekd data info` on small files the tests write."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.data import DataSpec, load_data
from edgekd.data.idx import DataFileError, read_idx
from edgekd_runtime.errors import UnknownNameError, UserInputError


def _digits(n_per_class: int, classes: int = 3, seed: int = 0):
    """Distinct synthetic 28x28 images: class c has a bar at row 4 + 6c, plus an index-dependent pixel."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(classes):
        for i in range(n_per_class):
            img = np.zeros((28, 28), np.uint8)
            img[4 + 6 * c: 7 + 6 * c, 5:20] = 255
            img[25, i % 28] = rng.integers(1, 255)
            xs.append(img)
            ys.append(c)
    return np.stack(xs), np.asarray(ys, np.uint8)


def test_embedded_is_deterministic_stratified_and_disjoint():
    a = load_data(DataSpec(seed=3))
    b = load_data(DataSpec(seed=3))
    c = load_data(DataSpec(seed=4))
    assert (len(a.train), len(a.val), len(a.test)) == (3500, 500, 1000)
    assert a.train.counts(10) == [350] * 10 and a.test.counts(10) == [100] * 10
    assert np.array_equal(a.train.x, b.train.x) and np.array_equal(a.test.y, b.test.y)
    assert not np.array_equal(a.test.x, c.test.x)
    assert a.train.x.dtype == np.uint8 and a.train.x.shape[1:] == (28, 28) and a.train.y.dtype == np.int64
    keys = lambda s: {x.tobytes() for x in s.x}  # noqa: E731
    assert not keys(a.train) & keys(a.test) and not keys(a.val) & keys(a.test)
    assert a.class_names == [str(i) for i in range(10)]


def test_idx_plain_and_gzip_with_official_test_split(tmp_path, idx_writer):
    x, y = _digits(10)
    idx_writer(tmp_path / "train-images-idx3-ubyte.gz", x, gz=True)
    idx_writer(tmp_path / "train-labels-idx1-ubyte.gz", y, gz=True)
    xt, yt = _digits(4, seed=1)
    idx_writer(tmp_path / "t10k-images-idx3-ubyte", xt)
    idx_writer(tmp_path / "t10k-labels-idx1-ubyte", yt)
    s = load_data(DataSpec("idx", str(tmp_path), val_fraction=0.2))
    assert s.class_names == ["0", "1", "2"]
    assert len(s.test) == 12 and s.test.counts(3) == [4, 4, 4]  # the official test files, untouched
    assert len(s.train) + len(s.val) == 30 and s.val.counts(3) == [2, 2, 2]
    assert {t.tobytes() for t in s.test.x} == {t.tobytes() for t in xt}
    assert np.array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), x)


def test_emnist_images_are_transposed_back_and_mapping_names_classes(tmp_path, idx_writer):
    x, _ = _digits(6)
    y = np.repeat(np.array([1, 2, 3], np.uint8), 6)  # EMNIST letters are labelled from 1
    idx_writer(tmp_path / "emnist-letters-train-images-idx3-ubyte.gz", x.transpose(0, 2, 1), gz=True)
    idx_writer(tmp_path / "emnist-letters-train-labels-idx1-ubyte.gz", y, gz=True)
    (tmp_path / "emnist-letters-mapping.txt").write_text("1 65 97\n2 66 98\n3 67 99\n")
    s = load_data(DataSpec("idx", str(tmp_path), val_fraction=0.0, test_fraction=0.0))
    assert s.class_names == ["A", "B", "C"]
    assert sorted(set(s.train.y.tolist())) == [0, 1, 2]
    # the stored-transposed images come back upright: class 0's bar is horizontal at rows 4..6
    img = s.train.x[s.train.y == 0][0]
    assert img[5, 5:20].min() == 255 and img[10:20, 5].max() == 0


def test_npz_float_and_uint8(tmp_path):
    x, y = _digits(10)
    np.savez(tmp_path / "f.npz", x=x.astype(np.float32) / 255.0, y=y, class_names=np.array(["a", "b", "c"]))
    np.savez(tmp_path / "u.npz", images=x.reshape(len(x), 784), labels=y)
    f = load_data(DataSpec("npz", str(tmp_path / "f.npz"), seed=1))
    u = load_data(DataSpec("npz", str(tmp_path / "u.npz"), seed=1))
    assert f.class_names == ["a", "b", "c"] and u.class_names == ["0", "1", "2"]
    assert np.array_equal(f.train.x, u.train.x) and np.array_equal(f.train.y, u.train.y)


def test_array_canvases_follow_the_runtimes_0_255_rule():
    """npz/embedded arrays: 0..1 and 0..255 floats, integers and bools become the same uint8 canvases (the
    runtime's `full_scale`); 0..1 with a resize's overshoot is still 0..1; anything else is refused by name."""
    from edgekd.data.sources import to_uint8_canvases

    x, _ = _digits(2)
    for a in (x.astype(np.float32) / 255, x.astype(np.float64), x.astype(np.int32),
              np.minimum(x / 255 * 1.0005, 1.0005)):
        assert np.array_equal(to_uint8_canvases(a, "a.npz"), x)
    assert np.array_equal(to_uint8_canvases(x > 127, "a.npz"), np.where(x > 127, 255, 0))
    binary = (x > 127).astype(np.int64)  # a binarised npz: 1 is white, as for bools
    assert np.array_equal(to_uint8_canvases(binary, "a.npz"), np.where(x > 127, 255, 0))
    with pytest.raises(UserInputError, match="a.npz: pixel values must be in 0..1 or 0..255"):
        to_uint8_canvases(x.astype(np.float32) * 2, "a.npz")
    with pytest.raises(UserInputError, match="a.npz: negative pixel values"):
        to_uint8_canvases(x.astype(np.float32) / 255 - 0.1307, "a.npz")
    with pytest.raises(UserInputError, match="a.npz: .*NaN"):
        to_uint8_canvases(np.where(x > 0, np.nan, 0.0), "a.npz")


def test_folder_source_reads_every_runtime_image_suffix(tmp_path):
    from PIL import Image

    img = np.full((28, 28), 255, np.uint8)
    img[6:22, 12:16] = 0
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i, suffix in enumerate((".ppm", ".PGM", ".png")):
            Image.fromarray(img).convert("RGB" if suffix == ".ppm" else "L").save(tmp_path / name / f"{i}{suffix}")
        (tmp_path / name / "notes.txt").write_text("not an image")
    s = load_data(DataSpec("folder", str(tmp_path), val_fraction=0.0, test_fraction=0.0))
    assert len(s.train) == 6


def test_folder_source_uses_runtime_preprocessing(tmp_path):
    from PIL import Image

    from edgekd_runtime.preprocess import preprocess

    for c, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for i in range(5):
            img = np.full((60, 40), 255, np.uint8)  # dark ink on white paper, not 28x28
            img[10 + 5 * c: 40, 10 + i: 18 + i + 8 * c] = 0
            Image.fromarray(img).save(tmp_path / name / f"{i}.png" if i % 2 else tmp_path / name / f"{i}.jpg")
    s = load_data(DataSpec("folder", str(tmp_path), val_fraction=0.0, test_fraction=0.2))
    assert s.class_names == ["cat", "dog"] and len(s.train) + len(s.test) == 10
    want = np.rint(preprocess(tmp_path / "cat" / "1.png") * 255).astype(np.uint8)
    assert any(np.array_equal(want, x) for x in np.concatenate([s.train.x, s.test.x]))
    assert s.train.x.mean() < 128  # light ink on dark background after preprocessing


@pytest.mark.parametrize("case", ["missing", "corrupt_gz", "truncated", "bad_magic", "count_mismatch"])
def test_bad_idx_files_are_refused_with_the_file_named(tmp_path, idx_writer, case):
    x, y = _digits(4)
    img, lab = tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz"
    idx_writer(img, x, gz=True)
    idx_writer(lab, y, gz=True)
    if case == "missing":
        lab.unlink()
    elif case == "corrupt_gz":
        img.write_bytes(img.read_bytes()[:40])
    elif case == "truncated":
        idx_writer(img, x, gz=True)
        img.write_bytes(__import__("gzip").compress(__import__("gzip").decompress(img.read_bytes())[:-100]))
    elif case == "bad_magic":
        img.write_bytes(__import__("gzip").compress(b"\x12\x34\x56\x78" + b"\x00" * 100))
    else:
        idx_writer(lab, y[:-1], gz=True)
    with pytest.raises(DataFileError) as e:
        load_data(DataSpec("idx", str(tmp_path)))
    assert "idx" in str(e.value).lower()


def test_empty_class_folder_and_bad_specs_are_refused(tmp_path):
    from PIL import Image

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "a" / "x.png")
    with pytest.raises(UserInputError, match=r"b.*no images"):
        load_data(DataSpec("folder", str(tmp_path)))
    with pytest.raises(UnknownNameError, match="embedded"):
        load_data(DataSpec("mnist-web"))
    with pytest.raises(UserInputError, match="val_fraction"):
        DataSpec(val_fraction=0.5, test_fraction=0.6)
    np.savez(tmp_path / "e.npz", x=np.zeros((4, 28, 28)), y=np.array([0, 0, 2, 2]))
    with pytest.raises(UserInputError, match=r"\['1'\] have no samples"):
        load_data(DataSpec("npz", str(tmp_path / "e.npz")))
    np.savez(tmp_path / "s.npz", x=np.zeros((4, 32, 32)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(UserInputError, match="28x28"):
        load_data(DataSpec("npz", str(tmp_path / "s.npz")))


def _int32_idx_labels(path, y):
    """An IDX labels file of int32 (type 0x0C), which can hold labels above 255."""
    import struct

    path.write_bytes(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", len(y)) + np.asarray(y, ">i4").tobytes())


@pytest.mark.parametrize("source", ["npz", "npz_negative", "idx", "idx_mapping", "npz_class_names"])
def test_a_stray_label_or_class_count_is_refused_before_anything_is_sized_by_it(tmp_path, idx_writer, source):
    """One label of 3,000,000 (10^9 in the field) used to make that many class names: now a one-line error, with
    little memory (tracemalloc sees numpy's and Python's allocations)."""
    import tracemalloc

    from edgekd.data.split import MAX_CLASSES

    x, y = _digits(4)
    y = y.astype(np.int64)
    y[-1] = -1 if source == "npz_negative" else 3_000_000
    if source.startswith("npz"):
        names = {"class_names": np.array([str(i) for i in range(MAX_CLASSES + 1)])} if source.endswith("names") \
            else {}
        np.savez(tmp_path / "d.npz", x=x, y=np.minimum(y, 2) if names else y, **names)
        spec = DataSpec("npz", str(tmp_path / "d.npz"))
    else:
        idx_writer(tmp_path / "train-images-idx3-ubyte", x)
        if source == "idx_mapping":
            y[-1] = 2
            _int32_idx_labels(tmp_path / "train-labels-idx1-ubyte", y)
            (tmp_path / "mapping.txt").write_text("0 48\n1 49\n2 50\n3000000 51\n")
        else:
            _int32_idx_labels(tmp_path / "train-labels-idx1-ubyte", y)
        spec = DataSpec("idx", str(tmp_path))
    want = {"npz_negative": "label -1 is negative", "npz_class_names": f"{MAX_CLASSES + 1:,} classes is more than"}
    tracemalloc.start()
    try:
        with pytest.raises(UserInputError, match=want.get(source, r"label 3,000,000 would make 3,000,001 classes")):
            load_data(spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB allocated to refuse it"


def test_too_many_class_folders_are_refused_before_reading_images(tmp_path, monkeypatch):
    import edgekd.data.split as split

    monkeypatch.setattr(split, "MAX_CLASSES", 3)
    for c in "abcd":
        (tmp_path / c).mkdir()
    with pytest.raises(UserInputError, match="4 classes is more than edgekd supports .MAX_CLASSES = 3"):
        load_data(DataSpec("folder", str(tmp_path)))


def test_empty_classes_are_listed_briefly(tmp_path):
    np.savez(tmp_path / "sparse.npz", x=np.zeros((4, 28, 28), np.uint8), y=np.array([0, 0, 9000, 9000]))
    with pytest.raises(UserInputError, match=r"\['1', .*'10'\] and 8,989 more have no samples") as e:
        load_data(DataSpec("npz", str(tmp_path / "sparse.npz")))
    assert len(str(e.value)) < 300


def test_cli_data_info_with_a_stray_label_is_one_line_and_exit_2(tmp_path):
    x, y = _digits(4)
    np.savez(tmp_path / "bad.npz", x=x, y=np.append(y[:-1], 10**9))
    r = CliRunner().invoke(app, ["data", "info", str(tmp_path / "bad.npz"), "--no-grid"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "1,000,000,000" in r.stderr


def test_cli_data_info_counts_grid_and_exit_codes(tmp_path):
    r = CliRunner().invoke(app, ["data", "info", "embedded", "--grid", str(tmp_path / "g.png"), "--json"])
    assert r.exit_code == 0, r.output
    import json

    out = json.loads(r.stdout)
    assert out["totals"] == {"train": 3500, "val": 500, "test": 1000} and out["counts"]["val"] == [50] * 10
    from PIL import Image

    assert Image.open(tmp_path / "g.png").size == (300, 300)
    bad = CliRunner().invoke(app, ["data", "info", "idx", "--path", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.output


def test_augmentation_is_per_sample_deterministic_and_label_aware():
    import torch

    from edgekd.data.augment import AugmentConfig, apply_augment, draw_params

    s = load_data(DataSpec(limit_per_class=4))
    x = torch.from_numpy(s.train.x).float().div(255)[:, None]
    cfg = AugmentConfig.transfer()
    p = draw_params(cfg, len(x), seed=1, epoch=2)
    full, lam = apply_augment(x, p, cfg, x[p["partner"]])
    half = slice(0, len(x) // 2)  # a sub-batch (another DDP rank's share) gets the very same images
    part, lam_part = apply_augment(x[half], {k: v[half] for k, v in p.items()}, cfg, x[p["partner"][half]])
    assert torch.allclose(full[half], part, atol=1e-6) and torch.equal(lam[half], lam_part)
    assert full.min() >= 0 and full.max() <= 1 and not torch.allclose(full, x)
    mixed = p["mix_kind"] > 0
    assert (lam[~mixed] == 1).all() and (lam[mixed] < 1).any()
    none, lam0 = apply_augment(x, p, AugmentConfig.none(), None)
    assert torch.equal(none, x) and (lam0 == 1).all()
