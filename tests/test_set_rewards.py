"""Set rows' scores and GRPO rewards (schemas.sets, training.rewards): literal completions -> literal values."""
from __future__ import annotations

import pytest

from schemas.profiles import get_profile
from schemas.scoring import score_completion
from schemas.sets import score_set_completion
from training.rewards import REWARDS, combined_score, make_reward_funcs

SHORT = get_profile("short")
SIZES = [[56, 56], [56, 56], [56, 56]]
A, B = [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]
TWO = [{"image": 0, "box": A}, {"image": 1, "box": B}]


def answer(text: str) -> str:
    return f"<think>r</think><answer>{text}</answer>"


CASES = [  # targets, answer, (format, image Jaccard, set IoU, no-target), reason
    (TWO, "image 1: (0,0),(500,500); image 2: (500,500),(1000,1000)", (1, 1, 1, 1), None),
    (TWO, "image 2: (500,500),(1000,1000); image 1: (0,0),(500,500)", (1, 1, 1, 1), None),  # any order
    (TWO, "image 1: (0,0),(500,500)", (1, 0.5, 0.5, 1), None),  # one missed: 1 / (1 + 2 - 1)
    (TWO, "image 1: (0,0),(500,1000); image 2: (500,500),(1000,1000)", (1, 1, 0.75, 1), None),  # (0.5 + 1) / 2
    (TWO, "image 1: (0,0),(500,500); image 2: (500,500),(1000,1000); image 3: (0,0),(1,1)",
     (1, 2 / 3, 2 / 3, 1), "wrong_image"),  # a false extra box on an image without a target: 2 / 3
    (TWO, "image 2: (0,0),(500,500); image 1: (500,500),(1000,1000)", (1, 1, 0, 1), None),  # boxes swapped
    (TWO, "none", (1, 0, 0, 0), "said_none"),
    (TWO, "image 1: (0,0),(500,500); image 1: (0,0),(500,500)", (0, 0, 0, 0), "duplicate_box"),
    ([], "none", (1, 1, 1, 1), None),  # none said of none
    ([], "image 1: (0,0),(500,500)", (1, 0, 0, 0), "boxes_for_none"),
    ([], "nothing", (0, 0, 0, 0), "no_box"),
]


@pytest.mark.parametrize("targets, text, expected, reason", CASES)
def test_set_scores_and_rewards_are_exact(targets, text, expected, reason):
    pairs = [(t["image"], t["box"]) for t in targets]
    s = score_set_completion(answer(text), pairs, SIZES, SHORT)
    assert s.reason == reason
    columns = {"target_image": [None], "equivalent_images": [[]], "target_box": [None], "image_sizes": [SIZES],
               "targets": [targets]}
    got = [REWARDS[name].func([answer(text)], SHORT, **columns)[0] for name in ("format", "image", "iou", "no_target")]
    assert got == pytest.approx(list(expected))
    # the set rewards by name read the same numbers on a set row
    assert REWARDS["set_iou"].func([answer(text)], SHORT, **columns) == pytest.approx([expected[2]])
    assert REWARDS["image_set"].func([answer(text)], SHORT, **columns) == pytest.approx([expected[1]])
    assert combined_score(s) == pytest.approx(0.1 * expected[0] + 0.3 * expected[1] + expected[2])


SINGLE = dict(target_image=[1], equivalent_images=[[]], target_box=[[0.0, 0.0, 0.5, 0.5]], image_sizes=[SIZES[:2]])


@pytest.mark.parametrize("text", ["image 2: (0,0),(500,500)", "image 2: (0,0),(500,1000)", "image 1: (0,0),(500,500)",
                                  "none", "image 2: (0,0),(500,500); image 1: (0,0),(1,1)"])
def test_a_single_target_row_scores_as_today_under_every_reward(text):
    s = score_completion(answer(text), 1, [], [0.0, 0.0, 0.5, 0.5], SIZES[:2], SHORT)
    today = {"format": float(s.format_ok), "image": float(bool(s.image_correct)), "iou": s.iou}
    for columns in (SINGLE, {**SINGLE, "targets": [None]}):  # with or without the targets column
        got = {name: REWARDS[name].func([answer(text)], SHORT, **columns)[0] for name in REWARDS}
        assert {k: got[k] for k in today} == pytest.approx(today)
        assert (got["set_iou"], got["image_set"], got["no_target"]) == pytest.approx(
            (today["iou"], today["image"], today["format"]))


def test_unverifiable_rows_give_none_not_zero():
    columns = {"target_image": [None], "equivalent_images": [[]], "target_box": [None], "image_sizes": [SIZES],
               "targets": [[{"image": 0, "box": [0.5, 0.0, 0.1, 1.0]}, {"image": 1, "box": B}]]}  # inverted box
    for name in REWARDS:
        assert REWARDS[name].func([answer("none")], SHORT, **columns) == [None] or name == "format"


def test_set_reward_funcs_keep_their_names_for_trl_logs():
    funcs = make_reward_funcs(["set_iou", "image_set", "no_target"], SHORT)
    assert [f.func.__name__ for f in funcs] == ["set_iou_reward", "image_set_reward", "no_target_reward"]


def test_grpo_config_takes_the_set_rewards_with_their_default_weights():
    from training.configs import GRPORunConfig

    cfg = GRPORunConfig(output_dir="unused", reward_funcs=["format", "set_iou", "no_target"], use_cpu=True)
    assert cfg.reward_weights == [0.1, 1.0, 0.3]
    assert GRPORunConfig(output_dir="unused", use_cpu=True).reward_funcs == ["format", "image", "iou"]
