"""MC-Bench reader: `mc-bench_v0.2_val.json` plus its image folder, one target set per description.

Layout as released (XuYunqiu/MC-Bench README; the Google Drive / Baidu Pan
download): a folder holding `mc-bench_v0.2_val.json` and the unzipped
`MC-Bench_images.zip`, `mc-bench_images/` in the README's tree
(`MC-Bench_images/` in copies seen elsewhere; either is found):

    MC-Bench/mc-bench_v0.2_val.json
    MC-Bench/mc-bench_images/COCO/..., D3/..., BLINK_val_multiview/...

`--path` is that folder or the JSON file itself (the image folder lies beside it).

The file is COCO-like: `descriptions` ({id, images_id: [2 image ids], text,
positive_sample, text_style}), `images` ({id, text_id, inter_img_id,
file_name, width, height}; `file_name` is relative to the image folder) and
`annotations` ({id, image_id, text_id, category_id, area, bbox: [x, y, w, h]
in pixels of that image, iscrowd}). Each description is one row: its two
images in `images_id` order, the question its `text`, and a target set
(schemas/rows.py `targets`) of every annotation with its `text_id`: the
image's index in `images_id` and the box as normalised 0-1 xyxy of THAT
image (the JSON's width and height, checked against the file's header).

The prompt is the released `text` itself, unchanged but for surrounding
whitespace (a few texts end in "\\n"): a referring expression such as "The man
who has already swung a golf club". The instruction around it (find every
instance in the images, or say none) is the student prompt's
(builders/inference/student.py), as for every grounding row.

No annotations gives `targets: []` (the target is in no image). The set comes
from the annotations, not from `positive_sample`: the official scorer
(eval_mc_bench.py, COCO API) reads only the boxes, and in the released file 6
of the 291 `positive_sample: false` descriptions carry boxes and 1 positive has
none. Those rows are kept with their boxes as released and marked
`meta.label_conflict = true` (meta keeps `positive_sample` too).

Quarantine reasons of this reader: `malformed_record` (a field missing or of the
wrong type), `unknown_image_id` (an id of `images_id` or of an annotation with no
`images` entry), `annotation_not_in_pair` (an annotation on an image that is not
one of its description's), `image_order_conflict` (`inter_img_id` disagrees with
the position in `images_id`), `invalid_box:not_four_numbers`,
`invalid_box:zero_area` (w or h <= 0), `invalid_box:out_of_image` (the box
leaves its image: one annotation of the released file, x 640 on a 534-wide
image), `missing_image`, `image_size_mismatch` (the file is not the size the
JSON gives, so its pixel boxes would land elsewhere), `orphan_annotation` (a
`text_id` no description has). Ids are `mcb-<description id>`.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from builders.sources.base import Reject, SourceItem
from schemas.errors import UserError

SOURCE = "mcbench"
FILE_NAME = "mc-bench_v0.2_val.json"
IMAGE_DIRS = ("mc-bench_images", "MC-Bench_images")
KNOWN_RELEASES = {  # sha256 of the released annotation file
    "9e819195db895eb6bd24310a1bd6cc950247c351002bab6f3b9946fd7ce5499f":
        "MC-Bench v0.2 val (XuYunqiu/MC-Bench; copy in ryznren/Cross-Image-Verification-for-MC-Bench @ c5edf9e)",
}


def bench_file(path: Path | str) -> Path:
    """The annotation file: PATH itself, or FILE_NAME (else the one *.json) inside the folder PATH."""
    # Absolute: ingest reads a relative path as relative to the source root.
    path = Path(path).absolute()
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(f"mc-bench: {path} not found")
    if (path / FILE_NAME).is_file():
        return path / FILE_NAME
    found = sorted(path.glob("*.json"))
    if len(found) != 1:
        raise UserError(f"mc-bench: no {FILE_NAME} in {path}"
                        + (f" and {len(found)} other .json files; pass --path to one" if found else ""))
    return found[0]


def image_dir(folder: Path) -> Path:
    """The image folder beside the JSON (module docstring); a one-line error when absent or ambiguous."""
    found = [folder / d for d in IMAGE_DIRS if (folder / d).is_dir()]
    if len(found) != 1:
        why = "both " + " and ".join(IMAGE_DIRS) if found else f"no image folder ({' or '.join(IMAGE_DIRS)})"
        raise UserError(f"mc-bench: {folder} holds {why}; unzip MC-Bench_images.zip beside {FILE_NAME}")
    return found[0]


def load(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UserError(f"mc-bench: {file.name} is not readable JSON ({str(e)[:200]})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("descriptions", "images", "annotations")):
        raise UserError(f"mc-bench: {file.name} needs lists 'descriptions', 'images' and 'annotations'")
    return data


def describe_source(path: Path | str) -> dict:
    """The manifest's record of which file was read: {"bench_file": {...}}."""
    file = bench_file(path)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    return {"bench_file": {"name": file.name, "sha256": digest, "descriptions": len(load(file)["descriptions"]),
                           "release": KNOWN_RELEASES.get(digest, "not byte-identical to a known release")}}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_mcbench(path: Path | str) -> Iterator[SourceItem | Reject]:
    """Yield one SourceItem (or Reject) per description, then a Reject per orphan annotation."""
    file = bench_file(path)
    data = load(file)
    folder = image_dir(file.parent)
    images = {im["id"]: im for im in data["images"] if isinstance(im, dict) and _is_int(im.get("id"))}
    by_text = defaultdict(list)
    for ann in data["annotations"]:
        tid = ann.get("text_id") if isinstance(ann, dict) else None
        by_text[tid if _is_int(tid) else None].append(ann)  # an unhashable or odd id: an orphan, rejected below
    seen = set()
    for n, desc in enumerate(data["descriptions"]):
        did = desc.get("id") if isinstance(desc, dict) else None
        if _is_int(did):
            seen.add(did)
        yield parse_description(desc, n, images, by_text.get(did, []) if _is_int(did) else [], folder)
    for tid, anns in by_text.items():
        if tid not in seen:
            yield Reject(f"mcb-text-{tid}", "orphan_annotation",
                         f"{len(anns)} annotation(s) with text_id {tid!r}, which no description has",
                         {"annotations": anns[:16]})


def parse_description(desc: object, n: int, images: dict, anns: list, folder: Path) -> SourceItem | Reject:
    """One description and its annotations -> SourceItem, or a Reject naming why not."""
    if not isinstance(desc, dict) or not _is_int(desc.get("id")):
        return Reject(f"mcb-item-{n}", "malformed_record", "a description needs an integer id", {"value": desc})
    rid = f"mcb-{desc['id']}"
    record = {"description": desc, "annotations": anns[:64]}
    ids, text = desc.get("images_id"), desc.get("text")
    if not isinstance(ids, list) or not ids or not all(map(_is_int, ids)):
        return Reject(rid, "malformed_record", "images_id: a non-empty list of image ids is required", record)
    if not isinstance(text, str) or not text.strip():
        return Reject(rid, "malformed_record", "text: a non-empty string is required", record)
    pair = []
    for k, iid in enumerate(ids):
        im = images.get(iid)
        if im is None:
            return Reject(rid, "unknown_image_id", f"images_id[{k}] = {iid} has no entry in 'images'", record)
        why = _image_problem(im, k)
        if why:
            return Reject(rid, *why, record)
        pair.append(im)
    targets = []
    for ann in anns:
        pair_or_reject = _target(ann, ids, images)
        if isinstance(pair_or_reject, tuple) and isinstance(pair_or_reject[0], str):
            return Reject(rid, *pair_or_reject, record)
        targets.append(pair_or_reject)
    paths = [folder / im["file_name"] for im in pair]
    for k, (p, im) in enumerate(zip(paths, pair)):
        why = _file_problem(p, im, k)
        if why:
            return Reject(rid, *why, record)
    positive = desc.get("positive_sample")
    style = desc.get("text_style")
    meta = {"description_id": desc["id"], "text_style": style, "positive_sample": positive,
            "file_names": [im["file_name"] for im in pair], "annotation_ids": [a.get("id") for a in anns],
            "bbox_raw": [a["bbox"] for a in anns], "image_sizes": [[im["width"], im["height"]] for im in pair]}
    if isinstance(positive, bool) and positive != bool(targets):
        meta["label_conflict"] = True  # the boxes win: they are what the official scorer reads
    return SourceItem(id=rid, source=SOURCE, task_type=str(style or "mc-bench").lower(), images=paths,
                      question=text.strip(), meta=meta, targets=targets)


def _image_problem(im: dict, k: int) -> tuple[str, str] | None:
    if not isinstance(im.get("file_name"), str) or not im["file_name"]:
        return "malformed_record", f"image {im['id']}: file_name is required"
    if not (_is_int(im.get("width")) and _is_int(im.get("height")) and im["width"] > 0 and im["height"] > 0):
        return "malformed_record", f"image {im['id']}: width and height must be positive integers"
    if _is_int(im.get("inter_img_id")) and im["inter_img_id"] != k:
        return "image_order_conflict", f"image {im['id']} has inter_img_id {im['inter_img_id']} at position {k}"
    return None


def _target(ann: object, ids: list, images: dict) -> tuple[int, list[float]] | tuple[str, str]:
    """(image index in `ids`, 0-1 xyxy box), or (reason, detail)."""
    if not isinstance(ann, dict):
        return "malformed_record", f"an annotation is a {type(ann).__name__}"
    iid, box = ann.get("image_id"), ann.get("bbox")
    if not _is_int(iid):
        return "malformed_record", f"annotation {ann.get('id')}: image_id {str(iid)[:60]} is not an integer"
    if iid not in images:
        return "unknown_image_id", f"annotation {ann.get('id')}: image_id {iid!r} has no entry in 'images'"
    if iid not in ids:
        return "annotation_not_in_pair", f"annotation {ann.get('id')}: image {iid} is not one of images_id {ids}"
    if not (isinstance(box, list) and len(box) == 4 and all(map(_is_num, box))):
        return "invalid_box:not_four_numbers", f"annotation {ann.get('id')}: bbox {str(box)[:100]}"
    x, y, w, h = (float(v) for v in box)
    width, height = images[iid]["width"], images[iid]["height"]
    if not (w > 0 and h > 0):
        return "invalid_box:zero_area", f"annotation {ann.get('id')}: bbox {box} (x, y, w, h)"
    if x < 0 or y < 0 or x + w > width or y + h > height:
        return "invalid_box:out_of_image", f"annotation {ann.get('id')}: bbox {box} (x, y, w, h) on a {width}x{height} image"
    return ids.index(iid), [x / width, y / height, (x + w) / width, (y + h) / height]


def _file_problem(path: Path, im: dict, k: int) -> tuple[str, str] | None:
    """A missing file, or one whose size differs from the JSON's; an unreadable one is left to ingest."""
    from PIL import Image

    from builders.sources.images import displayed_size

    if not path.is_file():
        return "missing_image", f"image {k}: {im['file_name']}: no such file"
    try:
        with Image.open(path) as f:
            size = displayed_size(f)
    except Exception:  # not an image: ingest names it (undecodable_image)
        return None
    if size != (im["width"], im["height"]):
        return "image_size_mismatch", (f"image {k}: {im['file_name']} is {size[0]}x{size[1]}, "
                                       f"the JSON says {im['width']}x{im['height']}")
    return None
