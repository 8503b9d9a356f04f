"""Set-wise grounding scores (schemas/sets.py): literal tables, then properties."""
from __future__ import annotations

import random

import pytest

from schemas.boxes import iou
from schemas.sets import score_sets

A = [0.0, 0.0, 0.5, 0.5]
B = [0.5, 0.5, 1.0, 1.0]
A_HALF = [0.0, 0.0, 0.5, 0.25]  # IoU 0.5 with A
FAR = [0.9, 0.0, 1.0, 0.1]  # overlaps neither A nor B


@pytest.mark.parametrize(
    "pred, target, set_iou, p5, r5, wrong",
    [
        ([], [], 1.0, 1.0, 1.0, 0),  # "none" said of "none"
        ([(0, A)], [], 0.0, 0.0, 0.0, 1),  # a box where there is none
        ([], [(0, A)], 0.0, 0.0, 0.0, 0),  # "none" said of a present target
        ([(0, A)], [(0, A)], 1.0, 1.0, 1.0, 0),
        ([(1, A)], [(0, A)], 0.0, 0.0, 0.0, 1),  # right box, wrong image
        ([(0, A), (1, B)], [(1, B), (0, A)], 1.0, 1.0, 1.0, 0),  # order does not matter
        ([(0, A), (0, A)], [(0, A)], 0.5, 0.5, 1.0, 0),  # a duplicate is a false box
        ([(0, A), (0, FAR)], [(0, A)], 0.5, 0.5, 1.0, 0),  # a false extra box
        ([(0, A)], [(0, A), (1, B)], 0.5, 1.0, 0.5, 0),  # a missed box
        ([(0, A_HALF)], [(0, A)], 0.5, 1.0, 1.0, 0),  # IoU 0.5 counts at 0.5
        ([(0, B), (0, A)], [(0, A), (0, B)], 1.0, 1.0, 1.0, 0),  # matched by IoU, not by order
        ([(0, A), (2, B)], [(0, A), (1, B)], 1 / 3, 0.5, 0.5, 1),  # one right, one on the wrong image
    ],
)
def test_literal_set_scores(pred, target, set_iou, p5, r5, wrong):
    s = score_sets(pred, target)
    assert s.set_iou == pytest.approx(set_iou)
    assert (s.precision[0.5], s.recall[0.5], s.wrong_image) == (pytest.approx(p5), pytest.approx(r5), wrong)
    f1 = 2 * p5 * r5 / (p5 + r5) if p5 + r5 else 0.0
    assert s.f1[0.5] == pytest.approx(f1)


def test_matching_maximises_total_iou_not_greedy_order():
    # Greedy would give pred 0 to target 0 (IoU 0.5) and leave pred 1 with nothing it overlaps;
    # the assignment gives pred 0 to target 1 and pred 1 to target 0.
    t0, t1 = [0.0, 0.0, 0.4, 0.4], [0.2, 0.0, 0.6, 0.4]
    p0, p1 = [0.2, 0.0, 0.6, 0.4], [0.0, 0.0, 0.4, 0.4]
    s = score_sets([(0, p0), (0, p1)], [(0, t0), (0, t1)])
    assert s.set_iou == pytest.approx(1.0) and sorted((i, j) for i, j, _ in s.matched) == [(0, 1), (1, 0)]


def _random_box(rng):
    x1, y1 = rng.random() * 0.8, rng.random() * 0.8
    return [x1, y1, x1 + 0.05 + rng.random() * 0.15, y1 + 0.05 + rng.random() * 0.15]


@pytest.mark.parametrize("seed", range(30))
def test_properties(seed):
    rng = random.Random(seed)
    target = [(rng.randrange(3), _random_box(rng)) for _ in range(rng.randrange(0, 4))]
    pred = [(rng.randrange(3), _random_box(rng)) for _ in range(rng.randrange(0, 4))]
    s = score_sets(pred, target)
    shuffled = score_sets(rng.sample(pred, len(pred)), rng.sample(target, len(target)))
    assert shuffled.set_iou == pytest.approx(s.set_iou) and shuffled.precision == pytest.approx(s.precision)
    extra = score_sets(pred + [(rng.randrange(3), _random_box(rng))], target)
    assert all(extra.precision[t] <= s.precision[t] + 1e-12 for t in s.precision)  # a false box never helps
    assert 0.0 <= s.set_iou <= 1.0


@pytest.mark.parametrize("seed", range(20))
def test_single_target_is_todays_strict_iou(seed):
    rng = random.Random(seed)
    box, said, image = _random_box(rng), _random_box(rng), rng.randrange(2)
    s = score_sets([(image, said)], [(0, box)])
    assert s.set_iou == pytest.approx(iou(said, box) if image == 0 else 0.0)
