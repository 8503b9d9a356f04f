"""Benchmark contamination guard: image overlap (by content hash) with bench splits.

Every trainable build (tasks, cot, rl-pool) calls `check_contamination` with
the image hashes its rows use; the result, `{bench_ref: n_overlapping_images}`
for every benchmark version in the store, goes into the manifest under
`contamination`. Because images are stored by content hash, the same picture
under another file name still counts; a re-encoded copy does not (that would
need perceptual hashing, which this guard does not attempt).
"""
from __future__ import annotations

from schemas.errors import UserError


def check_contamination(store, image_hashes, refuse: bool) -> dict:
    """Overlap per bench version; with `refuse`, any overlap is a UserError."""
    hashes = set(image_hashes)
    overlap = {v.ref: len(hashes & v.image_hashes) for v in store.versions() if _is_bench(v)}
    dirty = {ref: n for ref, n in overlap.items() if n}
    if refuse and dirty:
        listed = ", ".join(f"{ref} ({n} images)" for ref, n in sorted(dirty.items()))
        raise UserError(f"refusing to build: images shared with benchmark split(s) {listed} (--no-contamination)")
    return overlap


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
