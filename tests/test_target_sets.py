"""Target sets (issue 18), the contract: rows, ingest, the JSONL reader and negatives made from tasks."""
from __future__ import annotations

import json

import pytest
from conftest import png_bytes
from sources_util import FIXTURES
from store_util import write_jsonl_source

from builders.sources.ingest import ingest
from builders.sources.base import SourceItem
from builders.sources.jsonl import read_jsonl
from schemas import rows

SETS = FIXTURES / "sets" / "tasks.jsonl"
IMG = {"image": 0}


def record(**over) -> dict:
    rec = {"id": "r", "source": "t", "task_type": "t", "question": "q", "meta": "{}",
           "images": [{"sha256": "a", "width": 4, "height": 4}] * 3, "target_image": None, "target_box": None,
           "equivalent_images": [], "choices": None, "answer": None,
           "targets": [{"image": 0, "box": [0, 0, 1, 1]}, {"image": 2, "box": [0, 0, 0.5, 0.5]}]}
    return {**rec, **over}


@pytest.mark.parametrize("over, problem", [
    ({}, None),
    ({"targets": []}, None),  # none is there
    ({"targets": [{"image": 0, "box": [0, 0, 1, 1]}]}, "targets: one pair belongs in target_image and target_box"),
    ({"target_image": 0}, "targets: a target set leaves target_image and target_box empty"),
    ({"equivalent_images": [1]}, "equivalent_images: not used with a target set (list each pair)"),
    ({"targets": [{"image": 3, "box": [0, 0, 1, 1]}, IMG | {"box": [0, 0, 1, 1]}]},
     "targets: image 3 out of range for 3 images"),
    ({"targets": [IMG | {"box": [0, 0, 1]}, IMG | {"box": [0, 0, 1, 1]}]}, "targets: each box needs 4 finite numbers"),
    ({"targets": [IMG | {"box": [0, 0, 1, 1]}] * 2}, "targets: the pair (image 0, [0, 0, 1, 1]) is listed twice"),
    ({"choices": ["a"], "answer": "A"}, "target_box: a task has either a box target or choices, not both or neither"),
])
def test_validate_task_names_what_is_wrong_with_a_set(over, problem):
    assert rows.validate_task(record(**over)) == problem


def test_target_pairs_reads_either_form():
    assert rows.target_pairs(record()) == [(0, [0, 0, 1, 1]), (2, [0, 0, 0.5, 0.5])]
    assert rows.target_pairs(record(targets=[])) == []
    assert rows.target_pairs(record(targets=None, target_image=1, target_box=[0, 0, 1, 1])) == [(1, [0, 0, 1, 1])]
    assert rows.target_pairs(record(targets=None, choices=["a"])) is None


def item(**over) -> SourceItem:
    images = [png_bytes(8, 8, (10 * k, 0, 0)) for k in range(3)]
    return SourceItem(**{"id": "x", "source": "t", "task_type": "t", "images": images, "question": "q",
                         "targets": [(0, [0, 0, 0.5, 0.5]), (1, [0.5, 0.5, 1, 1])], **over})


@pytest.mark.parametrize("over, reason", [
    ({"targets": [(0, [0, 0, 0.5, 0.5]), (3, [0, 0, 1, 1])]}, "target_out_of_range"),
    ({"targets": [(0, [0.5, 0, 0.1, 1]), (1, [0, 0, 1, 1])]}, "invalid_box:inverted"),
    ({"targets": [(0, [0, 0, 1, 1]), (0, [0, 0, 1, 1])]}, "duplicate_target"),
    ({"target_image": 0, "target_box": [0, 0, 1, 1]}, "conflicting_target"),
    ({"targets": [(0,)]}, "invalid_row:targets"),
])
def test_ingest_quarantines_a_bad_set_by_name(store, over, reason):
    records, rejects = ingest([item(), item(id="bad", **over)], store, progress=False)
    assert [r["id"] for r in records] == ["x"] and [(r["id"], r["reason"]) for r in rejects] == [("bad", reason)]


def test_a_one_pair_set_is_stored_as_a_single_target(store):
    (one, none), _ = ingest([item(targets=[(2, [0, 0, 0.5, 0.5])]), item(id="n", targets=[])], store, progress=False)
    assert (one["target_image"], one["target_box"], one["targets"]) == (2, [0, 0, 0.5, 0.5], None)
    assert (none["target_image"], none["target_box"], none["targets"]) == (None, None, [])


def test_the_sets_fixture_builds_every_line_with_each_frame_converted_on_its_own_image(store):
    records, rejects = ingest(read_jsonl(SETS), store, progress=False)
    assert rejects == [] and len(records) == 10
    by_id = {r["id"]: r for r in records}
    assert [by_id[f"s{i}"]["targets"] for i in range(4)] == [None] * 4  # single targets keep today's columns
    assert by_id["s0"]["target_image"] == 0 and by_id["s0"]["target_box"] == [0.0, 0.0, 0.5, 0.5]
    assert by_id["s4"]["targets"] == [{"image": 0, "box": [0.0, 0.0, 0.5, 0.5]}, {"image": 0, "box": [0.5, 0.5, 1, 1]}]
    # s6 in pixels of an 56x56 and an 84x56 image, s7 on the 0-1000 grid: the same 0-1 boxes
    assert by_id["s6"]["targets"] == [{"image": 0, "box": [0.5, 0.0, 1.0, 0.5]}, {"image": 1, "box": [0.5, 0.5, 1, 1]}]
    assert [t["image"] for t in by_id["s7"]["targets"]] == [0, 1, 1]
    assert by_id["s8"]["targets"] == [] and by_id["s9"]["targets"] == []
    assert json.loads(by_id["s4"]["meta"])["targets_raw"][0]["box"] == [0.0, 0.0, 0.5, 0.5]
    table = rows.to_table(records, "tasks")
    assert rows.validate_table(table, "tasks") is None


@pytest.mark.parametrize("over, detail", [
    ({"targets": {"image": 0}}, "targets: a list of"),
    ({"targets": [{"image": "0", "box": [0, 0, 1, 1]}]}, "targets: a list of"),
    ({"targets": [{"image": 0, "box": [0, 0, 1, 1], "label": "x"}]}, "targets: a list of"),
    ({"targets": [], "target_image": 0}, "targets: give either targets"),
])
def test_jsonl_names_a_malformed_targets_field(tmp_path, over, detail):
    rec = {"id": "x", "images": ["a.png"], "question": "q", **over}
    (out,) = read_jsonl(write_jsonl_source(tmp_path, [rec], {"a.png": png_bytes(8, 8)}))
    assert out.reason == "malformed_record" and detail in out.detail


def test_negatives_leave_out_the_target_images_and_name_their_rule(store, capsys):
    from polyground.cli import main

    code = main(["--store", str(store.root), "build", "tasks", "--source", "jsonl", "--path", str(SETS),
                 "--name", "sets", "--quiet"])
    assert code == 0
    assert main(["--store", str(store.root), "build", "negatives", "--from", "sets", "--name", "neg"]) == 0
    neg, source = store.resolve("neg"), store.resolve("sets")
    assert neg.manifest["inputs"] == [source.ref] or source.ref in json.dumps(neg.manifest["inputs"])
    block = neg.manifest["negatives"]
    assert block == {"rule": "drop_target_images", "made": 6, "negatives_only": False, "from": source.ref,
                     "skipped": {"no_image_left": 2, "not_grounding": 2}}
    by_id = {r["id"]: r for r in neg.table().to_pylist()}
    assert len(by_id) == 16
    src = {r["id"]: r for r in source.table().to_pylist()}
    made = by_id["s1~no_target"]  # s1's target is its second image: only the first is left
    assert made["images"] == [src["s1"]["images"][0]] and made["targets"] == [] and made["target_box"] is None
    meta = json.loads(made["meta"])
    assert meta["negative_of"] == "s1" and meta["negative_rule"] == "drop_target_images"
    assert meta["objects"] == json.loads(src["s1"]["meta"])["objects"][:1]
    assert by_id["s5~no_target"]["images"] == [src["s5"]["images"][1]]  # targets on images 0 and 2
    assert capsys.readouterr().out.strip().splitlines()[-1] == neg.ref


def test_a_question_that_names_an_image_makes_no_negative():
    from builders.negatives import negative_of

    row = {**record(), "question": "Locate it in the second image."}
    assert negative_of(row) == (None, "question_names_an_image")
    assert negative_of({**record(), "meta": json.dumps({"target_from": "question"})}) == (None, "question_names_an_image")


def test_a_negative_keeps_the_kept_images_annotations_and_the_targets_name_only():
    from builders.negatives import negative_of

    objects = [[{"shape": "circle", "color": "red", "cell": 0}], [], [{"shape": "square", "color": "red", "cell": 3}]]
    meta = {"objects": objects, "target_object": {"shape": "circle", "color": "red", "cell": 0},
            "file_names": ["a.png", "b.png", "c.png"], "seed": 3}
    neg, _ = negative_of(record(meta=json.dumps(meta)))  # targets on images 0 and 2
    assert json.loads(neg["meta"]) == {"negative_of": "r", "negative_rule": "drop_target_images", "kept_images": [1],
                                       "objects": [[]], "target_object": {"shape": "circle", "color": "red"}}
