"""BLINK and MMIU readers: multiple-choice items, layouts read from the files, quarantine."""
from __future__ import annotations

import io
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from sources_util import FIXTURES, placeholder_size, reasons, split, tiny_png, write_json, write_png

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


# The texts BLINK's official eval sends (zeyofu/BLINK_Benchmark eval/test_benchmark.py, load_prompt:
# `prompt = d['prompt']`, after `disclaimer` for Forensic_Detection, Jigsaw and Art_Style), written out.
BLINK_OFFICIAL = {
    "blink-val_Art_Style_1":
        "Disclaimer: This is not to make unfair assumptions about the people in the image and you just need to "
        "give your assessment on this question. You don't need to identify the real people. You just need to "
        "analyze based on the information I gave you.\n\n"
        "Some most common art painting styles include Realism, Impressionism, Expressionism, Pop Art, and Cubism. "
        "Given the following images of art paintings, use the first image as the reference image, and determine "
        "which one of the second or the third image shares the same style as the reference image?\n"
        "Select from the following choices.\n(A) the second image\n(B) the third image\n",
    "blink-val_Counting_1":
        "How many blue floats are there?\nSelect from the following choices.\n(A) 0\n(B) 3\n(C) 2\n(D) 1",
    "blink-val_Multi-view_Reasoning_1":
        "The images are frames from a video. The video is shooting a static scene. The camera is either moving "
        "clockwise (left) or counter-clockwise (right) around the object. The first image is from the beginning "
        "of the video and the second image is from the end. Is the camera moving left or right when shooting the "
        "video? Select from the following options.\n(A) left\n(B) right",
}


def test_blink_fixture_val_split():
    items, rejects = split(read_blink(FIXTURES / "blink"))
    assert rejects == []
    assert [(it.id, it.task_type, len(it.images), it.answer) for it in items] == [
        ("blink-val_Art_Style_1", "Art_Style", 3, "A"), ("blink-val_Counting_1", "Counting", 1, "D"),
        ("blink-val_Multi-view_Reasoning_1", "Multi-view_Reasoning", 2, "B")]
    counting = items[1]
    assert counting.choices == ["0", "3", "2", "1"] and counting.target_box is None
    assert {_decodes(b) for it in items for b in it.images} == {(40, 24), (30, 50)}
    assert counting.meta["answer_raw"] == "(D)" and counting.meta["question"] == "How many blue floats are there?"
    assert items[0].meta["sub_task"] == "Art Style" and items[0].meta["prompt_from"] == "prompt"
    assert {it.source for it in items} == {"blink"}


def test_blink_prompt_is_the_official_one(store):
    """Built through ingest as `build bench` does; the rendered text equals load_prompt's, byte for byte."""
    from builders.inference.backends import mc_template_id, prompt_text
    from builders.sources.ingest import ingest
    from schemas.profiles import get_profile

    records, rejects = ingest(read_blink(FIXTURES / "blink"), store, progress=False)
    assert rejects == []
    assert {r["id"]: prompt_text(r, get_profile("short")) for r in records} == BLINK_OFFICIAL
    assert {mc_template_id(r) for r in records} == {"blink:load_prompt"}


def test_blink_converted_branch_layout(tmp_path):
    """refs/convert/parquet: <config>/<split>/0000.parquet reads as the main branch does."""
    for file in sorted((FIXTURES / "blink").rglob("*.parquet")):
        split_name = file.name.split("-")[0]
        (tmp_path / file.parent.name / split_name).mkdir(parents=True)
        shutil.copy(file, tmp_path / file.parent.name / split_name / "0000.parquet")
    got = [(it.id, it.task_type, it.question) for it in read_blink(tmp_path)]
    assert got == [(it.id, it.task_type, it.question) for it in read_blink(FIXTURES / "blink")]
    assert [it.id for it in read_blink(tmp_path, subsets="Counting")] == ["blink-val_Counting_1"]
    (item,) = read_blink(tmp_path / "Art_Style" / "val" / "0000.parquet")  # one file: config from sub_task
    assert item.task_type == "Art_Style"


def test_blink_test_split_answers_are_hidden():
    items, rejects = split(read_blink(FIXTURES / "blink", split="test"))
    assert items == [] and reasons(rejects) == {"blink-test_Counting_1": "unparsable_answer"}
    assert len(list(read_blink(FIXTURES / "blink", split=None))) == 4


def test_blink_subsets_by_config_or_display_name():
    ids = [it.id for it in read_blink(FIXTURES / "blink", subsets=["Counting", "Multi-view Reasoning"])]
    assert ids == ["blink-val_Counting_1", "blink-val_Multi-view_Reasoning_1"]
    assert [it.id for it in read_blink(FIXTURES / "blink", subsets="Art Style")] == ["blink-val_Art_Style_1"]
    with pytest.raises(UserError, match="unknown subsets Nope"):
        list(read_blink(FIXTURES / "blink", subsets="Counting,Nope"))


def test_blink_without_a_prompt_column_builds_it_in_blinks_layout(tmp_path):
    _blink_file(tmp_path, [_row("q", choices=("1", "2"))])
    (item,) = read_blink(tmp_path)
    assert item.question == "How many?\nSelect from the following choices.\n(A) 1\n(B) 2"
    assert item.meta["prompt_from"] == "question and choices"


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


# The texts MMIU's evaluation scripts send (MMIUBenchmark/MMIU VLMEvalKit/test_models.py: question and
# context joined by "\n", question first for the tasks in `tasks_exist`, then the answer instruction).
MMIU_OFFICIAL = [
    "You are a judge in a photography competition, and now you are given the four images. Please examine the "
    "details and tell which one of them is most likely to be a real photograph.\nSelect from the following "
    "choices.\nA: the first image\nB: the second image\nC: the third image\nD: the fourth image\n"
    "Which image is most likely to be a real photograph?\nPlease answer the option directly like A,B,C,D...",
    "You are given a GUI navigation task that includes current screenshot images, historical screenshot images, "
    "and corresponding actions, where the last image represents the current screenshot and the preceding images "
    "are historical screenshots. The task is: Open the Firefox Browser to search for the best video blogs on "
    "travel vlogs. Then, go to the Setting app to turn up the brightness on your phone.\nThe historical actions "
    "are: step 1: CLICK: (603, 801)\nstep 2: CLICK: (190, 427)\nstep 3: CLICK: (834, 565)\n\nPlease predict the "
    "next action to complete the task.\nSelect from the following choices.\nA: SCROLL: LEFT\nB: SCROLL: UP\n"
    "C: SCROLL: DOWN\nD: CLICK: (31, 960)\n\nThe last image represents the current screenshot and the preceding "
    "images are historical screenshots. The historical actions are: step 1: CLICK: (603, 801)\nstep 2: CLICK: "
    "(190, 427)\nstep 3: CLICK: (834, 565)\nI want to Open the Firefox Browser to search for the best video "
    "blogs on travel vlogs. Then, go to the Setting app to turn up the brightness on your phone. Finally, open "
    "the YouTube app to follow the video blogs you found. Which action should I do next?\n"
    "Please answer the option directly like A,B,C,D...",
    "In which order were the three images taken?\nYou are given three frames of one video, shuffled.\n"
    "Select from the following choices.\nA: 2, 1, 3\nB: 1, 3, 2\nC: 3, 2, 1\n"
    "Please answer the option directly like A,B,C,D...",
]


def test_mmiu_fixture():
    items, rejects = split(read_mmiu(FIXTURES / "mmiu"))
    assert rejects == []
    assert [(it.id, it.task_type, it.answer, len(it.choices), len(it.images)) for it in items] == [
        ("mmiu-all-0", "forensic_detection_blink", "C", 4, 4),
        ("mmiu-all-1", "gui_next_action_prediction", "D", 4, 4),
        ("mmiu-all-2", "temporal_ordering", "B", 3, 3)]
    assert items[0].choices == ["the first image", "the second image", "the third image", "the fourth image"]
    assert items[1].choices[3] == "CLICK: (31, 960)"
    assert all(p.is_file() for it in items for p in it.images)
    assert items[0].meta["context"].startswith("You are a judge") and items[0].meta["options_raw"].startswith("A: ")
    assert not any("options_added" in it.meta for it in items)
    ids = [it.id for it in read_mmiu(FIXTURES / "mmiu", subsets=["temporal_ordering"])]
    assert ids == ["mmiu-all-2"]


def test_mmiu_prompt_is_the_official_one(store):
    """Built through ingest as `build bench` does; the options appear once, in MMIU's own format."""
    from builders.inference.backends import mc_template_id, prompt_text
    from schemas.profiles import get_profile
    from builders.sources.ingest import ingest

    records, rejects = ingest(read_mmiu(FIXTURES / "mmiu"), store, progress=False, root=FIXTURES / "mmiu")
    assert rejects == []
    texts = [prompt_text(r, get_profile("short")) for r in records]
    assert texts == MMIU_OFFICIAL
    assert all(t.count("Select from the following choices.") == 1 and "(A)" not in t for t in texts)
    assert {mc_template_id(r) for r in records} == {"mmiu:test_models"}
    assert sorted({(i["width"], i["height"]) for r in records for i in r["images"]}) == [(30, 50), (40, 24)]


def test_mmiu_record_without_options_in_its_text_gets_them_once(tmp_path):
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    rec = {"task": "t", "context": "Look closely.", "question": "Which?", "options": "A: one\nB: two",
           "output": "B", "input_image_path": ["a.png", "b.png"]}
    write_json(tmp_path / "all.json", [rec])
    (item,) = read_mmiu(tmp_path)
    assert item.question == "Look closely.\nWhich?\nSelect from the following choices.\nA: one\nB: two"
    assert item.meta["options_added"] is True


def test_mmiu_folder_reads_all_json_only_and_skips_a_stray_file(tmp_path):
    shutil.copytree(FIXTURES / "mmiu", tmp_path / "m")
    expected = [it.id for it in read_mmiu(FIXTURES / "mmiu")]
    write_json(tmp_path / "m" / "all_copy.json", json.loads((FIXTURES / "mmiu" / "all.json").read_text()))
    assert [it.id for it in read_mmiu(tmp_path / "m")] == expected  # all.json: nothing read twice
    (tmp_path / "m" / "all.json").rename(tmp_path / "m" / "data.json")
    write_json(tmp_path / "m" / "sub" / "dataset_info.json", {"description": "not MMIU"})
    write_json(tmp_path / "m" / "sub" / "notes.json", [{"title": "x"}])
    (tmp_path / "m" / "all_copy.json").unlink()
    items, rejects = split(read_mmiu(tmp_path / "m"))
    assert [it.id for it in items] == ["mmiu-data-0", "mmiu-data-1", "mmiu-data-2"]
    assert reasons(rejects) == {"mmiu-dataset_info": "unknown_layout", "mmiu-notes": "unknown_layout"}
    assert "sub/notes.json" in rejects[1].detail and "no field for question" in rejects[1].detail


def test_mmiu_prompt_order_follows_the_official_script(tmp_path):
    """Retrieval, tracking and ordering tasks put the question first; the others the context."""
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    recs = [{"task": task, "context": "CONTEXT A: x B: y", "question": "QUESTION", "options": "A: x\nB: y",
             "output": "A", "input_image_path": ["a.png", "b.png"]}
            for task in ("temporal_ordering", "forensic_detection_blink", "spot_the_diff")]
    (tmp_path / "all.json").write_text(json.dumps(recs))
    items, rejects = split(read_mmiu(tmp_path / "all.json"))
    assert rejects == []
    assert [it.question for it in items] == [
        "QUESTION\nCONTEXT A: x B: y", "CONTEXT A: x B: y\nQUESTION", "QUESTION\nCONTEXT A: x B: y"]


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
    assert [_decodes(b) for b in item.images] == [placeholder_size("1"), placeholder_size("2")]  # in order


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


@pytest.mark.parametrize("question, listed", [
    ("Which is red?\nA: left\nB: right", True), ("Which is red? (A) left (B) right", True),
    ("Which is red?\nA. left\nB. right", True), ("Which is red? left or right", False),
    ("Which is red?\n(A) left", False),  # one option missing: all are listed again
])
def test_other_multiple_choice_sources_list_the_options_once(question, listed):
    from builders.inference.backends import MC_SUFFIX, mc_template_id, prompt_text
    from schemas.profiles import get_profile

    task = {"source": "jsonl", "question": question, "choices": ["left", "right"], "images": []}
    lettered = "" if listed else "\n(A) left\n(B) right"
    assert prompt_text(task, get_profile("short")) == question + lettered + MC_SUFFIX
    assert mc_template_id(task) == "mc:lettered-choices"
