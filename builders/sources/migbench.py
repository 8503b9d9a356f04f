"""MIG-Bench reader: `MIG_data.json` or `revised_MIG_bench.json` plus the `MIG-Bench/images/...` tree.

Two annotation files are in use, with the same fields and one difference that
matters (../shared/data/mig-bench/README.md):
- `MIG_data.json` (thunlp/Migician, eval/MIG-Bench): 4,295 items, `answer`
  boxes as 0-1 floats; scored by Migician's `eval/MIG_bench_eval.py`;
- `revised_MIG_bench.json` (Tajamul21/MIG-Agent; the file AMAP-ML/UniVG-R1's
  `eval/MIG_bench/MIG_bench_eval.py` opens, and the one the published tables
  agree with): 4,276 items, `answer` boxes as 0-1000 integers.
The frame is detected per file from the boxes themselves (`detect_frame`), not
from the file name, and recorded: `describe_source` gives the manifest's
`source.bench_file` (name, sha256, known release or not, frame, item count),
and every row's meta holds `answer_frame` beside the raw `answer_raw`, which is
what the official scorer reads (schemas.official: the ground truth is NOT
clipped there). The row's `target_box` is the 0-1 box, clipped.

Each item has `task`, `images` (paths like `./MIG-Bench/images/common/x.jpg`,
relative to the folder holding the JSON), `question`, `answer` ([x1,y1,x2,y2]
on the TARGET image), `additional_info` and `need_format`.

Which image holds the target is not a field; it is read from text, in this
order, and never guessed:
1. the question's last locate-directive ("locate this object in the 2th
   image", "locate in the image-2", "... in the source image" for `region`,
   where the source image comes first and "the 1th region" counts regions);
2. `additional_info`: "It is in the third image." (group_grounding) or a
   directive repeated there (reasoning);
3. the task rule for `diff`, whose question names no image: the difference
   sits at the same place in both images, so target 0, equivalent [1].
`meta.target_from` says which (eval's strict figure asks the answer to name the
image only where the question does not: see schemas.scoring.image_fixed).
Disagreeing sources, an index past the image count, or a phrasing that
contradicts the count ("these two images" over three) are quarantined.

An inverted box (x2 < x1 or y2 < y1; five common_object items of
MIG_data.json; or x2 == x1, "zero_area") is KEPT, marked
`meta.box_as_released = "inverted"`: the
official script keeps such items in its denominator and scores them 0, so
dropping them would change every published-comparable number (common_object
n 816, not 811); the strict figure marks them unverifiable.

Ids are `mig-<task>-<position in the file>` for MIG_data.json and
`mig-rev-<task>-<position>` for the revised file: stable for a given file,
and never the same id for two different items of the two files.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

from builders.sources.base import Reject, SourceItem
from builders.sources.words import (
    OBJECT_REF_RE,
    directive_target,
    is_url,
    parse_boxes,
    statement_target,
)
from schemas.boxes import box_problem
from schemas.profiles import ordinal
from schemas.errors import UserError

SOURCE = "mig-bench"
CLIP_TOLERANCE = 0.05  # the real file has values up to 1.048: clip those, reject beyond
TWO_IMAGES_RE = re.compile(r"\b(?:these|the|both)\s+two\s+images\b", re.IGNORECASE)
REGION_RE = re.compile(r"\bthe\s+(\d+)\s*(?:st|nd|rd|th)\s+region\b", re.IGNORECASE)
FILE_NAMES = ("MIG_data.json", "revised_MIG_bench.json")
FRAMES = {"0-1": 1, "0-1000": 1000}  # answer frame -> the divisor to 0-1
VARIANTS = {"0-1": "official", "0-1000": "revised"}
# sha256 of the released files (both copied in ../shared/data/mig-bench): a
# number is comparable with a paper only on the bytes the paper used.
KNOWN_RELEASES = {
    "8f6e8fce3720dc6e17462533426d455463cda38b441edc2d70d65afa15681300":
        "thunlp/Migician eval/MIG-Bench/MIG_data.json @ 7b868a2",
    "69aea94deef1bd2a9f5e117068b7a325a82bc9c0d11881f98f29338fbe779791":
        "Tajamul21/MIG-Agent eval/MIG-Bench/revised_MIG_bench.json @ b33e206 "
        "(opened by AMAP-ML/UniVG-R1 eval/MIG_bench/MIG_bench_eval.py)",
}


def bench_file(path: Path | str) -> Path:
    """The annotation file: PATH itself, or the one of FILE_NAMES inside the folder PATH."""
    # Absolute: ingest reads a relative path as relative to the source root.
    file = Path(path).absolute()
    if file.is_dir():
        found = [file / n for n in FILE_NAMES if (file / n).is_file()]
        if len(found) > 1:
            raise UserError(f"mig-bench: {file} holds both {' and '.join(FILE_NAMES)}; "
                            f"give --path to the one you mean")
        if not found:
            raise UserError(f"mig-bench: {file} holds neither {' nor '.join(FILE_NAMES)}")
        file = found[0]
    if not file.is_file():
        raise UserError(f"mig-bench: {file} not found (expected DIR/{FILE_NAMES[0]} or DIR/{FILE_NAMES[1]})")
    return file


def load_items(file: Path) -> list:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit number
        why = "nested too deeply to read" if isinstance(e, RecursionError) else str(e)[:200]
        raise UserError(f"mig-bench: {file} is not valid JSON ({why})") from None
    if not isinstance(data, list):
        raise UserError(f"mig-bench: {file} must hold a JSON list of items")
    return data


def _numbers(answer) -> list[float] | None:
    # an int is finite however long (math.isfinite of a 400-digit int would raise)
    ok = isinstance(answer, list) and len(answer) == 4 and all(
        isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and math.isfinite(v) for v in answer)
    return answer if ok else None


def detect_frame(data: list) -> str:
    """"0-1000" when most answers have a value above 1 (+ tolerance), else "0-1".

    A majority, not "any": one broken box in a 0-1 file must not turn every
    other box into a box a thousand times too small (it is quarantined instead)."""
    answers = [a for a in (_numbers(r.get("answer")) for r in data if isinstance(r, dict)) if a]
    above = sum(1 for a in answers if max(abs(v) for v in a) > 1 + CLIP_TOLERANCE)
    return "0-1000" if 2 * above > len(answers) else "0-1"


def describe_source(path: Path | str) -> dict:
    """The manifest's record of which file was read: {"bench_file": {...}}."""
    file = bench_file(path)
    raw = file.read_bytes()
    data = load_items(file)
    frame = detect_frame(data)
    digest = hashlib.sha256(raw).hexdigest()
    return {"bench_file": {
        "name": file.name, "sha256": digest, "items": len(data), "box_frame": frame,
        "variant": VARIANTS[frame],
        "release": KNOWN_RELEASES.get(digest, "not byte-identical to a known release"),
    }}


def read_migbench(path: Path | str) -> Iterator[SourceItem | Reject]:
    """Yield one SourceItem (or Reject) per item of the bench file (see `bench_file`)."""
    file = bench_file(path)
    data = load_items(file)
    frame = detect_frame(data)
    prefix = "mig" if frame == "0-1" else "mig-rev"
    for i, rec in enumerate(data):
        yield parse_item(rec, i, file.parent, frame, prefix)


def parse_item(rec: object, i: int, root: Path, frame: str = "0-1", prefix: str = "mig") -> SourceItem | Reject:
    """One MIG-Bench record (answer in `frame`) -> SourceItem, or a Reject naming why not."""
    rid = f"{prefix}-{rec.get('task', 'unknown') if isinstance(rec, dict) else 'unknown'}-{i:04d}"
    problem = _shape_problem(rec)
    if problem:
        return Reject(rid, "malformed_record", problem, rec if isinstance(rec, dict) else {"value": rec})
    urls = [p for p in rec["images"] if is_url(p)]
    if urls:
        return Reject(rid, "url_not_allowed", f"{urls[0]}: download the images first", rec)
    question, info, n = rec["question"], rec.get("additional_info") or "", len(rec["images"])
    target = find_target(rec["task"], question, info, n)
    if isinstance(target, Reject):
        target.id, target.record = rid, rec
        return target
    box, as_released = clip_box(rec["answer"], FRAMES[frame]), None
    if isinstance(box, Reject) and box.reason == "invalid_box:inverted":
        # Kept as released: the official scorer counts it (and scores it 0).
        box = [min(1.0, max(0.0, v / FRAMES[frame])) for v in rec["answer"]]
        as_released = box_problem(box)  # "inverted", or "zero_area" for x2 == x1
    if isinstance(box, Reject):
        box.id, box.record = rid, rec
        return box
    index, equivalent, how = target
    meta = {
        "answer_raw": rec["answer"],
        "answer_frame": frame,
        "additional_info": info,
        "need_format": rec.get("need_format"),
        "input_boxes": parse_boxes(question),
        "object_refs": OBJECT_REF_RE.findall(question),
        "target_from": how,
        "file_index": i,
    }
    if parse_boxes(info):
        meta["info_boxes"] = parse_boxes(info)
    if as_released:
        meta["box_as_released"] = as_released
    if question != question.strip():
        meta["question_raw"] = question  # the official prompt is built from it, spaces included
    return SourceItem(
        id=rid, source=SOURCE, task_type=rec["task"],
        images=[root / p for p in rec["images"]], question=question.strip(),
        target_image=index, equivalent_images=equivalent, target_box=box, meta=meta,
    )


def _shape_problem(rec: object) -> str | None:
    """Why a record is not a MIG-Bench item, or None."""
    if not isinstance(rec, dict):
        return f"item is a {type(rec).__name__}, not an object"
    for key, kind in (("task", str), ("question", str), ("images", list), ("answer", list)):
        if not isinstance(rec.get(key), kind):
            return f"{key}: missing or not a {kind.__name__}"
    if not rec["images"] or not all(isinstance(p, str) and p for p in rec["images"]):
        return "images: needs a non-empty list of paths"
    if not isinstance(rec.get("additional_info", ""), str):
        return "additional_info: not a string"
    return None


def find_target(task: str, question: str, info: str, n: int):
    """(target index, equivalent indices, where it came from), or a Reject.

    The Reject's id and record are filled in by the caller.
    """
    from_question = directive_target(question, n)
    from_info = statement_target(info, n)
    if from_info is None:
        from_info = directive_target(info, n)
    if None not in (from_question, from_info) and from_question != from_info:
        return Reject(None, "conflicting_target",
                      f"question names the {ordinal(from_question)} image, "
                      f"additional_info the {ordinal(from_info)}")
    if from_question is not None:
        found = (from_question, [], "question")
    elif from_info is not None:
        found = (from_info, [], "additional_info")
    elif task == "diff":
        found = (0, [1], "task_rule:diff")
    else:
        return Reject(None, "no_target_image",
                      f"{task}: neither the question nor additional_info names the target image")
    mismatch = count_mismatch(task, question, n, found[0])
    return Reject(None, "image_count_mismatch", mismatch) if mismatch else found


def count_mismatch(task: str, question: str, n: int, target: int) -> str | None:
    """Why the phrasing contradicts the number of images, or None."""
    if target >= n:
        return f"the target is the {ordinal(target)} image but the item has {n} images"
    if (TWO_IMAGES_RE.search(question) or task in ("diff", "view_diff")) and n != 2:
        return f"{task}: the question compares two images but the item has {n}"
    region = REGION_RE.search(question)
    if region and not 1 <= int(region.group(1)) <= n - 1:
        return f"asks for region {region.group(1)} but the item has {n - 1} region images"
    return None


def clip_box(answer: list, scale: int = 1) -> list[float] | Reject:
    """The answer (0-1, or 0-1000 integers with scale 1000) as a 0-1 box: values
    within CLIP_TOLERANCE of the frame clipped, anything else a Reject."""
    if _numbers(answer) is None:
        return Reject(None, "invalid_box:not_4_numbers", f"answer {str(answer)[:200]}")
    if scale != 1 and not all(isinstance(v, int) or float(v).is_integer() for v in answer):
        return Reject(None, "invalid_box:frame_mismatch",
                      f"answer {answer} is not 0-{scale} integers like the file's other boxes")
    if any(isinstance(v, int) and abs(v) > 2 * scale for v in answer):  # no float holds a 400-digit int
        return Reject(None, "invalid_box:out_of_range", f"answer {str(answer)[:200]} is far outside the frame")
    box = [v / scale for v in answer]
    if any(v < -CLIP_TOLERANCE or v > 1 + CLIP_TOLERANCE for v in box):
        frame = "normalised 0-1" if scale == 1 else f"on the 0-{scale} grid"
        return Reject(None, "invalid_box:out_of_range", f"answer {answer} is not {frame}")
    box = [min(1.0, max(0.0, float(v))) for v in box]
    if box[2] <= box[0] or box[3] <= box[1]:
        # Seen in the real MIG_data.json (5 common_object items): x2 < x1 or y2 < y1.
        # Swapping would be a guess at what the annotator meant (the revised file
        # re-annotated four of the five), so the caller decides what to do.
        return Reject(None, "invalid_box:inverted", f"answer {answer} has x2 <= x1 or y2 <= y1")
    return box
