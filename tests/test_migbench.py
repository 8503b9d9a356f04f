"""MIG-Bench reader: the target image from every phrasing, clipping, quarantine, the real file."""
from __future__ import annotations

import collections
import json
import re

import pytest
from sources_util import FIXTURES, SHARED, PLACEHOLDER_SIZE, reasons, split, tiny_png, write_json

from builders.sources.migbench import read_migbench
from builders.sources.words import directive_target, statement_target
from schemas.errors import UserError

REAL = SHARED / "data" / "mig-bench" / "MIG_data.json"


@pytest.mark.parametrize("text, expected", [
    ("Recognize and locate this object in the 1th image. ", 0),
    ("please locate it in the 6th image. ", 5),
    ("Find and locate where does the object in image-1 locate in the image-2.", 1),
    ("Locate the tool that can draw the symbol of Image-1 in the second image.", 1),
    ("Locate the object-B in Image2 that the man in Image-1 desperately want.", 1),
    ("Please locate the 2th region picture in the source image. ", 0),
    ("Find it and gorund it in Image-2.", 1),
    ("Ground it in Image-2. Find it and locate it in the third image.", 2),  # the last directive wins
    ("Compare these two images carefully and give me the coordinates of their difference.", None),
    ("For the people in Image-1, what do they need?", None),  # a mention, not a directive
    ("Locate <|object_ref_start|>the man in the second image<|object_ref_end|>.", None),
])
def test_directive_phrasings(text, expected):
    assert directive_target(text, 6) == expected


@pytest.mark.parametrize("text, expected", [
    ("It is in the third image. <|box_start|>(394,560),(596,702)<|box_end|>. ", 2),
    ("It's in the fifth image.", 4),
    ("It is in the last image.", 3),
    ("The box is <|box_start|>(1,2),(3,4)<|box_end|>.", None),
])
def test_statement_phrasings(text, expected):
    assert statement_target(text, 4) == expected


def test_fixture_every_task_and_phrasing():
    root = FIXTURES / "mig-bench"
    items, rejects = split(read_migbench(root))
    assert rejects == []
    got = [(it.task_type, it.target_image, it.equivalent_images) for it in items]
    assert got == [
        ("common_object", 0, []), ("common_object", 2, []), ("multi_view", 1, []),
        ("object_tracking", 5, []), ("region", 0, []), ("diff", 0, [1]), ("view_diff", 1, []),
        ("correspondence", 1, []), ("refer_grounding", 1, []), ("reasoning", 1, []),
        ("group_grounding", 3, []), ("group_grounding", 0, []),
    ]
    assert {it.task_type for it in items} == {
        "common_object", "multi_view", "object_tracking", "region", "diff", "view_diff",
        "correspondence", "refer_grounding", "reasoning", "group_grounding"}
    assert items[0].id == "mig-common_object-0000" and len({it.id for it in items}) == 12
    for it in items:
        assert it.source == "mig-bench" and not it.question.endswith(" ")
        assert all(p.is_file() and p.resolve().is_relative_to(root.resolve()) for p in it.images)
    # clipped for the row, raw kept
    assert items[1].target_box == [0.156, 0.294, 1.0, 0.801]
    assert items[1].meta["answer_raw"] == [0.156, 0.294, 1.032, 0.801]
    # input boxes quoted in questions, 0-1000 -> 0-1
    assert items[2].meta["input_boxes"] == [[0.451, 0.265, 0.519, 0.388]]
    assert items[0].meta["input_boxes"] == []
    gg = items[10]
    assert gg.meta["need_format"] is False and gg.meta["target_from"] == "additional_info"
    assert gg.meta["object_refs"] == ["a white truck with a crane on top"]
    assert gg.meta["info_boxes"] == [[0.241, 0.378, 0.447, 0.621]]
    assert items[5].meta["target_from"] == "task_rule:diff"


def _record(task="common_object", n=3, question="Recognize and locate this object in the 2th image.",
            answer=(0.1, 0.2, 0.3, 0.4), info=""):
    return {"task": task, "images": [f"./MIG-Bench/images/x/{i}.png" for i in range(n)],
            "question": question, "answer": list(answer), "additional_info": info, "need_format": True}


QUARANTINE = [
    ("no_target_image", _record("group_grounding", 4, "Give the bounding box of: <|object_ref_start|>"
                                "a dog<|object_ref_end|>.", info="")),
    ("no_target_image", _record("reasoning", 2, "Which object helps the person in Image-1?")),
    ("image_count_mismatch", _record(n=3, question="Recognize and locate this object in the 5th image.")),
    ("image_count_mismatch", _record("group_grounding", 3, "Find: a dog.", info="It is in the fourth image.")),
    ("image_count_mismatch", _record("diff", 3, "Compare these two images carefully and give me the "
                                     "coordinates of their difference.")),
    ("image_count_mismatch", _record("region", 3, "You are given a source image followed by its several "
                                     "regions. Please locate the 3th region picture in the source image.")),
    ("conflicting_target", _record("group_grounding", 4, "Locate it in the second image.",
                                   info="It is in the third image.")),
    ("invalid_box:inverted", _record(answer=(0.027, 0.18, 0.143, 0.051))),
    ("invalid_box:out_of_range", _record(answer=(0.1, 0.2, 1.3, 0.4))),
    ("invalid_box:not_4_numbers", _record(answer=(0.1, 0.2, 0.3))),
    ("malformed_record", {"task": "diff", "images": [], "question": "q", "answer": [0, 0, 1, 1]}),
    ("malformed_record", ["not", "an", "object"]),
    ("url_not_allowed", dict(_record(), images=["https://example.com/a.jpg", "b.png", "c.png"])),
]


@pytest.mark.parametrize("reason, record", QUARANTINE, ids=[f"{i}-{q[0]}" for i, q in enumerate(QUARANTINE)])
def test_quarantine_reasons(tmp_path, reason, record):
    write_json(tmp_path / "MIG_data.json", [_record(), record])
    items, rejects = split(read_migbench(tmp_path))
    assert len(items) == 1 and items[0].target_image == 1
    assert [r.reason for r in rejects] == [reason]
    assert rejects[0].id.endswith("-0001") and rejects[0].detail
    assert rejects[0].record == (record if isinstance(record, dict) else {"value": record})


@pytest.mark.parametrize("content, message", [
    (None, "not found"), ("{not json", "not valid JSON"), ('{"a": 1}', "JSON list"),
])
def test_unreadable_file_is_a_user_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "MIG_data.json").write_text(content)
    with pytest.raises(UserError, match=message):
        list(read_migbench(tmp_path))


def _expected_target(rec: dict) -> tuple[int, list[int]]:
    """An independent reading of the real file's templates (see the reader's docstring)."""
    task, q = rec["task"], rec["question"]
    if task in ("common_object", "multi_view", "object_tracking"):
        return int(re.search(r"in the (\d)th image\. $", q).group(1)) - 1, []
    if task == "group_grounding":
        word = re.match(r"It is in the (\w+) image\.", rec["additional_info"]).group(1)
        return ["first", "second", "third", "fourth", "fifth"].index(word), []
    if task == "region":
        return 0, []
    if task == "diff":
        return 0, [1]
    assert re.search(r"locate (it |the corresponding area )?in the (second image|image-2)", q), q
    return 1, []


@pytest.mark.skipif(not REAL.is_file(), reason="../shared/data/mig-bench is not available here")
def test_real_file_every_item_has_a_target_or_an_explained_reject(tmp_path):
    """All 4,295 real items, with an 8x8 PNG placeholder at every referenced path."""
    records = json.loads(REAL.read_text())
    root = tmp_path / "mig"
    root.mkdir()
    (root / "MIG_data.json").write_bytes(REAL.read_bytes())
    placeholder = tiny_png("placeholder", PLACEHOLDER_SIZE)
    for p in {p for r in records for p in r["images"]}:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(placeholder)

    items, rejects = split(read_migbench(root))
    assert len(items) + len(rejects) == len(records) == 4295
    per_task = collections.Counter(it.task_type for it in items)
    assert per_task == {"region": 1203, "common_object": 811, "object_tracking": 550, "diff": 528,
                        "group_grounding": 499, "multi_view": 288, "correspondence": 117,
                        "reasoning": 101, "refer_grounding": 99, "view_diff": 94}
    # The only rejects: five common_object answers with x2 < x1 or y2 < y1 in the real file.
    assert reasons(rejects) == {f"mig-common_object-{i:04d}": "invalid_box:inverted"
                                for i in (7, 105, 126, 163, 512)}
    by_index = {it.meta["file_index"]: it for it in items}
    for i, rec in enumerate(records):
        if i in by_index:
            it = by_index[i]
            assert (it.target_image, it.equivalent_images) == _expected_target(rec), rec
            assert all(p.is_file() for p in it.images)
            assert all(0.0 <= v <= 1.0 for v in it.target_box)
    multi_view = [it for it in items if it.task_type in ("multi_view", "object_tracking")]
    assert all(len(it.meta["input_boxes"]) == 1 for it in multi_view)

    # End to end: ingest resolves every path inside the root and keeps every item.
    from builders.ingest import ingest
    from builders.store import Store

    kept, dropped = ingest(read_migbench(root), Store(tmp_path / "store"), progress=False, root=root.resolve())
    assert len(kept) == 4290 and {r["reason"] for r in dropped} == {"invalid_box:inverted"}
