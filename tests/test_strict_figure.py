"""schemas.scoring.score_grounding: eval's strict figure (single box, optional envelope, image where needed)."""
from __future__ import annotations

import pytest

from schemas.profiles import get_profile
from schemas.scoring import image_fixed, score_grounding, split_optional_envelope

Q = get_profile("qwen2_vl")
SIZES = [(100, 100)] * 3
TRUTH = [0.1, 0.1, 0.5, 0.5]


@pytest.mark.parametrize("text, expected", [
    ("(1,2),(3,4)", (None, "(1,2),(3,4)", None)),  # bare: the whole text is the answer
    ("<answer>A</answer>", (None, "A", None)),
    ("<think>R</think><answer>A</answer>", ("R", "A", None)),
    ("<think>R</think> A", ("R", " A", None)),  # reasoning, then a bare answer
    ("R</think><answer>A</answer>", ("R", "A", None)),  # the template opened <think> in the prompt
    ("<answer>A</answer><answer>B</answer>", (None, None, "several_answers")),
    ("<think>R</think><think>S</think>A", (None, None, "no_think")),
    ("<think>R and no end", (None, None, "truncated")),
    ("<think>R <answer>A</answer>", (None, None, "no_think")),
    ("<answer>A", (None, None, "truncated")),
    ("<answer>A</answer><think>R</think>", (None, None, "answer_before_think")),
    ("Sure! <answer>A</answer>", (None, None, "text_outside_tags")),
    ("<think>R</think><answer>A</answer> thanks", ("R", None, "text_outside_tags")),
    ("A</answer>", (None, None, "no_answer_tag")),
])
def test_split_optional_envelope(text, expected):
    assert split_optional_envelope(text) == expected


@pytest.mark.parametrize("completion, fixed, outcome, iou", [
    # the question fixes the image: a bare box is an answer
    ("(100,100),(500,500)", True, "ok:image_from_question", 1.0),
    ("<think>It is there.</think><answer>(100,100),(500,500)</answer>", True, "ok:image_from_question", 1.0),
    # ...but a named wrong image is still wrong
    ("the first image: (100,100),(500,500)", True, "wrong_image", 0.0),
    ("the third image: (100,100),(300,300)", True, "ok", 0.25),
    # the answer must choose: a bare box names nothing
    ("(100,100),(500,500)", False, "no_image", 0.0),
    ("<think>Only the third image has it.</think><answer>(100,100),(500,500)</answer>", False, "ok:image_from_think", 1.0),
    ("<think>The first image and the third image.</think><answer>(100,100),(500,500)</answer>", False, "no_image", 0.0),
    ("<think>Only the second image has it.</think><answer>(100,100),(500,500)</answer>", False, "wrong_image", 0.0),
    # one box only, whatever the envelope
    ("the third image: (100,100),(500,500) or (0,0),(1,1)", True, "several_answers", 0.0),
    ("", True, "no_box", 0.0),
])
def test_score_grounding(completion, fixed, outcome, iou):
    s = score_grounding(completion, 2, [], TRUTH, SIZES, Q, fixed=fixed)
    assert (s.outcome, s.iou) == (outcome, pytest.approx(iou, abs=1e-12))
    assert s.format_ok == (outcome.startswith("ok") or outcome == "wrong_image")


def test_equivalent_image_and_unverifiable_rows():
    # diff: either image is right, but the answer must name one
    assert score_grounding("the first image: (100,100),(500,500)", 2, [0], TRUTH, SIZES, Q).outcome == "ok"
    s = score_grounding("(100,100),(500,500)", 2, [], [0.5, 0.5, 0.2, 0.2], SIZES, Q, fixed=True)
    assert (s.outcome, s.iou, s.image_correct) == ("unverifiable:target_box_inverted", None, None)


def test_fixed_image_is_parsed_in_that_images_frame():
    """Qwen2.5-VL pixels: a box without "image" is read in the TARGET image's resized frame."""
    p = get_profile("qwen2_5_vl")
    sizes = [(280, 280), (560, 280)]  # smart_resize keeps both (multiples of 28)
    s = score_grounding('{"bbox_2d": [56, 28, 280, 140]}', 1, [], [0.1, 0.1, 0.5, 0.5], sizes, p, fixed=True)
    assert s.outcome == "ok:image_from_question" and s.parsed.image == 1
    assert s.parsed.box == pytest.approx([0.1, 0.1, 0.5, 0.5]) and s.iou == pytest.approx(1.0)


@pytest.mark.parametrize("meta, fixed", [
    ({"target_from": "question"}, True), ({"target_from": "additional_info"}, False),
    ({"target_from": "task_rule:diff"}, False), ({}, False), (None, False),
])
def test_image_fixed(meta, fixed):
    assert image_fixed(meta) is fixed
