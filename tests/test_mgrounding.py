"""MGrounding-630k reader: rounds, image named in words, paths, quarantine, streaming."""
from __future__ import annotations

import json
import re
import shutil
import tracemalloc

import pytest
from sources_util import FIXTURES, reasons, split, write_json, write_png

from builders.sources.mgrounding import iter_json_values, read_mgrounding
from schemas.errors import UserError

ROOT = FIXTURES / "mgrounding"  # plays the README's data/
HUB = ROOT / "MGrounding-630k"  # the Hub repository, downloaded and unzipped
MERGED = HUB / "MGrounding-630k.json"
GG = "5229016_8929009_6793119_3571391"


def test_hub_layout_one_task_per_round():
    items, rejects = split(read_mgrounding(MERGED))
    assert [(it.id, it.task_type, it.target_image, it.meta["target_from"]) for it in items] == [
        (f"{GG}-r0", "gg_train", 2, "answer"),
        (f"{GG}-r1", "gg_train", 0, "answer"),
        ("common_000139-r0", "common_train", 1, "answer"),
        ("common_000285-r0", "common_train", None, "answer"),  # two boxes: a target set (issue 18)
        ("diff_000001-r0", "diff_train", 0, "answer"),
        ("got_000001-r0", "ot_train", 2, "answer"),
        ("refer_01441-r0", "refer_train", 1, "question"),  # a bare box: "... locate in the image-2."
        ("region_obj365_17-r0", "region_train", 0, "answer"),
        ("free_000001-r0", "free_form", 1, "answer"),
        (items[-1].id, "free_form", 0, "answer"),
    ]
    # the same id on a different conversation: a content-derived id, not a duplicate_id
    assert re.fullmatch(r"free_000001~[0-9a-f]{12}-r0", items[-1].id)
    assert items[-1].meta["original_id"] == "free_000001" and items[-1].meta["id_from"] == "content"
    # quarantined under a name of its own, not as a parse failure
    assert reasons(rejects) == {"reg_5229016_8929009-r0": "text_answer"}
    several = next(it for it in items if it.id == "common_000285-r0")
    assert several.targets == [(0, [0.01, 0.02, 0.3, 0.4]), (2, [0.05, 0.06, 0.7, 0.8])]
    assert several.target_box is None and several.target_image is None
    first, second = items[0], items[1]
    assert first.target_box == [0.316, 0.058, 0.764, 0.999]
    assert second.target_box == [0.408, 0.656, 0.578, 0.997]
    assert first.question.startswith("Give the bounding box") and "<image>" not in first.question
    assert first.images == second.images and len(first.images) == 4
    # "./MGrounding-630k/..." starts from the folder ABOVE the merged file's folder
    assert first.images[0] == ROOT / "./MGrounding-630k/Group_Grounding/SA-1B/sa_5229016.png"
    assert all(p.is_file() for it in items for p in it.images)
    assert first.meta["object_refs"] == ["a statue of a man"] and second.meta["round"] == 1
    assert first.meta["answer_raw"].startswith("It's in the third image.")
    assert first.meta["source_file"] == "MGrounding-630k.json"
    assert items[5].meta["input_boxes"] == [[0.139, 0.305, 0.495, 0.743]]
    assert {it.source for it in items} == {"mgrounding"}


@pytest.mark.parametrize("where", ["file", "folder", "parent"])
def test_path_to_the_merged_file_its_folder_or_the_parent(where):
    path = {"file": MERGED, "folder": HUB, "parent": ROOT}[where]
    assert [it.id for it in read_mgrounding(path)] == [it.id for it in read_mgrounding(MERGED)]
    # the per-task files beside the merged file are never read: no conversation twice
    assert {it.meta["source_file"] for it in split(read_mgrounding(path))[0]} == {
        str(MERGED.relative_to(path if path.is_dir() else path.parent))}


def test_readme_tree_layout_json_beside_the_folder(tmp_path):
    """data/MGrounding-630k.json beside data/MGrounding-630k/: the paths start at the json's folder."""
    data = tmp_path / "data"
    shutil.copytree(ROOT, data)
    (data / "MGrounding-630k" / "MGrounding-630k.json").rename(data / "MGrounding-630k.json")
    expected = [it.id for it in read_mgrounding(MERGED)]
    for path in (data / "MGrounding-630k.json", data, tmp_path):
        assert [it.id for it in read_mgrounding(path)] == expected


def test_two_merged_files_are_a_clear_error(tmp_path):
    for sub in ("a", "b"):
        write_json(tmp_path / sub / "MGrounding-630k.json", [])
    with pytest.raises(UserError, match=r"2 copies of MGrounding-630k.json .*pass --path to one"):
        list(read_mgrounding(tmp_path))


def test_cli_builds_the_hub_layout_from_any_of_the_three_paths(tmp_path, capsys):
    from builders.store import Store
    from polyground.cli import main

    for k, path in enumerate((MERGED, HUB, ROOT)):
        store = tmp_path / f"s{k}"
        code = main(["--store", str(store), "build", "tasks", "--source", "mgrounding", "--path", str(path),
                     "--name", "mg", "--quiet"])
        assert code == 0, capsys.readouterr().err
        version = Store(store).resolve("mg")
        dropped = version.manifest["counts"]["dropped_by_reason"]
        assert version.manifest["counts"]["rows"] == 10 and dropped == {"text_answer": 1}
        sets = {r["id"]: r["targets"] for r in version.table().to_pylist() if r["targets"] is not None}
        assert sets == {"common_000285-r0": [{"image": 0, "box": pytest.approx([0.01, 0.02, 0.3, 0.4])},
                                             {"image": 2, "box": pytest.approx([0.05, 0.06, 0.7, 0.8])}]}
        sizes = {(i["width"], i["height"]) for row in version.table().to_pylist() for i in row["images"]}
        assert sizes == {(40, 24), (30, 50)}


def test_per_task_files_resolve_either_path_layout(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(ROOT, data)
    (data / "MGrounding-630k" / "MGrounding-630k.json").unlink()
    items, rejects = split(read_mgrounding(data))
    assert reasons(rejects) == {"reg_5229016_8929009-r0": "text_answer"}
    assert [it.id for it in items] == [  # sorted files: Common_Object, then Group_Grounding
        "common_000139-r0", "common_000285-r0", f"{GG}-r0", f"{GG}-r1"]
    assert all(p.is_file() for it in items for p in it.images)
    # paths relative to its own folder vs. relative to the data root
    assert items[0].images[0].parent == data / "MGrounding-630k/Common_Object/COCO"
    assert items[2].images[0].parent == data / "MGrounding-630k/Group_Grounding/SA-1B"
    assert items[2].meta["source_file"] == "MGrounding-630k/Group_Grounding/gg_train_120k.json"


def test_a_per_task_folder_below_the_data_root_reads_its_images_above(tmp_path):
    """--path MGrounding-630k/Group_Grounding: its paths start two folders up, which are read."""
    folder = HUB / "Group_Grounding"
    items, rejects = split(read_mgrounding(folder))
    assert [it.id for it in items] == [f"{GG}-r0", f"{GG}-r1"]
    assert items[0].images[0] == ROOT / "./MGrounding-630k/Group_Grounding/SA-1B/sa_5229016.png"
    assert all(p.is_file() for it in items for p in it.images)


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
    ("no_target_image", "bad-r0", _answer("A dog on the left. <|box_start|>(1,2),(3,4)<|box_end|>")),
    ("text_answer", "bad-r0", _answer("It's in the first image, near the door.")),
    ("no_target_image", "bad-r0", _answer("A dog. <|box_start|>(1,2),(3,4)<|box_end|> and another "
                                          "<|box_start|>(5,6),(7,8)<|box_end|>")),  # several boxes, no image named
    ("target_out_of_range", "bad-r0", _answer("It's in the first image. <|box_start|>(1,2),(3,4)<|box_end|> "
                                              "It's in the ninth image. <|box_start|>(5,6),(7,8)<|box_end|>")),
    ("invalid_box:inverted", "bad-r0", _answer("It's in the first image. <|box_start|>(1,2),(3,4)<|box_end|> "
                                               "<|box_start|>(500,6),(7,8)<|box_end|>")),
    ("unparsable_answer", "bad-r0", _answer("It's in the first image. <|box_start|>(1,2),(3,4)")),
    ("unparsable_answer", "bad-r0", _answer("It's in the first image. (1,2),(3,4)")),
    ("target_out_of_range", "bad-r0", _conv("bad", rounds=(("Locate it in the third image.", "<|box_start|>"
                                                            "(1,2),(3,4)<|box_end|>"),))),
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


SEVERAL = [  # answer text -> target pairs (0-1000 grid), in the released wording
    ("It's in the first image. <|box_start|>(1,2),(3,4)<|box_end|> It's in the second image. "
     "<|box_start|>(5,6),(7,8)<|box_end|>", [(0, [1, 2, 3, 4]), (1, [5, 6, 7, 8])]),
    ("It's in the second image. <|box_start|>(1,2),(3,4)<|box_end|><|box_start|>(5,6),(7,8)<|box_end|>",
     [(1, [1, 2, 3, 4]), (1, [5, 6, 7, 8])]),  # two on one image: the later box keeps the image
    ("<|box_start|>(1,2),(3,4)<|box_end|> It's in the first image. <|box_start|>(5,6),(7,8)<|box_end|>",
     [(1, [1, 2, 3, 4]), (0, [5, 6, 7, 8])]),  # the first box takes the question's image
]


@pytest.mark.parametrize("answer, pairs", SEVERAL)
def test_several_boxes_are_a_target_set(tmp_path, answer, pairs):
    record = _conv("m", rounds=(("Find every dog; start in the second image.", answer),))
    write_json(tmp_path / "train.json", [record])
    items, rejects = split(read_mgrounding(tmp_path / "train.json"))
    assert not rejects and items[0].target_box is None
    assert items[0].targets == [(i, pytest.approx([v / 1000 for v in b])) for i, b in pairs]


def test_one_bad_round_keeps_the_others(tmp_path):
    rounds = (("Where is the cat?", "It's in the first image. <|box_start|>(1,2),(30,40)<|box_end|>"),
              ("And the dog?", "I cannot see one."),
              ("And the bird?", "It's in the last image. <|box_start|>(5,6),(70,80)<|box_end|>"))
    write_json(tmp_path / "a.json", [_conv("m", n=3, rounds=rounds)])
    items, rejects = split(read_mgrounding(tmp_path / "a.json"))
    assert [(it.id, it.target_image) for it in items] == [("m-r0", 0), ("m-r2", 2)]
    assert reasons(rejects) == {"m-r1": "text_answer"}


@pytest.mark.parametrize("question, target, where", [
    ("Find it and locate it in the second image.", 1, "question"),
    ("For the object in the first image, please locate it in the 3th image.", 2, "question"),
    ("Which region of picture 2 shows the dog?", 1, "question"),  # one image mentioned, no directive
    ("Compare image 1 and image 3: where is the dog?", None, None),  # two mentioned: not guessed
])
def test_a_bare_box_takes_its_image_from_the_question(tmp_path, question, target, where):
    rec = _conv("b", n=3, rounds=((question, "<|box_start|>(100,200),(300,400)<|box_end|>"),))
    write_json(tmp_path / "t.json", [rec])
    items, rejects = split(read_mgrounding(tmp_path / "t.json"))
    if target is None:
        assert items == [] and reasons(rejects) == {"b-r0": "no_target_image"}
    else:
        assert [(it.target_image, it.meta["target_from"]) for it in items] == [(target, where)]


def test_a_reused_id_keeps_both_conversations_and_an_exact_repeat_is_a_duplicate(tmp_path, store):
    from builders.sources.ingest import ingest

    a = _conv("same")
    b = _conv("same", rounds=(("Where is the cat?", "It's in the first image. "
                                                  "<|box_start|>(10,20),(30,40)<|box_end|>"),))
    for i in range(2):
        write_png(tmp_path / "img" / f"{i}.png")
    write_json(tmp_path / "t.json", [a, b, a, b])
    items = list(read_mgrounding(tmp_path / "t.json"))
    derived = items[1].id
    assert [it.id for it in items] == ["same-r0", derived, "same-r0", derived] and derived.startswith("same~")
    records, rejects = ingest(items, store, progress=False, root=tmp_path)
    assert [r["id"] for r in records] == ["same-r0", derived]
    assert [(r["id"], r["reason"]) for r in rejects] == [("same-r0", "duplicate_id"), (derived, "duplicate_id")]


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
