"""schemas.official: the MIG-Bench lenient parser and metric, quirks included."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.boxes import iou
from schemas.official import (
    answer_span,
    official_completion_iou,
    official_extract_bbox,
    official_iou,
    official_metrics,
    official_named_image,
    strict_official_iou,
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
    "completion, span",
    [
        ("<think>a</think><answer>b</answer>", "b"),
        ("<think>a</think><answer>b and more", "b and more"),  # unclosed: what is there
        ("<answer>b</answer><answer>c</answer>", "b"),
        ("plain text", "plain text"),
    ],
)
def test_answer_span(completion, span):
    assert answer_span(completion) == span


def test_completion_iou_reads_the_answer_not_the_think_block():
    c = "<think>red box (451,265),(519,388)</think><answer>the second image: (120,300),(450,800)</answer>"
    assert official_completion_iou(c, BOX) == 1.0
    assert official_completion_iou("<think>x</think><answer>nothing</answer>", BOX) == 0.0


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


@pytest.mark.parametrize(
    "completion, named",
    [
        ("<answer>It is in the third image. (1,2),(3,4)</answer>", 2),
        ("<think>the first image shows</think><answer>image-2: (1,2),(3,4)</answer>", 1),
        ("the 2th image (1,2),(3,4)", 1),
        ("(1,2),(3,4)", None),
    ],
)
def test_official_named_image(completion, named):
    assert official_named_image(completion) == named


@pytest.mark.parametrize(
    "completion, target, equivalent, expected",
    [
        ("<answer>the third image: (120,300),(450,800)</answer>", 2, (), 1.0),
        ("<answer>the third image: (120,300),(450,800)</answer>", 1, (), 0.0),
        ("<answer>the third image: (120,300),(450,800)</answer>", 1, (2,), 1.0),  # diff: either image
        ("<answer>(120,300),(450,800)</answer>", 0, (), 0.0),  # no image named: no credit
    ],
)
def test_strict_official_iou(completion, target, equivalent, expected):
    assert strict_official_iou(completion, BOX, target, equivalent) == expected


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
        assert official_named_image(info) == parsed.image
