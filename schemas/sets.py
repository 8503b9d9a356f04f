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


# ---- completions of set rows ----------------------------------------------------
@dataclass(slots=True)
class SetScores:
    """The verdict on one completion of a set row, shaped like schemas.scoring.Scores so that
    rewards, the cot verifier, rl-pool and eval read either. `image_correct`: the images named
    are exactly the target's; `iou`: the set IoU; `image_fraction`: the Jaccard of the named and
    the target image sets (1 when both are empty); `none_correct`: "none" said exactly when the
    target is empty. `reason`: a parse error, `said_none` (there is a target), `boxes_for_none`
    (there is none), `wrong_image` (a box on an image holding no target), or None."""

    format_ok: bool
    image_correct: bool | None
    iou: float | None
    image_fraction: float | None
    none_correct: bool | None
    parsed: object  # schemas.set_answers.ParsedSet
    reason: str | None
    score: SetScore | None = None
    image_from: str | None = None

    @property
    def outcome(self) -> str:
        return self.reason or "ok"


def _set_unverifiable(targets, n_images: int) -> str | None:
    from schemas.boxes import box_problem

    for image, box in targets:
        if not 0 <= image < n_images:
            return "unverifiable:no_target_image"
        if problem := box_problem(box):
            return f"unverifiable:target_box_{problem}"
    return None


def judge_set(parsed, targets, n_images: int) -> SetScores:
    """SetScores of a parsed set answer against target pairs."""
    targets = [(int(i), list(b)) for i, b in targets]
    ok = parsed.error is None
    why = _set_unverifiable(targets, n_images)
    if why:
        return SetScores(ok, None, None, None, None, parsed, why)
    if not ok:
        return SetScores(False, False, 0.0, 0.0, False, parsed, parsed.error)
    s = score_sets(parsed.pairs, targets)
    named, wanted = {i for i, _ in parsed.pairs}, {i for i, _ in targets}
    fraction = len(named & wanted) / len(named | wanted) if named | wanted else 1.0
    none_correct = (not parsed.pairs) == (not targets)
    reason = ("said_none" if targets and not parsed.pairs else "boxes_for_none" if parsed.pairs and not targets
              else "wrong_image" if s.wrong_image else None)
    return SetScores(True, named == wanted, s.set_iou, fraction, none_correct, parsed, reason, s)


def score_set_completion(completion: str, targets, image_sizes, profile) -> SetScores:
    """Strict parse (the think/answer envelope) and set scores: what rewards and the cot verifier read."""
    from schemas.set_answers import parse_set

    return judge_set(parse_set(profile, completion, image_sizes), targets, len(image_sizes))


def score_set_grounding(completion: str, targets, image_sizes, profile) -> SetScores:
    """Eval's strict figure for a set row: the envelope optional (as schemas.scoring.score_grounding)."""
    from schemas.scoring import split_optional_envelope
    from schemas.set_answers import ParsedSet, parse_set_answer

    think, answer, error = split_optional_envelope(completion)
    parsed = ParsedSet(None, error) if error else parse_set_answer(profile, answer, image_sizes)
    parsed.think, parsed.answer = think, answer
    return judge_set(parsed, targets, len(image_sizes))


def score_row(completion: str, row: dict, image_sizes, profile):
    """Scores (a single-target row, schemas.scoring.score_completion, unchanged) or SetScores (a set row).

    `row` holds the target columns: target_image, equivalent_images, target_box, and targets
    (the schemas.rows column: [{"image", "box"}], or None)."""
    targets = row.get("targets")
    if targets is not None:
        pairs = [(t["image"], t["box"]) for t in targets]
        return score_set_completion(completion, pairs, image_sizes, profile)
    from schemas.scoring import score_completion

    return score_completion(completion, row.get("target_image"), row.get("equivalent_images"),
                            row.get("target_box"), image_sizes, profile)
