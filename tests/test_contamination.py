"""Near-duplicate contamination: copies caught, distinct images not, the manifest fields, the refusal, the cache."""
from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import png_bytes
from store_util import task_record, write_jsonl_source, write_version

from builders.store import perceptual as ph
from builders.store.contamination import contamination_fields
from polyground.cli import main
from schemas import rows
from schemas.errors import UserError


def photo(seed: int, size=(320, 240)):
    """A photo-like PIL image: colour blobs (an upsampled 32x24 random field) under a few shapes."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x, y = rng.integers(0, size[0] - 40), rng.integers(0, size[1] - 40)
        draw.ellipse([x, y, x + rng.integers(20, 120), y + rng.integers(20, 90)],
                     fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def encoded(img, fmt="JPEG", quality=90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def crop(img, f):
    w, h = img.size
    return img.crop((round(f * w), round(f * h), w - round(f * w), h - round(f * h)))


ORIGINAL = photo(1)
COPIES = {
    "re-encoded at JPEG quality 35": lambda im: encoded(im, quality=35),
    "resized 0.5x": lambda im: encoded(im.resize((160, 120))),
    "resized 2x, as PNG": lambda im: encoded(im.resize((640, 480)), "PNG"),
    "resized 0.6x by 1.4x": lambda im: encoded(im.resize((192, 336))),
    "cropped 3% per side": lambda im: encoded(crop(im, 0.03)),
}


def bench_with(store, images: list[bytes], name="bench"):
    """A bench version whose rows use these images (one row each)."""
    infos = [{"sha256": store.put_image(b), "width": 1, "height": 1} for b in images]
    table = rows.to_table([task_record(i, [info], task_type=f"bench_{i}") for i, info in enumerate(infos)], "bench")
    return write_version(store, name, "bench", table)


def rows_with(store, images: list[bytes], task_type="common_object") -> list[dict]:
    return [task_record(i, [{"sha256": store.put_image(b), "width": 1, "height": 1}], task_type=task_type)
            for i, b in enumerate(images)]


@pytest.mark.parametrize("copy", COPIES)
def test_a_copy_is_caught_and_its_bytes_differ(store, copy):
    bench = bench_with(store, [encoded(ORIGINAL), encoded(photo(2))])
    data = COPIES[copy](ORIGINAL)
    fields = contamination_fields(store, rows_with(store, [data]), refuse=False)
    assert fields["contamination"] == {bench.ref: 0}  # the exact check misses it
    near = fields["near_duplicates"]["benches"][bench.ref]
    assert near == {"images": 1, "rows_by_task_type": {"common_object": 1}, "bench_rows_by_task_type": {"bench_0": 1}}


def test_a_3pc_crop_is_caught_by_the_crop_variants_only():
    bench = ph.hash_image(encoded(ORIGINAL), ph.BENCH_CROPS)
    copy = ph.hash_image(COPIES["cropped 3% per side"](ORIGINAL))[0]
    d = np.bitwise_count(bench ^ copy).sum(-1)
    assert d[0] > ph.THRESHOLD >= d[3]  # far from the whole image, near its own 3% crop


def test_different_images_are_not_caught(store):
    bench = bench_with(store, [encoded(photo(s)) for s in range(1, 6)])
    fields = contamination_fields(store, rows_with(store, [encoded(photo(s)) for s in range(10, 20)]), refuse=False)
    assert fields["near_duplicates"]["benches"][bench.ref]["images"] == 0


def test_plain_images_are_checked_by_bytes_only(store):
    """Two plain images of different colours have the same (empty) DCT: never a near-duplicate."""
    red, blue = png_bytes(40, 30, (200, 30, 30)), png_bytes(40, 30, (30, 30, 200))
    bench = bench_with(store, [red])
    near = contamination_fields(store, rows_with(store, [blue]), refuse=False)["near_duplicates"]
    assert near["benches"][bench.ref]["images"] == 0 and near["images_not_hashed"] == 1
    near = contamination_fields(store, rows_with(store, [red]), refuse=False)["near_duplicates"]
    assert near["benches"][bench.ref]["images"] == 1  # a byte copy still counts


def test_method_and_threshold_are_recorded(store):
    bench_with(store, [encoded(ORIGINAL)])
    near = contamination_fields(store, rows_with(store, [encoded(photo(3))]), refuse=False)["near_duplicates"]
    assert near["threshold"] == ph.THRESHOLD and near["bits"] == 256
    assert near["hash"].startswith("imagehash.phash(hash_size=16)") and near["library"].startswith("imagehash 4.")
    assert near["bench_crops"] == [0, 1, 2, 3, 4, 5, 6] and near["images_checked"] == 1


def test_refusal_names_the_bench_and_the_count(store):
    bench = bench_with(store, [encoded(ORIGINAL)])
    data = [COPIES["resized 0.5x"](ORIGINAL), COPIES["cropped 3% per side"](ORIGINAL), encoded(photo(4))]
    with pytest.raises(UserError) as e:
        contamination_fields(store, rows_with(store, data), refuse=True)
    assert "\n" not in str(e.value) and f"{bench.ref} (2 images)" in str(e.value)


def test_bench_hashes_are_computed_once(store, monkeypatch):
    bench_with(store, [encoded(photo(s)) for s in range(1, 6)])
    calls = []
    real = ph.hash_image
    monkeypatch.setattr(ph, "hash_image", lambda data, crops=(0.0,): calls.append(len(crops)) or real(data, crops))
    mine = rows_with(store, [encoded(photo(9))])
    contamination_fields(store, mine, refuse=False)
    assert sorted(calls) == [1] + [len(ph.BENCH_CROPS)] * 5
    calls.clear()
    contamination_fields(store, mine, refuse=False)
    assert calls == [] and (store.root / "cache" / "perceptual.sqlite").is_file()


def test_distances_equal_a_plain_popcount():
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 2**63, (40, ph.WORDS), dtype=np.uint64)
    bench = rng.integers(0, 2**63, (70, 3, ph.WORDS), dtype=np.uint64)
    best, where = ph.distances(queries, bench, chunk=7)
    plain = np.array([[min(sum(bin(int(a) ^ int(b)).count("1") for a, b in zip(q, v)) for v in img) for img in bench]
                      for q in queries])
    assert best.tolist() == plain.min(1).tolist() and where.tolist() == plain.argmin(1).tolist()


# through the CLI: build bench, then build tasks / build cot with a resized copy


def cli(root, *argv):
    import contextlib

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--store", str(root), *map(str, argv)])
    return code, out.getvalue().strip().splitlines(), err.getvalue()


def source(folder, images: dict[str, bytes]):
    lines = [{"id": f"r{i}", "images": [name], "question": "where?", "target_image": 0, "box": [0.1, 0.1, 0.5, 0.5],
              "task_type": "common_object", "objects": [[{"label": "blob", "box": [0.1, 0.1, 0.5, 0.5]}]]}
             for i, name in enumerate(images)]  # `objects` (kept in meta): what build cot --mode annotations reads
    return write_jsonl_source(folder, lines, images)


@pytest.fixture
def built(tmp_path):
    root = tmp_path / "store"
    bench_src = source(tmp_path / "b", {"a.jpg": encoded(ORIGINAL), "b.jpg": encoded(photo(2))})
    code, out, err = cli(root, "build", "bench", "--source", "jsonl", "--path", bench_src, "--name", "split", "--quiet")
    assert code == 0, err
    mine = source(tmp_path / "m", {"copy.jpg": encoded(ORIGINAL.resize((200, 150)), quality=60),
                                   "other.jpg": encoded(photo(7))})
    return root, out[-1], mine


def test_build_tasks_records_and_refuses(built):
    root, bench, mine = built
    code, out, err = cli(root, "build", "tasks", "--source", "jsonl", "--path", mine, "--name", "mine", "--quiet")
    assert code == 0, err
    assert f"warning: 1 images are near-duplicates of benchmark split {bench}" in err
    from builders.store import Store

    v = Store(root).resolve(out[-1])
    assert v.manifest["contamination"] == {bench: 0}
    assert v.manifest["near_duplicates"]["benches"][bench]["images"] == 1
    card = (v.path / "README.md").read_text()
    assert f"| {bench} | 0 | 1 | common_object: 1 | common_object: 1 |" in card and "imagehash" in card
    code, out, err = cli(root, "data", "show", v.ref)
    assert any(line.startswith("near-dup") and f"{bench}: 1" in line for line in out)

    code, out, err = cli(root, "build", "tasks", "--source", "jsonl", "--path", mine, "--name", "mine2",
                         "--no-contamination", "--quiet")
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: refusing to build: near-duplicate") and f"{bench} (1 images)" in last
    assert not (root / "datasets" / "mine2").exists() or not any((root / "datasets" / "mine2").iterdir())


def test_build_cot_refuses(built):
    root, bench, mine = built
    code, out, err = cli(root, "build", "tasks", "--source", "jsonl", "--path", mine, "--name", "mine", "--quiet")
    tasks = out[-1]
    code, out, err = cli(root, "build", "cot", "--tasks", tasks, "--mode", "annotations", "--name", "c",
                         "--no-contamination", "--quiet")
    assert code == 2 and f"{bench} (1 images)" in err.strip().splitlines()[-1]
    code, out, err = cli(root, "build", "cot", "--tasks", tasks, "--mode", "annotations", "--name", "c", "--quiet")
    assert code == 0, err
    from builders.store import Store

    near = Store(root).resolve(out[-1]).manifest["near_duplicates"]
    assert near["benches"][bench] == {"images": 1, "rows_by_task_type": {"common_object": 1},
                                      "bench_rows_by_task_type": {"common_object": 1}}
