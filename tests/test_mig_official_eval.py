"""`polyground eval --predictions` on MIG-Bench gives the official scripts' numbers, exactly.

Six items in the released layout, written twice: as MIG_data.json (0-1 floats,
one inverted box, one value past 1) and as revised_MIG_bench.json (0-1000
integers, the box fixed). Outputs are written by hand in the formats the
published models use; every expected number below was worked out by hand from
the upstream code (thunlp/Migician eval/utils.py + eval/MIG_bench_eval.py,
AMAP-ML/UniVG-R1 eval/MIG_bench/utils.py), not with polyground's code.

    item task            target  truth MIG_data.json            truth revised
    0    common_object   2nd     A [.1,.2,.5,.6]                [100,200,500,600]
    1    common_object   3rd     B [.2,.2,.6,.6]                [200,200,600,600]
    2    common_object   1st     [.5,.5,.2,.2] (inverted)       [200,200,500,500]
    3    group_grounding 3rd     D [0,0,.4,.4]                  [0,0,400,400]
    4    group_grounding 1st     E [.5,.5,1.04,1] (not clipped) [500,500,1000,1000]
    5    diff            either  F [.25,.25,.75,.75]            [250,250,750,750]

Per-item official IoUs (Migician's parser on the whole response):
- qwen2vl (Qwen2-VL, bare `(x1,y1),(x2,y2)`): 1, .6 (.4x.24/.16), 0 (inverted) | 1,
  25/27 (.25/.27: the truth keeps 1.04) | .8 (.5x.4/.25). Revised: 1, .6, 1 | 1, 1 | .8.
- qwen25vl (Qwen2.5-VL, 0-1 floats): 1, 1, 0 | 1, 0 (one `(f,f),(f,f)` match: 1.0 >= 1 is
  divided, x2 = .001) | .8 (`[d,d,d,d]`). UniVG-R1's int() parser: 0 for every decimal box.
- several (several boxes): the first box; `(1,0),...` keeps 1 undivided (several matches) -> 0.
- univg (UniVG-R1, `<think>` then a bare box): item 1's think quotes a box, which the whole-
  response parser takes first: .068x.123/.16 = .052275.
- migician (`migician_eval` y stretch): item 0 (100,200),(500,500) .75, stretched [.1,.21,.5,.55]
  .85; item 1 has two boxes, where Migician's stretch raises and is skipped (1.0) but
  UniVG-R1's copy applies it on the grid: [200,210,600,660] -> 156000/184000; item 3 is a
  decimal box: Migician divides 400.0 (1, stretched [0,0,.4,.44]: 10/11), UniVG-R1's int() fails (0).
A missing prediction scores 0 and stays in n, as does the inverted box.
"""
from __future__ import annotations

import contextlib
import io
import json

import pytest
from sources_util import write_json, write_png

from schemas.official import MIG_PROMPTS, SCORER_VERSION

CO_Q = "These images share one object in common. Recognize and locate this object in the {}th image. "
GG_Q = "Please find the bounding box coordinates for the area described by: <|object_ref_start|>a red car<|object_ref_end|>."
DIFF_Q = "Compare these two images carefully and give me the coordinates of their difference. "
CO = [f"./MIG-Bench/images/common/Car/c{i}.png" for i in range(3)]
GG = [f"./MIG-Bench/images/group_grounding/g{i}.png" for i in range(3)]
DF = ["./MIG-Bench/images/static_diff/d_source.png", "./MIG-Bench/images/static_diff/d_target.png"]
# (task, images, question, additional_info, truth in MIG_data.json, truth in the revised file)
ITEMS = [
    ("common_object", CO, CO_Q.format(2), "", [0.1, 0.2, 0.5, 0.6], [100, 200, 500, 600]),
    ("common_object", CO, CO_Q.format(3), "", [0.2, 0.2, 0.6, 0.6], [200, 200, 600, 600]),
    ("common_object", CO, CO_Q.format(1), "", [0.5, 0.5, 0.2, 0.2], [200, 200, 500, 500]),
    ("group_grounding", GG, GG_Q, "It is in the third image. <|box_start|>(0,0),(400,400)<|box_end|>. ",
     [0.0, 0.0, 0.4, 0.4], [0, 0, 400, 400]),
    ("group_grounding", GG, GG_Q, "It is in the first image. <|box_start|>(500,500),(999,999)<|box_end|>. ",
     [0.5, 0.5, 1.04, 1.0], [500, 500, 1000, 1000]),
    ("diff", DF, DIFF_Q, "", [0.25, 0.25, 0.75, 0.75], [250, 250, 750, 750]),
]
OUTPUTS = {  # item index -> completion, per model
    "qwen2vl": {0: "<|box_start|>(100,200),(500,600)<|box_end|>", 1: "(200,200),(600,440)", 2: "(200,200),(500,500)",
                3: "(0,0),(400,400)", 4: "(500,500),(1000,1000)", 5: "(250,250),(750,650)"},
    "qwen25vl": {0: "[0.1, 0.2, 0.5, 0.6]", 1: '```json\n[{"bbox_2d": [0.2, 0.2, 0.6, 0.6], "label": "car"}]\n```',
                 2: "[0.2, 0.2, 0.5, 0.5]", 3: "[0.0, 0.0, 0.4, 0.4]", 4: "(0.5,0.5),(1.0,1.0)",
                 5: "[250, 250, 750, 650]"},
    "several": {0: "(100,200),(500,600) (0,0),(10,10)", 1: "(1,0),(600,600) and (200,200),(600,600)",
                3: "the third image: (0,0),(400,400); also (500,500),(600,600)"},
    "univg": {0: "<think>The car in the second image is on the left.</think><answer>(100,200),(500,600)</answer>",
              1: "<think>The reference box (451,265),(519,388) helps; in the third image it sits lower.</think>"
                 "<answer>(200,200),(600,600)</answer>",
              3: "<think>Only the third image shows a red car.</think><answer>(0,0),(400,400)</answer>",
              4: "<think>The first image and the second image show cars; the first image matches.</think>"
                 "<answer>(500,500),(1000,1000)</answer>",
              5: "<think>The two pictures differ in the middle.</think><answer>(250,250),(750,650)</answer>"},
    "migician": {0: "(100,200),(500,500)", 1: "(200,200),(600,600) (0,0),(1,1)", 3: "[0.0, 0.0, 400.0, 400.0]"},
}
PROFILE = {"qwen25vl": "qwen2_5_vl"}  # the others answer in the qwen2_vl text form
N = {"common_object": 3, "group_grounding": 2, "diff": 1}
ZEROS = (0.0, 0.0, 0.0, 0.0)
# (file, scorer, y-rescale, model) -> {task: (acc@0.3, acc@0.5, acc@0.7, mean IoU)}
EXPECTED = {
    ("official", "migician", False, "qwen2vl"): {
        "common_object": (2 / 3, 2 / 3, 1 / 3, 1.6 / 3), "group_grounding": (1, 1, 1, (1 + 25 / 27) / 2),
        "diff": (1, 1, 1, 0.8)},
    ("official", "migician", False, "qwen25vl"): {
        "common_object": (2 / 3, 2 / 3, 2 / 3, 2 / 3), "group_grounding": (0.5, 0.5, 0.5, 0.5), "diff": (1, 1, 1, 0.8)},
    ("official", "migician", False, "several"): {
        "common_object": (1 / 3, 1 / 3, 1 / 3, 1 / 3), "group_grounding": (0.5, 0.5, 0.5, 0.5), "diff": ZEROS},
    ("official", "migician", False, "univg"): {
        "common_object": (1 / 3, 1 / 3, 1 / 3, (1 + 0.068 * 0.123 / 0.16) / 3),
        "group_grounding": (1, 1, 1, (1 + 25 / 27) / 2), "diff": (1, 1, 1, 0.8)},
    ("official", "migician", False, "migician"): {
        "common_object": (2 / 3, 2 / 3, 2 / 3, 1.75 / 3), "group_grounding": (0.5, 0.5, 0.5, 0.5), "diff": ZEROS},
    ("official", "migician", True, "migician"): {
        "common_object": (2 / 3, 2 / 3, 2 / 3, 1.85 / 3), "group_grounding": (0.5, 0.5, 0.5, 5 / 11), "diff": ZEROS},
    ("revised", "migician", False, "qwen2vl"): {
        "common_object": (1, 1, 2 / 3, 2.6 / 3), "group_grounding": (1, 1, 1, 1), "diff": (1, 1, 1, 0.8)},
    ("revised", "migician", False, "qwen25vl"): {
        "common_object": (1, 1, 1, 1), "group_grounding": (0.5, 0.5, 0.5, 0.5), "diff": (1, 1, 1, 0.8)},
    ("revised", "univg-r1", False, "qwen2vl"): {
        "common_object": (1, 1, 2 / 3, 2.6 / 3), "group_grounding": (1, 1, 1, 1), "diff": (1, 1, 1, 0.8)},
    ("revised", "univg-r1", False, "qwen25vl"): {  # the int() parser zeroes every 0-1 float box
        "common_object": ZEROS, "group_grounding": ZEROS, "diff": (1, 1, 1, 0.8)},
    ("revised", "univg-r1", True, "migician"): {
        "common_object": (2 / 3, 2 / 3, 2 / 3, (0.85 + 156000 / 184000) / 3), "group_grounding": ZEROS,
        "diff": ZEROS},
}
FILES = {"official": "MIG_data.json", "revised": "revised_MIG_bench.json"}


def run_cli(store_root, *argv) -> tuple[int, str, str]:
    from polyground.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--store", str(store_root), *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with both benches built through `polyground build bench`."""
    root = tmp_path_factory.mktemp("mig")
    store = root / "store"
    refs = {}
    for variant, file in FILES.items():
        folder = root / variant
        records = [{"task": t, "images": imgs if variant == "official" else [p[2:] for p in imgs],
                    "question": q, "answer": off if variant == "official" else rev, "additional_info": info,
                    "need_format": t != "group_grounding"} for t, imgs, q, info, off, rev in ITEMS]
        write_json(folder / file, records)
        for p in {p for _, imgs, *_ in ITEMS for p in imgs}:
            write_png(folder / p, key=p)
        code, out, err = run_cli(store, "build", "bench", "--source", "mig-bench", "--path", str(folder / file),
                                 "--name", f"mig-{variant}", "--quiet")
        assert code == 0, err
        refs[variant] = out.strip().splitlines()[-1]
    return root, store, refs


def _ids(variant: str) -> list[str]:
    prefix = "mig" if variant == "official" else "mig-rev"
    return [f"{prefix}-{t}-{i:04d}" for i, (t, *_) in enumerate(ITEMS)]


def eval_model(world, variant, scorer, rescale, model, *extra):
    root, store, refs = world
    preds = root / f"{model}-{variant}.jsonl"
    ids = _ids(variant)
    preds.write_text("".join(json.dumps({"id": ids[i], "completion": c}) + "\n" for i, c in OUTPUTS[model].items()))
    out_dir = root / f"out-{variant}-{scorer}-{rescale}-{model}"
    argv = ["eval", "--bench", refs[variant], "--predictions", str(preds), "--profile", PROFILE.get(model, "qwen2_vl"),
            "--official-scorer", scorer, "--output", str(out_dir), *extra]
    code, out, err = run_cli(store, *argv + (["--migician-y-rescale"] if rescale else []))
    assert code == 0, err
    return json.loads((out_dir / "metrics.json").read_text()), out


@pytest.mark.parametrize("key", list(EXPECTED), ids=["-".join(map(str, k)) for k in EXPECTED])
def test_official_numbers_equal_the_scripts(world, key):
    variant, scorer, rescale, model = key
    metrics, _ = eval_model(world, variant, scorer, rescale, model)
    for task, (a3, a5, a7, miou) in EXPECTED[key].items():
        m = metrics["by_task"][task]
        assert m["n"] == N[task]  # every item in the denominator: missing ones and the inverted box too
        assert (m["official_acc@0.3"], m["official_acc@0.5"], m["official_acc@0.7"]) == pytest.approx(
            (a3, a5, a7), abs=1e-12), task
        assert m["official_miou"] == pytest.approx(miou, abs=1e-6), task  # stored as float32
    macro = [sum(v[1] for v in EXPECTED[key].values()) / 3]
    assert [metrics["macro"]["official_acc@0.5"]] == pytest.approx(macro, abs=1e-12)
    # every number says where it came from
    assert metrics["official_scorer"]["scorer"] == scorer and metrics["official_scorer"]["version"] == SCORER_VERSION
    assert metrics["official_scorer"]["y_rescale"] is rescale
    assert metrics["bench_file"]["name"] == FILES[variant]
    assert metrics["bench_file"]["box_frame"] == ("0-1" if variant == "official" else "0-1000")


# (model) -> strict figure on MIG_data.json: outcomes per task, then (acc@0.5, mean IoU) per task
STRICT = {
    "qwen2vl": ({"common_object": {"ok:image_from_question": 2, "unverifiable:target_box_inverted": 1},
                 "group_grounding": {"no_image": 2}, "diff": {"no_image": 1}},
                {"common_object": (1.0, 0.8), "group_grounding": (0.0, 0.0), "diff": (0.0, 0.0)}),
    "univg": ({"common_object": {"ok:image_from_question": 2, "unverifiable:target_box_inverted": 1},
               "group_grounding": {"ok:image_from_think": 1, "no_image": 1}, "diff": {"no_image": 1}},
              {"common_object": (1.0, 1.0), "group_grounding": (0.5, 0.5), "diff": (0.0, 0.0)}),
    "several": ({"common_object": {"several_answers": 2, "unverifiable:target_box_inverted": 1},
                 "group_grounding": {"several_answers": 1, "no_box": 1}, "diff": {"no_box": 1}},
                {"common_object": (0.0, 0.0), "group_grounding": (0.0, 0.0), "diff": (0.0, 0.0)}),
    # 0-1 floats are not the qwen2_5_vl profile's answer: the zero says so
    "qwen25vl": ({"common_object": {"several_answers": 1, "ok:image_from_question": 1,
                                    "unverifiable:target_box_inverted": 1},
                  "group_grounding": {"several_answers": 1, "bad_json": 1}, "diff": {"several_answers": 1}},
                 {"common_object": (0.0, 0.0), "group_grounding": (0.0, 0.0), "diff": (0.0, 0.0)}),
}


@pytest.mark.parametrize("model", list(STRICT))
def test_strict_figure_and_its_parse_outcomes(world, model):
    metrics, out = eval_model(world, "official", "migician", False, model)
    outcomes, values = STRICT[model]
    for task, expected in outcomes.items():
        assert metrics["outcomes"][task] == expected, task
        assert (metrics["by_task"][task]["strict_acc@0.5"], metrics["by_task"][task]["strict_miou"]) == pytest.approx(
            values[task], abs=1e-6), task
    # the outcomes are printed beside the metrics
    assert "Strict parse outcomes" in out and f"| common_object | {outcomes['common_object'].get('ok:image_from_question', 0)}" in out


def test_report_names_file_scorer_and_prompt(world):
    root, store, refs = world
    metrics, out = eval_model(world, "revised", "univg-r1", True, "migician", "--prompt-template", "migician-qwen")
    t = MIG_PROMPTS["migician-qwen"]
    assert metrics["prompt"]["template"] == "migician-qwen" and metrics["prompt"]["sha256"] == t.sha256
    assert f"scorer `univg-r1` v{SCORER_VERSION}, Migician y-rescale on" in out
    assert "bench file `revised_MIG_bench.json` (revised, 0-1000 boxes" in out and t.sha256 in out
    # the predictions version records the same, so two scorings are two versions
    from builders.store import Store

    ref = out.strip().splitlines()[-1]
    config = Store(store).resolve(ref).manifest["config"]
    assert config["official_scorer"]["scorer"] == "univg-r1" and config["prompt"]["template"] == "migician-qwen"
    other, out2 = eval_model(world, "revised", "migician", True, "migician", "--prompt-template", "migician-qwen")
    assert out2.strip().splitlines()[-1] != ref
    # without --prompt-template, a predictions file's prompt is "not recorded", never guessed
    plain, _ = eval_model(world, "revised", "migician", False, "qwen2vl")
    assert plain["prompt"]["template"] is None


def test_univg_scorer_refuses_the_0_1_file_in_one_line(world):
    root, store, refs = world
    preds = root / "one.jsonl"
    preds.write_text(json.dumps({"id": _ids("official")[0], "completion": "(1,2),(3,4)"}) + "\n")
    code, _, err = run_cli(store, "eval", "--bench", refs["official"], "--predictions", str(preds), "--profile",
                           "qwen2_vl", "--official-scorer", "univg-r1", "--output", str(root / "no"))
    assert code == 2 and "compares 0-1000 boxes" in err and len(err.strip().splitlines()) == 1


def test_bench_manifest_and_card_say_which_file(world):
    root, store, refs = world
    from builders.store import Store

    for variant, file in FILES.items():
        v = Store(store).resolve(refs[variant])
        f = v.manifest["source"]["bench_file"]
        assert f["name"] == file and f["variant"] == variant and f["items"] == 6
        card = (v.path / "README.md").read_text()
        assert f"Read from `{file}` ({variant} file" in card
        assert v.manifest["counts"]["rows"] == 6  # the inverted box is a row too


@pytest.mark.parametrize("template", ["migician-qwen", "univg-r1-think", "polyground"])
def test_endpoint_is_asked_the_official_prompt(world, template):
    """The user turn holds the images in order, then the file's question (spaces kept) + the suffix."""
    from openai_server import FakeOpenAIServer, image_hashes, request_text

    from builders.store import Store

    root, store, refs = world
    with FakeOpenAIServer(lambda request, i: "(100,200),(500,600)", keep_requests=True) as server:
        code, out, err = run_cli(store, "eval", "--bench", refs["official"], "--endpoint", server.url,
                                 "--endpoint-model", "qwen2-vl", "--profile", "qwen2_vl", "--prompt-template",
                                 template, "--output", str(root / f"ep-{template}"))
        assert code == 0, err
        sent = sorted(request_text(r) for r in server.requests)
        hashes = [image_hashes(r) for r in server.requests]
    bench = Store(store).resolve(refs["official"]).table().to_pylist()
    if template == "polyground":
        from schemas.profiles import get_profile

        expected = sorted(t["question"] + get_profile("qwen2_vl").prompt_suffix(len(t["images"])) for t in bench)
    else:
        expected = sorted(q + MIG_PROMPTS[template].suffix for _, _, q, *_ in ITEMS)
    assert sent == expected
    # every image, in order (sent resized into the pixel budget, so not the stored bytes)
    assert sorted(len(h) for h in hashes) == sorted(len(t["images"]) for t in bench)
    metrics = json.loads((root / f"ep-{template}" / "metrics.json").read_text())
    assert metrics["prompt"]["template"] == template
    assert metrics["by_task"]["common_object"]["official_acc@0.7"] == pytest.approx(1 / 3)  # item 0 only
