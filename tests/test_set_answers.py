"""Set answers (schemas.set_answers): literal renderings and parses of several boxes and of none, per profile."""
from __future__ import annotations

import pytest

from schemas.profiles import PARSE_ERRORS, get_profile
from schemas.set_answers import parse_set, parse_set_answer, render_set, render_set_answer

SIZES = [(56, 56), (84, 56)]  # smart_resize keeps both (multiples of 28): qwen2_5_vl pixels are these
A, B = [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]
PAIRS = [(1, B), (0, A)]  # rendered sorted by image

RENDER = [
    ("short", PAIRS, "image 1: (0,0),(500,500); image 2: (500,500),(1000,1000)"),
    ("short", [], "none"),
    ("qwen2_vl", PAIRS, "the first image: <|box_start|>(0,0),(500,500)<|box_end|>; "
                        "the second image: <|box_start|>(500,500),(1000,1000)<|box_end|>"),
    ("qwen2_vl", [], "none"),
    ("norm1000", PAIRS, '[{"image": 1, "bbox_2d": [0, 0, 500, 500], "label": "target"}, '
                        '{"image": 2, "bbox_2d": [500, 500, 1000, 1000], "label": "target"}]'),
    ("norm1000", [], "[]"),
    ("qwen2_5_vl", PAIRS, '[{"image": 1, "bbox_2d": [0, 0, 28, 28], "label": "target"}, '
                          '{"image": 2, "bbox_2d": [42, 28, 84, 56], "label": "target"}]'),
    ("qwen2_5_vl", [(0, A), (0, B)], '[{"image": 1, "bbox_2d": [0, 0, 28, 28], "label": "target"}, '
                                     '{"image": 1, "bbox_2d": [28, 28, 56, 56], "label": "target"}]'),
]


@pytest.mark.parametrize("name, pairs, text", RENDER)
def test_render_and_parse_back(name, pairs, text):
    profile = get_profile(name)
    assert render_set_answer(profile, pairs, SIZES) == text
    parsed = parse_set(profile, render_set(profile, "why", pairs, SIZES), SIZES)
    assert parsed.error is None and parsed.think == "why"
    assert parsed.pairs == [(i, pytest.approx(b)) for i, b in sorted(pairs)]


PARSE = [  # profile, answer, pairs or the error's name
    ("short", "image 2: (0,0),(500,500), (500,500),(1000,1000)", [(1, A), (1, B)]),  # the second box keeps image 2
    ("short", "None.", []),
    ("short", " none ", []),
    ("short", "image 1: (0,0),(500,500); image 1: (0,0),(500,500)", "duplicate_box"),
    ("short", "image 3: (0,0),(1,1)", "image_out_of_range"),
    ("short", "(0,0),(500,500)", "no_image"),
    ("short", "image 1: (0,0),(5x0,500)", "unparsable_numbers"),
    ("short", "none; image 1: (0,0),(500,500)", "none_with_boxes"),
    ("short", "image 1: (0,0),(500,500); none", "none_with_boxes"),
    ("short", "image 1: (0,0),(500,500); image 2", "no_box"),
    ("short", "nothing here", "no_box"),
    ("short", "", "no_box"),
    ("short", "image 1 and image 2: (0,0),(1,1)", "several_answers"),
    ("qwen2_vl", "the second image: <|box_start|>(0,0),(500,500)<|box_end|>", [(1, A)]),
    ("qwen2_vl", "none", []),
    ("norm1000", '```json\n[{"bbox_2d": [0, 0, 500, 500], "image": 2, "label": "cat"}]\n```', [(1, A)]),  # as Qwen
    ("norm1000", '{"image": 1, "bbox_2d": [0, 0, 500, 500]}', [(0, A)]),  # one object alone
    ("norm1000", "[]", []),
    ("norm1000", '[{"bbox_2d": [0, 0, 1, 1]}]', "no_image"),
    ("norm1000", '[{"image": 3, "bbox_2d": [0, 0, 1, 1]}]', "image_out_of_range"),
    ("norm1000", '[{"image": 0, "bbox_2d": [0, 0, 1, 1]}]', "image_out_of_range"),
    ("norm1000", '[{"image": 1, "bbox_2d": [0, 0, 1]}]', "unparsable_numbers"),
    ("norm1000", '[{"image": 1, "bbox_2d": [0, 0, 1, true]}]', "unparsable_numbers"),
    ("norm1000", '[{"image": 1, "bbox_2d": "0,0,1,1"}]', "unparsable_numbers"),
    ("norm1000", '[{"image": true, "bbox_2d": [0, 0, 1, 1]}]', "no_image"),
    ("norm1000", '[{"image": 1, "bbox_2d": [0, 0, 1, 1], "image": 2}]', "several_answers"),  # a duplicate key
    ("norm1000", '[{"image": 1, "bbox_2d": [0, 0, 500, 500]}, {"image": 1, "bbox_2d": [0, 0, 500, 500]}]',
     "duplicate_box"),
    ("norm1000", '[{"image": 1', "bad_json"),
    ("norm1000", "none", "bad_json"),
    ("norm1000", "[1]", "no_box"),
    ("norm1000", '[{"image": 1}]', "no_box"),
    ("norm1000", '"a string"', "no_box"),
    ("qwen2_5_vl", '[{"image": 2, "bbox_2d": [42, 28, 84, 56]}]', [(1, B)]),
]


@pytest.mark.parametrize("name, answer, expected", PARSE)
def test_parse_set_answer(name, answer, expected):
    parsed = parse_set_answer(get_profile(name), answer, SIZES)
    if isinstance(expected, str):
        assert expected in PARSE_ERRORS and (parsed.pairs, parsed.error) == (None, expected)
    else:
        assert parsed.error is None and parsed.pairs == [(i, pytest.approx(b)) for i, b in expected]


@pytest.mark.parametrize("completion, error", [
    ("<answer>none</answer>", "no_think"),
    ("<think>x</think><answer>none", "truncated"),
    ("<think>x</think><answer>none</answer> more", "text_outside_tags"),
])
def test_the_envelope_is_as_strict_as_for_one_box(completion, error):
    assert parse_set(get_profile("short"), completion, SIZES).error == error


def test_a_single_image_needs_no_image_named():
    assert parse_set_answer(get_profile("short"), "(0,0),(500,500)", SIZES[:1]).pairs == [(0, A)]
    assert parse_set_answer(get_profile("norm1000"), '[{"bbox_2d": [0, 0, 500, 500]}]', SIZES[:1]).pairs == [(0, A)]


def test_reasoning_holding_a_reserved_tag_is_refused():
    with pytest.raises(ValueError):
        render_set(get_profile("short"), "a </answer> b", [], SIZES)


IMAGES = [{"sha256": "a", "width": 56, "height": 56}, {"sha256": "b", "width": 84, "height": 56}]
SINGLE_ROW = {"images": IMAGES, "target_image": 1, "target_box": B, "targets": None}
SET_ROW = {"images": IMAGES, "target_image": None, "target_box": None,
           "targets": [{"image": 1, "box": B}, {"image": 0, "box": A}]}
NONE_ROW = {**SET_ROW, "targets": []}


def test_a_rows_ground_truth_renders_from_one_home():
    from schemas.set_answers import render_row, render_row_answer

    short = get_profile("short")
    assert render_row(SINGLE_ROW, short, "r") == short.render("r", 1, B, SIZES)
    assert render_row(SINGLE_ROW, short, "r", image=0) == short.render("r", 0, B, SIZES)  # an equivalent image
    assert render_row_answer(SINGLE_ROW, short) == "image 2: (500,500),(1000,1000)"
    assert render_row_answer(SET_ROW, short) == "image 1: (0,0),(500,500); image 2: (500,500),(1000,1000)"
    assert render_row(NONE_ROW, short, "r") == "<think>r</think><answer>none</answer>"


def test_cot_target_keeps_the_teacher_box_for_single_rows_and_the_set_for_set_rows():
    from training.data import cot_target

    short = get_profile("short")
    cot = {**SINGLE_ROW, "reasoning": "r", "pred_image": 1, "pred_box": [0.5, 0.5, 0.9, 0.9]}
    assert cot_target(cot, short) == "<think>r</think><answer>image 2: (500,500),(1000,1000)</answer>"
    assert cot_target(cot, short, "teacher") == "<think>r</think><answer>image 2: (500,500),(900,900)</answer>"
    cot_set = {**SET_ROW, "reasoning": "r", "pred_image": None, "pred_box": None}
    for box in ("annotation", "teacher"):  # no teacher set is stored: the ground-truth set
        assert cot_target(cot_set, short, box) == ("<think>r</think><answer>image 1: (0,0),(500,500); "
                                                   "image 2: (500,500),(1000,1000)</answer>")
