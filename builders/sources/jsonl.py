"""Users' own data: one task per JSON line.

    {"id": "t1", "images": ["imgs/a.jpg", "imgs/b.jpg"], "question": "...",
     "target_image": 1, "box": [x1, y1, x2, y2], "box_frame": "norm1",
     "task_type": "common_object"}

- `images` are paths relative to the JSONL file (they may not leave its folder),
  whatever folder the command runs from.
- `target_image` is 0-based; `box` is xyxy on that image in `box_frame`:
  `norm1` (0-1 floats, the default), `norm1000` (0-1000, Qwen2-VL style) or
  `pixel` (pixels of the original target image).
- Multiple-choice lines carry `"choices": [...]` and `"answer": "B"` (a letter)
  instead of `target_image` and `box`.
- Several targets, or none: `"targets": [{"image": 0, "box": [x1, y1, x2, y2]}, ...]`
  (each box in the line's `box_frame` on ITS image) instead of `target_image` and
  `box`; `"targets": []` means the target is in no image (saying "none" is right).
  One pair is stored as a single target (schemas/rows.py).
- Optional: `equivalent_images` (other indices that also count as correct),
  `source` (default "jsonl"); any other key is kept in `meta`.
Ids are kept as given. A line that is not a JSON object is quarantined as
`malformed_json`; a pixel box whose image cannot be read is left to ingest,
which names the image problem.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from builders.sources.base import Reject, SourceItem
from schemas.errors import UserError

FRAMES = ("norm1", "norm1000", "pixel")
KNOWN = {"id", "images", "question", "target_image", "box", "box_frame", "task_type",
         "choices", "answer", "equivalent_images", "source", "targets"}


def read_jsonl(path: Path | str | None) -> Iterator[SourceItem | Reject]:
    """Yield one SourceItem (or Reject) per non-blank line of the file."""
    if path is None:
        raise UserError("jsonl: --path FILE.jsonl is required")
    file = Path(path)
    if not file.is_file():
        raise UserError(f"jsonl: {file} is not a file")
    # Absolute: ingest confines paths to the root it is given, and would read a relative
    # `d/a.png` as relative to that root again (`d/d/a.png`).
    root = file.parent.absolute()
    with open(file, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                yield parse_line(line, n, root)


def parse_line(line: str, n: int, root: Path) -> SourceItem | Reject:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        return Reject(f"line-{n}", "malformed_json", f"line {n}: {e.msg} at column {e.colno}", {"line": line[:500]})
    except (RecursionError, ValueError) as e:  # ValueError: an integer past Python's 4300-digit limit
        why = "nested too deeply to read" if isinstance(e, RecursionError) else str(e)[:200]
        return Reject(f"line-{n}", "malformed_json", f"line {n}: {why}", {"line": line[:500]})
    if not isinstance(rec, dict):
        return Reject(f"line-{n}", "malformed_json", f"line {n}: not a JSON object", {"line": line[:500]})
    rid = rec.get("id") if isinstance(rec.get("id"), str) else f"line-{n}"
    problem = _shape_problem(rec)
    if problem:
        return Reject(rid, "malformed_record", f"line {n}: {problem}", rec)
    images = [root / p for p in rec["images"]]
    box = None
    if rec.get("box") is not None:
        box = to_norm1(rec["box"], rec.get("box_frame", "norm1"), images, rec.get("target_image"), root)
        if isinstance(box, Reject):
            box.id, box.record = rid, rec
            return box
    targets = None
    if rec.get("targets") is not None:
        targets = []
        for t in rec["targets"]:
            pair_box = to_norm1(t["box"], rec.get("box_frame", "norm1"), images, t["image"], root)
            if isinstance(pair_box, Reject):
                pair_box.id, pair_box.record = rid, rec
                return pair_box
            targets.append((t["image"], pair_box))
    raw = {"box_raw": rec["box"]} if box else {"targets_raw": rec["targets"]} if targets else {}
    return SourceItem(
        id=rec["id"], source=rec.get("source") or "jsonl", task_type=rec.get("task_type") or "grounding",
        images=images, question=rec["question"], target_image=rec.get("target_image"),
        equivalent_images=list(rec.get("equivalent_images") or []), target_box=box,
        choices=rec.get("choices"), answer=rec.get("answer"),
        meta={k: v for k, v in rec.items() if k not in KNOWN} | raw, targets=targets,
    )


def _shape_problem(rec: dict) -> str | None:
    """Types of the fields, so later steps can trust them."""
    if not isinstance(rec.get("id"), str) or not rec["id"]:
        return "id: a non-empty string is required"
    if not isinstance(rec.get("images"), list) or not all(isinstance(p, str) and p for p in rec["images"]):
        return "images: a list of relative paths is required"
    if not isinstance(rec.get("question"), str):
        return "question: a string is required"
    if rec.get("box_frame", "norm1") not in FRAMES:
        return f"box_frame: {rec.get('box_frame')!r} is not one of {', '.join(FRAMES)}"
    if "choices" in rec and not (isinstance(rec["choices"], list) and all(isinstance(c, str) for c in rec["choices"])):
        return "choices: a list of strings is required"
    if rec.get("target_image") is not None and not _is_int(rec["target_image"]):
        return "target_image: a 0-based integer is required"
    targets = rec.get("targets")
    if targets is not None:
        if not isinstance(targets, list) or not all(
                isinstance(t, dict) and set(t) == {"image", "box"} and _is_int(t["image"]) for t in targets):
            return 'targets: a list of {"image": 0-based integer, "box": [x1, y1, x2, y2]} is required'
        if any(rec.get(k) is not None for k in ("target_image", "box", "choices")):
            return "targets: give either targets, or target_image and box, or choices"
    equivalent = rec.get("equivalent_images")
    if equivalent is not None and not (isinstance(equivalent, list) and all(map(_is_int, equivalent))):
        return "equivalent_images: a list of 0-based integers is required"
    return None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def to_norm1(box, frame: str, images: list[Path], target: int | None, root: Path) -> list[float] | Reject:
    """Convert a box to normalised 0-1 xyxy; ingest then validates its values."""
    if not isinstance(box, list) or len(box) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        return Reject(None, "invalid_box:not_four_numbers", f"box {str(box)[:200]}")
    for v in box:  # a 400-digit integer has no float: out of any frame's range
        try:
            float(v)
        except OverflowError:
            return Reject(None, "invalid_box:out_of_range", f"box value of {len(str(v))} digits")
    if frame == "norm1":
        return [float(v) for v in box]
    if frame == "norm1000":
        return [v / 1000 for v in box]
    if not isinstance(target, int) or not 0 <= target < len(images):
        return [float(v) for v in box]  # ingest names the bad target index
    size = _image_size(images[target], root)
    if size is None or 0 in size:
        return [float(v) for v in box]  # ingest names the image problem
    w, h = size
    return [box[0] / w, box[1] / h, box[2] / w, box[3] / h]


def _image_size(path: Path, root: Path) -> tuple[int, int] | None:
    """The header size of an image as displayed (EXIF orientation applied: ingest stores it
    upright, and a pixel box is drawn on what the user sees), or None; full checks happen in ingest."""
    from PIL import Image

    from builders.sources.images import displayed_size, resolve_path

    try:
        with Image.open(resolve_path(path, root)) as im:
            return displayed_size(im)
    except Exception:  # missing, escaping or broken: ingest rejects it by name
        return None
