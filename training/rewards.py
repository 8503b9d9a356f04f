"""GRPO reward functions over the shared scoring (schemas.scoring).

Each reward is `(completions, **columns) -> list[float | None]`, as TRL's
GRPOTrainer calls it: `completions` are the generated assistant turns, the
columns are the dataset's target columns repeated per generation
(`target_image`, `equivalent_images`, `target_box`, `image_sizes`), and
`profile` is bound by `make_reward_funcs`. `None` means "this row cannot be
verified" (no box target, invalid target box): TRL then leaves it out of the
mean instead of reading a false 0.

- `format_reward`: 1 when the completion parses strictly with the profile.
- `image_reward`: 1 when the named image is the target or an equivalent one
  (MIRG-RL's image-level reward).
- `iou_reward`: IoU with the target box on the target image, 0 on a wrong
  image (MIRG-RL's object-level reward).

Set rows (a `targets` column that is not None: several targets, or none; schemas/rows.py)
are scored by schemas.sets: `format` is their strict set parse, `image` the Jaccard of
the named and the target image sets, `iou` the set IoU (Hungarian matching on the same
image). By name, for set data:
- `set_iou_reward`: the set IoU (a single row: its IoU);
- `image_set_reward`: the image-set Jaccard (a single row: the image score);
- `no_target_reward`: 1 when "none" is said exactly where the target is in no image
  (a single row: 1 for a parsed box, since the target is there).

TRL logs each function's mean and std under `rewards/<name>/...`, so every
component is visible on its own; weights are `reward_weights`.

`REWARDS` is the one registry of rewards (name -> Reward: the TRL function, the
same number from one completion's `Scores`, the default weight, whether it is in
the default list). The GRPO config checks `reward_funcs` against it,
`make_reward_funcs` binds from it, and eval's per-row `reward` (`combined_score`)
sums its default ones (`DEFAULT_REWARD_WEIGHTS`: format, image, iou; the set
rewards are chosen by name). To add a reward: write its function here and
register it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from schemas.scoring import format_score, image_score, iou_score, score_completion
from schemas.sets import score_set_completion


def completion_text(completion) -> str:
    """The generated text of one completion (conversational or plain)."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"] if completion else ""
    if isinstance(content, list):  # structured parts: keep the text ones
        return "".join(part.get("text") or "" for part in content if part.get("type") == "text")
    return content or ""


def _scores(completions, profile, columns: dict):
    """One Scores (SetScores for a set row) per completion; the target columns arrive one value per completion."""
    sets = columns.get("targets") or [None] * len(completions)
    targets = zip(columns["target_image"], columns["equivalent_images"], columns["target_box"], columns["image_sizes"],
                  sets, strict=True)
    return [score_completion(completion_text(c), t, e, b, s, profile) if pairs is None
            else score_set_completion(completion_text(c), [(p["image"], p["box"]) for p in pairs], s, profile)
            for c, (t, e, b, s, pairs) in zip(completions, targets, strict=True)]


def format_reward(completions, profile, **columns) -> list[float]:
    """1.0 for a completion in the profile's think/answer format with a parsable answer, else 0.0."""
    return [format_score(s) for s in _scores(completions, profile, columns)]


def image_reward(completions, profile, **columns) -> list[float | None]:
    """1.0 when the right image is named, 0.0 otherwise, None when the row cannot be verified."""
    return [image_score(s) for s in _scores(completions, profile, columns)]


def iou_reward(completions, profile, **columns) -> list[float | None]:
    """IoU on the target image (0.0 on a wrong image), None when the row cannot be verified."""
    return [iou_score(s) for s in _scores(completions, profile, columns)]


def no_target_score(scores) -> float | None:
    """1.0 when "none" is said exactly where the target is in no image, else 0.0 (a single row:
    1.0 for a parsed box, since the target is there); None when the row cannot be verified."""
    if isinstance(scores.reason, str) and scores.reason.startswith("unverifiable"):
        return None
    return float(bool(getattr(scores, "none_correct", scores.format_ok)))


def set_iou_reward(completions, profile, **columns) -> list[float | None]:
    """The set IoU of a set row (a single row: its IoU); None when the row cannot be verified."""
    return [iou_score(s) for s in _scores(completions, profile, columns)]


def image_set_reward(completions, profile, **columns) -> list[float | None]:
    """The Jaccard of the named and the target image sets (a single row: the image score)."""
    return [image_score(s) for s in _scores(completions, profile, columns)]


def no_target_reward(completions, profile, **columns) -> list[float | None]:
    """no_target_score of each completion."""
    return [no_target_score(s) for s in _scores(completions, profile, columns)]


@dataclass(frozen=True)
class Reward:
    func: Callable  # (completions, profile, **columns) -> list[float | None], as TRL calls it
    score: Callable  # schemas.scoring.Scores (or schemas.sets.SetScores) -> float | None: func's number for one completion
    weight: float  # default weight (GRPO's reward_weights, eval's per-row reward)
    default: bool = True  # in the default reward_funcs list and eval's per-row reward


REWARDS = {
    "format": Reward(format_reward, format_score, 0.1),
    "image": Reward(image_reward, image_score, 0.3),
    "iou": Reward(iou_reward, iou_score, 1.0),
    # Target sets, by name only: format/image/iou already read set rows through the set scores.
    "set_iou": Reward(set_iou_reward, iou_score, 1.0, default=False),
    "image_set": Reward(image_set_reward, image_score, 0.3, default=False),
    "no_target": Reward(no_target_reward, no_target_score, 0.3, default=False),
}
DEFAULT_REWARDS = [name for name, r in REWARDS.items() if r.default]
DEFAULT_REWARD_WEIGHTS = {name: REWARDS[name].weight for name in DEFAULT_REWARDS}


def make_reward_funcs(names: list[str], profile) -> list:
    """The named rewards with the answer profile bound (partials keep TRL's log names)."""
    return [partial(REWARDS[name].func, profile=profile) for name in names]


def combined_score(scores, weights: dict | None = None) -> float | None:
    """Weighted sum of registered rewards (default: the default list) of one completion's Scores
    (or SetScores); None if unverifiable.

    Unknown weight names raise: a typo in a recipe must not silently drop a term.
    """
    weights = DEFAULT_REWARD_WEIGHTS if weights is None else weights
    unknown = set(weights) - set(REWARDS)
    if unknown:
        raise ValueError(f"unknown reward weights {sorted(unknown)}; known: {sorted(REWARDS)}")
    if scores.iou is None:
        return None
    return sum(w * REWARDS[name].score(scores) for name, w in weights.items())
