"""Hostile rows: each is quarantined with a named reason and the build goes on.

One table per reader that takes rows from a user's file (JSONL, MGrounding,
MIG-Bench): the row, and the reason ingest must store for it. Each case sits
in a file beside one good row, which must still be kept. The CLI runs once
over every JSONL case in one file, as a user would: exit 0, no
`internal error`, every reason counted.
"""
from __future__ import annotations

import json
import os
from collections import Counter

import pytest
from sources_util import tiny_png

from builders.sources.ingest import MAX_IMAGES_PER_ROW, ingest
from builders.sources.jsonl import read_jsonl
from builders.sources.mgrounding import read_mgrounding
from builders.sources.migbench import read_migbench
from polyground.cli import main
from schemas.errors import UserError

BIG = "1" + "0" * 400  # a 400-digit integer: no float holds it
HUGE = "1" + "0" * 5000  # past Python's 4300-digit int parsing limit
DEEP = "[" * 100_000 + "]" * 100_000  # past the JSON parser's recursion limit
LONG = "x" * 300 + ".png"  # a file name longer than NAME_MAX (255)


def prepare(folder):
    """a.png, b.png, a folder named sub, and loop.png: a symlink to itself."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.png").write_bytes(tiny_png("a"))
    (folder / "b.png").write_bytes(tiny_png("b"))
    (folder / "sub").mkdir(exist_ok=True)
    if not (folder / "loop.png").is_symlink():
        os.symlink("loop.png", folder / "loop.png")


def outcome(items, store, root) -> tuple[list[str], dict]:
    records, rejects = ingest(items, store, progress=False, root=root)
    return [r["id"] for r in records], {r["id"]: r["reason"] for r in rejects}


# ---- JSONL ------------------------------------------------------------------
GOOD = {"id": "good", "images": ["a.png", "b.png"], "question": "where?", "target_image": 1,
        "box": [0.1, 0.1, 0.5, 0.5]}
MC = {"images": ["a.png", "b.png"], "question": "which?", "choices": ["a", "b"], "answer": "A"}


def line(case: str, **over) -> str:
    return json.dumps({**GOOD, "id": case, **over})


def raw(case: str, fields: str) -> str:
    """A line written by hand (what json.dumps cannot write: huge numbers, lone surrogates)."""
    return '{"id": "%s", "question": "where?", %s}' % (case, fields)


IMGS = '"images": ["a.png", "b.png"], "target_image": 0'
# (case, the line, the id its reject carries, the reason)
JSONL_CASES = [
    ("symlink_loop", line("symlink_loop", images=["loop.png", "a.png"]), None, "invalid_path"),
    ("nul_in_path", line("nul_in_path", images=["a\0.png", "a.png"]), None, "invalid_path"),
    ("name_300_chars", line("name_300_chars", images=[LONG, "a.png"]), None, "invalid_path"),
    ("image_is_a_folder", line("image_is_a_folder", images=["sub", "a.png"]), None, "missing_image"),
    ("path_escapes", line("path_escapes", images=["../../etc/passwd", "a.png"]), None, "path_escapes_root"),
    ("digits_400_norm1", raw("digits_400_norm1", f'{IMGS}, "box": [0.1, 0.1, 0.5, {BIG}]'), None,
     "invalid_box:out_of_range"),
    ("digits_400_norm1000", raw("digits_400_norm1000", f'{IMGS}, "box_frame": "norm1000", "box": [1, 1, 5, {BIG}]'),
     None, "invalid_box:out_of_range"),
    ("digits_400_pixel", raw("digits_400_pixel", f'{IMGS}, "box_frame": "pixel", "box": [1, 1, 5, {BIG}]'), None,
     "invalid_box:out_of_range"),
    ("digits_5000", raw("digits_5000", f'{IMGS}, "box": [0.1, 0.1, 0.5, {HUGE}]'), "line-2", "malformed_json"),
    ("nan_box", raw("nan_box", f'{IMGS}, "box": [NaN, 0.1, 0.5, 0.5]'), None, "invalid_box:nan"),
    ("infinite_box", raw("infinite_box", f'{IMGS}, "box": [0.1, 0.1, Infinity, 0.5]'), None, "invalid_box:nan"),
    ("box_of_strings", line("box_of_strings", box=["a", "b", "c", "d"]), None, "invalid_box:not_four_numbers"),
    ("nested_100000", raw("nested_100000", f'{IMGS}, "extra": {DEEP}'), "line-2", "malformed_json"),
    ("surrogate_question", raw("surrogate_question", f'{IMGS}, "box": [0.1, 0.1, 0.5, 0.5]').replace(
        'where?', 'where\\ud800?'), None, "invalid_text"),
    ("surrogate_id", raw("surrogate_id\\udc00", f'{IMGS}, "box": [0.1, 0.1, 0.5, 0.5]'), "surrogate_id\\udc00",
     "invalid_text"),
    ("surrogate_in_meta_key", raw("surrogate_in_meta_key", f'{IMGS}, "box": [0.1, 0.1, 0.5, 0.5], "\\ud800": 1'),
     None, "invalid_text"),
    ("surrogate_in_path", raw("surrogate_in_path", '"images": ["\\ud800.png", "b.png"], "target_image": 1, '
                                                   '"box": [0.1, 0.1, 0.5, 0.5]'), None, "invalid_text"),
    ("target_image_1e12", line("target_image_1e12", target_image=10**12), None, "target_out_of_range"),
    ("target_image_1e12_mc", json.dumps({"id": "target_image_1e12_mc", **MC, "target_image": 10**12}), None,
     "target_out_of_range"),
    ("target_image_true", line("target_image_true", target_image=True), None, "malformed_record"),
    ("equivalent_true", line("equivalent_true", equivalent_images=[True]), None, "malformed_record"),
    ("equivalent_int", line("equivalent_int", equivalent_images=1), None, "malformed_record"),
    ("equivalent_1e12", line("equivalent_1e12", equivalent_images=[10**12]), None, "target_out_of_range"),
    ("equivalent_1e12_mc", json.dumps({"id": "equivalent_1e12_mc", **MC, "equivalent_images": [10**12]}), None,
     "target_out_of_range"),
    ("images_200000", line("images_200000", images=["a.png"] * 200_000), None, "too_many_images"),
    ("images_65", line("images_65", images=["a.png"] * (MAX_IMAGES_PER_ROW + 1)), None, "too_many_images"),
    ("task_type_number", line("task_type_number", task_type=5), None, "invalid_row:task_type"),
    ("not_an_object", "[1, 2, 3]", "line-2", "malformed_json"),
]


def jsonl_file(folder, lines: list[str]):
    prepare(folder)
    path = folder / "rows.jsonl"
    path.write_text("\n".join([json.dumps(GOOD), *lines]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("case, text, rid, reason", JSONL_CASES, ids=[c[0] for c in JSONL_CASES])
def test_jsonl_hostile_row_is_quarantined_by_name(store, tmp_path, case, text, rid, reason):
    path = jsonl_file(tmp_path / "src", [text])
    kept, rejected = outcome(read_jsonl(path), store, tmp_path / "src")
    assert kept == ["good"]
    assert rejected == {rid or case: reason}


def test_64_images_are_kept(store, tmp_path):
    path = jsonl_file(tmp_path / "src", [line("many", images=["a.png", "b.png"] * (MAX_IMAGES_PER_ROW // 2))])
    kept, rejected = outcome(read_jsonl(path), store, tmp_path / "src")
    assert kept == ["good", "many"] and rejected == {}


def test_the_cli_over_every_hostile_row(tmp_path, capsys):
    """One file holding every case: one build, exit 0, each reason counted, no internal error."""
    path = jsonl_file(tmp_path / "src", [text for _, text, _, _ in JSONL_CASES])
    store = tmp_path / "store"
    code = main(["--store", str(store), "build", "tasks", "--source", "jsonl", "--path", str(path),
                 "--name", "hostile", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "internal error" not in err and "Traceback" not in err
    from builders.store import Store

    version = Store(store).resolve(out.strip().splitlines()[-1])
    assert version.table().column("id").to_pylist() == ["good"]
    rejects = version.rejects().to_pylist()
    # the line ids differ in one file (line-N), the reasons do not
    assert Counter(r["reason"] for r in rejects) == Counter(reason for _, _, _, reason in JSONL_CASES)
    assert Store(store).verify(version) == []


def test_the_limit_is_configurable(tmp_path, capsys):
    path = jsonl_file(tmp_path / "src", [line("three", images=["a.png", "b.png", "a.png"])])
    store = str(tmp_path / "store")
    args = ["--store", store, "build", "tasks", "--source", "jsonl", "--path", str(path), "--name", "n", "--quiet"]
    assert main(args + ["--max-images-per-row", "2"]) == 0
    assert "dropped 1 (too_many_images: 1)" in capsys.readouterr().err
    assert main(args + ["--max-images-per-row", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --max-images-per-row must be a positive integer")


def test_a_relative_path_is_read_from_the_jsonl_folder(tmp_path, monkeypatch, capsys):
    """`--path d/rows.jsonl` reads d/a.png, not d/d/a.png (even where d/d/a.png exists)."""
    prepare(tmp_path / "d")
    (tmp_path / "d" / "rows.jsonl").write_text(json.dumps(GOOD) + "\n")
    (tmp_path / "d" / "d").mkdir()
    (tmp_path / "d" / "d" / "a.png").write_bytes(tiny_png("the wrong image"))
    monkeypatch.chdir(tmp_path)
    assert main(["--store", "store", "build", "tasks", "--source", "jsonl", "--path", "d/rows.jsonl",
                 "--name", "rel", "--quiet"]) == 0
    from builders.sources.images import sha256_file
    from builders.store import Store

    version = Store(tmp_path / "store").resolve(capsys.readouterr().out.strip())
    stored = version.table().to_pylist()[0]["images"][0]["sha256"]
    assert stored == sha256_file(tmp_path / "d" / "a.png")


# ---- MGrounding ------------------------------------------------------------
def conversation(cid: str, images=("a.png", "b.png"), question=None, answer=None) -> dict:
    tags = "<image>" * len(images)
    return {"id": cid, "images": list(images), "type": "common", "conversations": [
        {"from": "human", "value": f"{tags}{question or 'Find the red object.'}"},
        {"from": "gpt", "value": answer or "It's in the second image. <|box_start|>(100,100),(500,500)<|box_end|>"}]}


# (case, the record as JSON text, the id its reject carries, the reason)
MG_CASES = [
    ("symlink_loop", json.dumps(conversation("symlink_loop", ["loop.png", "a.png"])), "symlink_loop-r0",
     "invalid_path"),
    ("nul_in_path", json.dumps(conversation("nul_in_path", ["a\0.png", "a.png"])), "nul_in_path-r0", "invalid_path"),
    ("name_300_chars", json.dumps(conversation("name_300_chars", [LONG, "a.png"])), "name_300_chars-r0",
     "invalid_path"),
    ("digits_400", json.dumps(conversation("digits_400", answer=f"It's in the second image. <|box_start|>(1,1),"
                                                                f"(5,{BIG})<|box_end|>")), "digits_400-r0",
     "invalid_box:not_4_numbers"),
    ("nested_100000", json.dumps(conversation("nested_100000"))[:-1] + f', "extra": {DEEP}}}', "rows-1",
     "malformed_json"),
    ("digits_5000", json.dumps(conversation("digits_5000"))[:-1] + f', "extra": {HUGE}}}', "rows-1", "malformed_json"),
    ("surrogate_question", json.dumps(conversation("surrogate_question")).replace("red object", "red \\ud800"),
     "surrogate_question-r0", "invalid_text"),
    ("images_200000", json.dumps(conversation("images_200000", ["a.png"] * 200_000)), "images_200000-r0",
     "too_many_images"),
]


@pytest.mark.parametrize("case, text, rid, reason", MG_CASES, ids=[c[0] for c in MG_CASES])
def test_mgrounding_hostile_row_is_quarantined_by_name(store, tmp_path, case, text, rid, reason):
    prepare(tmp_path / "src")
    path = tmp_path / "src" / "rows.json"
    path.write_text(f"[{json.dumps(conversation('good'))}, {text}, {json.dumps(conversation('after'))}]")
    kept, rejected = outcome(read_mgrounding(path), store, tmp_path / "src")
    assert kept == ["good-r0", "after-r0"]  # the rows after a bad one are read too
    assert rejected == {rid: reason}


# ---- MIG-Bench -------------------------------------------------------------
def mig_item(images=("./a.png", "./b.png"), question="Locate this object in the 2th image.", answer="[0.1, 0.1, 0.5, 0.5]"):
    return '{"task": "common", "images": %s, "question": %s, "answer": %s, "additional_info": ""}' % (
        json.dumps(list(images)), json.dumps(question), answer)


MIG_CASES = [  # ids are mig-<task>-<position>: the hostile item is the second
    ("symlink_loop", mig_item(["./loop.png", "./a.png"]), "invalid_path"),
    ("nul_in_path", mig_item(["./a\0.png", "./a.png"]), "invalid_path"),
    ("name_300_chars", mig_item([LONG, "./a.png"]), "invalid_path"),
    ("digits_400", mig_item(answer=f"[0.1, 0.1, 0.5, {BIG}]"), "invalid_box:out_of_range"),
    ("nan", mig_item(answer="[0.1, NaN, 0.5, 0.5]"), "invalid_box:not_4_numbers"),
    ("surrogate_question", mig_item(question="Locate this \ud800 in the 2th image.").replace(
        "\\ud800", "\\ud800"), "invalid_text"),
    ("target_image_1e12", mig_item(question="Locate this object in the 1000000000000th image."),
     "image_count_mismatch"),
    ("images_200000", mig_item(["./a.png"] * 200_000, question="Locate this object in the 1th image."),
     "too_many_images"),
]


@pytest.mark.parametrize("case, text, reason", MIG_CASES, ids=[c[0] for c in MIG_CASES])
def test_migbench_hostile_item_is_quarantined_by_name(store, tmp_path, case, text, reason):
    prepare(tmp_path / "src")
    (tmp_path / "src" / "MIG_data.json").write_text(f"[{mig_item()}, {text}, {mig_item()}]")
    kept, rejected = outcome(read_migbench(tmp_path / "src"), store, tmp_path / "src")
    assert kept == ["mig-common-0000", "mig-common-0002"]
    assert rejected == {"mig-common-0001": reason}


@pytest.mark.parametrize("content", [f"[{mig_item()}, {DEEP}]", f"[{mig_item(answer=HUGE)}]"])
def test_migbench_file_the_parser_cannot_take_is_one_line(tmp_path, content, capsys):
    """MIG-Bench is one JSON document: a part the parser cannot take refuses the file, by name."""
    prepare(tmp_path / "src")
    (tmp_path / "src" / "MIG_data.json").write_text(content)
    with pytest.raises(UserError, match="MIG_data.json is not valid JSON"):
        list(read_migbench(tmp_path / "src"))
    assert main(["--store", str(tmp_path / "store"), "build", "bench", "--source", "mig-bench",
                 "--path", str(tmp_path / "src"), "--name", "b", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: mig-bench:") and "MIG_data.json" in err and err.count("\n") == 1
