"""SourceItem stream -> validated task records + rejects, images stored by hash.

Readers only parse; this module decides what is kept. Each item goes through
cheap checks first (duplicate id, target index, box), then its images are read,
decoded and stored once (a path referenced by many rows is read once), then the
finished record is checked against `schemas.rows.validate_task`. A failure at
any step quarantines the item with a named reason (docs/internals.md); nothing
is kept silently wrong, and nothing bad crashes the build.
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

from builders.images import ImageRejected, load_image_bytes
from builders.sources.base import Reject, SourceItem
from schemas import rows
from schemas.errors import UserError

BATCH = 256  # items whose new images are read together
IMAGE_THREADS = 4  # decode + hash + store in parallel: PIL and file I/O release the GIL


def box_problem(box) -> str | None:
    """schemas.boxes names what is wrong with a normalised 0-1 xyxy box."""
    from schemas.boxes import box_problem as named_problem

    return named_problem(box)


def item_record(item: SourceItem) -> dict:
    """A JSON-able copy of a source item for the rejects table (bytes summarised)."""
    d = dict(vars(item))
    d["images"] = [str(i) if not isinstance(i, (bytes, bytearray)) else f"<{len(i)} bytes>" for i in item.images]
    return d


def reject_row(rid, reason: str, detail: str, record: dict) -> dict:
    return {"id": rid, "reason": reason, "detail": detail,
            "record": json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)}


def target_problem(item: SourceItem) -> tuple[str, str] | None:
    """(reason, detail) when the target image or box is unusable."""
    n = len(item.images)
    if item.target_box is not None:
        if item.target_image is None:
            return "no_target_image", "a box target needs the index of its image"
        bad = [i for i in [item.target_image, *item.equivalent_images] if not isinstance(i, int) or not 0 <= i < n]
        if bad:
            return "target_out_of_range", f"image index {bad[0]} with {n} images (0-based)"
        why = box_problem(item.target_box)
        # A benchmark's own wrong box, kept on purpose by its reader (MIG-Bench's
        # inverted boxes count in the official denominator); scoring marks it unverifiable.
        if why and why != (item.meta or {}).get("box_as_released"):
            return f"invalid_box:{why}", f"box {item.target_box}"
    return None


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
    }


def check_item(item: SourceItem, cache: ImageCache, kept_ids: set) -> dict:
    """The task record for one item, or a rejects row (it has a "reason")."""
    if not isinstance(item.id, str) or not item.id:
        return reject_row(None, "invalid_row:id", "missing or empty id", item_record(item))
    if item.id in kept_ids:
        return reject_row(item.id, "duplicate_id", "an earlier row has this id", item_record(item))
    if not item.images:
        return reject_row(item.id, "invalid_row:images", "images: no image", item_record(item))
    problem = target_problem(item)
    if problem:
        return reject_row(item.id, *problem, item_record(item))
    images = []
    for i, ref in enumerate(item.images or []):
        try:
            images.append(cache.get(ref))
        except ImageRejected as e:
            return reject_row(item.id, e.reason, f"image {i}: {e.detail}", item_record(item))
    record = to_record(item, images)
    why = rows.validate_task(record)
    if why:
        return reject_row(item.id, f"invalid_row:{why.split(':')[0]}", why, item_record(item))
    return record


def batched(items: Iterable, n: int):
    """Lists of up to n items (itertools.batched arrives with Python 3.12)."""
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def ingest(items: Iterable[SourceItem | Reject], store, progress: bool = True,
           root: Path | None = None) -> tuple[list[dict], list[dict]]:
    """Validate a source's items into (task records, rejects rows).

    `root` bounds path references (None: any readable path). Raises UserError
    when no item survives: an empty version is never what the user wanted."""
    from tqdm import tqdm

    records, rejects, kept_ids = [], [], set()
    bar = tqdm(desc="ingest", unit=" rows", file=sys.stderr, disable=not progress, mininterval=0.5)
    with ThreadPoolExecutor(max_workers=IMAGE_THREADS) as pool, bar:
        cache = ImageCache(store, root, pool)
        for batch in batched(items, BATCH):
            # images of items the cheap checks would reject are never read
            cache.prefetch(ref for it in batch if isinstance(it, SourceItem) and it.images
                           and target_problem(it) is None for ref in it.images)
            for item in batch:
                if isinstance(item, Reject):
                    rejects.append(reject_row(item.id, item.reason, item.detail, item.record))
                    continue
                out = check_item(item, cache, kept_ids)
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
    return {
        "rows_by_task_type": dict(Counter(table.column("task_type").to_pylist()).most_common()),
        "images_per_row": {**stats(n_images), "mean": round(sum(n_images) / max(1, len(n_images)), 3)},
        "unique_images": len(set(pc.struct_field(flat, "sha256").to_pylist())),
        "image_width": stats(widths), "image_height": stats(heights),
        "box_area_fraction": stats(areas),
        "grounding_rows": len(areas), "multiple_choice_rows": table.num_rows - len(areas),
    }
