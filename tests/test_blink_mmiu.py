"""BLINK and MMIU readers: multiple-choice items, layouts read from the files, quarantine."""
from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from sources_util import FIXTURES, reasons, split, tiny_png, write_json, write_png

from builders.sources.blink import answer_letter, read_blink, strip_letter
from builders.sources.mmiu import read_mmiu
from schemas.errors import UserError

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@pytest.mark.parametrize("choice, index, expected", [
    ("(A) a cat", 0, "a cat"), ("B. a dog", 1, "a dog"), ("C: two", 2, "two"), ("D) four", 3, "four"),
    ("A cat", 0, "A cat"), ("B. wrong letter", 0, "B. wrong letter"), ("  left ", 0, "left"),
])
def test_strip_letter(choice, index, expected):
    assert strip_letter(choice, index) == expected


@pytest.mark.parametrize("answer, expected", [
    ("(A)", "A"), ("B", "B"), ("C: blue", "C"), (" (D) ", "D"), ("(E)", None), ("", None),
    ("blue", "C"), ("maybe", None), (None, None), (2, None),
])
def test_answer_letter(answer, expected):
    assert answer_letter(answer, ["red", "green", "blue", "cyan"]) == expected


def _decodes(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_blink_fixture_val_split():
    items, rejects = split(read_blink(FIXTURES / "blink"))
    assert rejects == []
    assert [(it.id, it.task_type, len(it.images), it.answer) for it in items] == [
        ("blink-val_Art_Style_1", "Art_Style", 3, "B"), ("blink-val_Art_Style_2", "Art_Style", 3, "A"),
        ("blink-val_Counting_1", "Counting", 1, "D"),
        ("blink-val_Multi-view_Reasoning_1", "Multi-view_Reasoning", 2, "A")]
    counting = items[2]
    assert counting.choices == ["0", "3", "2", "1"] and counting.target_box is None
    assert all(isinstance(b, bytes) and _decodes(b) == (8, 8) for it in items for b in it.images)
    assert counting.meta["answer_raw"] == "(D)" and counting.meta["prompt"].startswith("How many")
    assert {it.source for it in items} == {"blink"}


def test_blink_test_split_answers_are_hidden():
    items, rejects = split(read_blink(FIXTURES / "blink", split="test"))
    assert items == [] and reasons(rejects) == {"blink-test_Counting_1": "unparsable_answer"}
    assert len(list(read_blink(FIXTURES / "blink", split=None))) == 5


def test_blink_subsets():
    ids = [it.id for it in read_blink(FIXTURES / "blink", subsets=["Counting", "Multi-view_Reasoning"])]
    assert ids == ["blink-val_Counting_1", "blink-val_Multi-view_Reasoning_1"]
    assert [it.id for it in read_blink(FIXTURES / "blink", subsets="Counting")] == ["blink-val_Counting_1"]
    with pytest.raises(UserError, match="unknown subsets Nope"):
        list(read_blink(FIXTURES / "blink", subsets="Counting,Nope"))


BLINK_SCHEMA = pa.schema([("idx", pa.string()), ("question", pa.string()), ("sub_task", pa.string()),
                          ("image_1", IMAGE), ("image_2", IMAGE), ("choices", pa.list_(pa.string())),
                          ("answer", pa.string())])


def _blink_file(tmp_path, rows, schema=BLINK_SCHEMA, name="Counting/val-00000-of-00001.parquet"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _row(idx="r", image_1=True, image_2=False, choices=("1", "2"), answer="(A)"):
    img = {"bytes": tiny_png(idx), "path": "x.png"}
    return {"idx": idx, "question": "How many?", "sub_task": "Counting", "image_1": img if image_1 else None,
            "image_2": img if image_2 else None, "choices": None if choices is None else list(choices),
            "answer": answer}


@pytest.mark.parametrize("row, reason", [
    (_row("bad", image_1=False, image_2=True), "missing_image"),
    (_row("bad", image_1=False), "missing_image"),
    (_row("bad", answer="(C)"), "unparsable_answer"),
    (_row("bad", answer="two"), "unparsable_answer"),
    (_row("bad", choices=None), "unparsable_choices"),
    (_row("bad", choices=["only one"]), "unparsable_choices"),
])
def test_blink_quarantine_reasons(tmp_path, row, reason):
    _blink_file(tmp_path, [_row("good", image_2=True), row])
    items, rejects = split(read_blink(tmp_path))
    assert [(it.id, len(it.images)) for it in items] == [("blink-good", 2)]
    assert reasons(rejects) == {"blink-bad": reason}
    assert "image_1" not in rejects[0].record and rejects[0].detail  # no image bytes in the rejects table


@pytest.mark.parametrize("drop", [("choices",), ("answer", "image_1")])
def test_blink_unknown_layout_names_the_missing_columns(tmp_path, drop):
    schema = pa.schema([f for f in BLINK_SCHEMA if f.name not in drop])
    _blink_file(tmp_path, [{k: v for k, v in _row().items() if k not in drop}], schema)
    with pytest.raises(UserError, match="missing columns " + ", ".join(drop)):
        list(read_blink(tmp_path))


def test_blink_image_column_of_an_unknown_type_is_a_user_error(tmp_path):
    schema = pa.schema([("question", pa.string()), ("image_1", pa.int64()),
                        ("choices", pa.list_(pa.string())), ("answer", pa.string())])
    _blink_file(tmp_path, [{"question": "q", "image_1": 3, "choices": ["a", "b"], "answer": "A"}], schema)
    with pytest.raises(UserError, match="image_1 is int64"):
        list(read_blink(tmp_path))


def test_blink_single_file_and_path_images(tmp_path):
    write_png(tmp_path / "imgs" / "a.png")
    row = dict(_row("p"), image_1={"bytes": None, "path": "imgs/a.png"})
    path = _blink_file(tmp_path, [row], name="one.parquet")
    (item,) = read_blink(path)
    assert item.images == [tmp_path / "imgs" / "a.png"] and item.task_type == "Counting"


def test_mmiu_fixture():
    items, rejects = split(read_mmiu(FIXTURES / "mmiu"))
    assert rejects == []
    assert [(it.id, it.task_type, it.answer, len(it.choices)) for it in items] == [
        ("mmiu-mmiu-0", "forensic_detection_blink", "C", 4),
        ("mmiu-mmiu-1", "image_captioning_with_spatial_context", "B", 2),
        ("mmiu-mmiu-2", "forensic_detection_blink", "A", 2)]
    first = items[0]
    assert first.choices[2] == "the third image"
    assert first.question == ("You are a judge in a photography competition.\n"
                              "Which image is most likely to be a real photograph?")
    assert items[1].question == "Which caption fits the two images?"
    assert all(p.is_file() for it in items for p in it.images)
    assert first.meta["context"] and first.meta["options_raw"].startswith("A: ")
    ids = [it.id for it in read_mmiu(FIXTURES / "mmiu", subsets=["forensic_detection_blink"])]
    assert ids == ["mmiu-mmiu-0", "mmiu-mmiu-2"]


def test_mmiu_prompt_order_follows_the_official_script(tmp_path):
    """Retrieval, tracking and ordering tasks put the question first; the others the context."""
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    recs = [{"task": task, "context": "CONTEXT", "question": "QUESTION", "options": "A: x\nB: y",
             "output": "A", "input_image_path": ["a.png", "b.png"]}
            for task in ("temporal_ordering", "forensic_detection_blink", "spot_the_diff")]
    (tmp_path / "all.json").write_text(json.dumps(recs))
    items, rejects = split(read_mmiu(tmp_path / "all.json"))
    assert rejects == []
    assert [it.question for it in items] == ["QUESTION\nCONTEXT", "CONTEXT\nQUESTION", "QUESTION\nCONTEXT"]


def test_mmiu_jsonl_with_other_field_names(tmp_path):
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    lines = [{"question_id": "q1", "task_name": "ordering", "query": "Which comes first?",
              "choices": ["(A) left", "(B) right"], "answer": "(B)", "image_paths": ["a.png", "b.png"]}]
    (tmp_path / "x.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    (item,) = read_mmiu(tmp_path / "x.jsonl")
    assert (item.id, item.task_type, item.choices, item.answer) == ("mmiu-q1", "ordering", ["left", "right"], "B")
    assert item.images == [tmp_path / "a.png", tmp_path / "b.png"]


def test_mmiu_parquet_with_embedded_images(tmp_path):
    schema = pa.schema([("task", pa.string()), ("question", pa.string()), ("options", pa.string()),
                        ("output", pa.string()), ("images", pa.list_(IMAGE))])
    rows = [{"task": "t", "question": "q?", "options": "A: x\nB: y\nC: z", "output": "C",
             "images": [{"bytes": tiny_png("1"), "path": None}, {"bytes": tiny_png("2"), "path": None}]}]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "m.parquet")
    (item,) = read_mmiu(tmp_path)
    assert item.answer == "C" and item.choices == ["x", "y", "z"]
    assert all(_decodes(b) == (8, 8) for b in item.images)


def _mmiu(**over):
    rec = {"task": "t", "question": "Which?", "options": "A: one\nB: two", "output": "A",
           "input_image_path": ["a.png", "b.png"]}
    return {**rec, **over}


@pytest.mark.parametrize("record, reason", [
    (_mmiu(output="E"), "unparsable_answer"),
    (_mmiu(output="maybe"), "unparsable_answer"),
    (_mmiu(options="one or two"), "unparsable_choices"),
    (_mmiu(options="A: only"), "unparsable_choices"),
    (_mmiu(input_image_path=[]), "missing_image"),
    (_mmiu(input_image_path=["a.png", None]), "missing_image"),
    ("not a record", "malformed_record"),
])
def test_mmiu_quarantine_reasons(tmp_path, record, reason):
    write_json(tmp_path / "m.json", [_mmiu(), record])
    items, rejects = split(read_mmiu(tmp_path / "m.json"))
    assert [it.id for it in items] == ["mmiu-m-0"]
    assert reasons(rejects) == {"mmiu-m-1": reason}


def test_mmiu_unknown_layout_names_the_missing_fields(tmp_path):
    write_json(tmp_path / "m.json", [{"prompt_text": "q", "opts": "A: x", "output": "A", "images": ["a.png"]}])
    with pytest.raises(UserError, match=r"no field for question \(.*\), options \(.*\); found"):
        list(read_mmiu(tmp_path))
    (tmp_path / "m.json").write_text("[{\"question\": ")
    with pytest.raises(UserError, match="not valid JSON"):
        list(read_mmiu(tmp_path))


@pytest.mark.parametrize("reader", [read_blink, read_mmiu])
def test_a_damaged_parquet_file_is_a_one_line_user_error(tmp_path, reader):
    (tmp_path / "val-0.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(UserError, match=r"val-0\.parquet is not a readable parquet file \(") as e:
        list(reader(tmp_path / "val-0.parquet"))
    assert "\n" not in str(e.value)
