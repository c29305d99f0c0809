"""The transcriptions of a `folder` line source: reading its `labels.tsv` (file<TAB>text per row) and what a text
needs from a line (CTC frames). Everything a row can get wrong is refused naming the file and line, before any image
is read: a file that is not UTF-8, a row that is not two columns, an empty text, a missing image, an image listed
twice, a text longer than a line of the spec's width can emit.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgekd.models.line_models import FRAME_STRIDE
from edgekd_runtime.images import IMAGE_SUFFIXES, has_image_suffix

from .idx import DataFileError

if TYPE_CHECKING:
    from .lines import LineSpec

LABELS_FILE = "labels.tsv"
LABEL_HEADERS = ("file", "filename", "image", "path")  # a first row naming these is a header


def ctc_frames_needed(text: str) -> int:
    """The fewest CTC frames that can emit `text`: one per character, plus a blank between two equal ones."""
    return len(text) + sum(a == b for a, b in zip(text, text[1:]))


@dataclass(frozen=True)
class LabelRow:
    """One row of labels.tsv: the image, its transcription and the row's line number in the file."""

    path: Path
    text: str
    line: int


def read_labels_tsv(root: Path) -> list[LabelRow]:
    """Rows of `root/labels.tsv` (UTF-8, a BOM allowed, an optional header row); refuses a file that is not UTF-8,
    rows that are not file<TAB>text, missing images, empty texts and an image listed twice."""
    tsv = root / LABELS_FILE
    if not tsv.is_file():
        raise DataFileError(f"line folder {root} has no {LABELS_FILE} (one row per image: file<TAB>text)")
    reader = csv.reader(io.StringIO(_read_utf8(tsv), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows = [r for r in (_label_row(tsv, reader.line_num, cells) for cells in reader) if r is not None]
    _refuse_duplicates(tsv, rows)
    if len(rows) < 3:
        raise DataFileError(f"{tsv} lists {len(rows)} line(s); at least 3 are needed for train/val/test")
    return rows


def _read_utf8(tsv: Path) -> str:
    """The text of `tsv` (UTF-8, a leading BOM dropped); a DataFileError names the line of the first bad byte."""
    data = tsv.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataFileError(f"{tsv}:{line}: byte 0x{data[e.start]:02x} is not UTF-8; save {LABELS_FILE} as UTF-8 "
                            f"(e.g. iconv -f latin1 -t utf-8)") from None


def _label_row(tsv: Path, n: int, cells: list[str]) -> LabelRow | None:
    """Row `n` of labels.tsv as a LabelRow (None for a blank line or the header)."""
    if not "".join(cells).strip() or (n == 1 and cells[0].strip().lower() in LABEL_HEADERS):
        return None
    if len(cells) != 2:
        raise DataFileError(f"{tsv}:{n}: expected 2 columns file<TAB>text, got {len(cells)}: {cells!r}; separate "
                            f"the file and its text by one tab (a text cannot hold a tab)")
    name, text = cells[0].strip(), cells[1].strip()
    if not text:
        raise DataFileError(f"{tsv}:{n}: {name} has an empty transcription; give its text or drop the row")
    path = tsv.parent / name
    if not path.is_file():
        raise DataFileError(f"{tsv}:{n}: image {path} does not exist")
    if not has_image_suffix(path):
        raise DataFileError(f"{tsv}:{n}: {path} is not an image ({', '.join(IMAGE_SUFFIXES)})")
    return LabelRow(path, text, n)


def _refuse_duplicates(tsv: Path, rows: list[LabelRow]) -> None:
    """An image listed twice could land in two splits (a test line seen in training): refuse it."""
    first: dict[Path, LabelRow] = {}
    for r in rows:
        seen = first.setdefault(r.path.resolve(), r)
        if seen is not r:
            raise DataFileError(f"{tsv}:{r.line}: image {r.path.name} is listed again (first on line {seen.line}, "
                                f"{_short(seen.text)}; here {_short(r.text)}); list each image once")


def _short(text: str, chars: int = 24) -> str:
    return repr(text) if len(text) <= chars else f"{text[:chars]!r}... ({len(text)} characters)"


def check_fits_frames(tsv: Path, rows: list[LabelRow], spec: LineSpec) -> None:
    """Refuse a text that a line `spec.width` px wide cannot emit (CTC needs a frame per character and a blank
    between equal ones): CTC would give it an infinite loss, and training would silently skip it."""
    for r in rows:
        need = ctc_frames_needed(r.text)
        if need > spec.frames:
            raise DataFileError(
                f"{tsv}:{r.line}: the text of {r.path.name} has {len(r.text)} characters and needs {need} CTC frames, "
                f"but a line {spec.width} px wide has {spec.frames} (at most {spec.frames} characters, fewer with "
                f"repeated ones); shorten the text, split the image into shorter lines, or make lines wider "
                f"(lines: {{width: {need * FRAME_STRIDE}}} in the YAML)")


def folder_split_sizes(n: int, spec: LineSpec) -> tuple[int, int, int]:
    """(test, val, train) line counts of a `folder` source of `n` lines."""
    n_test = max(1, int(round(spec.test_fraction * n)))
    n_val = max(1, int(round(spec.val_fraction * n)))
    return n_test, n_val, n - n_test - n_val


def folder_lines_for_train(n_train: int, spec: LineSpec) -> int:
    """The fewest lines a `folder` source needs for `n_train` training lines at `spec`'s fractions."""
    n = n_train
    while folder_split_sizes(n, spec)[2] < n_train:
        n += 1
    return n
