"""The JSONL reader: frames, multiple choice, ids kept, malformed lines by name."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import png_bytes
from store_util import good_jsonl, write_jsonl_source

from builders.sources.ingest import ingest
from builders.sources.base import Reject, SourceItem
from builders.sources.jsonl import read_jsonl
from schemas.errors import UserError


def line(**over) -> dict:
    rec = {"id": "x1", "images": ["a.png", "b.png"], "question": "q", "target_image": 1,
           "box": [0.1, 0.2, 0.3, 0.4], "task_type": "common_object"}
    rec.update(over)
    return rec


def read_one(tmp_path: Path, rec) -> SourceItem | Reject:
    images = {"a.png": png_bytes(40, 30), "b.png": png_bytes(200, 100)}
    return list(read_jsonl(write_jsonl_source(tmp_path, [rec], images)))[0]


@pytest.mark.parametrize("frame, box, expected", [
    ("norm1", [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]),
    ("norm1000", [100, 200, 300, 400], [0.1, 0.2, 0.3, 0.4]),
    ("pixel", [20, 20, 60, 40], [0.1, 0.2, 0.3, 0.4]),  # on b.png, 200 x 100, the target
])
def test_box_frames_become_normalised(tmp_path, frame, box, expected):
    it = read_one(tmp_path, line(box=box, box_frame=frame))
    assert it.target_box == pytest.approx(expected)
    assert it.meta["box_raw"] == box


def test_fields_are_kept(tmp_path):
    it = read_one(tmp_path, line(id="my-id-7", source="mine", equivalent_images=[0], extra_field={"k": 1}))
    assert (it.id, it.source, it.task_type, it.target_image, it.equivalent_images) == ("my-id-7", "mine",
                                                                                      "common_object", 1, [0])
    assert it.images == [tmp_path / "a.png", tmp_path / "b.png"]
    assert it.meta["extra_field"] == {"k": 1}


def test_multiple_choice_lines(tmp_path):
    rec = {"id": "m", "images": ["a.png"], "question": "which?", "choices": ["x", "y"], "answer": "B",
           "task_type": "mc"}
    it = read_one(tmp_path, rec)
    assert (it.choices, it.answer, it.target_box, it.target_image) == (["x", "y"], "B", None, None)


@pytest.mark.parametrize("raw, reason", [
    ('{"id": "x", "images": [', "malformed_json"),
    ("[1, 2]", "malformed_json"),
    ("not json at all", "malformed_json"),
    (line(images="a.png"), "malformed_record"),
    (line(id=3), "malformed_record"),
    (line(box_frame="percent"), "malformed_record"),
    (line(target_image="1"), "malformed_record"),
    (line(choices="abc"), "malformed_record"),
    (line(box=[1, 2, 3]), "invalid_box:not_four_numbers"),
])
def test_bad_lines_are_rejects_with_a_reason(tmp_path, raw, reason):
    r = read_one(tmp_path, raw)
    assert isinstance(r, Reject) and r.reason == reason


def test_blank_lines_skipped_and_line_numbers_named(tmp_path):
    path = write_jsonl_source(tmp_path, [line(), "", "{oops"])
    out = list(read_jsonl(path))
    assert len(out) == 2 and out[1].id == "line-3" and "line 3" in out[1].detail


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        list(read_jsonl(tmp_path / "nope.jsonl"))
    with pytest.raises(UserError):
        list(read_jsonl(None))


def test_through_ingest(store, tmp_path):
    path = good_jsonl(tmp_path, n=4)
    with open(path, "a") as f:
        f.write('{"broken\n')
        f.write('{"id": "esc", "images": ["../x.png"], "question": "q", "target_image": 0, "box": [0, 0, 1, 1]}\n')
        f.write('{"id": "j0", "images": ["imgs/0.png"], "question": "q", "target_image": 0, "box": [0, 0, 1, 1]}\n')
    records, rejects = ingest(read_jsonl(path), store, progress=False, root=path.parent)
    assert [r["id"] for r in records] == ["j0", "j1", "j2", "j3", "mc0"]
    assert sorted(r["reason"] for r in rejects) == ["duplicate_id", "malformed_json", "path_escapes_root"]
