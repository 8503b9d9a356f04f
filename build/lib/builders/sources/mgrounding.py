"""MGrounding-630k reader: streamed conversations, one grounding task per round.

Layout (Migician README): the merged `MGrounding-630k.json` next to a
`MGrounding-630k/` folder of per-task files (common_train_70k.json,
gg_train_120k.json, ...) and images. Each file is one JSON list of
`{"id", "images": [relative paths], "conversations": [{"from": "human"|"gpt",
"value"}...], "type"}`. The first human turn carries one `<image>` placeholder
per image; every human/gpt pair is one task; the answer names the image in
words and gives a 0-1000 box: "It's in the third image. <|box_start|>(316,58),
(764,999)<|box_end|>".

`--path` is a JSON file or a folder; images must lie under it (under the
file's folder for a file), the root ingest confines image paths to. A folder holding the merged file reads
only that file (it contains every per-task file); otherwise every `*.json`
under it, in sorted order. The merged file is hundreds of MB, so files are
streamed item by item (`iter_json_values`): memory stays bounded by the
largest item, not the file.

Image paths: the README's merged example writes them relative to the folder
of the merged file (`./MGrounding-630k/Group_Grounding/...`); per-task files
may use the same prefix from a deeper folder. So per file, the base folder is
the JSON's folder or the nearest parent (up to `--path`) where an image of
one of the first records exists; if none exists, the JSON's folder (ingest
then quarantines `missing_image`).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from builders.sources.base import Reject, SourceItem
from builders.sources.migbench import clip_box
from builders.sources.words import BOX_RE, OBJECT_REF_RE, REF_RE, is_url, parse_boxes, statement_target
from schemas.errors import UserError

SOURCE = "mgrounding"
MERGED = "MGrounding-630k.json"
PLACEHOLDER = "<image>"
CHUNK = 1 << 16  # characters read at a time
ABOVE_LEVELS = 2  # folders above --path checked for a "pass --path" hint
BASE_TRIES = 20  # records tried for an existing image before assuming the JSON's folder
MAX_ITEM_CHARS = 64 << 20  # one conversation is a few KB; beyond this the JSON is broken
WHITESPACE = " \t\r\n"
ENDS_VALUE = WHITESPACE + ',]}[{"'


class _Buffer:
    """The unparsed tail of a text file, refilled chunk by chunk."""

    def __init__(self, f, chunk: int):
        self.f, self.chunk = f, chunk
        self.buf, self.pos, self.offset, self.eof = "", 0, 0, False

    def more(self) -> bool:
        """Drop the parsed prefix and append the next chunk; False at end of file."""
        data = self.f.read(self.chunk)
        self.buf, self.offset, self.pos = self.buf[self.pos:] + data, self.offset + self.pos, 0
        self.eof = not data
        return bool(data)

    def peek(self, skip: str) -> str | None:
        """The next character not in `skip` (consumed up to it), None at end of file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in skip:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return None

    def value(self, decoder: json.JSONDecoder) -> object:
        """Decode one value at the position, reading more until it is complete."""
        while True:
            try:
                value, end = decoder.raw_decode(self.buf, self.pos)
                # A number cut by the chunk edge parses short ("456" of "456.5"):
                # accept only a value followed by a character that ends it.
                if self.eof or (end < len(self.buf) and self.buf[end] in ENDS_VALUE):
                    self.pos = end
                    return value
            except json.JSONDecodeError as e:
                # Truncation fails within a few characters of the end (or in an
                # unterminated string); an error earlier is real: stop reading.
                real = e.pos < len(self.buf) - 16 and not e.msg.startswith("Unterminated string")
                if self.eof or real:
                    raise ValueError(f"{e.msg} at character {self.offset + e.pos}") from None
            if len(self.buf) - self.pos > MAX_ITEM_CHARS:  # bounded memory, even on garbage
                raise ValueError(f"no complete JSON value within {MAX_ITEM_CHARS} characters "
                                 f"from character {self.offset + self.pos}")
            self.more()


def iter_json_values(path: Path, chunk: int = CHUNK) -> Iterator[object]:
    """Yield the items of a JSON list (or the values of JSON Lines) without loading the file.

    json.JSONDecoder.raw_decode parses one value at a position of a buffer
    that holds only the unparsed tail plus the next chunk, so memory is
    bounded by the largest item. Raises ValueError naming the character
    offset on malformed or truncated JSON.
    """
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as f:
        b = _Buffer(f, chunk)
        in_list = b.peek(WHITESPACE) == "["
        b.pos += in_list
        while True:
            c = b.peek(WHITESPACE + ",")
            if c is None:
                if in_list:
                    raise ValueError(f"unterminated list at character {b.offset + b.pos}")
                return
            if in_list and c == "]":
                return
            yield b.value(decoder)


def json_files(path: Path) -> list[Path]:
    """The JSON files a `--path` names (see the module docstring)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"mgrounding: {path} not found")
    if (path / MERGED).is_file():
        return [path / MERGED]
    files = sorted(path.rglob("*.json"))
    if not files:
        raise UserError(f"mgrounding: no .json file under {path}")
    return files


def read_mgrounding(path: Path | str, **_ignored) -> Iterator[SourceItem | Reject]:
    """Yield one SourceItem per human/gpt round of every conversation."""
    path = Path(path).absolute()  # ingest reads a relative path as relative to the root
    top = path if path.is_dir() else path.parent
    for file in json_files(path):
        base = None  # found from the first record with an existing image
        try:
            for i, rec in enumerate(iter_json_values(file)):
                if base is None and i < BASE_TRIES:
                    base = image_base(file.parent, top, rec)
                yield from parse_conversation(rec, base or file.parent, f"{file.stem}-{i}")
        except ValueError as e:  # a truncated download: keep what parsed, name the rest
            yield Reject(None, "malformed_json", f"{file.name}: {e}; the rest of the file is skipped",
                         {"file": str(file)})


def image_base(folder: Path, top: Path, rec: object) -> Path | None:
    """The folder a file's image paths are relative to (module docstring).

    None when none of this record's images exists anywhere (try the next record);
    a record whose images all miss is quarantined by ingest whatever the base.
    Searches from the JSON's folder up to `top` (the folder of `--path`, the
    root ingest confines images to). Images found only above `top` mean the
    user pointed below the data root: say which folder to pass instead.
    """
    images = rec.get("images") if isinstance(rec, dict) else None
    images = [p for p in images if isinstance(p, str) and p and not is_url(p)] if isinstance(images, list) else []
    if not images:
        return None
    inside = [folder, *(p for p in folder.parents if top == p or top in p.parents)]
    for base in inside:
        if any((base / p).is_file() for p in images):
            return base
    for base in top.parents[:ABOVE_LEVELS]:  # only for the hint: every image must be there
        if all((base / p).is_file() for p in images):
            raise UserError(f"mgrounding: the image paths in {folder} are relative to {base}, "
                            f"above --path {top}; pass --path {base}")
    return None


def parse_conversation(rec: object, base: Path, fallback_id: str) -> Iterator[SourceItem | Reject]:
    """One conversation -> one SourceItem (or Reject) per round."""
    if not isinstance(rec, dict):
        yield Reject(fallback_id, "malformed_record", f"item is a {type(rec).__name__}", {"value": rec})
        return
    cid = str(rec.get("id") if rec.get("id") not in (None, "") else fallback_id)
    rounds, problem = _rounds(rec)
    if problem:
        yield Reject(cid, "malformed_record", problem, rec)
        return
    images = rec["images"]
    urls = [p for p in images if is_url(p)]
    if urls:
        yield Reject(cid, "url_not_allowed", f"{urls[0]}: download the images first", rec)
        return
    placeholders = sum(q.count(PLACEHOLDER) for q, _ in rounds)
    if placeholders != len(images):
        yield Reject(cid, "placeholder_mismatch",
                     f"{placeholders} {PLACEHOLDER} placeholders for {len(images)} images", rec)
        return
    paths = [base / p for p in images]
    for r, (question, answer) in enumerate(rounds):
        yield parse_round(rec, cid, r, question, answer, paths)


def _rounds(rec: dict) -> tuple[list[tuple[str, str]], str | None]:
    """[(human, gpt)] pairs, or a problem that makes the record unusable."""
    images, conv = rec.get("images"), rec.get("conversations")
    if not isinstance(images, list) or not images or not all(isinstance(p, str) and p for p in images):
        return [], "images: needs a non-empty list of paths"
    if not isinstance(conv, list) or not conv:
        return [], "conversations: missing or empty"
    turns = [t for t in conv if not (isinstance(t, dict) and t.get("from") == "system")]
    for k, t in enumerate(turns):
        want = "human" if k % 2 == 0 else "gpt"
        if not isinstance(t, dict) or t.get("from") != want or not isinstance(t.get("value"), str):
            return [], f"conversations[{k}]: expected a {want} turn with a string value"
    if len(turns) % 2:
        return [], "conversations: the last human turn has no answer"
    return [(turns[k]["value"], turns[k + 1]["value"]) for k in range(0, len(turns), 2)], None


def parse_answer(answer: str, n_images: int) -> tuple[int, list[float]] | str:
    """(target image, 0-1 box) from "It's in the third image. <|box_start|>...", else why not."""
    boxes = parse_boxes(answer)
    if len(boxes) != 1:
        return f"{len(boxes)} <|box_start|>(x1,y1),(x2,y2)<|box_end|> boxes, expected 1"
    target = statement_target(answer, n_images)
    if target is None:
        named = {m.group(0).lower() for m in REF_RE.finditer(BOX_RE.sub("", answer))}
        if len(named) == 1:
            target = statement_target(f"it is in {named.pop()}", n_images)
        elif not named and n_images == 1:
            target = 0  # one image: nothing to name
    if target is None:
        return "the answer does not name one image"
    return target, boxes[0]


def parse_round(rec: dict, cid: str, r: int, question: str, answer: str,
                paths: list[Path]) -> SourceItem | Reject:
    rid = f"{cid}-r{r}"
    parsed = parse_answer(answer, len(paths))
    if isinstance(parsed, str):
        return Reject(rid, "unparsable_answer", f"{parsed}: {answer[:200]!r}", rec)
    target, raw_box = parsed
    if target >= len(paths):
        return Reject(rid, "target_out_of_range", f"answer names image {target + 1} of {len(paths)}", rec)
    box = clip_box(raw_box)
    if isinstance(box, Reject):
        box.id, box.record = rid, rec
        return box
    text = re.sub(r"<image>\s*", "", question).strip()
    meta = {"type": rec.get("type"), "round": r, "conversation_id": cid, "answer_raw": answer,
            "input_boxes": parse_boxes(text), "object_refs": OBJECT_REF_RE.findall(text)}
    return SourceItem(
        id=rid, source=SOURCE, task_type=str(rec.get("type") or "mgrounding"), images=list(paths),
        question=text, target_image=target, target_box=box, meta=meta,
    )
