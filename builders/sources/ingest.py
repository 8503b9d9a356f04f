"""SourceItem stream -> validated task records + rejects, images stored by hash.

Readers only parse; this module decides what is kept. Each item goes through
cheap checks first (duplicate id, target index, box), then its images are read,
decoded and stored once (a path referenced by many rows is read once), then the
finished record is checked against `schemas.rows.validate_task`. A failure at
any step quarantines the item with a named reason (docs/internals.md); nothing
is kept silently wrong, and nothing bad crashes the build. A row may list at
most `max_images` images (`too_many_images` beyond): a row naming one file
200,000 times is not a task. Text that is not valid Unicode (a lone surrogate
from a JSON escape) is `invalid_text`; rejects rows escape it, so they always store.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable
from pathlib import Path

from builders.sources.images import ImageRejected, load_image_bytes
from builders.sources.base import Reject, SourceItem
from schemas import rows
from schemas.errors import UserError

BATCH = 256  # items whose new images are read together
MAX_IMAGES_PER_ROW = 64  # MIG-Bench and MGrounding rows hold 2-6; `build tasks --max-images-per-row` changes it
RECORD_IMAGES = 16  # image references kept in a rejects record (the rest are counted)
IMAGE_THREADS = 4  # decode + hash + store in parallel: PIL and file I/O release the GIL


def box_problem(box) -> str | None:
    """schemas.boxes names what is wrong with a normalised 0-1 xyxy box."""
    from schemas.boxes import box_problem as named_problem

    return named_problem(box)


def item_record(item: SourceItem) -> dict:
    """A JSON-able copy of a source item for the rejects table (bytes summarised, long image lists cut)."""
    d = dict(vars(item))
    images = list(item.images) if isinstance(item.images, (list, tuple)) else [item.images]
    d["images"] = [str(i) if not isinstance(i, (bytes, bytearray)) else f"<{len(i)} bytes>"
                   for i in images[:RECORD_IMAGES]]
    if len(images) > RECORD_IMAGES:
        d["images"].append(f"... and {len(images) - RECORD_IMAGES} more")
    return d


def _is_index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def text_problem(item: SourceItem) -> str | None:
    """The first text field that is not valid Unicode (it could not be stored), or None."""
    fields = {"id": item.id, "source": item.source, "task_type": item.task_type, "question": item.question,
              "answer": item.answer, "choices": item.choices, "meta": item.meta,
              "images": [str(i) for i in item.images if not isinstance(i, (bytes, bytearray))]}
    for name, value in fields.items():
        try:
            json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
        except UnicodeEncodeError as e:
            return f"{name}: not valid Unicode (a lone surrogate {e.object[e.start:e.end]!a})"
        except (ValueError, TypeError, RecursionError) as e:
            return f"{name}: not storable as JSON ({type(e).__name__})"
    return None


def target_problem(item: SourceItem, max_images: int = MAX_IMAGES_PER_ROW) -> tuple[str, str] | None:
    """(reason, detail) when the image list, target image or box is unusable (no image is read)."""
    if not isinstance(item.images, (list, tuple)):
        return "invalid_row:images", f"images: a list is required, got {type(item.images).__name__}"
    n = len(item.images)
    if n > max_images:
        return "too_many_images", f"{n} images; a row may hold at most {max_images} (--max-images-per-row)"
    equivalent = item.equivalent_images if item.equivalent_images is not None else []
    if not isinstance(equivalent, (list, tuple)) or not all(map(_is_index, equivalent)):
        return "invalid_row:equivalent_images", f"equivalent_images: {str(equivalent)[:80]} is not a list of indices"
    if item.target_image is not None and not _is_index(item.target_image):
        return "invalid_row:target_image", f"target_image: {str(item.target_image)[:80]} is not an index"
    bad = [i for i in [item.target_image, *equivalent] if i is not None and not 0 <= i < n]
    if bad:
        return "target_out_of_range", f"image index {str(bad[0])[:40]} with {n} images (0-based)"
    if item.targets is not None:
        return _set_problem(item, n)
    if item.target_box is not None:
        if item.target_image is None:
            return "no_target_image", "a box target needs the index of its image"
        why = box_problem(item.target_box)
        # A benchmark's own wrong box, kept on purpose by its reader (MIG-Bench's
        # inverted boxes count in the official denominator); scoring marks it unverifiable.
        if why and why != (item.meta or {}).get("box_as_released"):
            return f"invalid_box:{why}", f"box {str(item.target_box)[:200]}"
    return None


def _set_problem(item: SourceItem, n: int) -> tuple[str, str] | None:
    """target_problem for a target set: its pairs' images and boxes, and nothing else set."""
    if item.target_box is not None or item.target_image is not None or item.equivalent_images:
        return "conflicting_target", "a target set and target_image/target_box/equivalent_images together"
    if not isinstance(item.targets, (list, tuple)):
        return "invalid_row:targets", f"targets: a list of (image, box) pairs is required, got {type(item.targets).__name__}"
    seen = set()
    for pair in item.targets:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and _is_index(pair[0])):
            return "invalid_row:targets", f"targets: {str(pair)[:80]} is not an (image, box) pair"
        image, box = pair
        if not 0 <= image < n:
            return "target_out_of_range", f"image index {str(image)[:40]} with {n} images (0-based)"
        why = box_problem(box)
        if why:
            return f"invalid_box:{why}", f"box {str(box)[:200]} on image {image}"
        key = (image, tuple(float(v) for v in box))
        if key in seen:
            return "duplicate_target", f"the pair (image {image}, {list(box)}) is listed twice"
        seen.add(key)
    return None


def single_or_set(item: SourceItem) -> SourceItem:
    """A one-pair target set becomes target_image/target_box: one home for the common case."""
    if isinstance(item.targets, (list, tuple)) and len(item.targets) == 1 and item.target_box is None \
            and item.target_image is None and not item.equivalent_images:
        pair = item.targets[0]
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            import dataclasses

            return dataclasses.replace(item, target_image=pair[0], target_box=pair[1], targets=None)
    return item


class ImageCache:
    """Stores each distinct image once; remembers the outcome per reference.

    `prefetch` reads, decodes and stores a batch's new images on a thread pool
    (PIL decoding and file I/O release the GIL); `get` then only looks up."""

    def __init__(self, store, root: Path | None, pool=None):
        self.store, self.root, self.pool = store, root, pool
        self.seen: dict = {}

    @staticmethod
    def key(ref) -> str:
        return hashlib.sha256(ref).hexdigest() if isinstance(ref, (bytes, bytearray)) else str(ref)

    def load(self, ref) -> dict | ImageRejected:
        try:
            data, width, height = load_image_bytes(ref, self.root)
        except ImageRejected as e:
            return e
        return {"sha256": self.store.put_image(data), "width": width, "height": height}

    def prefetch(self, refs: Iterable) -> None:
        todo = {}
        for ref in refs:
            todo.setdefault(self.key(ref), ref)
        todo = {k: r for k, r in todo.items() if k not in self.seen}
        if self.pool is not None and len(todo) > 1:
            self.seen.update(zip(todo, self.pool.map(self.load, todo.values())))

    def get(self, ref) -> dict:
        """{"sha256","width","height"} or raise ImageRejected."""
        key = self.key(ref)
        if key not in self.seen:
            self.seen[key] = self.load(ref)
        hit = self.seen[key]
        if isinstance(hit, ImageRejected):
            raise hit
        return hit


def to_record(item: SourceItem, images: list[dict]) -> dict:
    box = item.target_box
    return {
        "id": item.id, "source": item.source, "task_type": item.task_type, "images": images,
        "question": item.question, "target_image": item.target_image,
        "equivalent_images": list(item.equivalent_images or []),
        "target_box": None if box is None else [float(v) for v in box],
        "choices": None if item.choices is None else list(item.choices), "answer": item.answer,
        "meta": json.dumps(item.meta or {}, sort_keys=True, ensure_ascii=False, default=str),
        "targets": rows.target_records(item.targets),
    }


def check_item(item: SourceItem, cache: ImageCache, kept_ids: set, max_images: int = MAX_IMAGES_PER_ROW) -> dict:
    """The task record for one item, or a rejects row (it has a "reason")."""
    if not isinstance(item.id, str) or not item.id:
        return Reject(None, "invalid_row:id", "missing or empty id", item_record(item)).row()
    if item.id in kept_ids:
        return Reject(item.id, "duplicate_id", "an earlier row has this id", item_record(item)).row()
    if not item.images:
        return Reject(item.id, "invalid_row:images", "images: no image", item_record(item)).row()
    item = single_or_set(item)
    problem = target_problem(item, max_images)
    if problem:
        return Reject(item.id, *problem, item_record(item)).row()
    why = text_problem(item)
    if why:
        return Reject(item.id, "invalid_text", why, item_record(item)).row()
    images = []
    for i, ref in enumerate(item.images or []):
        try:
            images.append(cache.get(ref))
        except ImageRejected as e:
            return Reject(item.id, e.reason, f"image {i}: {e.detail}", item_record(item)).row()
    record = to_record(item, images)
    why = rows.validate_task(record)
    if why:
        return Reject(item.id, f"invalid_row:{why.split(':')[0]}", why, item_record(item)).row()
    return record


def batched(items: Iterable, n: int):
    """Lists of up to n items (itertools.batched arrives with Python 3.12)."""
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def check_max_images(max_images) -> None:
    if not _is_index(max_images) or max_images < 1:
        raise UserError(f"--max-images-per-row must be a positive integer, got {max_images!r}")


def ingest(items: Iterable[SourceItem | Reject], store, progress: bool = True,
           root: Path | None = None, max_images: int = MAX_IMAGES_PER_ROW) -> tuple[list[dict], list[dict]]:
    """Validate a source's items into (task records, rejects rows).

    `root` bounds path references (None: any readable path); `max_images` bounds
    the images of one row. Raises UserError when no item survives: an empty
    version is never what the user wanted."""
    check_max_images(max_images)
    from tqdm import tqdm

    records, rejects, kept_ids = [], [], set()
    bar = tqdm(desc="ingest", unit=" rows", file=sys.stderr, disable=not progress, mininterval=0.5)
    with ThreadPoolExecutor(max_workers=IMAGE_THREADS) as pool, bar:
        cache = ImageCache(store, root, pool)
        for batch in batched(items, BATCH):
            # images of items the cheap checks would reject are never read
            cache.prefetch(ref for it in batch if isinstance(it, SourceItem) and it.images
                           and target_problem(it, max_images) is None for ref in it.images)
            for item in batch:
                if isinstance(item, Reject):
                    rejects.append(item.row())
                    continue
                out = check_item(item, cache, kept_ids, max_images)
                if "reason" in out:
                    rejects.append(out)
                else:
                    records.append(out)
                    kept_ids.add(out["id"])
            bar.update(len(batch))
    if not records:
        reasons = Counter(r["reason"] for r in rejects)
        why = ", ".join(f"{k}: {v}" for k, v in reasons.most_common()) or "the source is empty"
        raise UserError(f"the source gave no valid row ({why}); see the reader's docs for the expected layout")
    return records, rejects


def task_summary(table) -> dict:
    """Rows per task type, images per row, image sizes, box sizes (tasks/bench)."""
    import pyarrow.compute as pc

    def stats(values: list[float]) -> dict:
        if not values:
            return {}
        s = sorted(values)
        pick = lambda q: round(float(s[min(len(s) - 1, int(q * len(s)))]), 4)  # noqa: E731
        return {"min": round(float(s[0]), 4), "p50": pick(0.5), "p90": pick(0.9), "max": round(float(s[-1]), 4)}

    n_images = pc.list_value_length(table.column("images")).to_pylist()
    flat = pc.list_flatten(table.column("images"))
    widths = pc.struct_field(flat, "width").to_pylist()
    heights = pc.struct_field(flat, "height").to_pylist()
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in table.column("target_box").to_pylist() if b]
    sets = [t for t in table.column("targets").to_pylist() if t is not None] if "targets" in table.schema.names else []
    # Only when there are any: the summaries (and ids) of single-target builds stay what they were.
    set_counts = {"target_set_rows": len(sets), "no_target_rows": sum(1 for t in sets if not t),
                  "set_targets": sum(len(t) for t in sets)} if sets else {}
    return {
        "rows_by_task_type": dict(Counter(table.column("task_type").to_pylist()).most_common()),
        "images_per_row": {**stats(n_images), "mean": round(sum(n_images) / max(1, len(n_images)), 3)},
        "unique_images": len(set(pc.struct_field(flat, "sha256").to_pylist())),
        "image_width": stats(widths), "image_height": stats(heights),
        "box_area_fraction": stats(areas),
        "grounding_rows": len(areas) + len(sets), "multiple_choice_rows": table.num_rows - len(areas) - len(sets),
        **set_counts,
    }
