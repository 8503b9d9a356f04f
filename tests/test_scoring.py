"""schemas.scoring: literal completion -> scores and rewards, and multiple choice."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.official import official_completion_iou, official_extract_bbox
from schemas.profiles import PARSE_ERRORS, PROFILES
from schemas.scoring import (
    SCORING_VERSION,
    extract_choice,
    format_score,
    image_score,
    iou_score,
    score_choice,
    score_completion,
)
from training.rewards import DEFAULT_REWARD_WEIGHTS, combined_score

S3 = [(640, 480), (1000, 500), (4000, 3000)]  # the second one's smart_resize frame is 1008x504
T = [0.25, 0.25, 0.75, 0.75]
NAN = float("nan")


def wrap(answer: str) -> str:
    return f"<think>Compare the images first.</think><answer>{answer}</answer>"


# (profile, completion, target_image, equivalent_images, target_box,
#  expected (format_ok, image_correct, iou, reason), expected combined score)
CASES = [
    ("qwen2_vl", wrap("the second image: (250,250),(750,750)"), 1, [], T, (True, True, 1.0, None), 1.4),
    ("qwen2_vl", wrap("the second image: (250,250),(500,750)"), 1, [], T, (True, True, 0.5, None), 0.9),
    ("qwen2_vl", wrap("the second image: (0,0),(100,100)"), 1, [], T, (True, True, 0.0, None), 0.4),
    ("qwen2_vl", wrap("the second image: (750,750),(250,250)"), 1, [], T, (True, True, 0.0, None), 0.4),  # inverted
    ("qwen2_vl", wrap("the first image: (250,250),(750,750)"), 1, [], T, (True, False, 0.0, "wrong_image"), 0.1),
    ("qwen2_vl", wrap("the first image: (250,250),(750,750)"), 1, [0], T, (True, True, 1.0, None), 1.4),  # diff task
    ("qwen2_vl", wrap("(250,250),(750,750)"), 0, [], T, (False, False, 0.0, "no_image"), 0.0),
    ("qwen2_vl", "<think>x</think><answer>the second image: (250,250),(750", 1, [], T, (False, False, 0.0, "truncated"), 0.0),
    ("qwen2_vl", "<answer>the second image: (250,250),(750,750)</answer>", 1, [], T, (False, False, 0.0, "no_think"), 0.0),
    ("qwen2_vl", wrap("the second image: (٢٥٠,250),(750,750)"), 1, [], T, (False, False, 0.0, "unparsable_numbers"), 0.0),
    ("qwen2_vl", "", 1, [], T, (False, False, 0.0, "no_answer_tag"), 0.0),
    # ground truth is clipped for scoring; the prediction is scored as written
    ("qwen2_vl", wrap("the second image: (0,0),(1000,1000)"), 1, [], [0.0, 0.0, 1.04, 1.0], (True, True, 1.0, None), 1.4),
    ("qwen2_vl", wrap("the second image: (500,500),(1500,1500)"), 1, [], [0.5, 0.5, 1.0, 1.0], (True, True, 0.25, None), 0.65),
    # rows that cannot be verified score None, never a false 0
    ("qwen2_vl", wrap("the second image: (250,250),(750,750)"), 1, [], None, (True, None, None, "unverifiable:no_target_box"), None),
    ("qwen2_vl", "garbage", 1, [], None, (False, None, None, "unverifiable:no_target_box"), None),
    ("qwen2_vl", wrap("the second image: (250,250),(750,750)"), None, [], T, (True, None, None, "unverifiable:no_target_image"), None),
    ("qwen2_vl", wrap("the second image: (250,250),(750,750)"), 5, [], T, (True, None, None, "unverifiable:no_target_image"), None),
    ("qwen2_vl", wrap("the second image: (250,250),(750,750)"), 1, [], [NAN, 0.2, 0.5, 0.7], (True, None, None, "unverifiable:target_box_nan"), None),
    ("qwen2_vl", wrap("the second image: (250,250),(750,750)"), 1, [], [0.5, 0.2, 0.1, 0.7], (True, None, None, "unverifiable:target_box_inverted"), None),
    ("qwen2_vl", wrap("the second image: (250,250),(750,750)"), 1, [], [0.5, 0.2], (True, None, None, "unverifiable:target_box_not_four_numbers"), None),
    # other profiles
    ("short", wrap("image 2: (250,250),(750,750)"), 1, [], T, (True, True, 1.0, None), 1.4),
    ("norm1000", wrap('{"image": 2, "bbox_2d": [250, 250, 750, 750]}'), 1, [], T, (True, True, 1.0, None), 1.4),
    ("norm1000", wrap('{"image": 3, "bbox_2d": [250, 250, 750, 750]}'), 1, [], T, (True, False, 0.0, "wrong_image"), 0.1),
    ("qwen2_5_vl", wrap('{"image": 2, "bbox_2d": [252, 126, 756, 378]}'), 1, [], T, (True, True, 1.0, None), 1.4),
    # a 0-1000 answer read in the pixel frame: the classic frame mismatch, scored as such
    ("qwen2_5_vl", wrap('{"image": 2, "bbox_2d": [250, 250, 750, 750]}'), 1, [], T, (True, True, 0.20348332396955923, None), 0.60348332396955923),
]


@pytest.mark.parametrize("name, completion, target, equivalent, box, expected, combined", CASES)
def test_score_completion(name, completion, target, equivalent, box, expected, combined):
    s = score_completion(completion, target, equivalent, box, S3, PROFILES[name])
    got = (s.format_ok, s.image_correct, s.iou, s.reason)
    assert got[:2] == expected[:2] and got[3] == expected[3]
    assert s.iou == (None if expected[2] is None else pytest.approx(expected[2], abs=1e-12))
    assert combined_score(s) == (None if combined is None else pytest.approx(combined, abs=1e-12))


def test_target_box_verdict_depends_on_types_not_just_values():
    completion, profile = wrap("the second image: (0,0),(1000,1000)"), PROFILES["qwen2_vl"]
    assert score_completion(completion, 1, [], [0, 0, 1, 1], S3, profile).iou == 1.0
    s = score_completion(completion, 1, [], [False, False, True, True], S3, profile)
    assert (s.iou, s.reason) == (None, "unverifiable:target_box_not_four_numbers")


def test_single_image_rows_need_no_image_named():
    s = score_completion(wrap("(250,250),(750,750)"), 0, [], T, [(640, 480)], PROFILES["qwen2_vl"])
    assert (s.format_ok, s.image_correct, s.iou) == (True, True, 1.0)


def test_component_scores():
    good = score_completion(wrap("the second image: (250,250),(500,750)"), 1, [], T, S3, PROFILES["qwen2_vl"])
    assert (format_score(good), image_score(good), iou_score(good)) == (1.0, 1.0, 0.5)
    wrong = score_completion(wrap("the first image: (250,250),(500,750)"), 1, [], T, S3, PROFILES["qwen2_vl"])
    assert (format_score(wrong), image_score(wrong), iou_score(wrong)) == (1.0, 0.0, 0.0)
    unverifiable = score_completion(wrap("image 2: (1,2),(3,4)"), 1, [], None, S3, PROFILES["qwen2_vl"])
    assert (format_score(unverifiable), image_score(unverifiable), iou_score(unverifiable)) == (1.0, None, None)
    assert good.parsed.box == [0.25, 0.25, 0.5, 0.75] and good.parsed.think == "Compare the images first."


def test_combined_score_weights():
    s = score_completion(wrap("the second image: (250,250),(500,750)"), 1, [], T, S3, PROFILES["qwen2_vl"])
    assert combined_score(s, {"iou": 1.0}) == 0.5
    assert combined_score(s, {"format": 1.0, "image": 1.0, "iou": 2.0}) == 3.0
    assert combined_score(s, {}) == 0
    with pytest.raises(ValueError, match="unknown reward weights \\['iuo'\\]"):
        combined_score(s, {"iuo": 1.0})
    assert DEFAULT_REWARD_WEIGHTS == {"format": 0.1, "image": 0.3, "iou": 1.0}
    assert isinstance(SCORING_VERSION, str) and SCORING_VERSION


# ---- multiple choice ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, n, expected",
    [
        ("(B)", 4, "B"),
        ("B.", 4, "B"),
        ("B", 4, "B"),
        ("b", 4, "B"),
        (" (c) ", 4, "C"),
        ("Answer: B", 4, "B"),
        ("answer: (C)", 4, "C"),
        ("ANSWER IS D", 4, "D"),
        ("The answer is (A).", 4, "A"),
        ("<answer>B</answer>", 4, "B"),
        ("<answer> (B) </answer>", 4, "B"),
        ("<think>Maybe A, or C.</think><answer>D</answer>", 4, "D"),
        ("the answer is b", 4, "B"),
        ("I believe the answer is b.", 4, "B"),
        ("(B) a red car", 4, "B"),
        ("B. a red car", 4, "B"),
        ("Looking closely:\nC) the dog", 4, "C"),
        ("A. cat B. dog. The answer is B", 4, "B"),  # the answer phrase outranks a list
        ("Answer: B\nAnswer: C", 4, "B"),
        ("<answer>E</answer>", 5, "E"),
        # nothing to read, or a letter that is not an option
        ("the answer is a cat", 4, None),
        ("The answer is E", 4, None),
        ("<answer>E</answer>", 4, None),
        ("I think it is the dog", 4, None),
        ("", 4, None),
        ("<answer>", 4, None),
        ("answer" + " " * 20_000 + "?", 4, None),
    ],
)
def test_extract_choice(text, n, expected):
    assert extract_choice(text, n) == expected


@pytest.mark.parametrize(
    "text, answer, expected",
    [
        ("(B)", "B", 1.0),
        ("the answer is b", "(B)", 1.0),  # BLINK writes answers as "(B)"
        ("C", "B", 0.0),
        ("no idea", "B", 0.0),
        ("B", None, None),
        ("B", "", None),
    ],
)
def test_score_choice(text, answer, expected):
    assert score_choice(text, answer, 4) == expected


# ---- properties ------------------------------------------------------------------------------
PIECES = ["<think>", "</think>", "<answer>", "</answer>", "(", ")", ",", "1", "250", "750", "٣", "image", " ",
          "\n", "{", "}", '"bbox_2d"', '"image"', ":", "[", "]", "2nd", "second", "<|box_start|>", "-", ".", "NaN"]


@settings(max_examples=500, deadline=None)
@given(
    text=st.one_of(st.text(max_size=200), st.lists(st.sampled_from(PIECES), max_size=40).map("".join)),
    name=st.sampled_from(sorted(PROFILES)),
)
def test_no_completion_makes_scoring_raise(text, name):
    s = score_completion(text, 1, [], T, S3, PROFILES[name])
    assert s.parsed.error is None or s.parsed.error in PARSE_ERRORS
    assert s.format_ok == (s.parsed.error is None)
    assert 0.0 <= s.iou <= 1.0 and 0.0 <= combined_score(s) <= 1.4 + 1e-12
    assert len(official_extract_bbox(text)) == 4 and official_completion_iou(text, T) >= 0.0
    extract_choice(text, 4)


def test_schemas_never_import_torch_or_transformers():
    code = (
        "import sys, schemas.boxes, schemas.profiles, schemas.official, schemas.scoring, schemas.rows; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers', 'builders', 'training', 'polyground'}); "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
