"""The synthetic source: deterministic, disjoint across seeds, and drawn as annotated."""
from __future__ import annotations

import hashlib
import io
import re

import pytest
from PIL import Image

from builders.sources.base import SourceItem
from builders.sources.synthetic import COLORS, MIXED, read_synthetic
from builders.sources.words import ORDINAL_WORDS, parse_boxes
from schemas.errors import UserError


def _image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _cell_pixels(img: Image.Image, box: list[float]) -> set[tuple[int, int, int]]:
    w, h = img.size
    x1, y1, x2, y2 = round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)
    return {img.getpixel((x, y)) for x in range(x1, x2) for y in range(y1, y2)}


def test_same_seed_same_tasks_bytes_included():
    a = list(read_synthetic(None, n=20, seed=5))
    b = list(read_synthetic(None, n=20, seed=5))
    assert [x.images for x in a] == [y.images for y in b]
    assert [(x.id, x.question, x.target_box, x.meta) for x in a] == [
        (y.id, y.question, y.target_box, y.meta) for y in b]
    assert a[3].id == "syn-locate_red-5-3"


def test_different_seeds_share_no_image():
    def hashes(seed):
        return {hashlib.sha256(im).hexdigest()
                for it in read_synthetic(None, n=300, seed=seed) for im in it.images}

    h0, h1 = hashes(0), hashes(1)
    assert len(h0) == 600 and len(h1) == 600  # unique within a seed too
    assert not h0 & h1


def test_locate_red_is_the_learnable_configuration():
    items = list(read_synthetic(None, n=200, seed=0))
    red = COLORS["red"]
    seen_targets = set()
    for it in items:
        assert isinstance(it, SourceItem) and it.task_type == "locate_red"
        assert it.question == "Locate the red object."
        assert len(it.images) == 2 and it.equivalent_images == []
        assert all(_image(b).size == (56, 56) for b in it.images)
        assert set(it.target_box) <= {0.0, 0.5, 1.0}
        assert it.target_box[2] - it.target_box[0] == 0.5  # one full 28 px cell
        reds = [(i, o) for i, objs in enumerate(it.meta["objects"]) for o in objs if o["color"] == "red"]
        assert len(reds) == 1 and reds[0][0] == it.target_image
        assert reds[0][1]["box"] == it.target_box
        assert all(len(objs) <= 3 for objs in it.meta["objects"])
        # The pixels agree: red inside the target cell of the target image, nowhere else.
        for i, data in enumerate(it.images):
            img = _image(data)
            for r in range(2):
                for c in range(2):
                    box = [c / 2, r / 2, (c + 1) / 2, (r + 1) / 2]
                    has_red = red in _cell_pixels(img, box)
                    assert has_red == (i == it.target_image and box == it.target_box)
        seen_targets.add((it.target_image, tuple(it.target_box)))
    assert len(seen_targets) == 8  # every (image, cell) answer occurs


def test_background_jitter_stays_within_two_grey_levels():
    it = next(read_synthetic(None, n=1, seed=9))
    palette = set(COLORS.values())
    for data in it.images:
        greys = {p for _, p in _image(data).getcolors(maxcolors=4096) if p not in palette}
        assert all(p[0] == p[1] == p[2] and 228 <= p[0] <= 236 for p in greys)
        assert max(p[0] for p in greys) - min(p[0] for p in greys) <= 4


def test_mixed_covers_every_family_with_consistent_annotations():
    items = list(read_synthetic(None, n=60, seed=2, family="mixed"))
    assert {it.task_type for it in items} == set(MIXED)
    for it in items:
        n = len(it.images)
        assert 2 <= n <= 5 and all(_image(b).size == (112, 112) for b in it.images)
        assert 0 <= it.target_image < n and len(it.meta["objects"]) == n
        for data, objs in zip(it.images, it.meta["objects"]):
            img = _image(data)
            for o in objs:  # every annotated object is drawn in its cell
                assert COLORS[o["color"]] in _cell_pixels(img, o["box"])
        m = re.search(r"in the (\w+) image\.$", it.question)
        if m and it.task_type != "refer_grounding":
            assert ORDINAL_WORDS.index(m.group(1)) == it.target_image


def test_family_specific_targets():
    by = {}
    for it in read_synthetic(None, n=60, seed=4, family="mixed"):
        by.setdefault(it.task_type, []).append(it)
    for it in by["diff"]:
        assert (it.target_image, it.equivalent_images) == (0, [1])
        a, b = it.meta["objects"]
        key = lambda objs: {(o["shape"], o["color"], tuple(o["cell"])) for o in objs}
        changed = {c for _, _, c in key(a) ^ key(b)}
        assert changed == {(int(it.target_box[1] * 4), int(it.target_box[0] * 4))}
    for it in by["group_grounding"]:
        wanted = it.meta["target_object"]
        holders = [i for i, objs in enumerate(it.meta["objects"])
                   if any((o["shape"], o["color"]) == (wanted["shape"], wanted["color"]) for o in objs)]
        assert holders == [it.target_image]
    for it in by["correspondence"] + by["object_tracking"]:
        assert parse_boxes(it.question) == it.meta["input_boxes"]
        assert it.meta["input_boxes"][0] == it.meta["objects"][0][0]["box"]
    for it in by["refer_grounding"]:
        assert it.target_image == 1 and len(it.meta["objects"][0]) == 1


def test_single_family_and_options():
    items = list(read_synthetic(None, n=5, seed=0, family="common_object", image_size=64, grid=2))
    assert all(it.id.startswith("syn-common_object-0-") for it in items)
    assert all(_image(b).size == (64, 64) for it in items for b in it.images)
    assert all(set(it.target_box) <= {0.0, 0.5, 1.0} for it in items)
    assert list(read_synthetic(None, n=0, seed=0)) == []


@pytest.mark.parametrize("kwargs", [
    {"family": "nope"}, {"n": -1}, {"image_size": 500}, {"grid": 1}, {"image_size": 16, "grid": 8},
])
def test_bad_options_are_user_errors(kwargs):
    with pytest.raises(UserError):
        list(read_synthetic(None, **{"n": 1, "seed": 0, **kwargs}))
