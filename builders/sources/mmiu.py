"""MMIU reader: multiple-choice multi-image questions from JSON, JSON Lines or parquet.

The release (Hub dataset FanqingM/MMIU-Benchmark; MMIUBenchmark/MMIU): `all.json`
(the file the evaluation scripts open, VLMEvalKit/test_models.py and
test_interlvl1.5.py) or `all.parquet`, beside one zip per relationship type
(Low-level-semantic.zip, ...) whose images `input_image_path` names
("./Low-level-semantic/forensic_detection_blink/..."). Fields (dataset card):
`task`, `visual_input_component`, `source`, `options`, `question`, `context`,
`input_image_path` (question and option images) and `output` (the answer).
`context` already ends with the options: "...\nSelect from the following
choices.\nA: ...\nD: ...". Each field is looked up under the first present of
several names (FIELDS), so copies with other names read too.

- options: a list of texts, or one string with a line per option
  ("A: cat\nB: dog", "(A) cat", "A. cat"); letter prefixes are removed.
- answer: "A", "(A)", "A: cat" or the exact option text -> the letter.
- images: a list (or one) of paths relative to the file's folder, or Hub
  image structs {bytes, path}.
- question: what MMIU's own evaluation scripts send, byte for byte:
  `question + "\n" + context` for the 23 tasks in QUESTION_FIRST, else
  `context + "\n" + question` (neither stripped). The options appear once,
  inside the context; a record whose text does not list them gets them
  appended in MMIU's format (meta `options_added`). `official_prompt` adds the
  scripts' answer instruction.

`--path` is one file or a folder. A folder holding `all.json` reads only it
(else only `all.parquet`): the two hold the same questions. Otherwise every
.json/.jsonl/.parquet under it is read, and a file whose records are not
MMIU's is skipped as one `unknown_layout` reject naming it, not a failed build.
`subsets` picks task names. Ids are `mmiu-<id field>` or `mmiu-<file stem>-<row>`.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from builders.sources.base import Reject, SourceItem
from builders.sources.blink import (
    BATCH, _subset_names, answer_letter, image_ref, lists_options, readable_parquet, strip_letter,
)
from builders.sources.mgrounding import iter_json_values
from schemas.errors import UserError

SOURCE = "mmiu"
FIELDS = {
    "question": ("question", "query", "prompt", "instruction"),
    "options": ("options", "choices", "option"),
    "answer": ("output", "answer", "gt_answer", "label", "target"),
    "images": ("input_image_path", "image_paths", "images", "image_path", "image"),
    "task": ("task", "sub_task", "task_name", "category"),
    "id": ("id", "idx", "index", "question_id"),
}
REQUIRED = ("question", "options", "answer", "images")
# The tasks whose official prompt puts the question before the context (see the docstring).
QUESTION_FIRST = frozenset({
    "person_reid", "multiple_image_captioning", "spot_the_similarity", "face_retrieval",
    "sketch2image_retrieval", "handwritten_retrieval", "spot_the_diff", "image2image_retrieval",
    "vehicle_retrieval", "text2image_retrieval", "general_action_recognition", "video_captioning",
    "next_img_prediction", "temporal_ordering", "meme_vedio_understanding", "action_quality_assessment",
    "temporal_localization", "mevis", "ravens_progressive_matrices", "threed_indoor_recognition",
    "point_tracking", "threed_cad_recognition", "single_object_tracking",
})
OPTION_LINE = re.compile(r"^\s*\(?([A-Z])\s*[.:)]\s*(.*)$")
SUFFIXES = (".json", ".jsonl", ".parquet")
RELEASE_FILES = ("all.json", "all.parquet")  # the same questions: the first present is read
ANSWER_SUFFIX = "\nPlease answer the option directly like A,B,C,D..."  # VLMEvalKit/test_models.py
TEMPLATE_ID = "mmiu:test_models"  # the official scripts' prompt, as `official_prompt` renders it


def layout(names) -> dict[str, str]:
    """Role -> the column/key name this file uses; UserError when a role is missing."""
    found = {role: next((n for n in cands if n in names), None) for role, cands in FIELDS.items()}
    missing = [r for r in REQUIRED if found[r] is None]
    if missing:
        raise UserError("mmiu: unknown layout: no field for " + ", ".join(
            f"{r} ({'/'.join(FIELDS[r])})" for r in missing) + f"; found {', '.join(sorted(names))}")
    return {r: n for r, n in found.items() if n is not None}


def records(file: Path) -> Iterator[dict]:
    """The file's records, streamed (JSON list / JSON Lines) or in batches (parquet)."""
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        with readable_parquet(file, SOURCE):
            for batch in pq.ParquetFile(file).iter_batches(batch_size=BATCH):
                yield from batch.to_pylist()
        return
    yield from iter_json_values(file)  # ValueError on broken JSON: read_mmiu names it


def files_under(path: Path) -> list[Path]:
    """The files a `--path` names (module docstring)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"mmiu: {path} not found")
    for name in RELEASE_FILES:
        if (path / name).is_file():
            return [path / name]
    files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"mmiu: no {'/'.join(SUFFIXES)} file under {path}")
    return files


def official_prompt(task: dict) -> str:
    """The text MMIU's evaluation scripts send for a task row."""
    return task["question"] + ANSWER_SUFFIX


def read_mmiu(path: Path | str, subsets=None) -> Iterator[SourceItem | Reject]:
    """Yield one multiple-choice SourceItem per record; `subsets` picks task names."""
    wanted = _subset_names(subsets)
    # Absolute paths: ingest reads a relative path as relative to the source root.
    path = Path(path).absolute()
    files = files_under(path)
    for file in files:
        try:
            yield from read_file(file, wanted)
        except (UserError, ValueError) as e:
            why = f"{e}" if isinstance(e, UserError) else f"mmiu: {file} is not valid JSON ({e})"
            if len(files) == 1:
                raise UserError(why) from None
            # one stray or broken file in a folder (a README's JSON, a cache) does not fail the build
            reason = "unknown_layout" if isinstance(e, UserError) else "malformed_json"
            yield Reject(f"mmiu-{file.stem}", reason, f"{file.relative_to(path)}: the rest of it is skipped: {why}",
                         {"file": str(file)})


def read_file(file: Path, wanted: set[str]) -> Iterator[SourceItem | Reject]:
    import pyarrow.parquet as pq

    names = None
    if file.suffix == ".parquet":
        with readable_parquet(file, SOURCE):
            names = pq.read_schema(file).names
    roles = layout(names) if names is not None else None
    for row, rec in enumerate(records(file)):
        if not isinstance(rec, dict):
            if roles is None:  # the first value is not a record: not an MMIU file
                raise UserError(f"mmiu: {file} holds a {type(rec).__name__}, not records")
            yield Reject(f"mmiu-{file.stem}-{row}", "malformed_record",
                         f"a {type(rec).__name__}, not an object", {"value": rec})
            continue
        roles = roles or layout(rec.keys())  # JSON: the first record sets the layout
        task = str(rec.get(roles.get("task", ""), "") or "mmiu")
        if not wanted or task in wanted:
            yield parse_record(rec, roles, task, f"{file.stem}-{row}", file.parent)


def parse_options(raw: object) -> list[str] | None:
    """Option texts from a list or a one-option-per-line string; None if unreadable."""
    if isinstance(raw, list) and all(isinstance(o, str) for o in raw):
        return [strip_letter(o, i) for i, o in enumerate(raw)]
    if not isinstance(raw, str):
        return None
    options: list[str] = []
    for line in raw.splitlines():
        m = OPTION_LINE.match(line)
        if m and m.group(1) == chr(ord("A") + len(options)):
            options.append(m.group(2).strip())
        elif options and line.strip():
            options[-1] += "\n" + line.strip()  # an option text over several lines
        elif line.strip():
            return None
    return options or None


def parse_record(rec: dict, roles: dict, task: str, fallback: str, folder: Path) -> SourceItem | Reject:
    rid = f"mmiu-{rec.get(roles.get('id', ''), None) or fallback}"
    images_raw = rec.get(roles["images"])
    images_raw = images_raw if isinstance(images_raw, list) else [images_raw]
    record = {k: v for k, v in rec.items() if k != roles["images"]}
    record[roles["images"]] = [i if isinstance(i, str) else "<image>" for i in images_raw]
    refs = [image_ref(i, folder) for i in images_raw]
    if not refs or None in refs:
        return Reject(rid, "missing_image", f"image references {record[roles['images']]!r}", record)
    choices = parse_options(rec.get(roles["options"]))
    if not choices or len(choices) < 2:
        return Reject(rid, "unparsable_choices", f"options {rec.get(roles['options'])!r}", record)
    letter = answer_letter(rec.get(roles["answer"]), choices)
    if letter is None:
        return Reject(rid, "unparsable_answer",
                      f"answer {rec.get(roles['answer'])!r} with {len(choices)} options", record)
    question, added = prompt_question(rec, roles, task, choices)
    meta = {"answer_raw": rec.get(roles["answer"]), "options_raw": rec.get(roles["options"]),
            **({"options_added": True} if added else {}),
            **{k: rec[k] for k in ("context", "visual_input_component", "source") if rec.get(k)}}
    return SourceItem(
        id=rid, source=SOURCE, task_type=task, images=refs, question=question,
        choices=choices, answer=letter, meta=meta,
    )


def prompt_question(rec: dict, roles: dict, task: str, choices: list[str]) -> tuple[str, bool]:
    """(question and context joined as MMIU's scripts join them, whether the options were appended)."""
    question = str(rec.get(roles["question"]) or "")
    context = rec.get("context")
    if isinstance(context, str):
        text = question + "\n" + context if task in QUESTION_FIRST else context + "\n" + question
    else:  # a copy without the field: the question alone
        text = question
    if lists_options(text, choices):
        return text, False
    options = "\n".join(f"{chr(ord('A') + i)}: {c}" for i, c in enumerate(choices))
    return f"{text.rstrip()}\nSelect from the following choices.\n{options}", True
