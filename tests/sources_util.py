"""Helpers for the source-reader tests: tiny PNGs, fixture paths, splitting a reader's output."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from builders.sources.base import Reject, SourceItem

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared"  # ../shared next to the checkout


def placeholder_size(key: str) -> tuple[int, int]:
    """The (width, height) of `key`'s placeholder: 7..16 px a side, never square, and like its colour
    it follows the key, so two placeholders of a test differ in size too (a width/height swap or an
    image-order slip shows)."""
    digest = hashlib.sha256(key.encode()).digest()
    width, height = 7 + digest[3] % 10, 7 + digest[4] % 10
    return width, height + 1 if height == width else height


def tiny_png(key: str = "", size: tuple[int, int] | None = None) -> bytes:
    """A solid-colour PNG whose colour (and, unless given, size) derives from `key`, so distinct keys give distinct bytes."""
    from PIL import Image

    r, g, b = hashlib.sha256(key.encode()).digest()[:3]
    buf = io.BytesIO()
    Image.new("RGB", size or placeholder_size(key), (r, g, b)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path, key: str | None = None, size: tuple[int, int] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiny_png(str(key if key is not None else path.name), size))
    return path


# Fixture images are non-square and of different sizes, so a test can tell a
# width from a height and one image's frame from another's.
FIXTURE_SIZES = ((40, 24), (30, 50))


def fixture_size(k: int) -> tuple[int, int]:
    return FIXTURE_SIZES[k % len(FIXTURE_SIZES)]


def write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")
    return path


def split(stream) -> tuple[list[SourceItem], list[Reject]]:
    """A reader's output as (items, rejects), checking nothing else came out."""
    items, rejects = [], []
    for x in stream:
        assert isinstance(x, (SourceItem, Reject)), type(x)
        (items if isinstance(x, SourceItem) else rejects).append(x)
    return items, rejects


def reasons(rejects: list[Reject]) -> dict[str, str]:
    """id -> reason, for exact assertions."""
    return {r.id: r.reason for r in rejects}
