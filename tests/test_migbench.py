"""MIG-Bench reader: the target image from every phrasing, clipping, quarantine, both real files
(MIG_data.json with 0-1 boxes, revised_MIG_bench.json with 0-1000 boxes), frame detection."""
from __future__ import annotations

import collections
import json
import re

import pytest
from sources_util import FIXTURES, SHARED, reasons, split, tiny_png, write_json

from builders.sources.migbench import describe_source, detect_frame, read_migbench
from builders.sources.words import directive_target, statement_target
from schemas.errors import UserError

REAL = SHARED / "data" / "mig-bench" / "MIG_data.json"
REVISED = SHARED / "data" / "mig-bench" / "revised_MIG_bench.json"


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
    (None, "holds neither MIG_data.json nor revised_MIG_bench.json"), ("{not json", "not valid JSON"),
    ('{"a": 1}', "JSON list"),
])
def test_unreadable_file_is_a_user_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "MIG_data.json").write_text(content)
    with pytest.raises(UserError, match=message):
        list(read_migbench(tmp_path))


def test_inverted_box_is_kept_as_released(tmp_path):
    """The official script counts an inverted box (and scores it 0): the row stays, marked."""
    write_json(tmp_path / "MIG_data.json", [_record(), _record(answer=(0.027, 0.18, 0.143, 0.051))])
    items, rejects = split(read_migbench(tmp_path))
    assert rejects == [] and len(items) == 2
    assert items[1].meta["box_as_released"] == "inverted" and "box_as_released" not in items[0].meta
    assert items[1].target_box == [0.027, 0.18, 0.143, 0.051] and items[1].meta["answer_raw"] == [0.027, 0.18, 0.143, 0.051]
    # a box without width is kept the same way, under its own name (what ingest's check calls it)
    write_json(tmp_path / "MIG_data.json", [_record(), _record(answer=(0.1, 0.2, 0.1, 0.4))])
    items, rejects = split(read_migbench(tmp_path))
    assert rejects == [] and items[1].meta["box_as_released"] == "zero_area"


def _revised(records: list[dict]) -> list[dict]:
    """The same records as the revised file writes them: 0-1000 integer boxes, no "./" prefix."""
    return [dict(r, answer=[round(v * 1000) for v in r["answer"]], images=[p[2:] for p in r["images"]])
            for r in records]


def test_revised_file_is_detected_and_read_on_the_1000_grid(tmp_path):
    records = [_record(), _record("common_object", 3, "Recognize and locate this object in the 3th image. ",
                                  answer=(0.1, 0.2, 0.999, 1.0))]
    write_json(tmp_path / "revised_MIG_bench.json", _revised(records))
    items, rejects = split(read_migbench(tmp_path))
    assert rejects == [] and [it.id for it in items] == ["mig-rev-common_object-0000", "mig-rev-common_object-0001"]
    assert items[1].target_box == [0.1, 0.2, 0.999, 1.0] and items[1].meta["answer_raw"] == [100, 200, 999, 1000]
    assert items[1].meta["answer_frame"] == "0-1000" and items[1].target_image == 2
    # the question is kept raw (trailing space) for the official prompt; the row's is stripped
    assert items[1].meta["question_raw"].endswith("image. ") and items[1].question.endswith("image.")
    d = describe_source(tmp_path)["bench_file"]
    assert (d["name"], d["box_frame"], d["variant"], d["items"]) == ("revised_MIG_bench.json", "0-1000", "revised", 2)
    assert d["release"] == "not byte-identical to a known release" and len(d["sha256"]) == 64
    # the same items as 0-1 floats: the official frame, the plain ids
    write_json(tmp_path / "MIG_data.json", records)
    with pytest.raises(UserError, match="holds both"):
        list(read_migbench(tmp_path))
    items, _ = split(read_migbench(tmp_path / "MIG_data.json"))
    assert items[0].id == "mig-common_object-0000" and items[0].meta["answer_frame"] == "0-1"


@pytest.mark.parametrize("answers, frame", [
    ([[0.1, 0.2, 0.3, 0.4]], "0-1"), ([[100, 200, 300, 400]], "0-1000"),
    ([[0.1, 0.2, 1.3, 0.4], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.6, 0.6]], "0-1"),  # one bad box: still 0-1
    ([[100, 200, 300, 400], [0.1, 0.2, 0.3, 0.4], [5, 5, 900, 900]], "0-1000"),
    ([], "0-1"),
])
def test_detect_frame_by_majority(answers, frame):
    assert detect_frame([{"answer": a} for a in answers] + [{"answer": "x"}, "junk"]) == frame


def test_revised_file_quarantines_boxes_off_its_grid(tmp_path):
    good = _revised([_record()])[0]
    write_json(tmp_path / "revised_MIG_bench.json", [good, good, dict(good, answer=[0.1, 0.2, 0.3, 0.4]),
                                                     dict(good, answer=[100, 200, 1300, 400])])
    items, rejects = split(read_migbench(tmp_path))
    assert len(items) == 2
    assert reasons(rejects) == {"mig-rev-common_object-0002": "invalid_box:frame_mismatch",
                                "mig-rev-common_object-0003": "invalid_box:out_of_range"}


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


def _with_placeholders(tmp_path, real) -> tuple[list[dict], object]:
    """A copy of a real file with a PNG placeholder at every path it references: two of them,
    non-square and of unequal sizes, taken in turn."""
    records = json.loads(real.read_text())
    root = tmp_path / "mig"
    root.mkdir()
    (root / real.name).write_bytes(real.read_bytes())
    placeholders = [tiny_png("placeholder-a", (12, 8)), tiny_png("placeholder-b", (9, 14))]
    for i, p in enumerate(sorted({p for r in records for p in r["images"]})):
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(placeholders[i % 2])
    return records, root


@pytest.mark.skipif(not REAL.is_file(), reason="../shared/data/mig-bench is not available here")
def test_real_file_every_item_has_a_target_or_an_explained_reject(tmp_path):
    """All 4,295 real items, with a small PNG placeholder at every referenced path."""
    records, root = _with_placeholders(tmp_path, REAL)
    items, rejects = split(read_migbench(root))
    assert len(items) == len(records) == 4295 and rejects == []
    per_task = collections.Counter(it.task_type for it in items)
    # common_object 816, not 811: the official denominator (five inverted boxes are kept, marked)
    assert per_task == {"region": 1203, "common_object": 816, "object_tracking": 550, "diff": 528,
                        "group_grounding": 499, "multi_view": 288, "correspondence": 117,
                        "reasoning": 101, "refer_grounding": 99, "view_diff": 94}
    assert {it.id: it.meta["box_as_released"] for it in items if "box_as_released" in it.meta} == {
        f"mig-common_object-{i:04d}": "inverted" for i in (7, 105, 126, 163, 512)}
    for i, (it, rec) in enumerate(zip(items, records)):
        assert it.meta["file_index"] == i and it.meta["answer_raw"] == rec["answer"]
        assert (it.target_image, it.equivalent_images) == _expected_target(rec), rec
        assert all(p.is_file() for p in it.images)
        assert all(0.0 <= v <= 1.0 for v in it.target_box)
    multi_view = [it for it in items if it.task_type in ("multi_view", "object_tracking")]
    assert all(len(it.meta["input_boxes"]) == 1 for it in multi_view)
    assert describe_source(root)["bench_file"]["release"].startswith("thunlp/Migician")

    # End to end: ingest resolves every path inside the root and keeps every item.
    from builders.sources.ingest import ingest
    from builders.store import Store

    kept, dropped = ingest(read_migbench(root), Store(tmp_path / "store"), progress=False, root=root.resolve())
    assert len(kept) == 4295 and dropped == []


@pytest.mark.skipif(not REVISED.is_file(), reason="../shared/data/mig-bench is not available here")
def test_real_revised_file_reads_every_item_on_the_1000_grid(tmp_path):
    """All 4,276 items of revised_MIG_bench.json (0-1000 integer boxes), placeholders as above."""
    records, root = _with_placeholders(tmp_path, REVISED)
    items, rejects = split(read_migbench(root))
    assert rejects == [] and len(items) == len(records) == 4276
    assert collections.Counter(it.task_type for it in items) == {
        "region": 1203, "common_object": 815, "object_tracking": 550, "diff": 528, "group_grounding": 485,
        "multi_view": 288, "correspondence": 117, "refer_grounding": 99, "reasoning": 97, "view_diff": 94}
    for it, rec in zip(items, records):
        assert it.id.startswith(f"mig-rev-{rec['task']}-") and it.meta["answer_frame"] == "0-1000"
        assert it.target_box == [v / 1000 for v in rec["answer"]] and it.meta["answer_raw"] == rec["answer"]
        assert "box_as_released" not in it.meta  # the revision fixed the inverted boxes
        assert (it.target_image, it.equivalent_images) == _expected_target(rec), rec
    d = describe_source(root / REVISED.name)["bench_file"]
    assert (d["box_frame"], d["variant"], d["items"]) == ("0-1000", "revised", 4276)
    assert d["release"].startswith("Tajamul21/MIG-Agent")
