"""The versioned prompt templates in builders/prompts/: loaded without comments, hashed whole.

A template's id is its file name; its sha256 (of the file as written) goes into the
version id of what it made, so an edited template makes another version.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

PROMPTS = Path(__file__).parent / "prompts"


@dataclass
class Template:
    id: str
    text: str  # comments removed
    sha256: str  # of the whole file

    def record(self) -> dict:
        return {"id": self.id, "sha256": self.sha256}


def load_template(template_id: str) -> Template:
    raw = (PROMPTS / f"{template_id}.txt").read_bytes()
    text = "\n".join(line for line in raw.decode().splitlines() if not line.startswith("# ")).strip()
    return Template(template_id, text, hashlib.sha256(raw).hexdigest())
