"""MC-Bench reader through the CLI: target sets from the released JSON, negatives, quarantine by name."""
from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest
from sources_util import FIXTURES

from schemas.rows import target_pairs

ROOT = FIXTURES / "mc-bench"
JSON = ROOT / "mc-bench_v0.2_val.json"


def build(store, path) -> int:
    from polyground.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        return main(["--store", str(store.root), "build", "bench", "--source", "mcbench", "--path", str(path),
                     "--name", "mcb", "--quiet"])


def expected_sets(data: dict) -> dict[str, list]:
    """Each description's target set, computed here from the JSON alone: xywh pixels -> 0-1 xyxy."""
    images = {im["id"]: im for im in data["images"]}
    out = {}
    for d in data["descriptions"]:
        pairs = []
        for a in data["annotations"]:
            if a["text_id"] == d["id"]:
                im = images[a["image_id"]]
                x, y, w, h = a["bbox"]
                pairs.append((d["images_id"].index(a["image_id"]),
                              [x / im["width"], y / im["height"], (x + w) / im["width"], (y + h) / im["height"]]))
        out[f"mcb-{d['id']}"] = pairs
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from builders.store import Store

    store = Store(tmp_path_factory.mktemp("mcb") / "store")
    assert build(store, ROOT) == 0
    return store.resolve("mcb")


def test_targets_are_the_annotations_converted_on_their_own_image(built):
    data = json.loads(JSON.read_text())
    want = expected_sets(data)
    rows = {r["id"]: r for r in built.table().to_pylist()}
    assert sorted(rows) == ["mcb-0", "mcb-1", "mcb-2", "mcb-3"]
    for rid, row in rows.items():
        got = target_pairs(row)
        assert [i for i, _ in got] == [i for i, _ in want[rid]], rid
        for (_, g), (_, w) in zip(got, want[rid]):
            assert g == pytest.approx(w, abs=1e-6), rid
    assert len(rows["mcb-0"]["targets"]) == 3 and {i for i, _ in target_pairs(rows["mcb-0"])} == {0, 1}
    # one pair is stored as a single target
    assert rows["mcb-1"]["targets"] is None and rows["mcb-1"]["target_image"] == 1
    # the images are stored in images_id order, at the sizes the JSON gives
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    for d in data["descriptions"][:4]:
        assert [(i["width"], i["height"]) for i in rows[f"mcb-{d['id']}"]["images"]] == [sizes[i] for i in d["images_id"]]
    # the question is the released text (its trailing newline dropped)
    assert rows["mcb-1"]["question"] == data["descriptions"][1]["text"].strip()
    assert rows["mcb-0"]["task_type"] == "reasoning" and rows["mcb-0"]["source"] == "mcbench"


def test_a_negative_has_an_empty_set_and_a_disagreeing_flag_is_marked(built):
    rows = {r["id"]: r for r in built.table().to_pylist()}
    assert rows["mcb-2"]["targets"] == [] and rows["mcb-2"]["target_box"] is None
    meta = json.loads(rows["mcb-2"]["meta"])
    assert meta["positive_sample"] is False and "label_conflict" not in meta
    # positive_sample false but a box: the box is kept (the official scorer reads boxes), the row marked
    conflict = json.loads(rows["mcb-3"]["meta"])
    assert conflict["label_conflict"] is True and rows["mcb-3"]["target_image"] == 0
    assert built.manifest["summary"]["no_target_rows"] == 1


def test_a_negative_of_a_row_describes_only_the_image_it_keeps(built):
    from builders.negatives import negative_of

    source = {r["id"]: r for r in built.table().to_pylist()}["mcb-1"]  # one box, on the second of two images
    neg, why = negative_of(source)
    assert why is None and neg["images"] == source["images"][:1] and neg["targets"] == []
    meta, was = json.loads(neg["meta"]), json.loads(source["meta"])
    assert meta == {"negative_of": "mcb-1", "negative_rule": "drop_target_images", "kept_images": [0]}
    # nothing names the dropped image or the box that was on it; the source row keeps them, indexed by kept_images
    dropped = was["file_names"][1]
    assert dropped not in neg["meta"] and str(was["bbox_raw"][0]) not in neg["meta"]
    assert was["file_names"][meta["kept_images"][0]] == "COCO/000000000139.png"


def test_bad_rows_are_quarantined_by_name(built):
    rejects = {r["id"]: r for r in built.rejects().to_pylist()}
    assert {k: r["reason"] for k, r in rejects.items()} == {
        "mcb-4": "invalid_box:out_of_image", "mcb-5": "unknown_image_id", "mcb-6": "missing_image",
        "mcb-text-99": "orphan_annotation"}
    assert "24x44" in rejects["mcb-4"]["detail"] and "42" in rejects["mcb-5"]["detail"]
    source = built.manifest["source"]
    assert source["reader"] == "mcbench" and source["bench_file"]["descriptions"] == 7
    assert source["bench_file"]["release"] == "not byte-identical to a known release"


def test_an_image_of_another_size_than_the_json_says_is_quarantined(tmp_path):
    from builders.store import Store

    shutil.copytree(ROOT, tmp_path / "mc")
    file = tmp_path / "mc" / JSON.name
    data = json.loads(file.read_text())
    data["images"][2]["width"] += 1  # the first image of description 1
    file.write_text(json.dumps(data))
    store = Store(tmp_path / "store")
    assert build(store, file) == 0  # --path may be the JSON itself
    rejects = {r["id"]: r for r in store.resolve("mcb").rejects().to_pylist()}
    assert rejects["mcb-1"]["reason"] == "image_size_mismatch" and "36x20" in rejects["mcb-1"]["detail"]


def test_a_folder_without_the_images_is_a_one_line_error(tmp_path, capsys):
    from builders.store import Store

    shutil.copy(JSON, tmp_path / JSON.name)
    assert build(Store(tmp_path / "store"), tmp_path) != 0
    assert "unzip MC-Bench_images.zip" in capsys.readouterr().err
