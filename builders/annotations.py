"""`build cot --mode annotations`: reasoning written from object annotations, offline.

MIRG-RL builds its trajectories from object- and image-level annotations
instead of asking a teacher: say what each image holds, which image holds the
target and why, and where; then the answer. Here the words come from the
versioned template file `builders/prompts/annotations_v2.txt` (one section per
task type, `[generic]` for the others) and the answer is rendered by the
chosen answer profile, so it is exactly what the rewards and eval parse.

Annotations a row must carry in `meta` (the synthetic source writes them; any
source may):
    meta["objects"][i]   list of the objects of image i, one per entry, each a dict
                         with a name (`label`, `name` or `category`, or `color` +
                         `shape`) and optionally `box` (normalised 0-1 xyxy)
    meta["target_object"] optional: the target's name (same keys); else the object
                         of the target image whose box overlaps the target box most
    meta["change"]       optional, diff tasks: removed | added | recoloured
A row without `objects` for every image is rejected as `no_annotations`.

Set rows (several targets, or none: schemas/rows.py `targets`) take their words from
`builders/prompts/annotations_sets_v1.txt` (`[several]`, `[none]`): each image
described, then where each target is, or that no image holds it. Their target's
name is `meta["target_object"]`, else the best-overlapping object of a target's
image, else "target object".
"""
from __future__ import annotations

import json

from schemas.boxes import box_problem, clip01, iou
from schemas.profiles import ordinal

TEMPLATE_ID = "annotations_v2"
SETS_TEMPLATE_ID = "annotations_sets_v1"
_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "centre", "right")


def parse_sections(text: str) -> dict[str, str]:
    """`[name]` sections of a template file; `# ` comment lines dropped."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# "):
            continue
        if line.startswith("[") and line.rstrip().endswith("]"):
            current = line.strip()[1:-1]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v).strip() for k, v in sections.items()}


LABEL_KEYS, WORD_KEYS = ("label", "name", "category"), ("color", "shape")  # what names an object (describe)


def describe(obj: dict) -> str:
    """An object's name: its label, or colour + shape ("red circle")."""
    for key in LABEL_KEYS:
        if isinstance(obj.get(key), str) and obj[key].strip():
            return obj[key].strip()
    words = [obj[k] for k in WORD_KEYS if isinstance(obj.get(k), str) and obj[k]]
    return " ".join(words) or "object"


def with_article(name: str) -> str:
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def listing(objects: list[dict]) -> str:
    """"a blue square", "a blue square and a green circle", "a, b and c"."""
    names = [with_article(describe(o)) for o in objects]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def position(box) -> str:
    """Where a 0-1 box's centre lies on a 3x3 split of the image: "top left", "centre", ..."""
    x1, y1, x2, y2 = clip01(box)
    row = _ROWS[min(2, int((y1 + y2) / 2 * 3))]
    col = _COLS[min(2, int((x1 + x2) / 2 * 3))]
    if row == "middle":
        return "centre" if col == "centre" else col
    return row if col == "centre" else f"{row} {col}"


def annotations(task: dict) -> tuple[list[list[dict]] | None, dict]:
    """(objects per image, meta) of a task row, or (None, meta) when it has none."""
    meta = task.get("meta")
    meta = json.loads(meta) if isinstance(meta, str) and meta else (meta or {})
    objects = meta.get("objects") if isinstance(meta, dict) else None
    n = len(task["images"])
    if not isinstance(objects, list) or len(objects) != n or not all(isinstance(o, list) for o in objects):
        return None, meta if isinstance(meta, dict) else {}
    if not all(isinstance(o, dict) for image in objects for o in image):
        return None, meta
    return objects, meta


def best_object(objects: list[dict], target_box) -> tuple[dict | None, float]:
    """The object whose box overlaps `target_box` most, and that IoU."""
    best, best_iou = None, 0.0
    for o in objects:
        box = o.get("box")
        if box_problem(box) not in ("not_four_numbers", "nan"):  # four finite numbers (strings are no box)
            overlap = iou(clip01(box), clip01(target_box))
            if overlap > best_iou:
                best, best_iou = o, overlap
    return best, best_iou


def target_name(task: dict, objects: list[list[dict]], meta: dict) -> str:
    """The target's name: meta["target_object"], else the best-overlapping object of the target image."""
    if isinstance(meta.get("target_object"), dict):
        return describe(meta["target_object"])
    best, best_iou = best_object(objects[task["target_image"]], task["target_box"])
    return describe(best) if best is not None and best_iou >= 0.5 else "marked object"


def _images_text(objects: list[list[dict]], sections: dict[str, str]) -> str:
    return " ".join(sections["image" if image else "empty_image"].format(n=i + 1, objects=listing(image) if image
                                                                           else "") for i, image in enumerate(objects))


def set_reasoning_for(task: dict, sections: dict[str, str]) -> str | None:
    """The reasoning text for a set row (annotations_sets_v1), or None when it has no annotations."""
    objects, meta = annotations(task)
    if objects is None:
        return None
    pairs = sorted((t["image"], list(t["box"])) for t in task["targets"])
    name = describe(meta["target_object"]) if isinstance(meta.get("target_object"), dict) else None
    for i, box in pairs if name is None else ():
        best, overlap = best_object(objects[i], box)
        if best is not None and overlap >= 0.5:
            name = describe(best)
            break
    values = {"images": _images_text(objects, sections), "target": name or "target object"}
    if not pairs:
        return sections["none"].format(**values)
    places = [f"the {ordinal(i)} image at the {position(box)}" for i, box in pairs]
    places = places[0] if len(places) == 1 else ", ".join(places[:-1]) + " and " + places[-1]
    return sections["several"].format(count=len(pairs), places=places, **values)


def reasoning_for(task: dict, sections: dict[str, str]) -> str | None:
    """The reasoning text for one grounding task, or None when it has no annotations."""
    objects, meta = annotations(task)
    if objects is None:
        return None
    family = task["task_type"] if task["task_type"] in sections else "generic"
    k = task["target_image"]
    values = {"k": k + 1, "kth": ordinal(k), "target": target_name(task, objects, meta),
              "pos": position(task["target_box"]),
              "change": meta["change"] if isinstance(meta.get("change"), str) and meta["change"] else "changed"}
    lines = []
    for i, image in enumerate(objects):
        key = f"{family}.target_image" if i == k and f"{family}.target_image" in sections else "image"
        if not image and key == "image":
            key = "empty_image"
        lines.append(sections[key].format(n=i + 1, objects=listing(image) if image else "", **values))
    return sections[family].format(images=" ".join(lines), **values)
