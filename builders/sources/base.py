"""What a source reader yields: tasks with image references, or rejects.

Readers only parse their format; `builders.ingest` then decodes and validates
images, stores them by content hash, validates boxes and ids, and quarantines
anything bad with a named reason.
"""
from __future__ import annotations

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


@dataclass
class Reject:
    id: str | None
    reason: str  # short snake_case, e.g. missing_image, unparsable_answer
    detail: str = ""
    record: dict = field(default_factory=dict)
