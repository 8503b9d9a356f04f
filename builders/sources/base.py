"""What a source reader yields: tasks with image references, or rejects.

Readers only parse their format; `builders.sources.ingest` then decodes and validates
images, stores them by content hash, validates boxes and ids, and quarantines
anything bad with a named reason. Every builder's rejects row is a `Reject`
too (`Reject(...).row()`), so every rejects table is written one way.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ImageRef = Path | bytes  # a Path is checked to stay inside the source root


@dataclass
class SourceItem:
    id: str
    source: str
    task_type: str
    images: list[ImageRef]
    question: str
    target_image: int | None = None
    equivalent_images: list[int] = field(default_factory=list)
    target_box: list[float] | None = None  # normalised 0-1 xyxy on the target image
    choices: list[str] | None = None
    answer: str | None = None  # the letter, for multiple choice
    meta: dict = field(default_factory=dict)
    # A target set other than one pair: [(0-based image, 0-1 xyxy box), ...]; [] = in no image.
    # Ingest stores a one-pair set as target_image/target_box (schemas/rows.py).
    targets: list[tuple[int, list[float]]] | None = None


def clean_text(value):
    """A str that encodes as UTF-8: lone surrogates become their `\\udXXX` escape."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class Reject:
    id: str | None
    reason: str  # short snake_case, e.g. missing_image, unparsable_answer
    detail: str = ""
    record: dict = field(default_factory=dict)

    def row(self) -> dict:
        """The rejects-table row (schemas.rows): the record as sorted JSON, every text storable."""
        try:
            text = json.dumps(self.record, sort_keys=True, ensure_ascii=False, default=str)
        except (ValueError, TypeError, RecursionError):  # keys of mixed types, a cycle, a deep value
            text = json.dumps({"repr": repr(self.record)[:2000]})
        rid = self.id if self.id is None or isinstance(self.id, str) else str(self.id)
        return {"id": clean_text(rid), "reason": self.reason, "detail": clean_text(self.detail),
                "record": clean_text(text)}
