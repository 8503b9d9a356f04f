"""Helpers for the store, ingest, export and `data` CLI tests: tiny tasks and sources."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from conftest import png_bytes
from schemas import rows

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]


def task_record(i: int, images: list[dict], **over) -> dict:
    rec = {"id": f"t{i}", "source": "test", "task_type": "common_object" if i % 2 else "diff",
           "images": images, "question": f"where is object {i}?", "target_image": 0,
           "equivalent_images": [], "target_box": [0.1, 0.2, 0.5, 0.6], "choices": None,
           "answer": None, "meta": "{}"}
    rec.update(over)
    return rec


def tasks_table(store, n: int = 4, **over):
    """n grounding tasks over 3 distinct stored images (each used more than once)."""
    hashes = [store.put_image(png_bytes(32 + k, 24, COLORS[k])) for k in range(3)]
    infos = [{"sha256": h, "width": 32 + k, "height": 24} for k, h in enumerate(hashes)]
    return rows.to_table([task_record(i, [infos[i % 3], infos[(i + 1) % 3]], **over) for i in range(n)], "tasks")


def write_version(store, name: str = "demo", kind: str = "tasks", table=None, config=None, inputs=(), extra=None):
    table = tasks_table(store) if table is None else table
    with store.writer(name, kind, inputs=inputs, config=config or {"k": 1}) as w:
        w.write(table, None, extra or {})
    return w.version


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with no real pixel data."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def write_jsonl_source(folder: Path, lines: list, images: dict[str, bytes] | None = None) -> Path:
    """A JSONL file (dicts are dumped, strings written as is) beside its images."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in (images or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    path = folder / "tasks.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def good_jsonl(folder: Path, n: int = 6) -> Path:
    """n valid grounding lines over 3 images in folder/imgs, plus one multiple-choice line."""
    images = {f"imgs/{k}.png": png_bytes(40 + 8 * k, 30 - 6 * k, COLORS[k]) for k in range(3)}  # unequal, non-square
    lines = [{"id": f"j{i}", "images": [f"imgs/{i % 3}.png", f"imgs/{(i + 1) % 3}.png"],
              "question": f"find object {i}", "target_image": i % 2, "box": [0.1, 0.1, 0.4, 0.5],
              "task_type": "common_object"} for i in range(n)]
    lines.append({"id": "mc0", "images": ["imgs/0.png", "imgs/1.png"], "question": "which is red?",
                  "choices": ["the first", "the second"], "answer": "A", "task_type": "mc"})
    return write_jsonl_source(folder, lines, images)
