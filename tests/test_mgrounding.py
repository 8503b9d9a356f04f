"""MGrounding-630k reader: rounds, image named in words, paths, quarantine, streaming."""
from __future__ import annotations

import json
import shutil
import tracemalloc

import pytest
from sources_util import FIXTURES, reasons, split, write_json, write_png

from builders.sources.mgrounding import iter_json_values, read_mgrounding
from schemas.errors import UserError

ROOT = FIXTURES / "mgrounding"


def test_merged_file_one_task_per_round():
    items, rejects = split(read_mgrounding(ROOT / "MGrounding-630k.json"))
    assert rejects == []
    assert [(it.id, it.task_type, it.target_image) for it in items] == [
        ("5229016_8929009_6793119_3571391-r0", "gg_train", 2),
        ("5229016_8929009_6793119_3571391-r1", "gg_train", 0),
        ("common_000139-r0", "common_train", 1),
        ("diff_000001-r0", "diff_train", 0),
        ("got_000001-r0", "ot_train", 2),
        ("refer_01441-r0", "refer_train", 1),
        ("region_obj365_17-r0", "region_train", 0),
    ]
    first, second = items[0], items[1]
    assert first.target_box == [0.316, 0.058, 0.764, 0.999]
    assert second.target_box == [0.408, 0.656, 0.578, 0.997]
    assert first.question.startswith("Give the bounding box") and "<image>" not in first.question
    assert first.images == second.images and len(first.images) == 4
    assert all(p.is_file() for it in items for p in it.images)
    assert first.meta["object_refs"] == ["a statue of a man"] and second.meta["round"] == 1
    assert first.meta["answer_raw"].startswith("It's in the third image.")
    assert items[4].meta["input_boxes"] == [[0.139, 0.305, 0.495, 0.743]]
    assert {it.source for it in items} == {"mgrounding"}


def test_folder_with_the_merged_file_reads_only_it():
    merged = [it.id for it in read_mgrounding(ROOT / "MGrounding-630k.json")]
    assert [it.id for it in read_mgrounding(ROOT)] == merged


def test_per_task_files_resolve_either_path_layout(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(ROOT, data)
    (data / "MGrounding-630k.json").unlink()
    items, rejects = split(read_mgrounding(data))
    assert rejects == []
    assert [it.id for it in items] == [  # sorted files: Common_Object, then Group_Grounding
        "common_000139-r0", "5229016_8929009_6793119_3571391-r0", "5229016_8929009_6793119_3571391-r1"]
    assert all(p.is_file() for it in items for p in it.images)
    # paths relative to its own folder vs. relative to the data root
    assert items[0].images[0].parent == data / "MGrounding-630k/Common_Object/COCO"
    assert items[1].images[0].parent == data / "MGrounding-630k/Group_Grounding/SA-1B"


def test_path_below_the_data_root_is_a_clear_error():
    with pytest.raises(UserError, match="pass --path"):
        list(read_mgrounding(ROOT / "MGrounding-630k" / "Group_Grounding"))


def _conv(cid="c", n=2, rounds=(("Where is the dog?", "It's in the second image. "
                                   "<|box_start|>(100,200),(300,400)<|box_end|>"),), placeholders=None):
    turns = []
    for k, (q, a) in enumerate(rounds):
        prefix = "<image>\n" * (n if placeholders is None else placeholders) if k == 0 else ""
        turns += [{"from": "human", "value": prefix + q}, {"from": "gpt", "value": a}]
    return {"id": cid, "images": [f"img/{i}.png" for i in range(n)], "conversations": turns, "type": "t"}


def _answer(text):
    return _conv("bad", rounds=(("Where is the dog?", text),))


QUARANTINE = [
    ("placeholder_mismatch", "bad", _conv("bad", n=3, placeholders=2)),
    ("placeholder_mismatch", "bad", _conv("bad", n=2, placeholders=3)),
    ("unparsable_answer", "bad-r0", _answer("A dog on the left. <|box_start|>(1,2),(3,4)<|box_end|>")),
    ("unparsable_answer", "bad-r0", _answer("It's in the first image, near the door.")),
    ("unparsable_answer", "bad-r0", _answer("It's in the first image. <|box_start|>(1,2),(3,4)"
                                            "<|box_end|> <|box_start|>(5,6),(7,8)<|box_end|>")),
    ("target_out_of_range", "bad-r0", _answer("It's in the fifth image. <|box_start|>(1,2),(3,4)<|box_end|>")),
    ("invalid_box:inverted", "bad-r0", _answer("It's in the first image. <|box_start|>(300,2),(3,4)<|box_end|>")),
    ("invalid_box:out_of_range", "bad-r0", _answer("It's in the first image. <|box_start|>(1,2),(3,1400)<|box_end|>")),
    ("malformed_record", "bad", dict(_conv("bad"), conversations=[{"from": "gpt", "value": "x"}])),
    ("malformed_record", "bad", dict(_conv("bad"), conversations=_conv()["conversations"][:1])),
    ("malformed_record", "bad", dict(_conv("bad"), images=[])),
    ("url_not_allowed", "bad", dict(_conv("bad"), images=["http://x.org/a.png", "b.png"])),
]


@pytest.mark.parametrize("reason, rid, record", QUARANTINE, ids=[f"{i}-{q[0]}" for i, q in enumerate(QUARANTINE)])
def test_quarantine_reasons(tmp_path, reason, rid, record):
    write_json(tmp_path / "train.json", [_conv("good"), record])
    items, rejects = split(read_mgrounding(tmp_path / "train.json"))
    assert [it.id for it in items] == ["good-r0"] and items[0].target_image == 1
    assert reasons(rejects) == {rid: reason}
    assert rejects[0].detail and rejects[0].record == record


def test_one_bad_round_keeps_the_others(tmp_path):
    rounds = (("Where is the cat?", "It's in the first image. <|box_start|>(1,2),(30,40)<|box_end|>"),
              ("And the dog?", "I cannot see one."),
              ("And the bird?", "It's in the last image. <|box_start|>(5,6),(70,80)<|box_end|>"))
    write_json(tmp_path / "a.json", [_conv("m", n=3, rounds=rounds)])
    items, rejects = split(read_mgrounding(tmp_path / "a.json"))
    assert [(it.id, it.target_image) for it in items] == [("m-r0", 0), ("m-r2", 2)]
    assert reasons(rejects) == {"m-r1": "unparsable_answer"}


def test_missing_id_uses_file_and_position(tmp_path):
    rec = _conv()
    del rec["id"]
    write_json(tmp_path / "x.json", [rec])
    assert [it.id for it in read_mgrounding(tmp_path / "x.json")] == ["x-0-r0"]


def test_truncated_file_keeps_parsed_items_and_names_the_rest(tmp_path):
    text = json.dumps([_conv(f"c{i}") for i in range(50)])
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    items, rejects = split(read_mgrounding(tmp_path / "cut.json"))
    assert 20 <= len(items) < 50
    assert [r.reason for r in rejects] == ["malformed_json"] and "character" in rejects[0].detail


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 16])
@pytest.mark.parametrize("indent", [None, 1])
def test_stream_equals_json_load_at_any_chunk_size(tmp_path, chunk, indent):
    values = [_conv(f"é{i}") for i in range(20)] + [1, 23, 456.5, -1e-3, "s\"\\", [1, [2]], None, True, {}]
    (tmp_path / "a.json").write_text(json.dumps(values, indent=indent, ensure_ascii=bool(indent)))
    assert list(iter_json_values(tmp_path / "a.json", chunk)) == values
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(v) for v in values))
    assert list(iter_json_values(tmp_path / "a.jsonl", chunk)) == values


@pytest.mark.parametrize("text, complete", [
    ('[{"a": 1}, {"b": nope}, {"c": 3}]', [{"a": 1}]),
    ('[{"a": 1}, {"b": 2}', [{"a": 1}, {"b": 2}]),  # the list is never closed
    ('[{"a": 1}, {"b": "x', [{"a": 1}]),
])
def test_stream_malformed_raises_value_error(tmp_path, text, complete):
    (tmp_path / "bad.json").write_text(text)
    got = []
    with pytest.raises(ValueError, match="character"):
        for v in iter_json_values(tmp_path / "bad.json", chunk=4):
            got.append(v)
    assert got == complete


def test_stream_memory_is_bounded_by_an_item_not_the_file(tmp_path):
    values = [_conv(f"c{i}", n=4) for i in range(20_000)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(values))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_json_values(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000 and size > 5_000_000
    assert peak < 1_000_000, f"peak {peak} bytes for a {size}-byte file"


def test_base_folder_found_past_a_first_record_with_a_missing_image(tmp_path):
    """Per-task file in a subfolder, paths relative to the data root, first image deleted."""
    data = tmp_path / "data"
    for i in range(2):
        write_png(data / "img" / f"{i}.png")
    first = dict(_conv("gone"), images=["./img/missing.png", "./img/1.png"])
    write_json(data / "Task" / "t.json", [first, dict(_conv("ok"), images=["./img/0.png", "./img/1.png"])])
    items = list(read_mgrounding(data))
    assert [it.images[1] for it in items] == [data / "img" / "1.png"] * 2
