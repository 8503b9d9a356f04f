"""BLINK reader: the Hub's parquet layout, one config folder per subtask.

Layout (BLINK-Benchmark/BLINK as downloaded): `<root>/<Subtask>/val-*.parquet`
and `test-*.parquet`, columns idx, question, sub_task, image_1..image_4
(Hub Image structs {bytes, path}; image_2.. may be null), choices (list of
option texts), answer ("(A)"), prompt, explanation. The test split hides its
answers, so only `val` is read by default.

The column layout is read from each file's parquet schema; a file without
the columns this reader needs is a UserError naming them, never a guess.
Rows are read in record batches, so memory stays bounded by a batch.

Also home of the helpers shared with the MMIU reader: `answer_letter`,
`strip_letter` and `readable_parquet`.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from builders.sources.base import Reject, SourceItem
from schemas.errors import UserError

SOURCE = "blink"
REQUIRED = ("question", "choices", "answer", "image_1")
IMAGE_COL = re.compile(r"^image_(\d+)$")
LETTER_RE = re.compile(r"^\s*\(?([A-Z])\)?\s*(?:[.:)]\s*(.*))?$", re.DOTALL)
BATCH = 64


def strip_letter(choice: str, index: int) -> str:
    """"(B) a cat" / "B. a cat" / "B: a cat" at position 1 -> "a cat"; "A cat" stays.

    The prefix is removed only when its letter is the position's letter and a
    delimiter follows, so option texts that start with a capital survive.
    """
    letter = chr(ord("A") + index)
    m = re.match(r"^\s*(?:\(" + letter + r"\)|" + letter + r"\s*[.:)])\s*", choice)
    return choice[m.end():].strip() if m else choice.strip()


def answer_letter(answer: object, choices: list[str]) -> str | None:
    """"(A)" / "A" / "A. text" / the exact option text -> "A"; None if unreadable."""
    if not isinstance(answer, str):
        return None
    m = LETTER_RE.match(answer)
    letter = m.group(1) if m else None
    if letter is None and answer.strip() in choices:
        letter = chr(ord("A") + choices.index(answer.strip()))
    if letter is None or ord(letter) - ord("A") >= len(choices):
        return None
    return letter


def parquet_files(path: Path, split: str | None) -> list[tuple[str | None, Path]]:
    """[(subtask folder or None, file)] under `path` (a folder or one parquet file)."""
    if path.is_file():
        return [(None, path)]
    if not path.is_dir():
        raise UserError(f"blink: {path} not found")
    files = sorted(p for p in path.rglob("*.parquet") if split is None or p.name.startswith(f"{split}-"))
    if not files:
        raise UserError(f"blink: no {split + '-*' if split else ''}.parquet file under {path}")
    return [(p.parent.name if p.parent != path else None, p) for p in files]


@contextlib.contextmanager
def readable_parquet(file: Path, source: str):
    """A damaged or non-parquet file becomes a one-line UserError naming it, not an Arrow traceback."""
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{source}: {file} is not a readable parquet file "
                        f"({(str(e).splitlines() or [type(e).__name__])[0]})") from None


def image_columns(file: Path) -> list[str]:
    """The image_N columns in order, after checking the layout is BLINK's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with readable_parquet(file, SOURCE):
        schema = pq.read_schema(file)
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise UserError(f"blink: {file} is not in BLINK's layout: missing columns "
                        f"{', '.join(missing)} (found {', '.join(schema.names)})")
    cols = sorted((c for c in schema.names if IMAGE_COL.match(c)), key=lambda c: int(c[6:]))
    for c in cols:
        t = schema.field(c).type
        if not (pa.types.is_string(t) or (pa.types.is_struct(t) and t.get_field_index("bytes") >= 0)):
            raise UserError(f"blink: {file}: column {c} is {t}, expected an image struct or a path")
    return cols


def read_blink(path: Path | str, subsets=None, split: str | None = "val",
               **_ignored) -> Iterator[SourceItem | Reject]:
    """Yield one multiple-choice SourceItem per row; `subsets` picks subtasks."""
    import pyarrow.parquet as pq

    wanted = _subset_names(subsets)
    files = parquet_files(Path(path).absolute(), split)  # absolute: see image_ref
    if wanted:
        known = {s for s, _ in files if s}
        unknown = wanted - known if known else set()
        if unknown:
            raise UserError(f"blink: unknown subsets {', '.join(sorted(unknown))}; "
                            f"found {', '.join(sorted(known))}")
    for folder, file in files:
        if wanted and folder and folder not in wanted:
            continue
        cols = image_columns(file)
        row = 0
        with readable_parquet(file, SOURCE):  # a file can also break after its schema, mid-read
            for batch in pq.ParquetFile(file).iter_batches(batch_size=BATCH):
                for rec in batch.to_pylist():
                    subtask = rec.get("sub_task") or folder or "blink"
                    if not wanted or subtask in wanted or folder in wanted:
                        yield parse_row(rec, cols, subtask, f"{file.stem}-{row}", file.parent)
                    row += 1


def _subset_names(subsets) -> set[str]:
    if not subsets:
        return set()
    if isinstance(subsets, str):
        subsets = subsets.split(",")
    return {s.strip() for s in subsets if s.strip()}


def image_ref(value: object, folder: Path) -> Path | bytes | None:
    """A Hub Image struct or a path string -> bytes or a Path; None when empty."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, str) and value:
        return folder / value
    return None


def parse_row(rec: dict, cols: list[str], subtask: str, fallback: str, folder: Path) -> SourceItem | Reject:
    rid = f"blink-{rec.get('idx') or f'{subtask}-{fallback}'}"
    record = {k: v for k, v in rec.items() if k not in cols}  # no image bytes in rejects
    refs = [image_ref(rec.get(c), folder) for c in cols]
    while refs and refs[-1] is None:
        refs.pop()  # image_2.. may be null: trailing nulls are fewer images
    if not refs or None in refs:
        return Reject(rid, "missing_image", f"images present: {[r is not None for r in refs]}", record)
    raw = rec.get("choices")
    if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(c, str) for c in raw):
        return Reject(rid, "unparsable_choices", f"choices {raw!r}", record)
    choices = [strip_letter(c, i) for i, c in enumerate(raw)]
    letter = answer_letter(rec.get("answer"), choices)
    if letter is None:
        return Reject(rid, "unparsable_answer",
                      f"answer {rec.get('answer')!r} with {len(choices)} choices (test answers are hidden)",
                      record)
    meta = {"answer_raw": rec.get("answer"), "choices_raw": raw,
            **{k: rec[k] for k in ("prompt", "explanation", "idx") if rec.get(k) is not None}}
    return SourceItem(
        id=rid, source=SOURCE, task_type=subtask, images=refs, question=str(rec.get("question") or ""),
        choices=choices, answer=letter, meta=meta,
    )
