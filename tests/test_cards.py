"""Data cards: one template per kind, Hub YAML that finds the shards, counts, lineage, plots.

Also holds the tiny version builders the preview and publish tests share
(`make_tasks`, `make_cot`, `make_rlpool`, `make_predictions`).
"""
from __future__ import annotations

import json
import re
from string import Template

import pytest
import yaml
from PIL import Image

from builders.publish import cards, plots
from conftest import png_bytes
from schemas import rows

COLOURS = [(200, 30, 30), (30, 30, 200), (30, 160, 60), (220, 200, 40)]


def task_records(store, n: int = 6) -> list[dict]:
    """n tasks over two real tiny PNGs each; every third is multiple choice."""
    recs = []
    for i in range(n):
        shas = [store.put_image(png_bytes(40 + 8 * j, 30, COLOURS[(i + j) % 4])) for j in range(2)]
        images = [{"sha256": h, "width": 40 + 8 * j, "height": 30} for j, h in enumerate(shas)]
        mc = i % 3 == 2
        recs.append({
            "id": f"t{i}", "source": "synthetic" if i % 2 else "own", "task_type": "mc" if mc else "locate",
            "images": images, "question": f"Where is the <red> object #{i}?",
            "target_image": None if mc else i % 2, "equivalent_images": [],
            "target_box": None if mc else [0.1, 0.2, 0.5 + 0.05 * i, 0.8],
            "choices": ["left", "right"] if mc else None, "answer": "B" if mc else None, "meta": "{}",
        })
    return recs


def make_tasks(store, name: str = "toy", n: int = 6, kind: str = "tasks", extra: dict | None = None):
    rejects = rows.to_table([{"id": "bad1", "reason": "missing_image", "detail": "a.png", "record": "{}"},
                             {"id": "bad2", "reason": "missing_image", "detail": "b.png", "record": "{}"},
                             {"id": "bad3", "reason": "invalid_box:empty", "detail": "", "record": "{}"}], "rejects")
    with store.writer(name, kind, config={"source": "synthetic", "n": n}) as w:
        w.write(rows.to_table(task_records(store, n), kind), rejects, extra or {})
    return w.version


def make_cot(store, tasks, name: str = "toy-cot"):
    recs = []
    for t in tasks.table().to_pylist():
        if t["target_box"] is None:
            continue
        img = t["target_image"] + 1
        recs.append({**t, "task_id": t["id"], "id": f"{t['id']}#0", "prompt": t["question"],
                     "completion": f"<think>The red one is in image {img}.</think><answer>image {img}: "
                                   f"(100,200),(600,800)</answer>",
                     "reasoning": "The red one.", "profile": "short", "pred_image": t["target_image"],
                     "pred_box": [0.1, 0.2, 0.6, 0.8], "format_ok": True, "image_correct": True, "iou": 0.75,
                     "generator_model": "teacher-x", "generator_kind": "annotations",
                     "sampling": json.dumps({"temperature": 0.7}), "template_id": "cot-v1", "sample_index": 0})
    usage = {"usage": {"requests": 4, "prompt_tokens": 1200, "completion_tokens": 300, "cost_usd": 0.0123}}
    with store.writer(name, "cot", inputs=[tasks], config={"teacher": "teacher-x"}) as w:
        w.write(rows.to_table(recs, "cot"), None, usage)
    return w.version


def make_rlpool(store, tasks, name: str = "toy-rl"):
    recs = [{**t, "k": 4, "pass_rate": 0.25 * (i % 4), "mean_iou": 0.3, "max_iou": 0.6,
             "difficulty": "hard" if i % 2 else "medium", "policy": "merged-sft"}
            for i, t in enumerate(tasks.table().to_pylist())]
    with store.writer(name, "rl-pool", inputs=[tasks], config={"k": 4}) as w:
        w.write(rows.to_table(recs, "rl-pool"), None, {})
    return w.version


def make_predictions(store, bench, name: str = "toy-pred"):
    recs = []
    for i, t in enumerate(bench.table().to_pylist()):
        grounding = t["target_box"] is not None
        recs.append({"id": t["id"], "task_type": t["task_type"], "completion": "<think>x</think><answer>?</answer>",
                     "profile": "short", "pred_image": 1 if grounding else None,
                     "pred_box": [0.3, 0.3, 0.9, 0.9] if grounding else None, "pred_choice": None if grounding else "B",
                     "format_ok": True, "image_correct": grounding and i % 2 == 1,
                     "iou": (0.6 if i % 2 else 0.0) if grounding else None, "official_iou": 0.6 if grounding else None,
                     "correct": None if grounding else True, "model": "tiny-sft"})
    with store.writer(name, "predictions", inputs=[bench], config={"model": "tiny-sft"}) as w:
        w.write(rows.to_table(recs, "predictions"), None, {})
    return w.version


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text[4:text.index("\n---", 4)])


def card_images(version) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (version.path / "README.md").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One version of each kind, built once for the module (cards cost ~0.5 s each)."""
    from builders.store import Store

    store = Store(tmp_path_factory.mktemp("cards") / "store")
    tasks = make_tasks(store)
    bench = make_tasks(store, name="toy-bench", n=4, kind="bench")
    return {"tasks": tasks, "bench": bench, "cot": make_cot(store, tasks), "rl-pool": make_rlpool(store, tasks),
            "predictions": make_predictions(store, bench)}


def test_every_template_uses_only_known_fields():
    table = rows.to_table([], "cot")
    known = set(cards.fields({"kind": "cot"}, table, []))
    for kind in rows.SCHEMAS:
        ids = set(Template((cards.TEMPLATES / f"{kind}.md").read_text()).get_identifiers())
        assert ids <= known, (kind, ids - known)
        assert {"lineage", "counts", "plots", "data_files", "license", "size_category"} <= ids, kind


@pytest.mark.parametrize("kind", ["tasks", "bench", "cot", "rl-pool", "predictions"])
def test_card_of_every_kind_has_hub_yaml_and_existing_plots(built, kind):
    v = built[kind]
    text = (v.path / "README.md").read_text()
    meta = front_matter(text)
    split = "test" if kind in ("bench", "predictions") else "train"
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": split, "path": f"data/{split}-*.parquet"}]}]
    assert meta["size_categories"] == ["n<1K"] and meta["license"] == "other"
    assert v.id in text and v.manifest["code_version"] in text
    expected = {"tasks": {"task_mix", "box_sizes"}, "bench": {"task_mix", "box_sizes"},
                "cot": {"task_mix", "box_sizes", "iou"}, "rl-pool": {"task_mix", "box_sizes", "pass_rate"},
                "predictions": {"task_mix", "metrics"}}[kind]
    paths = card_images(v)
    assert {p.removeprefix("plots/").removesuffix(".png") for p in paths} == expected
    for p in paths:
        with Image.open(v.path / p) as im:
            assert im.format == "PNG" and im.size[0] > 100
        assert p in v.manifest["files"]  # the store hashes the plots with the card


def test_card_counts_dropped_reasons_and_lineage(built):
    text = (built["tasks"].path / "README.md").read_text()
    assert "Kept **6** rows; dropped **3**." in text
    assert "| missing_image | 2 |" in text and "| invalid_box:empty | 1 |" in text
    assert "| locate | 4 |" in text and "| mc | 2 |" in text
    cot = (built["cot"].path / "README.md").read_text()
    assert f"| {built['tasks'].ref} | tasks | {built['tasks'].id} |" in cot  # input version
    for expected in ("teacher-x", "cot-v1", "temperature", "| cost_usd | 0.0123 |", "| prompt_tokens | 1200 |"):
        assert expected in cot, expected
    rl = (built["rl-pool"].path / "README.md").read_text()
    assert "merged-sft" in rl and "| k | 4 |" in rl
    from builders.store import Store

    assert Store(built["cot"].path.parents[2]).verify(built["cot"]) == []


def test_predictions_metrics_exact():
    table = rows.to_table([
        {"id": "a", "task_type": "g", "format_ok": True, "image_correct": True, "iou": 0.8, "official_iou": 0.8},
        {"id": "b", "task_type": "g", "format_ok": True, "image_correct": False, "iou": 0.0, "official_iou": 0.4},
        {"id": "c", "task_type": "mc", "format_ok": False, "correct": True},
    ], "predictions")
    m = plots.prediction_metrics(table)
    assert m["g"] == {"n": 2, "format_rate": 1.0, "image_accuracy": 0.5, "acc_at_0.5": 0.5, "mean_iou": pytest.approx(0.4),
                      "official_mean_iou": pytest.approx(0.6), "choice_accuracy": None}
    assert m["mc"]["choice_accuracy"] == 1.0 and m["mc"]["acc_at_0.5"] is None
    assert m["all"]["n"] == 3 and m["all"]["format_rate"] == pytest.approx(2 / 3)


def test_box_sides_are_sqrt_of_area():
    table = rows.to_table([{**r, "target_box": b} for r, b in zip(
        [{"id": "x", "source": "s", "task_type": "t", "images": [], "question": "q"}] * 2,
        [[0.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.3, 0.6]])], "tasks")
    assert plots.box_sides(table).tolist() == pytest.approx([0.5, 0.2])


def test_contamination_and_other_manifest_fields_rendered(store):
    v = make_tasks(store, extra={"contamination": {"bench@abc": 3}, "sources": [{"name": "mig-bench", "version": "1.0"}]})
    text = (v.path / "README.md").read_text()
    assert "| bench@abc | 3 |" in text
    assert "mig-bench" in text and "1.0" in text


def test_minimal_manifest_and_empty_table_render(tmp_path):
    cards.render_card(tmp_path, {"kind": "tasks"}, rows.to_table([], "tasks"))
    text = (tmp_path / "README.md").read_text()
    assert front_matter(text)["configs"][0]["data_files"][0]["split"] == "train"
    assert "Kept **0** rows" in text and "No plots" in text
    assert not (tmp_path / "plots").exists()


def test_markdown_cells_escape_pipes():
    assert cards.md_table(["a"], [["x|y\nz"]]).splitlines()[-1] == "| x\\|y z |"
