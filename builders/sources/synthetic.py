"""The embedded default source: procedurally drawn multi-image grounding tasks.

`read_synthetic(path, n, seed, family=...)` yields `n` SourceItems whose
images are PNG bytes drawn with PIL. Everything is a pure function of
(family, seed, item index), so a seed always gives the same tasks.

Families (task_type = family name):
- `locate_red` (the demo's default, the configuration learnability.md found
  a 3M-parameter model can learn on CPU): two 56 px images on a 2x2 grid, so
  one cell = one merged visual token (28 px = patch 14 x merge 2); exactly
  one red object in one of the images, 0-2 distractors per image in other
  colours; "Locate the red object."; the target box is the full cell, so
  coordinates are in {0, 0.5, 1}.
- `mixed`: the MIG-Bench-like families in turn: common_object, diff,
  refer_grounding, group_grounding, correspondence, object_tracking
  (2-5 images of 112 px on a 4x4 grid by default; each may be asked alone).

Boxes (target and per-object annotations) are always the object's grid cell,
normalised 0-1 xyxy: coarse on purpose, so that small models can learn them.
`meta["objects"][i]` lists what image i holds ({shape, color, box, cell}) so
that annotation-built CoT can describe every image.

Seeds must give disjoint tasks (train and held-out bench splits come from
different seeds and are checked for image overlap by content hash), so each
image gets a seeded background level and a few faint noise pixels: at most
2 grey levels away from the background, far below the colour signal.
"""
from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw

from builders.sources.base import Reject, SourceItem
from builders.sources.words import format_box
from schemas.profiles import ordinal
from schemas.errors import UserError

SHAPES = ("circle", "square", "triangle")
COLORS = {
    "red": (220, 40, 40), "green": (40, 160, 60), "blue": (50, 80, 220),
    "yellow": (225, 195, 30), "purple": (140, 60, 170), "orange": (240, 130, 20),
}
MIXED = ("common_object", "diff", "refer_grounding", "group_grounding",
         "correspondence", "object_tracking")
FAMILIES = ("locate_red", "mixed") + MIXED
BACKGROUND = 232  # light grey; every colour above contrasts with it
NOISE_PIXELS = 6  # faint seeded pixels that make every image's bytes unique


def _obj(rng: random.Random, cell: tuple[int, int], pool: list[tuple[str, str]]) -> dict:
    """An object on `cell` whose (shape, colour) is taken out of `pool`."""
    shape, color = pool.pop(rng.randrange(len(pool)))
    return {"shape": shape, "color": color, "cell": list(cell)}


def _pairs(colors=tuple(COLORS)) -> list[tuple[str, str]]:
    return [(s, c) for s in SHAPES for c in colors]


def _cells(rng: random.Random, grid: int, k: int, exclude=()) -> list[tuple[int, int]]:
    free = [(r, c) for r in range(grid) for c in range(grid) if (r, c) not in set(exclude)]
    return rng.sample(free, k)


def _fill(rng, grid, objects, pool, k, exclude=()) -> None:
    """Add k distractors from `pool` on free cells of one image's object list."""
    used = {tuple(o["cell"]) for o in objects} | set(exclude)
    for cell in _cells(rng, grid, k, used):
        objects.append(_obj(rng, cell, pool))


def _locate_red(rng, grid):
    target = rng.randrange(2)
    objects = [[], []]
    objects[target].append(_obj(rng, _cells(rng, grid, 1)[0], [(s, "red") for s in SHAPES]))
    # The learnability study's palette: red is reserved for the target, and
    # orange/purple stay out so that "red" is one salient, unambiguous colour.
    others = ["green", "blue", "yellow"]
    for image in objects:
        _fill(rng, grid, image, _pairs(others), rng.randint(0, min(2, grid * grid - 1)))
    return objects, "Locate the red object.", target, objects[target][0], [], {}


def _common_object(rng, grid):
    n = rng.randint(3, 5)
    pool = _pairs()
    common = _obj(rng, (0, 0), pool)
    objects = []
    for _ in range(n):  # distractors come from one shrinking pool: none is common
        cell = _cells(rng, grid, 1)[0]
        objects.append([dict(common, cell=list(cell))])
        _fill(rng, grid, objects[-1], pool, rng.randint(0, 2))
    k = rng.randrange(n)
    q = ("These images share one object in common. Recognize and locate this "
         f"object in the {ordinal(k)} image.")
    return objects, q, k, objects[k][0], [], {}


def _diff(rng, grid):
    pool = _pairs()
    base: list[dict] = []
    _fill(rng, grid, base, pool, rng.randint(1, 3))
    second = [dict(o) for o in base]
    change = rng.choice(("removed", "added", "recoloured"))
    if change == "added":
        spot = _obj(rng, _cells(rng, grid, 1, [tuple(o["cell"]) for o in base])[0], pool)
        second.append(spot)
    else:
        i = rng.randrange(len(base))
        spot = base[i]
        second.pop(i)
        if change == "recoloured":
            colors = [c for c in COLORS if c != spot["color"]]
            second.insert(i, dict(spot, color=rng.choice(colors)))
    q = "Compare these two images carefully and give me the coordinates of their difference."
    return [base, second], q, 0, spot, [1], {"change": change}


def _refer_grounding(rng, grid):
    pool = _pairs()
    shown = _obj(rng, _cells(rng, grid, 1)[0], pool)
    scene = [dict(shown, cell=list(_cells(rng, grid, 1)[0]))]
    _fill(rng, grid, scene, pool, rng.randint(1, 3))
    q = "Find and locate where the object in the first image is in the second image."
    return [[shown], scene], q, 1, scene[0], [], {}


def _group_grounding(rng, grid):
    n = rng.randint(3, 5)
    pool = _pairs()
    objects: list[list[dict]] = [[] for _ in range(n)]
    k = rng.randrange(n)
    wanted = _obj(rng, _cells(rng, grid, 1)[0], pool)
    objects[k].append(wanted)
    for image in objects:
        _fill(rng, grid, image, pool, rng.randint(0 if image else 1, 2))
    q = (f"Which image contains the {wanted['color']} {wanted['shape']}? "
         "Name the image and locate the object in it.")
    return objects, q, k, wanted, [], {}


def _correspondence(rng, grid, n: int = 2):
    """The object marked in the first image, found again in a later image.

    With n == 2 this is correspondence; with 3-5 frames, object tracking: the
    marked object moves at most one cell a frame and the others are redrawn.
    """
    pool = _pairs()
    tracked = _obj(rng, _cells(rng, grid, 1)[0], pool)
    frames = [[tracked]]
    _fill(rng, grid, frames[0], pool, rng.randint(1, 2))
    others = [(o["shape"], o["color"]) for o in frames[0][1:]] + pool
    for _ in range(n - 1):
        r, c = frames[-1][0]["cell"]
        moves = [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                 if 0 <= r + dr < grid and 0 <= c + dc < grid]
        frame = [dict(tracked, cell=list(rng.choice(moves)))]
        _fill(rng, grid, frame, list(others), rng.randint(1, 2))
        frames.append(frame)
    k = rng.randrange(1, n)
    marked = _cell_box(tracked["cell"], grid)
    q = ("For the object in the first image marked by the box "
         f"{format_box(marked)}, locate it in the {ordinal(k)} image.")
    return frames, q, k, frames[k][0], [], {"input_boxes": [marked]}


def _object_tracking(rng, grid):
    return _correspondence(rng, grid, n=rng.randint(3, 5))


GENERATORS = {
    "locate_red": _locate_red, "common_object": _common_object, "diff": _diff,
    "refer_grounding": _refer_grounding, "group_grounding": _group_grounding,
    "correspondence": _correspondence, "object_tracking": _object_tracking,
}


def _cell_box(cell, grid: int) -> list[float]:
    r, c = cell
    return [c / grid, r / grid, (c + 1) / grid, (r + 1) / grid]


def _draw(objects: list[dict], size: int, grid: int, rng: random.Random) -> bytes:
    """One PNG: seeded near-uniform background, then every object in its cell."""
    bg = BACKGROUND + rng.randint(-2, 2)
    img = Image.new("RGB", (size, size), (bg, bg, bg))
    px = img.load()
    for _ in range(NOISE_PIXELS):  # drawn first: objects paint over them
        v = bg + rng.choice((-2, -1, 1, 2))
        px[rng.randrange(size), rng.randrange(size)] = (v, v, v)
    draw = ImageDraw.Draw(img)
    for o in objects:
        x1, y1, x2, y2 = (round(v * size) for v in _cell_box(o["cell"], grid))
        m = max(1, (x2 - x1) // 6)  # margin: objects never touch the cell border
        box = (x1 + m, y1 + m, x2 - m - 1, y2 - m - 1)
        color = COLORS[o["color"]]
        if o["shape"] == "circle":
            draw.ellipse(box, fill=color)
        elif o["shape"] == "square":
            draw.rectangle(box, fill=color)
        else:
            draw.polygon([((box[0] + box[2]) / 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _check(n: int, family: str, image_size: int, grid: int) -> None:
    if family not in FAMILIES:
        raise UserError(f"unknown synthetic family {family!r}; choose from {', '.join(FAMILIES)}")
    if n < 0:
        raise UserError(f"--n must be >= 0, got {n}")
    if not 8 <= image_size <= 112:
        raise UserError(f"synthetic image_size must be 8..112 px, got {image_size}")
    if not 2 <= grid <= image_size // 4:
        raise UserError(f"synthetic grid must be 2..{image_size // 4} for {image_size} px, got {grid}")


def make_item(family: str, seed: int, i: int, image_size: int, grid: int) -> SourceItem:
    """Task i of a seed: a pure function of its arguments."""
    rng = random.Random(f"polyground-synthetic:{family}:{seed}:{i}")
    objects, question, target, target_obj, equivalent, extra = GENERATORS[family](rng, grid)
    for image in objects:
        for o in image:
            o["box"] = _cell_box(o["cell"], grid)
    images = [_draw(image, image_size, grid, rng) for image in objects]
    meta = {"family": family, "objects": objects, "seed": seed, "index": i,
            "grid": grid, "image_size": image_size,
            "target_object": {k: target_obj[k] for k in ("shape", "color", "cell")}, **extra}
    return SourceItem(
        id=f"syn-{family}-{seed}-{i}", source="synthetic", task_type=family,
        images=images, question=question, target_image=target,
        equivalent_images=list(equivalent), target_box=_cell_box(target_obj["cell"], grid),
        meta=meta,
    )


def read_synthetic(path: Path | None = None, n: int = 100, seed: int = 0,
                   family: str = "locate_red", image_size: int | None = None,
                   grid: int | None = None) -> Iterator[SourceItem | Reject]:
    """Yield n tasks of `family` for `seed` (`path` is unused: nothing is read).

    Defaults: locate_red draws 56 px images on a 2x2 grid (one token a cell);
    every other family 112 px on a 4x4 grid (still 28 px a cell).
    """
    small = family == "locate_red"
    image_size = image_size or (56 if small else 112)
    grid = grid or (2 if small else 4)
    _check(n, family, image_size, grid)
    for i in range(n):
        fam = MIXED[i % len(MIXED)] if family == "mixed" else family
        yield make_item(fam, seed, i, image_size, grid)
