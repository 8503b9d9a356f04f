"""MGrounding-630k reader: streamed conversations, one grounding task per round.

Layout as released (Hub dataset Michael4933/MGrounding-630k; Migician README):
the Hub repository root holds the merged `MGrounding-630k.json` beside one zip
per task class (Common_Object.zip, Group_Grounding.z01..zip, ...), which unzip
into `Common_Object/`, `Group_Grounding/`, ... each with its per-task file
(common_train_70k.json, gg_train_120k.json, _gg_reg_40k.json, ...) and images.
The README downloads the repository into `data/MGrounding-630k/`; its tree
also shows `data/MGrounding-630k.json` beside `data/MGrounding-630k/`. Either
way the image paths, `./MGrounding-630k/Group_Grounding/SA-1B/...`, start from
`data/`: the folder ABOVE the merged file's folder in the Hub layout.

Each file is one JSON list of `{"id", "images": [relative paths],
"conversations": [{"from": "human"|"gpt", "value"}...], "type"}`. The first
human turn carries one `<image>` placeholder per image; every human/gpt pair is
one task. The answer names the image in words and gives a 0-1000 box ("It's in
the third image. <|box_start|>(316,58),(764,999)<|box_end|>"), or gives only
the box while the question names the image (the MIG-Bench style: "... locate
it in the second image."): the target then comes from the question.

`--path` is the merged file, its folder, or the folder above (a per-task file
or a folder of per-task files works too). The merged file holds every per-task
file's conversations, so a folder that holds it (or holds it one level down)
reads ONLY the merged file; a folder without it reads every `*.json` under it.
Each item's meta names the file it came from (`source_file`), so a version
says which was read. Image paths resolve per file from the nearest of the
JSON's folder and its parents (up to two above `--path`) where an image of
the first records exists. The files themselves still lie inside `--path`'s
folder (`data/MGrounding-630k/./MGrounding-630k/...` is
`data/MGrounding-630k/...`), the root ingest confines reads to. The merged
file is 1.42 GB, so files are streamed item by item (`iter_json_values`):
memory stays bounded by the largest item.

An answer with several boxes is a target set (schemas/rows.py `targets`):
each box lies on the image named in the text since the previous box ("It's
in the first image. <box> It's in the third image. <box>"), else on the
previous box's image; a first box with no image named takes the question's.
Quarantine reasons of this reader, besides the shared ones: `text_answer` (no box: the
referring-expression answers of group grounding's REG task), `unparsable_answer`
(a box-like answer that does not parse), `no_target_image` (a bare box while
the question names no single image). The README says `id` "can be ignored":
a reused id whose conversation differs gets a content-derived id
(`<id>~<12 hex>`); an exact repeat keeps its id, so ingest reports it as
`duplicate_id`.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

from builders.sources.base import Reject, SourceItem
from builders.sources.migbench import clip_box
from builders.sources.words import (
    BOX_RE, OBJECT_REF_RE, REF_RE, directive_target, is_url, parse_boxes, statement_target,
)
from schemas.profiles import image_mentions
from schemas.errors import UserError

SOURCE = "mgrounding"
MERGED = "MGrounding-630k.json"
PLACEHOLDER = "<image>"
CHUNK = 1 << 16  # characters read at a time
ABOVE_LEVELS = 2  # folders above --path where image paths may start (the Hub layout)
BASE_TRIES = 20  # records tried for an existing image before assuming the JSON's folder
MAX_ITEM_CHARS = 64 << 20  # one conversation is a few KB; beyond this the JSON is broken
WHITESPACE = " \t\r\n"
ENDS_VALUE = WHITESPACE + ',]}[{"'
# Something shaped like a box that BOX_RE does not read ("(1,2),(3,4)" without the tokens).
BOX_SHAPE = re.compile(r"\(\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*\)\s*,?\s*\(\s*-?\d")


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
            except (RecursionError, ValueError) as e:  # too deep for the parser, or a 5000-digit number
                at = self.offset + self.pos
                self.skip_value()
                why = "nested too deeply to read" if isinstance(e, RecursionError) else str(e)[:120]
                return Unreadable(f"the value at character {at}: {why}")
            if len(self.buf) - self.pos > MAX_ITEM_CHARS:  # bounded memory, even on garbage
                raise ValueError(f"no complete JSON value within {MAX_ITEM_CHARS} characters "
                                 f"from character {self.offset + self.pos}")
            self.more()


    def skip_value(self) -> None:
        """Move past one JSON value without parsing it: brackets and strings counted, no recursion."""
        depth, in_str, esc, i = 0, False, False, self.pos
        while True:
            if i >= len(self.buf):
                start = self.pos
                if len(self.buf) - self.pos > MAX_ITEM_CHARS or not self.more():
                    raise ValueError(f"no complete JSON value from character {self.offset + self.pos}")
                i -= start
                continue
            c = self.buf[i]
            i += 1
            if in_str:
                esc, in_str = (False, True) if esc else (c == "\\", c != '"')
                if not in_str and depth == 0:
                    break
            elif c == '"':
                in_str = True
            elif c in "[{":
                depth += 1
            elif c in "]}":
                depth -= 1
                if depth <= 0:
                    break
            elif depth == 0 and c in ENDS_VALUE:  # a scalar (a huge number) ends
                i -= 1
                break
        self.pos = i


class Unreadable:
    """A value `iter_json_values` skipped (too deep for the parser, a number past Python's limit)."""

    def __init__(self, why: str):
        self.why = why


def iter_json_values(path: Path, chunk: int = CHUNK) -> Iterator[object]:
    """Yield the items of a JSON list (or the values of JSON Lines) without loading the file.

    json.JSONDecoder.raw_decode parses one value at a position of a buffer
    that holds only the unparsed tail plus the next chunk, so memory is
    bounded by the largest item. Raises ValueError naming the character
    offset on malformed or truncated JSON; a value the parser cannot take
    (nested 100,000 deep) is skipped and yielded as `Unreadable`.
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


def merged_file(folder: Path) -> Path | None:
    """The merged file in `folder` or one folder down (the Hub snapshot under `data/`)."""
    found = [f for f in (folder / MERGED, *sorted(folder.glob(f"*/{MERGED}"))) if f.is_file()]
    if len(found) > 1:
        raise UserError(f"mgrounding: {len(found)} copies of {MERGED} under {folder} "
                        f"({', '.join(str(f.relative_to(folder)) for f in found)}); pass --path to one")
    return found[0] if found else None


def json_files(path: Path) -> list[Path]:
    """The JSON files a `--path` names (see the module docstring)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"mgrounding: {path} not found")
    merged = merged_file(path)
    if merged is not None:
        return [merged]
    files = sorted(path.rglob("*.json"))
    if not files:
        raise UserError(f"mgrounding: no .json file under {path}")
    return files


def _top(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def file_bases(path: Path) -> list[tuple[Path, Path]]:
    """[(JSON file, folder its image paths start from)] for a `--path`."""
    path = Path(path).absolute()  # ingest reads a relative path as relative to the root
    top = _top(path)
    out = []
    for file in json_files(path):
        base = None
        try:
            for i, rec in enumerate(iter_json_values(file)):
                base = image_base(file.parent, top, rec)
                if base is not None or i + 1 >= BASE_TRIES:
                    break
        except ValueError:
            pass  # a broken file: read_mgrounding names it while reading
        out.append((file, base or file.parent))
    return out


def read_mgrounding(path: Path | str) -> Iterator[SourceItem | Reject]:
    """Yield one SourceItem per human/gpt round of every conversation."""
    digests: dict[int, int] = {}  # hash of an id -> hash of the first content seen under it
    top = _top(Path(path).absolute())
    for file, base in file_bases(path):
        name = str(file.relative_to(top)) if file.is_relative_to(top) else file.name
        try:
            for i, rec in enumerate(iter_json_values(file)):
                if isinstance(rec, Unreadable):
                    yield Reject(f"{file.stem}-{i}", "malformed_json", f"{name}: {rec.why}", {"file": str(file)})
                    continue
                yield from parse_conversation(rec, base, f"{file.stem}-{i}", digests, name)
        except ValueError as e:  # a truncated download: keep what parsed, name the rest
            yield Reject(None, "malformed_json", f"{file.name}: {e}; the rest of the file is skipped",
                         {"file": str(file)})


def image_base(folder: Path, top: Path, rec: object) -> Path | None:
    """The folder a file's image paths are relative to (module docstring).

    None when none of this record's images exists anywhere (try the next record);
    a record whose images all miss is quarantined by ingest whatever the base.
    Searches from the JSON's folder up to `top` (the folder of `--path`), then up
    to ABOVE_LEVELS folders above it, where the Hub layout's paths start.
    """
    images = rec.get("images") if isinstance(rec, dict) else None
    images = [p for p in images if isinstance(p, str) and p and not is_url(p)] if isinstance(images, list) else []
    if not images:
        return None
    inside = [folder, *(p for p in folder.parents if top == p or top in p.parents)]
    for base in inside + list(top.parents[:ABOVE_LEVELS]):
        if any((base / p).is_file() for p in images):
            return base
    return None


def conversation_id(rec: dict, fallback_id: str, digests: dict[int, int]) -> tuple[str, bool]:
    """(id, derived): the record's id, or `<id>~<12 hex of its content>` when an earlier
    record used the id for a different conversation. An exact repeat keeps the id."""
    raw = rec.get("id")
    cid = str(raw if raw not in (None, "") else fallback_id)
    content = json.dumps({k: v for k, v in rec.items() if k != "id"}, sort_keys=True, ensure_ascii=False)
    # surrogatepass: a lone surrogate (ingest quarantines it as invalid_text) must not stop the file
    digest = hashlib.blake2b(content.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    key = int.from_bytes(hashlib.blake2b(cid.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
    first = digests.setdefault(key, int.from_bytes(digest, "big"))
    if first == int.from_bytes(digest, "big"):
        return cid, False
    return f"{cid}~{digest.hex()[:12]}", True


def parse_conversation(rec: object, base: Path, fallback_id: str, digests: dict[int, int] | None = None,
                       source_file: str = "") -> Iterator[SourceItem | Reject]:
    """One conversation -> one SourceItem (or Reject) per round."""
    if not isinstance(rec, dict):
        yield Reject(fallback_id, "malformed_record", f"item is a {type(rec).__name__}", {"value": rec})
        return
    cid, derived = conversation_id(rec, fallback_id, {} if digests is None else digests)
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
    extra = {"source_file": source_file, **({"original_id": rec.get("id"), "id_from": "content"} if derived else {})}
    for r, (question, answer) in enumerate(rounds):
        yield parse_round(rec, cid, r, question, answer, paths, extra)


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


def answer_target(answer: str, n_images: int) -> int | None:
    """The image the answer names ("It's in the third image."), else None."""
    target = statement_target(answer, n_images)
    if target is None:
        named = {m.group(0).lower() for m in REF_RE.finditer(BOX_RE.sub("", answer))}
        if len(named) == 1:
            target = statement_target(f"it is in {named.pop()}", n_images)
    return target


def question_target(question: str, n_images: int) -> int | None:
    """The image the question asks about: its last locate-directive ("... locate it in the
    3th image"), else the one image it mentions (schemas.profiles.image_mentions)."""
    target = directive_target(question, n_images)
    if target is None:
        named = set(image_mentions(OBJECT_REF_RE.sub("", question)))
        target = named.pop() if len(named) == 1 else None
    return target


def segment_image(text: str, n_images: int) -> int | None:
    """The one image a stretch of answer text names ("It's in the third image."), else None."""
    target = statement_target(text, n_images)
    if target is None:
        named = {m.group(0).lower() for m in REF_RE.finditer(text)}
        if len(named) == 1:
            target = statement_target(f"it is in {named.pop()}", n_images)
    return target


def parse_set_answer(answer: str, question: str, n_images: int) -> tuple[list, str] | tuple[str, str]:
    """A several-box answer: ([(image, 0-1 box), ...], where the first image came from), else (reason, detail)."""
    pairs, image, where, start = [], None, "answer", 0
    for m in BOX_RE.finditer(answer):
        named = segment_image(answer[start:m.start()], n_images)
        start = m.end()
        if named is None and image is None:  # the first box: the question may name its image
            named, where = question_target(question, n_images), "question"
            if named is None and n_images == 1:
                named, where = 0, "single_image"
            if named is None:
                return "no_target_image", f"box {len(pairs) + 1} has no image named before it"
        image = named if named is not None else image
        pairs.append((image, [float(v) / 1000.0 for v in m.groups()]))
    return pairs, where


def parse_answer(answer: str, question: str, n_images: int):
    """(target image, 0-1 box, where the target came from), or ([(image, box), ...], where) for several
    boxes, else (reason, detail)."""
    boxes = parse_boxes(answer)
    if len(boxes) > 1:
        return parse_set_answer(answer, question, n_images)
    if not boxes:
        if "<|box_start|>" in answer or BOX_SHAPE.search(answer):
            return "unparsable_answer", "a box not in the form <|box_start|>(x1,y1),(x2,y2)<|box_end|>"
        return "text_answer", "no box in the answer"
    target, where = answer_target(answer, n_images), "answer"
    if target is None:  # the question is read only for a bare box
        target, where = question_target(question, n_images), "question"
    if target is None and n_images == 1:
        target, where = 0, "single_image"
    if target is None:
        return "no_target_image", "a bare box, and the question names no single image"
    return target, boxes[0], where


def parse_round(rec: dict, cid: str, r: int, question: str, answer: str,
                paths: list[Path], extra: dict | None = None) -> SourceItem | Reject:
    rid = f"{cid}-r{r}"
    text = re.sub(r"<image>\s*", "", question).strip()
    parsed = parse_answer(answer, text, len(paths))
    if len(parsed) == 2 and isinstance(parsed[0], str):
        reason, why = parsed
        return Reject(rid, reason, f"{why}: {answer[:200]!r}", rec)
    pairs, where = (parsed[0], parsed[1]) if len(parsed) == 2 else ([(parsed[0], parsed[1])], parsed[2])
    clipped = []
    for target, raw_box in pairs:
        if not 0 <= target < len(paths):
            return Reject(rid, "target_out_of_range", f"the {where} names image {target + 1} of {len(paths)}", rec)
        box = clip_box(raw_box)
        if isinstance(box, Reject):
            box.id, box.record = rid, rec
            return box
        clipped.append((target, box))
    several = len(clipped) > 1
    target, box = (None, None) if several else clipped[0]
    meta = {"type": rec.get("type"), "round": r, "conversation_id": cid, "answer_raw": answer,
            "target_from": where, "input_boxes": parse_boxes(text), "object_refs": OBJECT_REF_RE.findall(text),
            **(extra or {})}
    return SourceItem(
        id=rid, source=SOURCE, task_type=str(rec.get("type") or "mgrounding"), images=list(paths),
        question=text, target_image=target, target_box=box, meta=meta, targets=clipped if several else None,
    )
