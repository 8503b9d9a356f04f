"""schemas.official: MIG-Bench's official parsers (Migician's and UniVG-R1's), IoU, y-rescale, metric, prompts.

Expected values are written out by hand from the upstream code quoted in the
module docstring (thunlp/Migician eval/utils.py, AMAP-ML/UniVG-R1
eval/MIG_bench/utils.py), never computed with the code under test."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.boxes import iou
from schemas.official import (
    MIG_PROMPTS,
    OfficialScorer,
    calculate_iou,
    migician_extract_bbox,
    migician_y_rescale,
    official_completion_iou,
    official_extract_bbox,
    official_iou,
    official_metrics,
    univg_extract_bbox,
    univg_y_rescale,
)
from schemas.profiles import PROFILES

MIG_BENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "mig-bench" / "MIG_data.json"
BOX = [0.12, 0.3, 0.45, 0.8]
ZERO = [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "text, expected",
    [
        # pattern 1: (d,d),(d,d), the Qwen2-VL text form
        ("the second image: <|box_start|>(120,300),(450,800)<|box_end|>", BOX),
        ("(120, 300), (450, 800)", BOX),
        ("It's in the third image. <|box_start|>(316,58),(764,999)<|box_end|>", [0.316, 0.058, 0.764, 0.999]),
        # pattern 2: [f,f,f,f]
        ("[0.12, 0.3, 0.45, 0.8]", BOX),
        # pattern 3: (f,f),(f,f) without spaces
        ("(0.12,0.3),(0.45,0.8)", BOX),
        ("(0.12, 0.3),(0.45,0.8)", ZERO),  # pattern 3 allows no space
        # pattern 4: (f,f,f,f)
        ("(0.12, 0.3, 0.45, 0.8)", BOX),
        # pattern 5: [d,d,d,d], which also catches the JSON profiles
        ("[120, 300, 450, 800]", BOX),
        ('{"image": 2, "bbox_2d": [120, 300, 450, 800]}', BOX),
        ('{"image": 3, "bbox_2d": [1001, 749, 2002, 1498]}', [1.001, 0.749, 2.002, 1.498]),  # pixels: wrong frame
        # pattern 6: <box>d d d d</box>
        ("<box>120 300 450 800</box>", BOX),
        # the order of the cascade: pattern 1 wins over a later [d,d,d,d]
        ("[1, 2, 3, 4] then (120,300),(450,800)", BOX),
        # one match: every value >= 1 is divided, so a literal 1.0 becomes 0.001
        ("[0.5, 0.5, 1.0, 1.0]", [0.5, 0.5, 0.001, 0.001]),
        ("(1,2),(3,4)", [0.001, 0.002, 0.003, 0.004]),
        ("(0,0),(1000,1000)", [0.0, 0.0, 1.0, 1.0]),
        # several matches: the first box, and only values > 1 are divided
        ("(1,0),(500,1000) and (2,3),(4,5)", [1.0, 0.0, 0.5, 1.0]),
        ("image 1: (120,300),(450,800) image 2: (1,2),(3,4)", BOX),
        # \d is Unicode: Arabic-Indic digits parse (the strict profiles refuse them)
        ("(١٢٠,300),(450,800)", BOX),
        # failures score as [0, 0, 0, 0]
        ("no box here", ZERO),
        ("", ZERO),
        ("(-20,300),(450,800)", ZERO),
        ("(12.5,30),(45,80)", ZERO),
        ("(x1,y1),(x2,y2)", ZERO),
        ("lorem (1,2) [3,4] <b>ipsum</b> {]} " * 300, ZERO),
        # the think block is part of the text for the official parser
        ("<think>red box (451,265),(519,388)</think><answer>the second image: (120,300),(450,800)</answer>", [0.451, 0.265, 0.519, 0.388]),
    ],
)
def test_official_extract_bbox(text, expected):
    assert official_extract_bbox(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("(120,300),(450,800)", BOX),  # one match: a flat box
        ("(1,0),(500,1000) and (2,3),(4,5)", [[1.0, 0.0, 0.5, 1.0], [2 / 1000, 3 / 1000, 4 / 1000, 5 / 1000]]),
        ("no box here", []),  # the else branch over no match: an empty list, not [0, 0, 0, 0]
    ],
)
def test_migician_extract_bbox_returns_what_upstream_returns(text, expected):
    assert migician_extract_bbox(text) == expected  # x / 1000 is correctly rounded: equal to the literal


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the second image: <|box_start|>(120,300),(450,800)<|box_end|>", [120, 300, 450, 800]),
        ("[120, 300, 450, 800]", [120, 300, 450, 800]),
        ("<box>120 300 450 800</box>", [120, 300, 450, 800]),
        ("(1,0),(500,1000) and (2,3),(4,5)", [1, 0, 500, 1000]),  # several: the first, nothing divided
        ("(1,2),(3,4) (5,6),(7,8) (9,9),(9,9)", [1, 2, 3, 4]),  # matches[:-1][0]
        ("[0.12, 0.3, 0.45, 0.8]", ZERO),  # a decimal match: int() raises, the bare except answers zeros
        ("(0.12,0.3),(0.45,0.8)", ZERO),
        ("no box here", ZERO),
        ("(١٢٠,300),(450,800)", [120, 300, 450, 800]),  # int() reads Unicode digits too
        ("<think>ref (451,265),(519,388)</think><answer>(120,300),(450,800)</answer>", [451, 265, 519, 388]),
    ],
)
def test_univg_extract_bbox(text, expected):
    got = univg_extract_bbox(text)
    assert got == expected and all(type(v) is type(expected[0]) for v in got)


def test_official_parse_reads_the_whole_response_think_block_included():
    c = "<think>red box (451,265),(519,388)</think><answer>the second image: (120,300),(450,800)</answer>"
    # the think block's box is the first of two matches: 0.068 x 0.123, inside a 0.2 x 0.7 truth
    assert official_completion_iou(c, [0.4, 0.2, 0.6, 0.9]) == pytest.approx(0.068 * 0.123 / 0.14, abs=1e-12)
    assert official_completion_iou(c, BOX) == 0.0  # the answer's box would have scored 1
    assert official_completion_iou("<think>x</think><answer>nothing</answer>", BOX) == 0.0


@pytest.mark.parametrize(
    "pred, expected",
    [
        ([0.1, 0.2, 0.5, 0.6], [0.1, 0.21, 0.5, 0.66]),  # y1 * 1.05, y2 * 1.10, rounded to 3 places
        ([0.1, 0.96, 0.2, 0.95], [0.1, 0.999, 0.2, 0.999]),  # capped at 0.999
        ([0.1, 0.1234, 0.2, 0.4321], [0.1, 0.13, 0.2, 0.475]),  # 0.12957 -> 0.13, 0.47531 -> 0.475
        ([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 0.1, 0.1]], [[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 0.1, 0.1]]),  # list * float raises
        ([], []),  # [][1] raises
    ],
)
def test_migician_y_rescale(pred, expected):
    assert migician_y_rescale(pred) == expected


def test_univg_y_rescale_on_the_1000_grid():
    assert univg_y_rescale([100, 200, 500, 600]) == [100, 210, 500, 660]
    assert univg_y_rescale([100, 990, 500, 950]) == [100, 999, 500, 999]
    assert univg_y_rescale([0.0, 0.0, 0.0, 0.0]) == [0.0, 0, 0.0, 0]  # a parse failure stays zero


def test_calculate_iou_takes_the_first_of_several_and_zero_for_none():
    assert calculate_iou(BOX, []) == 0.0
    assert calculate_iou(BOX, [BOX, ZERO]) == 1.0
    assert calculate_iou([0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.5, 0.5]) == 0.0  # inverted ground truth: 0
    assert calculate_iou([100, 200, 500, 600], [100, 200, 500, 400]) == 0.5  # 0-1000 ints, exact


def test_official_scorer_frames():
    mig, univg = OfficialScorer(), OfficialScorer("univg-r1")
    # Migician's scorer divides a 0-1000 ground truth; UniVG-R1's compares on the grid
    assert mig.ground_truth([100, 200, 500, 600], "0-1000") == [0.1, 0.2, 0.5, 0.6]
    assert mig.ground_truth([0.1, 0.2, 1.048, 0.6], "0-1") == [0.1, 0.2, 1.048, 0.6]  # never clipped
    assert univg.ground_truth([100, 200, 500, 600], "0-1000") == [100, 200, 500, 600]
    assert not univg.accepts("0-1") and mig.accepts("0-1000") and not mig.accepts("0-100")
    with pytest.raises(ValueError, match="0-1000"):
        univg.ground_truth([0.1, 0.2, 0.5, 0.6], "0-1")
    # the 0-1 float answer: Migician's parser reads it, UniVG-R1's copy scores it 0
    assert mig.iou("[0.1, 0.2, 0.5, 0.6]", [100, 200, 500, 600], "0-1000") == 1.0
    assert univg.iou("[0.1, 0.2, 0.5, 0.6]", [100, 200, 500, 600], "0-1000") == 0.0
    # y-rescale: [0.1, 0.21, 0.5, 0.55] against [0.1, 0.2, 0.5, 0.6]: 0.4 * 0.34 / 0.16
    scaled = OfficialScorer(y_rescale=True)
    assert scaled.iou("(100,200),(500,500)", [0.1, 0.2, 0.5, 0.6]) == pytest.approx(0.85, abs=1e-12)
    assert mig.iou("(100,200),(500,500)", [0.1, 0.2, 0.5, 0.6]) == pytest.approx(0.75, abs=1e-12)
    assert scaled.describe()["y_rescale"] is True and scaled.describe()["scorer"] == "migician"
    with pytest.raises(ValueError, match="unknown official scorer"):
        OfficialScorer("lenient")


def test_official_prompts_are_the_scripts_strings():
    q = "These images share one object in common. Recognize and locate this object in the 2th image. "
    assert MIG_PROMPTS["migician-qwen"].render(q) == (
        q + "Format:<|box_start|>(x1,y1),(x2,y2)<|box_start|>. Don't generate addtional words.")
    assert MIG_PROMPTS["univg-r1-qwen"].render(q).endswith("(x2,y2)<|box_end|>. Don't generate addtional words.")
    assert MIG_PROMPTS["univg-r1-think"].render("Q.") == (
        "Q. First output the thinking process in <think> </think> tags and then output the bounding box "
        "in <answer> </answer> tags.")
    hashes = {t.sha256 for t in MIG_PROMPTS.values()}
    assert len(hashes) == 3 and all(len(h) == 12 for h in hashes)
    assert MIG_PROMPTS["migician-qwen"].max_new_tokens == 128


@pytest.mark.parametrize(
    "gt, pred, expected",
    [
        ([0.25, 0.25, 0.75, 0.75], [0.25, 0.25, 0.5, 0.75], 0.5),
        ([0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], 0.0),  # touching
        ([0.25, 0.25, 0.75, 0.75], ZERO, 0.0),  # parse failure
        ([0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], 0.0),  # upstream divides by zero here
        ([0.0, 0.0, 1.048, 1.0], [0.0, 0.0, 1.0, 1.0], 1.0 / 1.048),  # ground truth not clipped
    ],
)
def test_official_iou(gt, pred, expected):
    assert official_iou(gt, pred) == pytest.approx(expected, abs=1e-15)


finite = st.floats(-2, 2, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(st.lists(finite, min_size=4, max_size=4), st.lists(finite, min_size=4, max_size=4))
def test_official_iou_equals_plain_iou_on_finite_boxes(g, p):
    assert official_iou(g, p) == iou(g, p)


def test_official_metrics_exact_values():
    m = official_metrics({"a": [1.0, 0.6, 0.4, 0.0], "b": [0.5]})
    assert m["a"] == {"n": 4, "acc@0.3": 0.75, "acc@0.5": 0.5, "acc@0.7": 0.25, "mean_iou": 0.5}
    assert m["b"] == {"n": 1, "acc@0.3": 1.0, "acc@0.5": 1.0, "acc@0.7": 0.0, "mean_iou": 0.5}  # >= thresholds
    assert m["overall"] == {"n": 5, "acc@0.3": 0.8, "acc@0.5": 0.6, "acc@0.7": 0.2, "mean_iou": 0.5}
    assert m["macro"] == {"n": 5, "acc@0.3": 0.875, "acc@0.5": 0.75, "acc@0.7": 0.125, "mean_iou": 0.5}


def test_official_metrics_empty_and_reserved_names():
    empty = {"n": 0, "acc@0.3": None, "acc@0.5": None, "acc@0.7": None, "mean_iou": None}
    assert official_metrics({"a": []}) == {"a": empty, "overall": empty, "macro": empty}
    with pytest.raises(ValueError, match="overall"):
        official_metrics({"overall": [1.0]})


@pytest.mark.skipif(not MIG_BENCH.is_file(), reason="../shared/data/mig-bench is not available here")
def test_real_group_grounding_answers_parse_to_the_ground_truth():
    """MIG-Bench states group_grounding targets as Qwen2-VL text in additional_info:
    both the official parser and the strict qwen2_vl profile must read them back."""
    items = [x for x in json.loads(MIG_BENCH.read_text()) if x["task"] == "group_grounding"]
    assert len(items) == 499
    profile = PROFILES["qwen2_vl"]
    for x in items:
        info, n = x["additional_info"], len(x["images"])
        assert official_extract_bbox(info) == pytest.approx(x["answer"], abs=1e-12)
        parsed = profile.parse_answer(info, [(100, 100)] * n)
        assert parsed.error is None and parsed.box == pytest.approx(x["answer"], abs=1e-12)
        word = re.match(r"It(?: is|'s) in the (\w+) image", info).group(1)
        assert parsed.image == ["first", "second", "third", "fourth", "fifth"].index(word)
