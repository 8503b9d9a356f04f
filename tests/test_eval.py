"""Evaluation: scripted predictions against hand-computed official and strict metrics.

The split (profile qwen2_vl, boxes normalised 0-1):
  common g1  target image 2, box [.1,.1,.5,.5]   right image, right box     official 1, strict 1
  common g2  target image 1, box [.2,.2,.6,.6]   right box, WRONG image     official 1, strict 0
  diff   g3  target 1 (2 equivalent), [0,0,.4,.4] image 2, box (0,0),(400,160): IoU .4 both ways
  diff   g4  no prediction (missing)                                       official 0, strict 0, no format
  diff   g5  box right, image named, no think/answer tags                  official 1, strict 1 (the
             envelope is optional for the strict figure; the GRPO reward still gives it 0)
  mc     m1  choices A-C, answer B, "(B)"                                  correct
"""
from __future__ import annotations

import json

import pytest

from conftest import png_bytes
from schemas import rows
from store_util import task_record

PRED = {
    "g1": "<think>It is in the second one.</think><answer>the second image: (100,100),(500,500)</answer>",
    "g2": "<think>Second.</think><answer>the second image: <|box_start|>(200,200),(600,600)<|box_end|></answer>",
    "g3": "<think>Second.</think><answer>the second image: (0,0),(400,160)</answer>",
    "g5": "the first image (0,0),(400,400)",
    "m1": "<think>b</think><answer>(B)</answer>",
    "zzz": "an id the split does not have",
}


def bench_table(store):
    h = [store.put_image(png_bytes(100, 100, c)) for c in ((200, 0, 0), (0, 200, 0))]
    imgs = [{"sha256": x, "width": 100, "height": 100} for x in h]
    recs = [
        task_record(1, imgs, id="g1", task_type="common", target_image=1, target_box=[0.1, 0.1, 0.5, 0.5]),
        task_record(2, imgs, id="g2", task_type="common", target_image=0, target_box=[0.2, 0.2, 0.6, 0.6]),
        task_record(3, imgs, id="g3", task_type="diff", target_image=0, equivalent_images=[1],
                    target_box=[0.0, 0.0, 0.4, 0.4]),
        task_record(4, imgs, id="g4", task_type="diff", target_image=0, target_box=[0.0, 0.0, 0.4, 0.4]),
        task_record(5, imgs, id="g5", task_type="diff", target_image=0, target_box=[0.0, 0.0, 0.4, 0.4]),
        task_record(6, imgs, id="m1", task_type="mc", target_image=None, target_box=None,
                    choices=["red", "green", "blue"], answer="B"),
    ]
    return rows.to_table(recs, "bench")


@pytest.fixture
def bench(store):
    with store.writer("mig", "bench", config={"t": 1}) as w:
        w.write(bench_table(store))
    return w.version


def test_scripted_predictions_match_hand_computed_metrics(store, bench):
    from schemas.profiles import get_profile
    from training.evaluation.run import evaluate

    m = evaluate(store, bench, PRED, get_profile("qwen2_vl"), "scripted")
    common, diff, mc = m["by_task"]["common"], m["by_task"]["diff"], m["by_task"]["mc"]
    # right box on the wrong image: official counts it, strict does not
    assert common["official_acc@0.5"] == 1.0 and common["official_acc@0.7"] == 1.0
    assert common["strict_acc@0.5"] == 0.5 and common["strict_miou"] == pytest.approx(0.5, abs=1e-6)
    assert common["format_rate"] == 1.0 and common["image_acc"] == 0.5
    # GRPO reward at the default weights (format 0.1, image 0.3, IoU 1.0): g1 1.4, g2 0.1
    assert common["mean_reward"] == pytest.approx(0.75, abs=1e-6)
    assert [diff[f"official_acc@{t}"] for t in (0.3, 0.5, 0.7)] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert diff["official_miou"] == pytest.approx(1.4 / 3, abs=1e-6)
    assert [diff[f"strict_acc@{t}"] for t in (0.3, 0.5, 0.7)] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert diff["strict_miou"] == pytest.approx(1.4 / 3, abs=1e-6)
    assert diff["format_rate"] == pytest.approx(2 / 3) and diff["image_acc"] == pytest.approx(2 / 3)
    # reward: g3 0.1 + 0.3 + 0.4, g4 and g5 (no envelope) 0
    assert diff["mean_reward"] == pytest.approx(0.8 / 3, abs=1e-6)
    # the parse outcomes beside the metrics: why each row got what it got
    assert m["outcomes"]["common"] == {"ok": 1, "wrong_image": 1}
    assert m["outcomes"]["diff"] == {"ok": 2, "no_box": 1} and "mc" not in m["outcomes"]
    assert mc == {"n": 1, "format_rate": 1.0, "mc_acc": 1.0}
    assert m["macro"]["official_acc@0.5"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["overall"]["official_acc@0.5"] == pytest.approx(3 / 5)
    assert m["overall"]["n"] == 6 and m["macro"]["mc_acc"] == 1.0
    c = m["counts"]
    assert (c["tasks"], c["predicted"], c["missing"], c["unknown"]) == (6, 5, 1, 1)
    assert c["missing_ids"] == ["g4"] and c["unknown_ids"] == ["zzz"]


def test_predictions_version_rows(store, bench):
    from schemas.profiles import get_profile
    from training.evaluation.run import evaluate

    m = evaluate(store, bench, PRED, get_profile("qwen2_vl"), "scripted")
    v = store.resolve(m["predictions"])
    assert v.name == "mig-pred-scripted" and v.kind == "predictions" and v.manifest["inputs"][0]["id"] == bench.id
    by_id = {r["id"]: r for r in v.table().to_pylist()}
    assert sorted(by_id) == ["g1", "g2", "g3", "g4", "g5", "m1"]
    g2 = by_id["g2"]
    assert (g2["pred_image"], g2["image_correct"], g2["iou"]) == (1, False, 0.0)
    assert g2["official_iou"] == pytest.approx(1.0, abs=1e-6)
    assert by_id["g4"]["completion"] is None and by_id["g4"]["format_ok"] is False
    assert by_id["m1"]["pred_choice"] == "B" and by_id["m1"]["correct"] is True
    assert by_id["g5"]["format_ok"] is True and by_id["g5"]["official_iou"] == pytest.approx(1.0, abs=1e-6)
    assert (by_id["g5"]["outcome"], by_id["g5"]["reward"], by_id["g4"]["outcome"]) == ("ok", 0.0, "no_box")
    # the same predictions again: the same version, nothing new
    again = evaluate(store, bench, PRED, get_profile("qwen2_vl"), "scripted")
    assert again["predictions"] == m["predictions"]


def run_cli(store, *argv) -> tuple[int, str, str]:
    import contextlib
    import io

    from polyground.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--store", str(store.root), *argv])
    return code, out.getvalue(), err.getvalue()


def write_jsonl(path, preds: dict) -> str:
    path.write_text("".join(json.dumps({"id": k, "completion": v}) + "\n" for k, v in preds.items()))
    return str(path)


def test_cli_eval_predictions_report_and_compare(store, bench, tmp_path):
    f = write_jsonl(tmp_path / "scripted.jsonl", PRED)
    code, out, err = run_cli(store, "eval", "--bench", "mig", "--predictions", f, "--profile", "qwen2_vl",
                             "--output", str(tmp_path / "a"))
    assert code == 0, err
    ref = out.strip().splitlines()[-1]
    assert store.resolve(ref).kind == "predictions" and ref.startswith("mig-pred-scripted@")
    assert "| common | 2 | 100.0 | 100.0 | 100.0 |" in out  # n, official acc@0.3/0.5/0.7
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["by_task"]["common"]["strict_acc@0.5"] == 0.5
    pngs = sorted(p.name for p in (tmp_path / "a").glob("*.png"))
    assert "official_acc_at_0.5.png" in pngs and "mc_acc.png" in pngs
    assert (tmp_path / "a" / "official_acc_at_0.5.png").read_bytes()[:4] == b"\x89PNG"
    # a second "model": every grounding answer right
    perfect = dict(PRED, g2=PRED["g2"].replace("second", "first"), g4=PRED["g5"].replace("the first image", "<think>x</think><answer>the first image:") + "</answer>")
    f2 = write_jsonl(tmp_path / "better.jsonl", perfect)
    assert run_cli(store, "eval", "--bench", "mig", "--predictions", f2, "--profile", "qwen2_vl",
                   "--output", str(tmp_path / "b"))[0] == 0
    code, out, err = run_cli(store, "eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 0, err
    assert "| task | scripted | better |" in out
    strict = out.split("## strict_acc@0.5")[1].split("##")[0]
    assert "| common | 50.0 | 100.0 |" in strict


@pytest.mark.parametrize("lines,needle", [
    (['{"id": "g1"}'], 'scripted.jsonl:1: expected {"id": str, "completion": str}'),
    (['{"id": "g1", "completion": "a"}', "not json"], "scripted.jsonl:2: not a JSON object"),
    (['{"id": "g1", "completion": "a"}', '{"id": "g1", "completion": "b"}'], "id 'g1' appears twice"),
    (['{"id": "nope", "completion": "a"}'], "none of the 1 predictions matches a task id"),
])
def test_cli_eval_bad_predictions_are_one_line_errors(store, bench, tmp_path, lines, needle):
    (tmp_path / "scripted.jsonl").write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(store, "eval", "--bench", "mig", "--predictions", str(tmp_path / "scripted.jsonl"),
                             "--profile", "qwen2_vl", "--output", str(tmp_path / "o"))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_cli_eval_needs_one_source_and_a_profile(store, bench, tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", PRED)
    code, _, err = run_cli(store, "eval", "--bench", "mig", "--predictions", f, "--output", str(tmp_path / "o"))
    assert code == 2 and "--predictions needs --profile" in err
    code, _, err = run_cli(store, "eval", "--bench", "mig", "--predictions", f, "--model", "x",
                           "--output", str(tmp_path / "o"))
    assert code == 2 and "exactly one of" in err
    code, _, err = run_cli(store, "eval", "compare", str(tmp_path / "nothing"))
    assert code == 2 and "no metrics.json" in err


def test_eval_through_endpoint(store, bench, tmp_path):
    """--endpoint: the loopback server answers every grounding task right (norm1000)."""
    from openai_server import FakeOpenAIServer, GroundTruthPolicy

    tasks = [t for t in bench.table().to_pylist() if t["target_box"] is not None]
    with FakeOpenAIServer(GroundTruthPolicy(tasks, store=store)) as server:
        code, out, err = run_cli(store, "eval", "--bench", "mig", "--endpoint", server.url, "--endpoint-model",
                                 "fake", "--profile", "norm1000", "--output", str(tmp_path / "e"))
        assert code == 0, err
        first = server.stats["requests"]
        assert run_cli(store, "eval", "--bench", "mig", "--endpoint", server.url, "--endpoint-model", "fake",
                       "--profile", "norm1000", "--output", str(tmp_path / "e2"))[0] == 0
        assert server.stats["requests"] == first  # the rerun came from the cache
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["by_task"]["common"]["strict_acc@0.7"] == 1.0 and m["by_task"]["diff"]["strict_acc@0.7"] == 1.0
    assert m["model"] == "fake" and m["counts"]["missing"] == 0
