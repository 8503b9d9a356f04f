"""A JSONL with single, several and no targets, end to end (issue 18): build tasks, build cot from
annotations, SFT and GRPO a few steps on the tiny model, eval with the set metrics.

The GRPO rewards TRL computed are recorded (the real reward functions still compute them) and
recomputed here independently: a plain parse of the `short` answer and a brute-force best
matching over permutations (no scipy), from the task row IN THE STORE found by the row's id.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import re

import pytest
from sources_util import FIXTURES

from schemas.boxes import iou
from training_util import read_run, recorded_rewards

SETS = FIXTURES / "sets" / "tasks.jsonl"
SET_IDS = [f"s{i}" for i in range(4, 10)]


def cli(store, *argv) -> tuple[int, str]:
    from polyground.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--store", str(store.root), *argv])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from builders.store import Store

    store = Store(tmp_path_factory.mktemp("sets") / "store")
    for kind, name in (("tasks", "sets"), ("bench", "sets-bench")):
        assert cli(store, "build", kind, "--source", "jsonl", "--path", str(SETS), "--name", name, "--quiet")[0] == 0
    code, _ = cli(store, "build", "cot", "--mode", "annotations", "--tasks", "sets", "--name", "sets-cot",
                  "--profile", "short", "--quiet")
    assert code == 0
    return store


def test_annotation_cot_covers_every_row_with_its_set(built):
    from schemas.profiles import get_profile
    from schemas.set_answers import parse_set

    cot = built.resolve("sets-cot")
    rows = {r["task_id"]: r for r in cot.table().to_pylist()}
    assert sorted(rows) == [f"s{i}" for i in range(10)] and cot.rejects().num_rows == 0
    assert rows["s4"]["reasoning"] == ("Image 1 has a red square and a red square. Image 2 has a blue circle. The red "
                                       "square is there 2 times: in the first image at the top left and the first "
                                       "image at the bottom right.")
    assert rows["s8"]["reasoning"] == "Image 1 has a blue circle. Image 2 has a blue circle. No image holds the red square."
    assert rows["s8"]["completion"].endswith("<answer>none</answer>")
    assert rows["s5"]["completion"].endswith("<answer>image 1: (0,0),(500,500); image 3: (500,500),(1000,1000)</answer>")
    assert rows["s5"]["template_id"] == "annotations_sets_v1" and rows["s0"]["template_id"] == "annotations_v2"
    sizes = [(i["width"], i["height"]) for i in rows["s7"]["images"]]
    assert len(parse_set(get_profile("short"), rows["s7"]["completion"], sizes).pairs) == 3
    assert set(cot.manifest["config"]["templates"]) == {"annotations", "annotations_sets"}


@pytest.fixture(scope="module")
def sft(built, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("sets-sft") / "lora"
    code, _ = cli(built, "train", "sft", "--data", "sets-cot", "--model", str(tiny_model), "--output", str(out),
                  "--max_steps", "2", "--per_device_train_batch_size", "2", "--learning_rate", "1e-2",
                  "--max_length", "512")
    assert code == 0
    return out


def test_sft_trains_on_single_several_and_no_target_rows(sft):
    run = read_run(sft)
    assert run["data"]["rows_kept"] == 10 and run["data"]["dropped"] == {} and run["metrics"]["global_step"] == 2


# ---- GRPO: every recorded reward recomputed independently --------------------------------
ENVELOPE = re.compile(r"\s*<think>(.*)</think>\s*<answer>(.*)</answer>\s*", re.DOTALL)
TAGS = ("<think>", "</think>", "<answer>", "</answer>")
PAIR = re.compile(r"image (\d+): \((\d+),(\d+)\),\((\d+),(\d+)\)")


def independent(text: str, task: dict) -> dict:
    """format, image-set Jaccard, set IoU and no-target of one `short` completion, from scratch."""
    zero = {"format": 0.0, "image": 0.0, "iou": 0.0, "no_target": 0.0}
    m = ENVELOPE.fullmatch(text or "")
    if not m or any(text.count(t) != 1 for t in TAGS):
        return zero
    body = m.group(2).strip()
    if body.lower().rstrip(".") == "none":
        pred = []
    else:
        parts = body.split("; ")
        found = [PAIR.fullmatch(p.strip()) for p in parts]
        if not all(found):
            return zero
        pred = [(int(f.group(1)) - 1, [int(v) / 1000 for v in f.groups()[1:]]) for f in found]
        if any(not 0 <= i < len(task["images"]) for i, _ in pred) or len({(i, tuple(b)) for i, b in pred}) < len(pred):
            return zero
    single = task["targets"] is None
    if single and len(pred) != 1:
        return zero  # a single-target row's answer is one box
    target = [(task["target_image"], task["target_box"])] if single else [(t["image"], t["box"]) for t in task["targets"]]
    small, large = (pred, target) if len(pred) <= len(target) else (target, pred)

    def gains(perm):
        return [iou(a[1], large[j][1]) if a[0] == large[j][0] else 0.0 for a, j in zip(small, perm)]

    best = max((gains(p) for p in itertools.permutations(range(len(large)), len(small))), key=sum, default=[])
    matched = sum(1 for g in best if g > 0)
    best = sum(best)
    union = len(pred) + len(target) - matched
    named, wanted = {i for i, _ in pred}, {i for i, _ in target}
    return {"format": 1.0, "image": len(named & wanted) / len(named | wanted) if named | wanted else 1.0,
            "iou": best / union if union else 1.0, "no_target": float((not pred) == (not target))}


def test_independent_recount_agrees_on_literal_answers():
    task = {"images": [{}] * 3, "target_image": None, "target_box": None,
            "targets": [{"image": 0, "box": [0, 0, 0.5, 0.5]}, {"image": 2, "box": [0.5, 0.5, 1, 1]}]}
    text = "<think>x</think><answer>image 1: (0,0),(500,500); image 2: (0,0),(1,1)</answer>"
    assert independent(text, task) == pytest.approx({"format": 1, "image": 1 / 3, "iou": 1 / 3, "no_target": 1})


@pytest.fixture(scope="module")
def grpo(built, sft, tmp_path_factory):
    from polyground.cli import main

    out = tmp_path_factory.mktemp("sets-grpo") / "adapter"
    with recorded_rewards() as calls, contextlib.redirect_stdout(io.StringIO()):
        code = main(["--store", str(built.root), "train", "grpo", "--data", "sets", "--model", str(sft),
                     "--output", str(out), "--max_steps", "2", "--num_generations", "2",
                     "--per_device_train_batch_size", "4", "--max_completion_length", "12", "--temperature", "1.0",
                     "--reward_funcs", "format", "image", "iou", "set_iou", "no_target", "--seed", "0",
                     "--disable_tqdm", "true"])
    assert code == 0
    return {"calls": calls, "out": out, "tasks": {t["id"]: t for t in built.resolve("sets").table().to_pylist()}}


def test_every_grpo_reward_is_the_independent_recount(grpo):
    key = {"format": "format", "image": "image", "iou": "iou", "set_iou": "iou", "no_target": "no_target"}
    calls, tasks = grpo["calls"], grpo["tasks"]
    assert {c["name"] for c in calls} == set(key)
    seen = 0
    for call in calls:
        for k, (completion, reward) in enumerate(zip(call["completions"], call["rewards"])):
            task = tasks[call["kwargs"]["id"][k]]
            got = call["kwargs"]["targets"][k]
            assert got == task["targets"]  # TRL handed each completion its own row's target set
            text = completion[0]["content"] if isinstance(completion, list) else completion
            assert reward == pytest.approx(independent(text, task)[key[call["name"]]]), (call["name"], text)
            seen += 1
    assert seen == 5 * 2 * 4  # 5 rewards x 2 steps x 4 completions
    run = read_run(grpo["out"])
    assert run["rewards"] == {"format": 0.1, "image": 0.3, "iou": 1.0, "set_iou": 1.0, "no_target": 0.3}
    assert all("rewards/no_target_reward/mean" in e for e in run["log_history"] if "reward" in e)


def test_the_set_rewards_of_trls_own_columns_score_known_answers(grpo):
    """The columns TRL passed, with answers written from the store's rows: right sets score 1, "none" 0 or 1."""
    from schemas.profiles import get_profile
    from schemas.set_answers import render_set
    from training.rewards import REWARDS

    call = next(c for c in grpo["calls"] if c["name"] == "iou")
    short, kw = get_profile("short"), call["kwargs"]
    texts = []
    for k, rid in enumerate(kw["id"]):
        t = grpo["tasks"][rid]
        pairs = [(p["image"], p["box"]) for p in t["targets"]] if t["targets"] is not None else \
            [(t["target_image"], t["target_box"])]
        texts.append(render_set(short, "r", pairs, kw["image_sizes"][k]) if t["targets"] is not None
                     else short.render("r", *pairs[0], kw["image_sizes"][k]))
    assert REWARDS["iou"].func(texts, short, **kw) == pytest.approx([1.0] * len(texts))
    nones = REWARDS["no_target"].func(["<think>r</think><answer>none</answer>"] * len(texts), short, **kw)
    assert nones == [float(grpo["tasks"][rid]["targets"] == []) for rid in kw["id"]]


# ---- eval: set metrics beside Acc@0.5 ---------------------------------------------------------
PREDICTIONS = {
    "s0": "image 1: (0,0),(500,500)",  # single, right
    "s1": "image 1: (500,500),(1000,1000)",  # single, wrong image
    "s4": "image 1: (0,0),(500,500)",  # one of two targets on one image
    "s5": "image 1: (0,0),(500,500); image 2: (0,500),(500,1000); image 3: (500,500),(1000,1000)",  # + a wrong image
    "s6": "image 1: (500,0),(1000,500); image 2: (500,500),(1000,1000)",  # right
    "s7": "none",  # three targets, none said
    "s8": "none",  # none of none
    "s9": "image 1: (0,0),(500,500)",  # a box where there is none
}


def test_eval_reports_set_metrics_per_task_and_leaves_single_figures_alone(built, tmp_path):
    lines = [json.dumps({"id": k, "completion": f"<think>r</think><answer>{v}</answer>"}) for k, v in PREDICTIONS.items()]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    code, _ = cli(built, "eval", "--bench", "sets-bench", "--predictions", str(tmp_path / "p.jsonl"), "--profile",
                  "short", "--output", str(tmp_path / "report"))
    assert code == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    m = metrics["by_task"]["red_square"]
    assert m["strict_acc@0.5"] == 0.25 and m["strict_miou"] == 0.25  # the 4 single rows: s0 only (s2, s3 missing)
    expected = {"set_rows": 6, "wrong_images": 2, "none_acc": 0.5,
                "set_miou": (0.5 + 2 / 3 + 1 + 0 + 1 + 0) / 6, "set_precision@0.5": (1 + 2 / 3 + 1 + 0 + 1 + 0) / 6,
                "set_recall@0.5": (0.5 + 1 + 1 + 0 + 1 + 0) / 6, "set_f1@0.5": (2 / 3 + 0.8 + 1 + 0 + 1 + 0) / 6}
    assert {k: m[k] for k in expected} == pytest.approx(expected)
    assert metrics["outcomes"]["red_square"] == {"ok": 4, "wrong_image": 2, "said_none": 1, "boxes_for_none": 1,
                                                 "no_box": 2}  # s2, s3: no prediction, an empty answer
    report = (tmp_path / "report" / "metrics.md").read_text()
    assert "set_f1@0.5" in report  # the counts print as counts, not as percentages
    assert any(line.startswith("| red_square | 10 |") and line.endswith("| 6 | 2 |") for line in report.splitlines())
    assert not (tmp_path / "report" / "wrong_images.png").exists() and (tmp_path / "report" / "set_miou.png").exists()
    pred = {r["id"]: r for r in built.resolve(metrics["predictions"]).table().to_pylist()}
    assert pred["s5"]["pred_targets"][1] == {"image": 1, "box": pytest.approx([0.0, 0.5, 0.5, 1.0])}
    assert pred["s0"]["set_iou"] is None and pred["s8"]["none_correct"] is True


def test_the_trained_model_is_evaluated_with_set_metrics(built, sft, tmp_path):
    code, _ = cli(built, "eval", "--bench", "sets-bench", "--model", str(sft), "--max-tokens", "8",
                  "--device", "cpu", "--output", str(tmp_path / "r"))
    assert code == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())["by_task"]["red_square"]
    assert m["set_rows"] == 6 and 0.0 <= m["set_miou"] <= 1.0 and "strict_acc@0.5" in m
