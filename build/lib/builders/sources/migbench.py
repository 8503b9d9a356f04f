"""MIG-Bench reader: `MIG_data.json` plus the `MIG-Bench/images/...` tree.

Layout (Migician, eval/MIG-Bench): one JSON list; each item has `task`,
`images` (paths like `./MIG-Bench/images/common/x.jpg`, relative to the
folder holding the JSON), `question`, `answer` ([x1,y1,x2,y2] normalised to
the TARGET image), `additional_info` and `need_format`.

Which image holds the target is not a field; it is read from text, in this
order, and never guessed:
1. the question's last locate-directive ("locate this object in the 2th
   image", "locate in the image-2", "... in the source image" for `region`,
   where the source image comes first and "the 1th region" counts regions);
2. `additional_info`: "It is in the third image." (group_grounding) or a
   directive repeated there (reasoning);
3. the task rule for `diff`, whose question names no image: the difference
   sits at the same place in both images, so target 0, equivalent [1].
Disagreeing sources, an index past the image count, or a phrasing that
contradicts the count ("these two images" over three) are quarantined.

Ids are `mig-<task>-<position in the file>`, stable for a given file.
"""
from __future__ import annotations

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
    ordinal,
    parse_boxes,
    statement_target,
)
from schemas.errors import UserError

SOURCE = "mig-bench"
CLIP_TOLERANCE = 0.05  # the real file has values up to 1.048: clip those, reject beyond
TWO_IMAGES_RE = re.compile(r"\b(?:these|the|both)\s+two\s+images\b", re.IGNORECASE)
REGION_RE = re.compile(r"\bthe\s+(\d+)\s*(?:st|nd|rd|th)\s+region\b", re.IGNORECASE)


def read_migbench(path: Path | str, **_ignored) -> Iterator[SourceItem | Reject]:
    """Yield one SourceItem (or Reject) per item of DIR/MIG_data.json (or a JSON file)."""
    # Absolute: ingest reads a relative path as relative to the source root.
    file = Path(path).absolute()
    if file.is_dir():
        file = file / "MIG_data.json"
    if not file.is_file():
        raise UserError(f"mig-bench: {file} not found (expected DIR/MIG_data.json)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"mig-bench: {file} is not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise UserError(f"mig-bench: {file} must hold a JSON list of items")
    for i, rec in enumerate(data):
        yield parse_item(rec, i, file.parent)


def parse_item(rec: object, i: int, root: Path) -> SourceItem | Reject:
    """One MIG-Bench record -> SourceItem, or a Reject naming why not."""
    rid = f"mig-{rec.get('task', 'unknown') if isinstance(rec, dict) else 'unknown'}-{i:04d}"
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
    box = clip_box(rec["answer"])
    if isinstance(box, Reject):
        box.id, box.record = rid, rec
        return box
    index, equivalent, how = target
    meta = {
        "answer_raw": rec["answer"],
        "additional_info": info,
        "need_format": rec.get("need_format"),
        "input_boxes": parse_boxes(question),
        "object_refs": OBJECT_REF_RE.findall(question),
        "target_from": how,
        "file_index": i,
    }
    if parse_boxes(info):
        meta["info_boxes"] = parse_boxes(info)
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


def clip_box(answer: list) -> list[float] | Reject:
    """The answer as a 0-1 box: values within CLIP_TOLERANCE of [0, 1] clipped."""
    if len(answer) != 4 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in answer
    ):
        return Reject(None, "invalid_box:not_4_numbers", f"answer {answer!r}")
    if any(v < -CLIP_TOLERANCE or v > 1 + CLIP_TOLERANCE for v in answer):
        return Reject(None, "invalid_box:out_of_range", f"answer {answer} is not normalised 0-1")
    box = [min(1.0, max(0.0, float(v))) for v in answer]
    if box[2] <= box[0] or box[3] <= box[1]:
        # Seen in the real file (5 common_object items): x2 < x1 or y2 < y1.
        # Swapping would be a guess at what the annotator meant, so quarantine.
        return Reject(None, "invalid_box:inverted", f"answer {answer} has x2 <= x1 or y2 <= y1")
    return box
