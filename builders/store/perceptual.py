"""Perceptual image hashes for near-duplicate contamination (imagehash's pHash), cached by image sha256.

An image is decoded small (JPEG draft mode), turned to grey and resampled to a
64x64 thumbnail; imagehash.phash keeps the signs of its 16x16 lowest DCT
frequencies against their median: 256 bits. Re-encoding barely moves those
frequencies, and resizing (any aspect) lands on the same square thumbnail.
Cropping shifts them, so a benchmark image is also hashed after symmetric
crops of 1-6% per side (`BENCH_CROPS`): a copy cropped by c per side is then
within half a percent of one of them. bench/contamination_bench.py measures
what this catches and what it falsely matches; `THRESHOLD` comes from there.

Plain images (a grey thumbnail with a standard deviation under `FLAT_STD`)
get no hash: their DCT is all but zero, so any two would match. They are
checked by exact hash only, and counted.

Hashes are cached in <store>/cache/perceptual.sqlite keyed by (method, image
sha256): a benchmark split is hashed once, a later check reads 32 bytes per
variant.
"""
from __future__ import annotations

import io
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from schemas.errors import UserError

HASH_SIZE = 16            # 16x16 DCT signs = 256 bits (imagehash's default 8 gives 64)
THUMB = 4 * HASH_SIZE     # imagehash's highfreq_factor 4: the DCT runs on a 64x64 thumbnail
BENCH_CROPS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06)  # fraction cut from every side
# Max Hamming distance of 256 bits. bench/contamination_bench.py (3,000 generated images): every re-encoded,
# resized and <= 6% symmetrically cropped copy lies within 28 of its original; the nearest distinct photo-like
# image (textures, gradients, noise with shapes) lies 60 or more away. 40 keeps both margins; the only false
# matches under it (2.3e-6 per pair) are between sparse images, a plain background with one or two shapes.
THRESHOLD = 40
FLAT_STD = 2.0            # grey levels (0-255) of the thumbnail below which an image has no hash
WORDS = HASH_SIZE * HASH_SIZE // 64


@lru_cache(maxsize=1)
def method() -> dict:
    """What the manifest records about the near-duplicate check (also the cache key)."""
    import imagehash
    import PIL

    return {"hash": f"imagehash.phash(hash_size={HASH_SIZE}) of a {THUMB}x{THUMB} grey thumbnail",
            "bits": HASH_SIZE * HASH_SIZE, "threshold": THRESHOLD,
            "bench_crops": [round(c * 100) for c in BENCH_CROPS], "flat_std": FLAT_STD,
            "library": f"imagehash {imagehash.__version__}, pillow {PIL.__version__}"}


def method_key(n_crops: int) -> str:
    m = method()
    return f"phash{HASH_SIZE}/{THUMB}/flat{FLAT_STD}/crops{m['bench_crops'][:n_crops]}/{m['library']}"


def hash_image(data: bytes, crops=(0.0,)) -> np.ndarray | None:
    """(len(crops), WORDS) uint64 hashes of image bytes, one per crop; None for a plain image."""
    import imagehash
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.draft("L", (2 * THUMB, 2 * THUMB))  # JPEG: decode at 1/2..1/8 scale, still twice the thumbnail
    im = im.convert("L")
    w, h = im.size
    out = []
    for c in crops:
        thumb = im.resize((THUMB, THUMB), Image.Resampling.LANCZOS, box=(c * w, c * h, w - c * w, h - c * h))
        if c == 0 and np.asarray(thumb).std() < FLAT_STD:
            return None
        bits = imagehash.phash(thumb, hash_size=HASH_SIZE).hash  # resizing 64x64 to 64x64 is a copy
        out.append(np.packbits(bits.ravel()).view(np.uint64))
    return np.stack(out)


def distances(queries: np.ndarray, bench: np.ndarray, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """For each query hash (n, WORDS): the smallest distance to any bench image (m, V, WORDS) and its index."""
    n, m = len(queries), len(bench)
    best, where = np.full(n, 10**6, np.int64), np.full(n, -1, np.int64)
    if not n or not m:
        return best, where
    by_word = by_words(bench)
    for s in range(0, n, chunk):
        d = distance_block(queries[s:s + chunk], by_word)
        where[s:s + chunk] = d.argmin(1)
        best[s:s + chunk] = d[np.arange(len(d)), where[s:s + chunk]]
    return best, where


def by_words(bench: np.ndarray) -> np.ndarray:
    """(m, V, WORDS) hashes as (WORDS, V, m): each pass of `distance_block` then runs along m."""
    return np.ascontiguousarray(bench.transpose(2, 1, 0))


def distance_block(queries: np.ndarray, by_word: np.ndarray) -> np.ndarray:
    """(k, m) distances of k query hashes to m bench images, the nearest of each image's variants."""
    d = np.zeros((len(queries), *by_word.shape[1:]), np.uint16)
    for w in range(WORDS):
        d += np.bitwise_count(queries[:, w, None, None] ^ by_word[w][None])
    return d.min(1)


class HashCache:
    """sqlite (WAL) table of hashes by (method, sha256); an empty blob marks a plain image."""

    def __init__(self, path: Path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS hashes (method TEXT NOT NULL, sha256 TEXT NOT NULL, "
                            "hashes BLOB NOT NULL, PRIMARY KEY (method, sha256))")
        except (OSError, sqlite3.OperationalError) as e:  # a read-only store or a full disk: one line
            raise UserError(f"cannot open the perceptual-hash cache {path} ({e}); is the store writable?") from None

    def get(self, key: str, shas: list[str]) -> dict[str, bytes]:
        found = {}
        for s in range(0, len(shas), 500):
            part = shas[s:s + 500]
            found.update(self.db.execute(f"SELECT sha256, hashes FROM hashes WHERE method = ? AND sha256 IN "
                                         f"({','.join('?' * len(part))})", [key, *part]).fetchall())
        return found

    def put(self, key: str, rows: dict[str, bytes]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?)",
                                [(key, s, b) for s, b in rows.items()])

    def close(self) -> None:
        self.db.close()


def store_hashes(store, shas, crops=(0.0,), workers: int = 4) -> dict[str, np.ndarray | None]:
    """Hashes of store images by sha256 (None: plain), computed once and cached in the store."""
    shas = sorted(set(shas))
    key = method_key(len(crops))
    cache = HashCache(store.root / "cache" / "perceptual.sqlite")
    try:
        blobs = cache.get(key, shas)
        missing = [s for s in shas if s not in blobs]
        # PIL decodes and resamples without the GIL, so threads share the work
        with ThreadPoolExecutor(max(1, workers)) as pool:
            made = dict(zip(missing, pool.map(lambda s: _hash_stored(store, s, crops), missing)))
        cache.put(key, {s: b"" if h is None else h.tobytes() for s, h in made.items() if h is not UNREADABLE})
    finally:
        cache.close()
    out = {s: (np.frombuffer(b, np.uint64).reshape(len(crops), WORDS) if b else None) for s, b in blobs.items()}
    return {**out, **{s: None if h is UNREADABLE else h for s, h in made.items()}}


UNREADABLE = object()


def _hash_stored(store, sha: str, crops):
    """A missing or damaged store image is not hashed (nor cached); `data verify` names it."""
    from PIL import UnidentifiedImageError

    try:
        return hash_image(store.image_path(sha).read_bytes(), crops)
    except (OSError, UnidentifiedImageError, ValueError):
        return UNREADABLE
