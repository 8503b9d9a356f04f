"""Benchmark contamination guard: image overlap with bench splits, exact and near-duplicate.

Every trainable build (tasks, cot, rl-pool) records two manifest fields:

- `contamination`: `{bench_ref: n}` images shared byte for byte (by content
  hash, so the same picture under another file name counts). Cheap: set
  intersection.
- `near_duplicates`: the perceptual check of builders/store/perceptual.py (method,
  threshold, library) and, per bench split, the images of this build within
  the threshold of one of its images (byte copies included), the rows of this
  build that use them and the bench rows that use their nearest matches, both
  by task type. This catches re-encoded, resized and slightly cropped copies.

With `refuse` (`--no-contamination`) either kind of overlap is a UserError
naming the split(s) and the count; the exact check runs first, so a byte
copy refuses before any image is hashed.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from schemas.errors import UserError


def contamination_fields(store, data, refuse: bool) -> dict:
    """The manifest's `contamination` and `near_duplicates` for rows (dicts) or a table of a trainable kind."""
    task_types, row_images = images_by_row(data)
    exact = check_contamination(store, {h for imgs in row_images for h in imgs}, refuse)
    return {"contamination": exact, "near_duplicates": near_duplicates(store, task_types, row_images, refuse)}


def check_contamination(store, image_hashes, refuse: bool) -> dict:
    """Overlap per bench version; with `refuse`, any overlap is a UserError."""
    hashes = set(image_hashes)
    overlap = {v.ref: len(hashes & v.image_hashes) for v in store.versions() if _is_bench(v)}
    dirty = {ref: n for ref, n in overlap.items() if n}
    if refuse and dirty:
        listed = ", ".join(f"{ref} ({n} images)" for ref, n in sorted(dirty.items()))
        raise UserError(f"refusing to build: images shared with benchmark split(s) {listed} (--no-contamination)")
    return overlap


def near_duplicates(store, task_types: list[str], row_images: list[list[str]], refuse: bool) -> dict:
    """Perceptual overlap of these rows' images with every bench split in the store (see module doc)."""
    from builders.store import perceptual as ph

    shas = sorted({h for imgs in row_images for h in imgs})
    mine = ph.store_hashes(store, shas)
    hashed = [h for h in shas if mine[h] is not None]
    queries = np.stack([mine[h][0] for h in hashed]) if hashed else np.zeros((0, ph.WORDS), np.uint64)
    benches = {}
    for v in (v for v in store.versions() if _is_bench(v)):
        b_types, b_images = images_by_row(v.guard_table())  # an edited bench manifest still guards
        theirs = ph.store_hashes(store, {h for imgs in b_images for h in imgs}, ph.BENCH_CROPS)
        b_hashed = sorted(h for h, x in theirs.items() if x is not None)
        stack = np.stack([theirs[h] for h in b_hashed]) if b_hashed else np.zeros((0, len(ph.BENCH_CROPS), ph.WORDS), np.uint64)
        dist, nearest = ph.distances(queries, stack)
        hits = {h: b_hashed[j] for h, d, j in zip(hashed, dist, nearest) if d <= ph.THRESHOLD}
        for h in set(shas) & v.image_hashes:  # a byte copy of a plain image has no hash, but is a copy
            hits.setdefault(h, h)
        matched = set(hits.values())
        benches[v.ref] = {"images": len(hits),
                          "rows_by_task_type": _rows_using(task_types, row_images, set(hits)),
                          "bench_rows_by_task_type": _rows_using(b_types, b_images, matched)}
    dirty = {ref: b["images"] for ref, b in benches.items() if b["images"]}
    if refuse and dirty:
        listed = ", ".join(f"{ref} ({n} images)" for ref, n in sorted(dirty.items()))
        raise UserError(f"refusing to build: near-duplicate images of benchmark split(s) {listed}, perceptual "
                        f"hash within {ph.THRESHOLD} of {ph.HASH_SIZE ** 2} bits (--no-contamination)")
    return {**ph.method(), "images_checked": len(shas), "images_not_hashed": len(shas) - len(hashed),
            "benches": benches}


def images_by_row(data) -> tuple[list[str], list[list[str]]]:
    """(task type per row, image sha256s per row) of row dicts or of a table with `images`."""
    if isinstance(data, list):
        return [r["task_type"] for r in data], [[i["sha256"] for i in r["images"]] for r in data]
    import pyarrow.compute as pc

    if "images" not in data.schema.names:
        return [], []
    col = data.column("images").combine_chunks()
    flat = pc.struct_field(col.flatten(), "sha256").to_pylist()
    offsets = col.offsets.to_pylist()
    images = [flat[offsets[i] - offsets[0]:offsets[i + 1] - offsets[0]] for i in range(len(col))]
    return data.column("task_type").to_pylist(), images


def _rows_using(task_types, row_images, hashes: set) -> dict:
    return dict(sorted(Counter(t for t, imgs in zip(task_types, row_images) if hashes.intersection(imgs)).items()))


def table_image_hashes(table) -> set[str]:
    """The image hashes a table with an `images` column references."""
    import pyarrow.compute as pc

    if "images" not in table.schema.names:
        return set()
    flat = pc.list_flatten(table.column("images"))
    return set(pc.struct_field(flat, "sha256").to_pylist())


def _is_bench(version) -> bool:
    try:
        return version.is_bench
    except UserError:  # a damaged manifest: `data verify` reports it; it cannot be checked here
        return False
