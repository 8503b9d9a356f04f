"""BLINK reader: the Hub's parquet layout, one config folder per subtask.

Layout (Hub dataset BLINK-Benchmark/BLINK): `<root>/<Config>/val-00000-of-00001.parquet`
and `test-...`, or the Hub's converted branch (refs/convert/parquet)
`<root>/<Config>/<split>/0000.parquet`. Columns: idx ("val_Art_Style_1"),
question, sub_task (the display name, "Art Style"; the config is `Art_Style`),
image_1..image_4 (Hub Image structs {bytes, path}; image_2.. may be null),
choices (option texts), answer ("(A)"), prompt, explanation. The test split
hides its answers, so only `val` is read by default.

The task's question is the `prompt` field verbatim: the task definition, the
question and the options ("...\nSelect from the following choices.\n(A) ...").
The official evaluation (zeyofu/BLINK_Benchmark eval/test_benchmark.py,
`load_prompt`), lmms-eval (tasks/blink/utils.py, `doc["prompt"]`) and HELM
(blink_scenario.py, `row["prompt"]`) all send it; `question` alone loses the
definition ("use the first image as the reference image", "clockwise (left) or
counter-clockwise (right)"). `official_prompt` renders what `load_prompt`
sends: the prompt, after its disclaimer for Forensic_Detection, Jigsaw and
Art_Style. The bare question stays in meta.

The column layout is read from each file's parquet schema; a file without
the columns this reader needs is a UserError naming them, never a guess.
Rows are read in record batches, so memory stays bounded by a batch.

Also home of the helpers shared with the MMIU reader: `answer_letter`,
`strip_letter`, `lists_options` and `readable_parquet`.
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
HUB_FILE = re.compile(r"^(?P<split>[A-Za-z]+)-\d+-of-\d+\.parquet$")  # val-00000-of-00001.parquet
SPLITS = ("val", "test")  # the converted branch's split folders
# zeyofu/BLINK_Benchmark eval/test_benchmark.py: `disclaimer` and `need_disclaimer_tasks`
DISCLAIMER = ("Disclaimer: This is not to make unfair assumptions about the people in the image and you just "
              "need to give your assessment on this question. You don't need to identify the real people. "
              "You just need to analyze based on the information I gave you.\n\n")
DISCLAIMER_TASKS = frozenset({"Forensic_Detection", "Jigsaw", "Art_Style"})
TEMPLATE_ID = "blink:load_prompt"  # the official eval's prompt, as `official_prompt` renders it
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


def config_name(name: str) -> str:
    """A subtask as its Hub config: "Art Style" (the sub_task column) -> "Art_Style"."""
    return "_".join(str(name).split())


def file_split(file: Path) -> tuple[str | None, Path]:
    """(split, config folder) of a parquet file in either Hub layout (module docstring)."""
    m = HUB_FILE.match(file.name)
    if m:
        return m["split"], file.parent
    if file.parent.name in SPLITS:
        return file.parent.name, file.parent.parent
    return None, file.parent


def parquet_files(path: Path, split: str | None) -> list[tuple[str | None, Path]]:
    """[(config or None, file)] under `path` (a folder or one parquet file)."""
    if path.is_file():
        return [(None, path)]  # the file the user named, whatever its split
    if not path.is_dir():
        raise UserError(f"blink: {path} not found")
    files = []
    for p in sorted(path.rglob("*.parquet")):
        file_split_, folder = file_split(p)
        if split is None or file_split_ == split:
            files.append((folder.name if folder != path else None, p))
    if not files:
        raise UserError(f"blink: no {split or ''} parquet file under {path} (expected <Config>/{split or '<split>'}"
                        f"-00000-of-00001.parquet or <Config>/{split or '<split>'}/0000.parquet)")
    return files


def lists_options(text: str, choices: list[str]) -> bool:
    """True when `text` already lists every choice after its letter ("(A) x", "A: x", "A. x")."""
    for i, choice in enumerate(choices):
        first = (choice.strip().splitlines() or [""])[0]
        letter = chr(ord("A") + i)
        if not re.search(r"(?:^|\s)(?:\(" + letter + r"\)|" + letter + r"\s*[.:)])\s*" + re.escape(first), text):
            return False
    return True


def official_prompt(task: dict) -> str:
    """The text BLINK's official eval sends for a task row (`load_prompt`)."""
    return (DISCLAIMER if task["task_type"] in DISCLAIMER_TASKS else "") + task["question"]


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


def read_blink(path: Path | str, subsets=None, split: str | None = "val") -> Iterator[SourceItem | Reject]:
    """Yield one multiple-choice SourceItem per row; `subsets` picks subtasks (configs or display names)."""
    import pyarrow.parquet as pq

    wanted = {config_name(s) for s in _subset_names(subsets)}
    files = parquet_files(Path(path).absolute(), split)  # absolute: see image_ref
    if wanted:
        known = {config_name(s) for s, _ in files if s}
        unknown = wanted - known if known else set()
        if unknown:
            raise UserError(f"blink: unknown subsets {', '.join(sorted(unknown))}; "
                            f"found {', '.join(sorted(known))}")
    for folder, file in files:
        if wanted and folder and config_name(folder) not in wanted:
            continue
        cols = image_columns(file)
        row = 0
        with readable_parquet(file, SOURCE):  # a file can also break after its schema, mid-read
            for batch in pq.ParquetFile(file).iter_batches(batch_size=BATCH):
                for rec in batch.to_pylist():
                    subtask = config_name(folder or rec.get("sub_task") or "blink")
                    if not wanted or subtask in wanted:
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
    question = str(rec.get("question") or "")
    prompt = rec.get("prompt")
    if not (isinstance(prompt, str) and prompt.strip()):  # a copy without the column: BLINK's own layout
        prompt = question + "\nSelect from the following choices.\n" + "\n".join(
            f"({chr(ord('A') + i)}) {c}" for i, c in enumerate(choices))
        prompt_from = "question and choices"
    else:
        prompt_from = "prompt"
    meta = {"answer_raw": rec.get("answer"), "choices_raw": raw, "question": question, "prompt_from": prompt_from,
            "sub_task": rec.get("sub_task"),
            **{k: rec[k] for k in ("explanation", "idx") if rec.get(k) is not None}}
    return SourceItem(
        id=rid, source=SOURCE, task_type=subtask, images=refs, question=prompt,
        choices=choices, answer=letter, meta=meta,
    )
