"""schemas.profiles: literal completion -> parse tables, renders, round trips, registry."""
from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.boxes import clip01
from schemas.errors import UserError
from schemas.profiles import (
    PARSE_ERRORS,
    PROFILES,
    get_profile,
    image_mentions,
    ordinal,
    profile_for_model,
    split_envelope,
)

S3 = [(640, 480), (1000, 500), (4000, 3000)]  # frames at the served bounds: 644x476, 1008x504, 4004x2996
S1 = [(640, 480)]
BOX = [0.12, 0.3, 0.45, 0.8]
GARBAGE = "lorem (1,2) [3,4] <b>ipsum</b> {]} " * 300  # ~10 KB


def wrap(answer: str, think: str = "The target is left of the tree.") -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


# (profile, completion, image sizes, expected image, expected box, expected error)
CASES = [
    # -- the envelope (the same for every profile) --
    ("qwen2_vl", "", S3, None, None, "no_answer_tag"),
    ("qwen2_vl", "<think>I keep thinking and never stop", S3, None, None, "no_answer_tag"),
    ("qwen2_vl", GARBAGE, S3, None, None, "no_answer_tag"),
    ("qwen2_vl", "<THINK>x</THINK><ANSWER>image 2: (1,2),(3,4)</ANSWER>", S3, None, None, "no_answer_tag"),
    ("qwen2_vl", "<think>x</think><answer>the second image: (120,300),(450", S3, None, None, "truncated"),
    ("qwen2_vl", "</answer><think>x</think><answer>the second image: (1,2),(3,4)", S3, None, None, "truncated"),
    ("qwen2_vl", wrap("image 1: (1,2),(3,4)") + "<answer>image 2: (1,2),(3,4)</answer>", S3, None, None, "several_answers"),
    ("qwen2_vl", "<think>x</think><answer><answer>image 2: (1,2),(3,4)</answer></answer>", S3, None, None, "several_answers"),
    ("qwen2_vl", "<answer>the second image: (120,300),(450,800)</answer>", S3, None, None, "no_think"),
    ("qwen2_vl", "<think>a</think><think>b</think><answer>image 2: (1,2),(3,4)</answer>", S3, None, None, "no_think"),
    ("qwen2_vl", "<answer>image 2: (1,2),(3,4)</answer><think>x</think>", S3, None, None, "answer_before_think"),
    ("qwen2_vl", "<think>x <answer>image 2: (1,2),(3,4)</answer></think>", S3, None, None, "answer_before_think"),
    ("qwen2_vl", "Sure! " + wrap("image 2: (1,2),(3,4)"), S3, None, None, "text_outside_tags"),
    ("qwen2_vl", "<think>x</think> So: <answer>image 2: (1,2),(3,4)</answer>", S3, None, None, "text_outside_tags"),
    ("qwen2_vl", wrap("image 2: (1,2),(3,4)") + " Done.", S3, None, None, "text_outside_tags"),
    ("qwen2_vl", "\n <think>x</think>\n\n<answer>image 2: (120,300),(450,800)</answer>\n", S3, 1, BOX, None),
    ("qwen2_vl", "<think></think><answer>image 2: (120,300),(450,800)</answer>", S3, 1, BOX, None),  # empty think
    ("qwen2_vl", wrap(GARBAGE), S3, None, None, "no_box"),
    ("qwen2_vl", wrap(""), S3, None, None, "no_box"),
    # -- qwen2_vl: image in words, 0-1000 tuples, box tokens optional --
    ("qwen2_vl", wrap("the second image: <|box_start|>(120,300),(450,800)<|box_end|>"), S3, 1, BOX, None),
    ("qwen2_vl", wrap("the second image: (120,300),(450,800)"), S3, 1, BOX, None),
    ("qwen2_vl", wrap("It's in the third image. <|box_start|>(316,58),(764,999)<|box_end|>"), S3, 2, [0.316, 0.058, 0.764, 0.999], None),
    ("qwen2_vl", wrap("The First Image: (0,0),(1000,1000)"), S3, 0, [0.0, 0.0, 1.0, 1.0], None),
    ("qwen2_vl", wrap("the 2nd image: (120,300),(450,800)"), S3, 1, BOX, None),
    ("qwen2_vl", wrap("in the 2th image (120,300),(450,800)"), S3, 1, BOX, None),  # MIG-Bench's own spelling
    ("qwen2_vl", wrap("Image-3: (120,300),(450,800)"), S3, 2, BOX, None),
    ("qwen2_vl", wrap("image2 ( 120 , 300 ) , ( 450 , 800 )"), S3, 1, BOX, None),
    ("qwen2_vl", wrap("image 2: (12.5,30),(45,80)"), S3, 1, [0.0125, 0.03, 0.045, 0.08], None),
    ("qwen2_vl", wrap("image 2: (-20,300),(1200,800)"), S3, 1, [-0.02, 0.3, 1.2, 0.8], None),  # unclipped
    ("qwen2_vl", wrap("image 2: (0,0),(99999999999999999999,1000)"), S3, 1, [0.0, 0.0, 1e17, 1.0], None),
    ("qwen2_vl", wrap("image 2: (0,0),(" + "9" * 400 + ",1000)"), S3, None, None, "unparsable_numbers"),
    ("qwen2_vl", wrap("image 2: (١٢٠,300),(450,800)"), S3, None, None, "unparsable_numbers"),
    ("qwen2_vl", wrap("the N-th image: <|box_start|>(x1,y1),(x2,y2)<|box_end|>"), S3, None, None, "unparsable_numbers"),
    ("qwen2_vl", wrap("image 2: (1,2,3),(4,5)"), S3, None, None, "no_box"),
    ("qwen2_vl", wrap("image 2: (1,2),(3,4) or (5,6),(7,8)"), S3, None, None, "several_answers"),
    ("qwen2_vl", wrap("from the first image, it is in the second image: (1,2),(3,4)"), S3, None, None, "several_answers"),
    ("qwen2_vl", wrap("the second image"), S3, None, None, "no_box"),
    ("qwen2_vl", wrap("(120,300),(450,800)"), S3, None, None, "no_image"),
    ("qwen2_vl", wrap("(120,300),(450,800)"), S1, 0, BOX, None),  # one image: nothing to name
    ("qwen2_vl", wrap("image ٢: (120,300),(450,800)"), S3, None, None, "no_image"),
    ("qwen2_vl", wrap("the fourth image: (120,300),(450,800)"), S3, None, None, "image_out_of_range"),
    ("qwen2_vl", wrap("image 0: (120,300),(450,800)"), S3, None, None, "image_out_of_range"),
    ("qwen2_vl", wrap("image 99999999999999999999: (1,2),(3,4)"), S3, None, None, "image_out_of_range"),
    # -- short: the same parser, a compact render --
    ("short", wrap("image 2: (0,500),(500,1000)"), S3, 1, [0.0, 0.5, 0.5, 1.0], None),
    ("short", wrap("image 3:(0,500),(500,1000)"), S3, 2, [0.0, 0.5, 0.5, 1.0], None),
    # -- norm1000: JSON, 1-based image, 0-1000 --
    ("norm1000", wrap('{"image": 2, "bbox_2d": [120, 300, 450, 800]}'), S3, 1, BOX, None),
    ("norm1000", wrap('```json\n{"image": 2, "bbox_2d": [120, 300, 450, 800]}\n```'), S3, 1, BOX, None),
    ("norm1000", wrap('[{"image": 2, "bbox_2d": [120, 300, 450, 800], "label": "cat"}]'), S3, 1, BOX, None),
    ("norm1000", wrap('{"image": 2, "bbox_2d": [12.5, 30, 45, 80]}'), S3, 1, [0.0125, 0.03, 0.045, 0.08], None),
    ("norm1000", wrap('{"image": 2, "bbox_2d": [-5, 300, 1200, 800]}'), S3, 1, [-0.005, 0.3, 1.2, 0.8], None),
    ("norm1000", wrap('{"bbox_2d": [120, 300, 450, 800]}'), S1, 0, BOX, None),
    ("norm1000", wrap('{"bbox_2d": [120, 300, 450, 800]}'), S3, None, None, "no_image"),
    ("norm1000", wrap('{"image": "2", "bbox_2d": [120, 300, 450, 800]}'), S3, None, None, "no_image"),
    ("norm1000", wrap('{"image": 2.0, "bbox_2d": [120, 300, 450, 800]}'), S3, None, None, "no_image"),
    ("norm1000", wrap('{"image": true, "bbox_2d": [120, 300, 450, 800]}'), S3, None, None, "no_image"),
    ("norm1000", wrap('{"image": 0, "bbox_2d": [120, 300, 450, 800]}'), S3, None, None, "image_out_of_range"),
    ("norm1000", wrap('{"image": 4, "bbox_2d": [120, 300, 450, 800]}'), S3, None, None, "image_out_of_range"),
    ("norm1000", wrap('{"image": 1, "image": 2, "bbox_2d": [120, 300, 450, 800]}'), S3, None, None, "several_answers"),
    ("norm1000", wrap('[{"image": 1, "bbox_2d": [1, 2, 3, 4]}, {"image": 2, "bbox_2d": [1, 2, 3, 4]}]'), S3, None, None, "several_answers"),
    ("norm1000", wrap('{"image": 2, "bbox_2d": [[1, 2, 3, 4], [5, 6, 7, 8]]}'), S3, None, None, "several_answers"),
    ("norm1000", wrap('{"image": 2, "bbox_2d": [[1, 2, 3, 4]]}'), S3, None, None, "unparsable_numbers"),
    ("norm1000", wrap('{"image": 2, "bbox_2d": [120, 300, 450]}'), S3, None, None, "unparsable_numbers"),
    ("norm1000", wrap('{"image": 2, "bbox_2d": ["120", "300", "450", "800"]}'), S3, None, None, "unparsable_numbers"),
    ("norm1000", wrap('{"image": 2, "bbox_2d": [NaN, 300, 450, 800]}'), S3, None, None, "unparsable_numbers"),
    ("norm1000", wrap('{"image": 2, "bbox_2d": [1e999, 300, 450, 800]}'), S3, None, None, "unparsable_numbers"),
    ("norm1000", wrap('{"image": 2, "bbox_2d": [true, 300, 450, 800]}'), S3, None, None, "unparsable_numbers"),
    ("norm1000", wrap('{"image": 2, "bbox_2d": [' + "9" * 30 + ", 300, 450, 800]}"), S3, None, None, "unparsable_numbers"),
    ("norm1000", wrap('{"image": 2, "bbox_2d": "120,300,450,800"}'), S3, None, None, "unparsable_numbers"),
    ("norm1000", wrap('{"image": 2}'), S3, None, None, "no_box"),
    ("norm1000", wrap("[]"), S3, None, None, "no_box"),
    ("norm1000", wrap('The box is {"image": 2, "bbox_2d": [120, 300, 450, 800]}'), S3, None, None, "bad_json"),
    ("norm1000", wrap('{"image": 2, "bbox_2d": [120, 300, 450, 800]'), S3, None, None, "bad_json"),
    ("norm1000", wrap("the second image: (120,300),(450,800)"), S3, None, None, "bad_json"),
    ("norm1000", wrap("[" * 100_000), S3, None, None, "bad_json"),  # RecursionError inside json
    ("norm1000", wrap(""), S3, None, None, "bad_json"),
    # -- qwen2_5_vl: JSON in pixels of each image's smart_resize frame --
    ("qwen2_5_vl", wrap('{"image": 1, "bbox_2d": [161, 119, 322, 238]}'), S3, 0, [0.25, 0.25, 0.5, 0.5], None),
    ("qwen2_5_vl", wrap('{"image": 2, "bbox_2d": [252, 126, 504, 252]}'), S3, 1, [0.25, 0.25, 0.5, 0.5], None),
    ("qwen2_5_vl", wrap('{"image": 3, "bbox_2d": [1001, 749, 2002, 1498]}'), S3, 2, [0.25, 0.25, 0.5, 0.5], None),
    ("qwen2_5_vl", wrap('{"image": 3, "bbox_2d": [0, 0, 4004, 2996]}'), S3, 2, [0.0, 0.0, 1.0, 1.0], None),
    ("qwen2_5_vl", wrap('{"image": 4, "bbox_2d": [0, 0, 10, 10]}'), S3, None, None, "image_out_of_range"),
]


@pytest.mark.parametrize("name, completion, sizes, image, box, error", CASES)
def test_parse(name, completion, sizes, image, box, error):
    parsed = PROFILES[name].parse(completion, sizes)
    assert (parsed.image, parsed.box, parsed.error) == (image, box, error)
    assert error is None or error in PARSE_ERRORS


def test_parse_keeps_reasoning_and_answer_text():
    parsed = PROFILES["short"].parse("<think> why </think><answer> image 2: (1,2),(3,4) </answer>", S3)
    assert (parsed.think, parsed.answer) == (" why ", " image 2: (1,2),(3,4) ")
    assert split_envelope("<think>a</think><answer>b</answer>") == ("a", "b", None)


def test_qwen2_5_vl_frame_follows_the_profile_pixel_bounds():
    # The default is a stock served Qwen2.5-VL's bounds (the Hub config), not transformers' class default.
    small = get_profile("qwen2_5_vl", max_pixels=28 * 28 * 1280)
    parsed = small.parse(wrap('{"image": 3, "bbox_2d": [287, 210, 574, 420]}'), S3)  # 1148x840 frame
    assert (parsed.image, parsed.box, parsed.error) == (2, [0.25, 0.25, 0.5, 0.5], None)
    assert small.version == "1;min_pixels=3136;max_pixels=1003520"
    assert PROFILES["qwen2_5_vl"].version == "1;min_pixels=3136;max_pixels=12845056"


@pytest.mark.parametrize(
    "name, image, box, expected",
    [
        ("qwen2_vl", 1, BOX, "the second image: <|box_start|>(120,300),(450,800)<|box_end|>"),
        ("qwen2_vl", 11, BOX, "the 12th image: <|box_start|>(120,300),(450,800)<|box_end|>"),
        ("qwen2_vl", 0, [-0.1, 0.2, 1.048, 0.5], "the first image: <|box_start|>(0,200),(1000,500)<|box_end|>"),
        ("short", 1, BOX, "image 2: (120,300),(450,800)"),
        ("norm1000", 1, BOX, '{"image": 2, "bbox_2d": [120, 300, 450, 800]}'),
        ("qwen2_5_vl", 0, [0.25, 0.25, 0.5, 0.5], '{"image": 1, "bbox_2d": [161, 119, 322, 238]}'),
        ("qwen2_5_vl", 2, [0.25, 0.25, 0.5, 0.5], '{"image": 3, "bbox_2d": [1001, 749, 2002, 1498]}'),
    ],
)
def test_render_answer(name, image, box, expected):
    sizes = S3 + [(100, 100)] * 9
    assert PROFILES[name].render_answer(image, box, sizes) == expected
    assert PROFILES[name].render("why", image, box, sizes) == f"<think>why</think><answer>{expected}</answer>"


@pytest.mark.parametrize("tag", ["<think>", "</think>", "<answer>", "</answer>"])
def test_render_refuses_reasoning_with_a_reserved_tag(tag):
    with pytest.raises(ValueError, match="reserved tag"):
        PROFILES["norm1000"].render(f"so {tag} here", 0, BOX, S3)


@pytest.mark.parametrize("index, word", [(0, "first"), (9, "tenth"), (10, "11th"), (12, "13th"), (20, "21st"), (21, "22nd"), (22, "23rd"), (110, "111th")])
def test_ordinal(index, word):
    assert ordinal(index) == word


def test_image_mentions():
    assert image_mentions("the SECOND image, image-3, Image #4, 5th picture, images 1 and 2, image 0") == [1, 2, 3, 4, -1]


def test_prompt_suffix_names_the_format_and_the_count():
    for profile in PROFILES.values():
        suffix = profile.prompt_suffix(3)
        assert "3 images" in suffix and "<think></think>" in suffix and "<answer></answer>" in suffix
    assert "pixel" in PROFILES["qwen2_5_vl"].prompt_suffix(2)
    assert "0 to 1000" in PROFILES["qwen2_vl"].prompt_suffix(2)


# ---- render -> parse round trip --------------------------------------------------------
unit = st.floats(0.0, 1.0, allow_nan=False)
side = st.integers(28, 5000)


@st.composite
def targets(draw):
    sizes = draw(st.lists(st.tuples(side, side).filter(lambda s: max(s) / min(s) <= 200), min_size=1, max_size=12))
    k = draw(st.integers(0, len(sizes) - 1))
    box = draw(st.lists(st.floats(-0.2, 1.2, allow_nan=False), min_size=4, max_size=4))
    reasoning = draw(st.text(max_size=60).filter(lambda t: not any(tag in t for tag in ("<think>", "</think>", "<answer>", "</answer>"))))
    return sizes, k, box, reasoning


@pytest.mark.parametrize("name", sorted(PROFILES))
@settings(max_examples=250, deadline=None)
@given(t=targets())
def test_render_then_parse_round_trips_up_to_quantisation(name, t):
    sizes, k, box, reasoning = t
    profile = PROFILES[name]
    parsed = profile.parse(profile.render(reasoning, k, box, sizes), sizes)
    assert parsed.error is None and parsed.image == k and parsed.think == reasoning
    fw, fh = profile.frame(sizes[k]) if hasattr(profile, "frame") else (1000, 1000)
    steps = [0.5 / fw, 0.5 / fh, 0.5 / fw, 0.5 / fh]
    assert all(abs(p - c) <= s + 1e-12 for p, c, s in zip(parsed.box, clip01(box), steps))


# ---- registry ----------------------------------------------------------------------------
def test_get_profile():
    assert get_profile("norm1000") is PROFILES["norm1000"]
    assert set(PROFILES) == {"qwen2_vl", "qwen2_5_vl", "norm1000", "short"}
    with pytest.raises(UserError, match="unknown answer profile 'qwen3'; known: norm1000, qwen2_5_vl, qwen2_vl, short"):
        get_profile("qwen3")
    with pytest.raises(UserError, match="only qwen2_5_vl"):
        get_profile("norm1000", max_pixels=100)
    with pytest.raises(UserError, match="min_pixels <= max_pixels"):
        get_profile("qwen2_5_vl", min_pixels=5000, max_pixels=100)


@pytest.mark.parametrize(
    "model, expected",
    [
        ("qwen2_vl", "qwen2_vl"),
        ("Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl"),
        ("qwen2_5_vl", "qwen2_5_vl"),
        ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl"),
        ("Qwen/Qwen3-VL-8B-Instruct", "norm1000"),
        ("llava_onevision", "norm1000"),
    ],
)
def test_profile_for_model(model, expected):
    assert profile_for_model(model).name == expected


# ---- adversarial sizes stay linear -------------------------------------------------------
@pytest.mark.parametrize(
    "answer",
    [
        "(" + "," * 50_000,
        "```" + " " * 50_000,
        "((((,,,,))))" * 5_000,
        "2nd " * 12_500,
        "image" * 10_000,
        "(1" + "1" * 50_000,
    ],
)
def test_adversarial_answers_parse_in_linear_time(answer):
    # A quadratic regex takes tens of seconds on 50 KB; linear ones take milliseconds.
    start = time.perf_counter()
    for profile in PROFILES.values():
        assert profile.parse(wrap(answer), S3).error is not None
    assert time.perf_counter() - start < 2.0
