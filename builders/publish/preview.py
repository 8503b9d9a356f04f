"""`data preview`: one self-contained HTML page showing N rows of a version.

Each row shows its images side by side (inlined as base64 data URLs, so the
page opens anywhere, offline, with no store), the target box drawn on the
target image in green, the question and the target (box or choices), and for
cot and predictions the completion with its parsed box in magenta on the
image it names. Boxes are inline SVG over the image with a 0-1 viewBox: the
canonical normalised frame maps straight onto whatever size the image is
shown at.

Predictions rows carry no images or question: they are joined by id with the
benchmark version they were made from (the manifest's input).

What is shown is bounded, so a hostile version cannot make a huge page: N
rows per page (`page` picks consecutive rows; without it the N rows are
spread over the version), at most `images_per_row` images of each row (the
rest are counted), each distinct image encoded once. Images are read through
the store, which checks each one's hash: a changed or missing image refuses
the page, naming the file.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from schemas.errors import UserError
from schemas.rows import image_sizes

TARGET_COLOUR = "#00c853"  # green
PRED_COLOUR = "#ff00ff"  # magenta: never confused with the target, on any photo
THUMB_SIDE = 384  # larger images are re-encoded as JPEG thumbnails: the page stays small
KEEP_BYTES = 150_000
IMAGES_PER_ROW = 16  # shown per row; rows may hold more (ingest's bound is MAX_IMAGES_PER_ROW)
SCORE_COLUMNS = ("format_ok", "image_correct", "iou", "official_iou", "pred_choice", "correct",
                 "pass_rate", "mean_iou", "difficulty", "k", "generator_model", "model", "policy")
TASK_KINDS = ("tasks", "bench")

CSS = f"""
body {{ font-family: system-ui, sans-serif; margin: 16px; background: #fafafa; color: #222; }}
.row {{ background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; margin: 12px 0; }}
.row h2 {{ font-size: 14px; margin: 0 0 8px; font-weight: 600; }}
.images {{ display: flex; gap: 10px; flex-wrap: wrap; }}
figure {{ margin: 0; }}
.frame {{ position: relative; display: inline-block; line-height: 0; }}
.frame img {{ height: 180px; width: auto; image-rendering: pixelated; border: 1px solid #ccc; }}
.frame svg {{ position: absolute; left: 0; top: 0; width: 100%; height: 100%; overflow: hidden; }}
figcaption {{ font-size: 12px; color: #555; margin-top: 3px; }}
.missing {{ width: 180px; height: 180px; background: #eee; display: flex; align-items: center;
           justify-content: center; font-size: 12px; line-height: 1.2; }}
.question {{ margin: 8px 0 4px; }}
.scores {{ font-size: 12px; color: #555; }}
pre {{ white-space: pre-wrap; background: #f4f4f4; padding: 6px; font-size: 12px; max-height: 240px; overflow: auto; }}
.legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px -1px 10px; }}
"""


def pick(n_rows: int, n: int) -> list[int]:
    """n row indices spread evenly over the table (first and last included):
    deterministic, and not only the first source of a multi-source build."""
    if n <= 0 or n_rows == 0:
        return []
    if n >= n_rows:
        return list(range(n_rows))
    if n == 1:
        return [0]
    return sorted({round(i * (n_rows - 1) / (n - 1)) for i in range(n)})


def _source_version(store, version):
    """The tasks/bench version a predictions version was evaluated on."""
    for inp in version.manifest.get("inputs") or []:
        if inp.get("kind") in TASK_KINDS:
            return store.resolve(inp["ref"])
    raise UserError(f"{version.ref}: no benchmark or tasks input in its manifest to take images from")


def page_rows(n_rows: int, n: int, page: int | None) -> list[int]:
    """Row indices of one page: consecutive rows of page `page` (1-based), else n spread evenly."""
    if page is None:
        return pick(n_rows, n)
    return list(range((page - 1) * n, min(n_rows, page * n)))


def load_rows(store, version, n: int, page: int | None = None) -> list[dict]:
    """The rows to show, each with images/question/target (joined for predictions)."""
    table = version.table()
    rows = [table.slice(i, 1).to_pylist()[0] for i in page_rows(table.num_rows, n, page)]
    if version.kind != "predictions":
        return rows
    source = _source_version(store, version)
    tasks = source.table()
    wanted = {r["id"] for r in rows}
    ids = tasks.column("id").to_pylist()
    by_id = {ids[i]: tasks.slice(i, 1).to_pylist()[0] for i in range(len(ids)) if ids[i] in wanted}
    missing = sorted(wanted - by_id.keys())
    if missing:
        raise UserError(f"{version.ref}: prediction ids {missing[:3]} are not in {source.ref}")
    return [{**by_id[r["id"]], **r} for r in rows]


def image_data_url(data: bytes) -> str:
    """A data URL of the image bytes; big ones shrunk to a JPEG thumbnail."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        mime = Image.MIME.get(im.format or "", "application/octet-stream")
        if len(data) > KEEP_BYTES or max(im.size) > THUMB_SIDE or not mime.startswith("image/"):
            im = im.convert("RGB")
            im.thumbnail((THUMB_SIDE, THUMB_SIDE))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
            data, mime = buf.getvalue(), "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def box_svg(boxes: list[tuple[list[float], str]]) -> str:
    """An SVG overlay in the normalised frame. Each box is a dark 5 px line under a
    3 px coloured one (`non-scaling-stroke`: pixels, not frame units), so it shows
    on any image, even one of the box's own colour."""
    rects = []
    for b, cls in boxes:
        colour = TARGET_COLOUR if cls == "target" else PRED_COLOUR
        geometry = (f'x="{b[0]:.5f}" y="{b[1]:.5f}" width="{max(b[2] - b[0], 0):.5f}" '
                    f'height="{max(b[3] - b[1], 0):.5f}" fill="none" vector-effect="non-scaling-stroke"')
        rects.append(f'<rect {geometry} stroke="#000" stroke-opacity="0.55" stroke-width="5"/>'
                     f'<rect class="{cls}" {geometry} stroke="{colour}" stroke-width="3"/>')
    return f'<svg viewBox="0 0 1 1" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">{"".join(rects)}</svg>'


def predicted(row: dict) -> tuple[int | None, list[float] | None, str | None]:
    """(image, box, why-not) of the row's parsed answer. The stored parse is what
    was scored; when it holds no box, the profile re-parses to say why."""
    if row.get("pred_box") is not None:
        return row.get("pred_image"), row["pred_box"], None
    if not row.get("completion") or not row.get("profile") or row.get("choices"):
        return None, None, None
    from schemas.profiles import get_profile

    sizes = image_sizes(row)
    try:
        parsed = get_profile(row["profile"]).parse(row["completion"], sizes)
    except UserError as e:  # a profile this code does not know
        return None, None, str(e)
    return parsed.image, parsed.box, parsed.error


class ImageURLs:
    """Data URLs by image hash: each distinct image read (hash-checked by the store) and encoded once."""

    def __init__(self, store):
        self.store, self.urls = store, {}

    def __call__(self, h: str) -> str:
        if h not in self.urls:
            self.urls[h] = image_data_url(self.store.read_image(h))
        return self.urls[h]


def shown_images(row: dict, limit: int) -> list[int]:
    """Indices of the images shown: the first `limit`, plus the target and predicted ones."""
    n = len(row.get("images") or [])
    keep = set(range(min(n, limit)))
    keep |= {i for i in (row.get("target_image"), row.get("pred_image")) if isinstance(i, int) and 0 <= i < n}
    return sorted(keep)


def images_html(urls: ImageURLs, row: dict, pred_image, pred_box, limit: int = IMAGES_PER_ROW) -> str:
    figures = []
    equivalent = set(row.get("equivalent_images") or [])
    images = row.get("images") or []
    shown = shown_images(row, limit)
    for i in shown:
        info = images[i]
        boxes = []
        if i == row.get("target_image") and row.get("target_box") is not None:
            boxes.append((row["target_box"], "target"))
        if i == pred_image and pred_box is not None:
            boxes.append((pred_box, "pred"))
        body = f'<img src="{urls(info["sha256"])}" alt="image {i + 1}">{box_svg(boxes)}'
        notes = " · target" if i == row.get("target_image") else " · also correct" if i in equivalent else ""
        caption = f"image {i + 1} ({info['width']}×{info['height']}){notes}"
        figures.append(f'<figure><div class="frame">{body}</div><figcaption>{caption}</figcaption></figure>')
    if len(shown) < len(images):
        figures.append(f'<div class="missing">{len(images) - len(shown)} more images not shown '
                       f'({len(images)} in this row)</div>')
    return f'<div class="images">{"".join(figures)}</div>'


def _scores(row: dict) -> str:
    parts = []
    for col in SCORE_COLUMNS:
        v = row.get(col)
        if v is not None:
            parts.append(f"{col}: {v:.3f}" if isinstance(v, float) else f"{col}: {v}")
    return " · ".join(parts)


def _parsed_text(row: dict, pred_image, pred_box, why) -> str:
    if row.get("choices"):
        return f"parsed choice: {row['pred_choice']}" if row.get("pred_choice") else "no choice parsed"
    if pred_box is not None and pred_image is not None:
        return f"parsed: image {pred_image + 1}, box {json.dumps([round(v, 3) for v in pred_box])}"
    return f"no box parsed ({why or 'no answer'})"


def row_html(urls: ImageURLs, row: dict, limit: int = IMAGES_PER_ROW) -> str:
    pred_image, pred_box, why = predicted(row)
    esc = html.escape
    title = " · ".join(esc(str(row.get(c))) for c in ("id", "task_type", "source") if row.get(c) is not None)
    parts = [f"<h2>{title}</h2>", images_html(urls, row, pred_image, pred_box, limit),
             f'<p class="question">{esc(row.get("question") or "")}</p>']
    if row.get("choices"):
        options = "".join(f"<li>{esc(c)}</li>" for c in row["choices"])
        parts.append(f'<ol type="A">{options}</ol><p>answer: <b>{esc(str(row.get("answer")))}</b></p>')
    if row.get("completion") is not None:
        answer = _parsed_text(row, pred_image, pred_box, why)
        parts.append(f'<details open><summary>completion — {esc(answer)}</summary>'
                     f'<pre>{esc(row["completion"])}</pre></details>')
    scores = _scores(row)
    if scores:
        parts.append(f'<p class="scores">{esc(scores)}</p>')
    return f'<section class="row">{"".join(parts)}</section>'


def page_html(version, rows_html: list[str], total: int, where: str = "") -> str:
    title = html.escape(f"{version.ref} ({version.kind})")
    legend = (f'<p class="legend">{len(rows_html)} of {total} rows{html.escape(where)} ·<span style="background:{TARGET_COLOUR}"></span>'
              f'target box<span style="background:{PRED_COLOUR}"></span>predicted box</p>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{CSS}</style></head><body><h1>{title}</h1>{legend}{''.join(rows_html)}</body></html>\n")


def write_preview(store, ref: str, out: Path, n: int = 12, page: int | None = None,
                  images_per_row: int = IMAGES_PER_ROW) -> tuple[int, int]:
    """Write the page for `ref` to `out`; return (rows shown, images inlined)."""
    for flag, value in (("--n", n), ("--page", 1 if page is None else page), ("--images-per-row", images_per_row)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{flag} must be at least 1, got {value!r}")
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    version = store.resolve(ref)
    total = version.table().num_rows
    pages = max(1, -(-total // n))
    if page is not None and page > pages:
        raise UserError(f"--page {page}: {version.ref} has {total} rows, {pages} page(s) of {n}")
    rows = load_rows(store, version, n, page)
    urls = ImageURLs(store)
    where = "" if page is None else f" (rows {(page - 1) * n + 1}-{(page - 1) * n + len(rows)}, page {page} of {pages})"
    page_text = page_html(version, [row_html(urls, r, images_per_row) for r in rows], total, where)
    try:
        out.write_text(page_text, encoding="utf-8")
    except OSError as e:
        raise UserError(f"--out {out}: cannot write ({e.strerror})") from None
    return len(rows), page_text.count("<img ")
