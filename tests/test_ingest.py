"""Ingest: every quarantine reason by name, images stored once, no empty versions."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import png_bytes
from store_util import png_header_only

import builders.sources.ingest as ingest_mod
from builders.sources.images import ImageRejected, load_image_bytes
from builders.sources.ingest import ingest, task_summary
from builders.sources.base import Reject, SourceItem
from schemas import rows
from schemas.errors import UserError


@pytest.fixture
def src(tmp_path) -> Path:
    """A source folder with two good images, one broken image and one empty file."""
    root = tmp_path / "src"
    (root / "imgs").mkdir(parents=True)
    (root / "imgs" / "a.png").write_bytes(png_bytes(40, 30, (200, 0, 0)))
    (root / "imgs" / "b.png").write_bytes(png_bytes(50, 20, (0, 200, 0)))
    (root / "imgs" / "broken.png").write_bytes(png_bytes(60, 60)[:-40])
    (root / "imgs" / "garbage.jpg").write_bytes(b"this is not an image")
    (root / "imgs" / "empty.png").write_bytes(b"")
    (root / "imgs" / "zero.png").write_bytes(png_header_only(0, 10))
    (root / "imgs" / "bomb.png").write_bytes(png_header_only(20000, 20000))
    (root / "imgs" / "big.png").write_bytes(png_header_only(9000, 9000))
    (tmp_path / "outside.png").write_bytes(png_bytes())
    (root / "imgs" / "link.png").symlink_to(tmp_path / "outside.png")
    return root


def item(i="ok", images=("imgs/a.png", "imgs/b.png"), **over) -> SourceItem:
    refs = [p if isinstance(p, bytes) else Path(p) for p in images]
    fields = dict(id=i, source="test", task_type="common_object", images=refs,
                  question="where?", target_image=1, target_box=[0.1, 0.1, 0.5, 0.5])
    fields.update(over)
    return SourceItem(**fields)


def one_reject(store, src, it) -> dict:
    """Ingest a good item plus `it`; return the single reject row."""
    records, rejects = ingest([item("good"), it], store, progress=False, root=src)
    assert [r["id"] for r in records] == ["good"] and len(rejects) == 1
    return rejects[0]


@pytest.mark.parametrize("images, reason", [
    (["imgs/missing.png"], "missing_image"),
    (["imgs"], "missing_image"),  # a folder is not an image
    (["../outside.png"], "path_escapes_root"),
    (["imgs/link.png"], "path_escapes_root"),  # a symlink out of the source folder
    (["/etc/hostname"], "path_escapes_root"),
    (["http://example.com/a.png"], "url_not_allowed"),
    (["s3://bucket/a.png"], "url_not_allowed"),
    (["imgs/broken.png"], "undecodable_image"),
    (["imgs/garbage.jpg"], "undecodable_image"),
    (["imgs/empty.png"], "zero_size_image"),
    (["imgs/zero.png"], "zero_size_image"),
    (["imgs/bomb.png"], "image_too_large"),
    (["imgs/big.png"], "image_too_large"),
])
def test_image_problems_are_quarantined_by_name(store, src, images, reason):
    r = one_reject(store, src, item("bad", images=["imgs/a.png", *images], target_image=0))
    assert (r["id"], r["reason"]) == ("bad", reason)
    assert r["detail"].startswith("image 1:")
    assert json.loads(r["record"])["images"][1].endswith(Path(images[0]).name)


@pytest.mark.parametrize("over, reason", [
    ({"target_box": [0.5, 0.1, 0.2, 0.5]}, "invalid_box:inverted"),
    ({"target_box": [0.1, 0.1, 1.5, 0.5]}, "invalid_box:out_of_range"),
    ({"target_box": [0.1, 0.1, 0.5]}, "invalid_box:not_four_numbers"),
    ({"target_box": [0.1, float("nan"), 0.5, 0.5]}, "invalid_box:nan"),
    ({"target_box": [0.3, 0.3, 0.3, 0.5]}, "invalid_box:zero_area"),
    ({"target_image": 2}, "target_out_of_range"),
    ({"target_image": -1}, "target_out_of_range"),
    ({"equivalent_images": [5]}, "target_out_of_range"),
    ({"target_image": None}, "no_target_image"),
    ({"target_box": None, "choices": ["x", "y"], "answer": "C"}, "invalid_row:answer"),
    ({"target_box": None}, "invalid_row:target_box"),
    ({"question": ""}, "invalid_row:question"),
    ({"images": []}, "invalid_row:images"),
    ({"id": ""}, "invalid_row:id"),
])
def test_target_problems_are_quarantined_by_name(store, src, over, reason):
    assert one_reject(store, src, item("bad", **over))["reason"] == reason


def test_duplicate_ids_keep_the_first(store, src):
    r = one_reject(store, src, item("good", question="again?"))
    assert (r["id"], r["reason"]) == ("good", "duplicate_id")


def test_reader_rejects_pass_through_with_their_record(store, src):
    r = one_reject(store, src, Reject("x1", "malformed_json", "line 3: oops", {"line": "{"}))
    assert (r["reason"], r["detail"], json.loads(r["record"])) == ("malformed_json", "line 3: oops", {"line": "{"})


def test_kept_rows_match_the_contract_and_images_are_stored(store, src):
    records, _ = ingest([item("a"), item("b", images=["imgs/b.png"], target_image=0)], store, progress=False, root=src)
    table = rows.to_table(records, "tasks")
    assert rows.validate_table(table, "tasks") is None
    a = records[0]
    assert [(i["width"], i["height"]) for i in a["images"]] == [(40, 30), (50, 20)]
    assert store.image_path(a["images"][0]["sha256"]).read_bytes() == (src / "imgs" / "a.png").read_bytes()
    assert records[1]["images"][0] == a["images"][1]  # same file, same reference


def test_each_image_is_read_once_however_often_it_is_used(store, src, monkeypatch):
    calls = []
    real = ingest_mod.load_image_bytes
    monkeypatch.setattr(ingest_mod, "load_image_bytes", lambda ref, root: calls.append(str(ref)) or real(ref, root))
    items = [item(f"r{i}") for i in range(20)] + [item(f"m{i}", images=["imgs/a.png", "imgs/broken.png"])
                                                  for i in range(5)]
    records, rejects = ingest(items, store, progress=False, root=src)
    assert len(records) == 20 and {r["reason"] for r in rejects} == {"undecodable_image"}
    assert sorted(calls) == ["imgs/a.png", "imgs/b.png", "imgs/broken.png"]


def test_image_bytes_as_references(store):
    data = png_bytes(33, 22)
    records, _ = ingest([item(images=[data, data], target_image=0)], store, progress=False)
    assert records[0]["images"][0] == records[0]["images"][1]
    assert records[0]["images"][0]["width"] == 33


def test_a_source_with_no_valid_row_is_a_user_error(store, src):
    with pytest.raises(UserError, match="missing_image: 2"):
        ingest([item("a", images=["imgs/nope.png"], target_image=0),
                item("b", images=["imgs/nope.png"], target_image=0)],
               store, progress=False, root=src)
    with pytest.raises(UserError, match="empty"):
        ingest([], store, progress=False)


def test_multiple_choice_rows_are_kept(store, src):
    mc = item("mc", target_box=None, target_image=None, choices=["left", "right"], answer="B")
    records, rejects = ingest([mc], store, progress=False, root=src)
    assert rejects == [] and records[0]["choices"] == ["left", "right"] and records[0]["target_box"] is None


def test_load_image_bytes_reports_a_named_reason(tmp_path):
    with pytest.raises(ImageRejected) as e:
        load_image_bytes(Path("nope.png"), tmp_path)
    assert e.value.reason == "missing_image"
    data, w, h = load_image_bytes(png_bytes(7, 5))
    assert (w, h) == (7, 5) and data[:4] == b"\x89PNG"


def test_rejects_are_reproducible(store, src):
    """Reject details land in the content hash: no object addresses or timings."""
    bad = [item("g", images=["imgs/garbage.jpg"]), item("t", images=["imgs/broken.png"]), item("good")]
    first = ingest(bad, store, progress=False, root=src)[1]
    assert ingest(bad, store, progress=False, root=src)[1] == first
    assert "0x" not in first[0]["detail"]


def test_task_summary(store, src):
    records, _ = ingest([item("a"), item("b", images=["imgs/b.png"], target_image=0,
                                         target_box=[0, 0, 0.5, 0.5])], store, progress=False, root=src)
    s = task_summary(rows.to_table(records, "tasks"))
    assert s["rows_by_task_type"] == {"common_object": 2}
    assert s["images_per_row"]["mean"] == 1.5 and s["unique_images"] == 2
    assert s["box_area_fraction"]["min"] == 0.16 and s["box_area_fraction"]["max"] == 0.25
    assert s["image_width"]["max"] == 50
