"""Answers that hold a target SET: several (image, box) pairs, or none, in each answer profile.

The profiles (schemas.profiles) write one box; a set row's answer is a list:

  qwen2_5_vl  Qwen2.5-VL's native list of objects, with the 1-based image:
              `[{"image": 1, "bbox_2d": [x1, y1, x2, y2], "label": "target"}, ...]`
              in pixels of that image's smart_resize frame; none is `[]`
  norm1000    the same list on the 0-1000 grid; none is `[]`
  qwen2_vl    one span per box, each after the image it is on, in words:
              `the first image: <|box_start|>(x1,y1),(x2,y2)<|box_end|>; the third image: ...`
  short       `image 1: (x1,y1),(x2,y2); image 3: (x1,y1),(x2,y2)`
  (text profiles: none is the word `none`)

Qwen2.5-VL's own grounding output (its cookbook's spatial-understanding
examples) is a ```json fenced list of {"bbox_2d", "label"} objects in absolute
pixels of the resized image; the fence is accepted, `label` is optional and
ignored, `image` is required where there are several images. In text
profiles a box with no image named since the previous box lies on the
previous box's image ("the first image: (..),(..), (..),(..)").

`parse_set` is strict, as the single-box parse: it never raises on a
completion and names the first problem (schemas.profiles.PARSE_ERRORS), e.g.
`duplicate_box` (the same image and box twice), `image_out_of_range`,
`unparsable_numbers`, `bad_json`, `none_with_boxes`, `no_image`, `no_box`.
Pairs are rendered sorted by (image, box), so a set has one rendering.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from schemas.boxes import clip01
from schemas import rows
from schemas.profiles import (
    _STRICT_TUPLE_BOX, _TUPLE_BOX, JsonProfile, Profile, TupleProfile, _check_reasoning, _json_box, image_mentions,
    split_envelope,
)

NONE_WORD = "none"
LABEL = "target"
_NONE_RE = re.compile(r"\bnone\b", re.IGNORECASE)


@dataclass(slots=True)
class ParsedSet:
    """A parsed set answer: (0-based image, normalised 0-1 xyxy box, NOT clipped) pairs; [] is "none"."""

    pairs: list[tuple[int, list[float]]] | None
    error: str | None
    think: str | None = None
    answer: str | None = None


def render_set_answer(profile: Profile, pairs, image_sizes) -> str:
    """The answer text of a target set in `profile` (module docstring)."""
    pairs = sorted((int(i), [float(v) for v in b]) for i, b in pairs)
    if isinstance(profile, JsonProfile):
        items = []
        for i, box in pairs:
            fw, fh = profile.frame(image_sizes[i])
            x1, y1, x2, y2 = clip01(box)
            items.append({"image": i + 1, "bbox_2d": [round(x1 * fw), round(y1 * fh), round(x2 * fw), round(y2 * fh)],
                          "label": LABEL})
        return json.dumps(items)
    if isinstance(profile, TupleProfile):
        return "; ".join(profile.render_answer(i, b, image_sizes) for i, b in pairs) if pairs else NONE_WORD
    raise ValueError(f"profile {profile.name!r} has no set answer")


def render_set(profile: Profile, reasoning: str, pairs, image_sizes) -> str:
    """The training target of a set row: `<think>reasoning</think><answer>the set</answer>`."""
    _check_reasoning(reasoning)
    return f"<think>{reasoning}</think><answer>{render_set_answer(profile, pairs, image_sizes)}</answer>"


def render_row_answer(row: dict, profile: Profile) -> str:
    """A grounding row's ground truth as `profile` writes it (the answer part): its one box, or
    its whole set ("none" for an empty one). Sizes are the row's images' (schemas.rows.image_sizes)."""
    if rows.is_set_row(row):
        return render_set_answer(profile, rows.target_pairs(row), rows.image_sizes(row))
    return profile.render_answer(row["target_image"], row["target_box"], rows.image_sizes(row))


def render_row(row: dict, profile: Profile, reasoning: str = "", image: int | None = None) -> str:
    """A grounding row's training completion: `reasoning` and its ground truth. One box is written
    on `image` (default: the target image; a cot row passes the equivalent image the teacher named);
    a set row's answer is its whole set."""
    if rows.is_set_row(row):
        return render_set(profile, reasoning, rows.target_pairs(row), rows.image_sizes(row))
    image = row["target_image"] if image is None else image
    return profile.render(reasoning, image, row["target_box"], rows.image_sizes(row))


def parse_set(profile: Profile, completion: str, image_sizes) -> ParsedSet:
    """Strict parse of a whole completion (think/answer envelope) into a target set."""
    think, answer, error = split_envelope(completion)
    if error:
        return ParsedSet(None, error)
    parsed = parse_set_answer(profile, answer, image_sizes)
    parsed.think, parsed.answer = think, answer
    return parsed


def parse_set_answer(profile: Profile, answer: str, image_sizes) -> ParsedSet:
    if isinstance(profile, JsonProfile):
        pairs, error = _json_set(profile, answer, image_sizes)
    elif isinstance(profile, TupleProfile):
        pairs, error = _tuple_set(answer, len(image_sizes))
    else:
        pairs, error = None, "no_box"
    return ParsedSet(None if error else pairs, error)


def _is_none(text: str) -> bool:
    return text.strip().rstrip(".").strip().lower() == NONE_WORD


def _add(pairs: list, seen: set, image: int, box: list[float]) -> str | None:
    key = (image, tuple(box))
    if key in seen:
        return "duplicate_box"
    seen.add(key)
    pairs.append((image, box))
    return None


def _tuple_set(answer: str, n_images: int):
    text = answer.replace("<|box_start|>", " ").replace("<|box_end|>", " ") if "<|box_" in answer else answer
    matches = list(_TUPLE_BOX.finditer(text))
    if not matches:
        return ([], None) if _is_none(text) else (None, "no_box")
    pairs, seen, image, start = [], set(), None, 0
    for m in matches:
        gap = text[start:m.start()]
        start = m.end()
        if _NONE_RE.search(gap):
            return None, "none_with_boxes"
        named = set(image_mentions(gap))
        if len(named) > 1:
            return None, "several_answers"  # which of them holds this box?
        strict = _STRICT_TUPLE_BOX.fullmatch(m.group(0))
        if strict is None:
            return None, "unparsable_numbers"
        values = [float(v) for v in strict.groups()]
        if not all(map(math.isfinite, values)):
            return None, "unparsable_numbers"
        if named:
            (image,) = named
            if not 0 <= image < n_images:
                return None, "image_out_of_range"
        elif image is None:
            if n_images != 1:
                return None, "no_image"
            image = 0
        if error := _add(pairs, seen, image, [v / 1000 for v in values]):
            return None, error
    tail = text[start:]
    if _NONE_RE.search(tail):
        return None, "none_with_boxes"
    if image_mentions(tail):
        return None, "no_box"  # an image named, and no box for it
    return pairs, None


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(items):
    keys = [k for k, _ in items]
    if len(set(keys)) != len(keys):
        raise _DuplicateKey
    return dict(items)


def _json_set(profile: JsonProfile, answer: str, image_sizes):
    text = answer.strip()
    if len(text) >= 6 and text.startswith("```") and text.endswith("```"):
        text = text[3:-3]
        text = text[4:] if text.startswith("json") else text
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey:
        return None, "several_answers"
    except (ValueError, RecursionError):
        return None, "bad_json"
    items = [obj] if isinstance(obj, dict) else obj
    if not isinstance(items, list):
        return None, "no_box"
    pairs, seen = [], set()
    for item in items:
        if not isinstance(item, dict) or "bbox_2d" not in item:
            return None, "no_box"
        bbox = item["bbox_2d"]
        values = _json_box(bbox) if type(bbox) is list else None
        if values is None:
            return None, "unparsable_numbers"
        image = item.get("image")
        if image is None:
            if len(image_sizes) != 1:
                return None, "no_image"
            image = 1
        if isinstance(image, bool) or not isinstance(image, int):
            return None, "no_image"
        if not 1 <= image <= len(image_sizes):
            return None, "image_out_of_range"
        fw, fh = profile.frame(image_sizes[image - 1])
        x1, y1, x2, y2 = values
        if error := _add(pairs, seen, image - 1, [x1 / fw, y1 / fh, x2 / fw, y2 / fh]):
            return None, error
    return pairs, None
