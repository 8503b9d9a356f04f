"""Store benchmark on a MIG-Bench-shaped dataset (not a timed test).

Builds a JSONL source whose rows use 2-6 images each (MIG-Bench's range) drawn
from a shared pool so that every image is referenced about 2.75 times, then:
- ingests it into a fresh store (rows/s, distinct images/s);
- prints store bytes / unique image bytes (target <= 1.05);
- saves the same rows with `datasets` embedding the images in every row, for
  comparison (what a per-row image column costs);
- builds a second version over the same images (new questions, as a rebuild
  with a new teacher would) and prints the image bytes it added (target <= 1%).

    .venv/bin/python bench/store_bench.py [--rows 1500] [--keep DIR]
"""
from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REFS_PER_IMAGE = 2.75
IMAGES_PER_ROW = (2, 3, 3, 4, 5, 6)  # mean 3.83, MIG-Bench's 2-6 images per item


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def make_image(rng: random.Random) -> bytes:
    """A 320x240 JPEG with noise and shapes: photo-like bytes, tens of KB."""
    from PIL import Image, ImageDraw

    im = Image.effect_noise((320, 240), rng.uniform(20, 60)).convert("RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x, y = rng.randrange(0, 280), rng.randrange(0, 200)
        draw.rectangle([x, y, x + rng.randrange(10, 60), y + rng.randrange(10, 60)],
                       fill=tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def make_source(folder: Path, n_rows: int, seed: int = 0) -> Path:
    """The JSONL source file, beside its images."""
    rng = random.Random(seed)
    sizes = [rng.choice(IMAGES_PER_ROW) for _ in range(n_rows)]
    n_images = round(sum(sizes) / REFS_PER_IMAGE)
    (folder / "images").mkdir(parents=True)
    for k in range(n_images):
        (folder / "images" / f"{k:05d}.jpg").write_bytes(make_image(rng))
    order = list(range(n_images)) * 4  # every image used; reference counts stay close to 2.75
    rng.shuffle(order)
    lines, at = [], 0
    for i, k in enumerate(sizes):
        picked = list(dict.fromkeys(order[at:at + k + 2]))[:k]  # distinct within a row
        at += k
        lines.append(json.dumps({"id": f"mig-{i:05d}", "images": [f"images/{p:05d}.jpg" for p in picked],
                                 "question": f"Locate the object in image-{1 + i % len(picked)}.",
                                 "target_image": i % len(picked), "box": [0.2, 0.2, 0.6, 0.7],
                                 "task_type": rng.choice(["common_object", "group_grounding", "diff"])}))
    path = folder / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def build(store, path: Path, name: str, config: dict):
    from builders.sources.ingest import ingest
    from builders.sources.jsonl import read_jsonl
    from schemas import rows

    t0 = time.perf_counter()
    records, rejects = ingest(read_jsonl(path), store, progress=False, root=path.parent)
    with store.writer(name, "tasks", config=config) as w:
        w.write(rows.to_table(records, "tasks"), rows.to_table(rejects, "rejects"))
    return w.version, records, time.perf_counter() - t0


def save_with_datasets(store, records: list[dict], out: Path) -> int:
    """The same rows as a `datasets` dataset with the images embedded per row."""
    import datasets

    def rows_with_images():
        for r in records:
            yield {**{k: v for k, v in r.items() if k != "images"},
                   "images": [{"bytes": store.image_path(i["sha256"]).read_bytes(), "path": None} for i in r["images"]]}

    features = datasets.Features({
        "id": datasets.Value("string"), "source": datasets.Value("string"), "task_type": datasets.Value("string"),
        "images": datasets.List(datasets.Image()), "question": datasets.Value("string"),
        "target_image": datasets.Value("int32"), "equivalent_images": datasets.List(datasets.Value("int32")),
        "target_box": datasets.List(datasets.Value("float32")), "choices": datasets.List(datasets.Value("string")),
        "answer": datasets.Value("string"), "meta": datasets.Value("string")})
    ds = datasets.Dataset.from_generator(rows_with_images, features=features, cache_dir=str(out / "cache"))
    ds.save_to_disk(str(out / "saved"))
    return du(out / "saved")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1500, help="rows (MIG-Bench has 4,295)")
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = p.parse_args()
    from builders.store import Store

    work = args.keep or Path(tempfile.mkdtemp(prefix="store-bench-"))
    try:
        path = make_source(work / "source", args.rows)
        used = [json.loads(line)["images"] for line in path.read_text().splitlines()]
        distinct = {p for row in used for p in row}
        n_images, refs = len(distinct), sum(map(len, used))
        image_bytes = sum((path.parent / p).stat().st_size for p in distinct)
        print(f"source: {args.rows} rows, {n_images} images ({image_bytes / 1e6:.1f} MB), "
              f"{refs / n_images:.2f} references per image")
        store = Store(work / "store")
        v1, records, seconds = build(store, path, "mig", {"run": 1})
        store_bytes = du(store.root)
        print(f"ingest: {args.rows / seconds:.0f} rows/s, {n_images / seconds:.0f} images/s ({seconds:.1f} s)")
        print(f"store bytes / unique image bytes: {store_bytes / image_bytes:.3f} (target <= 1.05)")
        ds_bytes = save_with_datasets(store, records, work / "datasets")
        print(f"datasets.save_to_disk with images per row: {ds_bytes / image_bytes:.3f} x unique image bytes "
              f"({ds_bytes / 1e6:.1f} MB vs the store's {store_bytes / 1e6:.1f} MB)")
        images_before = du(store.root / "images")
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**r, "question": r["question"] + " Answer briefly."}) + "\n"
                                for r in lines))
        v2, _, _ = build(store, path, "mig", {"run": 2})
        added_images = du(store.root / "images") - images_before
        added_total = du(store.root) - store_bytes
        print(f"second version {v2.ref}: +{added_images / image_bytes:.2%} image bytes, "
              f"+{added_total / image_bytes:.2%} bytes in all (target <= 1%)")
        ok = store_bytes / image_bytes <= 1.05 and added_images / image_bytes <= 0.01 and v1.id != v2.id
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
