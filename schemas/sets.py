"""Set-wise grounding scores: the target is a set of (image, box) pairs, possibly empty.

A pair is (0-based image index, normalised 0-1 xyxy box). Predicted pairs are
matched one to one with target pairs ON THE SAME IMAGE, maximising the total
IoU (the Hungarian method, `scipy.optimize.linear_sum_assignment`); a pair
whose best partner overlaps it nowhere stays unmatched. From that matching:

- `set_iou`: sum of the matched IoUs / (predicted + targets - matched), a
  Jaccard over boxes; 1.0 when both sets are empty ("none" said of "none");
- `precision@t`, `recall@t`, `f1@t`: matched pairs with IoU >= t over the
  predicted pairs, over the target pairs, and their harmonic mean. An empty
  side counts as right only when the other is empty too (saying "none" of a
  present target, or naming boxes where there is none, scores 0);
- `wrong_image`: predicted pairs on an image that holds no target.

With one target and one prediction on its image, set_iou is the plain IoU;
on another image it is 0: today's strict single-target score
(schemas.scoring.score_completion). Target boxes are clipped to the image as
there; predicted boxes are scored as said.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from schemas.boxes import clip01, iou

THRESHOLDS = (0.3, 0.5, 0.7)


@dataclass(frozen=True)
class SetScore:
    set_iou: float
    matched: list[tuple[int, int, float]]  # (predicted index, target index, IoU), IoU > 0
    n_pred: int
    n_target: int
    wrong_image: int
    precision: dict[float, float] = field(default_factory=dict)
    recall: dict[float, float] = field(default_factory=dict)
    f1: dict[float, float] = field(default_factory=dict)


def match(pred: list[tuple[int, list[float]]], target: list[tuple[int, list[float]]]) -> list[tuple[int, int, float]]:
    """One-to-one matching of predicted to target pairs on the same image, maximal total IoU."""
    if not pred or not target:
        return []
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    gains = np.zeros((len(pred), len(target)))
    for i, (pi, pb) in enumerate(pred):
        for j, (ti, tb) in enumerate(target):
            if pi == ti:
                gains[i, j] = iou(pb, clip01(tb))
    rows, cols = linear_sum_assignment(gains, maximize=True)
    return [(int(i), int(j), float(gains[i, j])) for i, j in zip(rows, cols) if gains[i, j] > 0.0]


def _ratio(num: int, den: int, other_empty: bool) -> float:
    return num / den if den else (1.0 if other_empty else 0.0)


def score_sets(pred, target, thresholds=THRESHOLDS) -> SetScore:
    """Score predicted (image, box) pairs against target pairs (see the module docstring)."""
    pred, target = list(pred), list(target)
    pairs = match(pred, target)
    n_p, n_t = len(pred), len(target)
    union = n_p + n_t - len(pairs)
    set_iou = sum(v for _, _, v in pairs) / union if union else 1.0
    target_images = {ti for ti, _ in target}
    wrong = sum(1 for pi, _ in pred if pi not in target_images)
    precision, recall, f1 = {}, {}, {}
    for t in thresholds:
        hits = sum(1 for _, _, v in pairs if v >= t)
        p, r = _ratio(hits, n_p, n_t == 0), _ratio(hits, n_t, n_p == 0)
        precision[t], recall[t] = p, r
        f1[t] = 2 * p * r / (p + r) if p + r else 0.0
    return SetScore(set_iou, pairs, n_p, n_t, wrong, precision, recall, f1)
