"""Image names in words: ordinals, `image-2` references and quoted 0-1000 boxes.

Shared by the readers whose formats name the target image in text instead of
a field (MIG-Bench questions, MGrounding answers) and by the synthetic source,
which writes the same phrasings. Every function returns a 0-based index, or
None when the text does not name an image: callers quarantine, never guess.

Phrasings seen in the real files: "the 2th image" (sic: MIG-Bench writes
"1th", "2th", "3th"), "the second image", "image-2", "Image-2", "Image2",
"the source image" (region task), "It is in the third image." / "It's in the
third image." (group grounding, MGrounding answers).
"""
from __future__ import annotations

import re

from schemas.profiles import ORDINALS as ORDINAL_WORDS

# One image reference; its named groups are read by `_ref_index` (the
# directive and statement patterns embed it once, so the groups carry over).
_REF = (
    r"(?:the\s+)?(?:(?P<word>" + "|".join(ORDINAL_WORDS) + r"|last|source)"
    r"|(?P<num>\d+)\s*(?:st|nd|rd|th))\s+(?:image|picture|frame)\b"
    r"|(?:the\s+)?(?:image|picture|frame)\s*-?\s*(?P<idx>\d+)\b"
)
REF_RE = re.compile(_REF, re.IGNORECASE)

# A directive that names where to look: a locate-like verb, then (within the
# same sentence) "in <image reference>". Mentions such as "the person in
# Image-1" are not directives, which is why a verb is required.
_VERB = r"\b(?:locate|find|ground|gorund|identify|detect|point\s+out)\b"
DIRECTIVE_RE = re.compile(
    _VERB + r"[^.?!]*?\b(?:in|on|within)\s+(?:" + _REF + r")", re.IGNORECASE
)

# A statement of where the answer is: "It is in the third image."
STATEMENT_RE = re.compile(
    r"\b(?:it\s+is|it's|it\s+lies|located|found)\s+(?:in|on)\s+(?:" + _REF + r")",
    re.IGNORECASE,
)

BOX_RE = re.compile(
    r"<\|box_start\|>\s*\(\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*\)\s*,"
    r"\s*\(\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*\)\s*<\|box_end\|>"
)
OBJECT_REF_RE = re.compile(r"<\|object_ref_start\|>(.*?)<\|object_ref_end\|>", re.DOTALL)


def _ref_index(m: re.Match, n_images: int | None) -> int | None:
    """The 0-based index a REF match names; "last" needs the image count."""
    word = (m.group("word") or "").lower()
    if word == "source":
        return 0  # region task: the source image comes first
    if word == "last":
        return None if not n_images else n_images - 1
    if word:
        return ORDINAL_WORDS.index(word)
    num = m.group("num") or m.group("idx")
    return int(num) - 1 if int(num) >= 1 else None


def directive_target(text: str, n_images: int | None = None) -> int | None:
    """The image the LAST locate-directive points at ("... locate it in the 2th image").

    The last directive wins because MIG-Bench appends the decisive instruction
    ("Find it and locate it in the second image.") after the free-form question,
    and the free-form part may mention other images ("the person in Image-1").
    """
    text = OBJECT_REF_RE.sub("<ref>", text)
    matches = list(DIRECTIVE_RE.finditer(text))
    return _ref_index(matches[-1], n_images) if matches else None


def statement_target(text: str, n_images: int | None = None) -> int | None:
    """The image a statement names: "It's in the third image." -> 2."""
    m = STATEMENT_RE.search(text)
    return None if m is None else _ref_index(m, n_images)


def parse_boxes(text: str) -> list[list[float]]:
    """Every `<|box_start|>(x1,y1),(x2,y2)<|box_end|>` (0-1000), as 0-1 floats."""
    return [[float(v) / 1000.0 for v in m.groups()] for m in BOX_RE.finditer(text)]


def format_box(box: list[float]) -> str:
    """A 0-1 box as the Qwen2-VL text form with 0-1000 integers."""
    x1, y1, x2, y2 = (round(v * 1000) for v in box)
    return f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"


URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(ref: str) -> bool:
    """True for `http://...` style references: readers quarantine them (offline tool)."""
    return bool(URL_RE.match(ref))
