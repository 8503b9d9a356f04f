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
are scored by schemas.sets, through the same dispatch (`schemas.sets.score_row`) as cot
and rl-pool: `format` is their strict set parse, `image` the Jaccard of the named and the
target image sets, `iou` the set IoU (Hungarian matching on the same image). So one
function serves both kinds of row; `set_iou` and `image_set` (issue 18's names for set
recipes) are the iou and image scores under their own TRL log names. `no_target`: 1 when
"none" is said exactly where the target is in no image (a single row: 1 for a parsed box,
since the target is there).

TRL logs each function's mean and std under `rewards/<name>_reward/...`, so every
component is visible on its own; weights are `reward_weights`.

`REWARDS` is the one registry of rewards (name -> Reward: the TRL function, the
same number from one completion's `Scores`, the default weight, whether it is in
the default list), made from `_TABLE` by `reward_func`. The GRPO config checks
`reward_funcs` against it, `make_reward_funcs` binds from it, and eval's per-row
`reward` (`combined_score`) sums its default ones (`DEFAULT_REWARD_WEIGHTS`:
format, image, iou; the others are chosen by name). To add a reward: write its
score (Scores or SetScores -> float | None) and add a line to `_TABLE`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from schemas.scoring import format_score, image_score, iou_score
from schemas.sets import score_row


def completion_text(completion) -> str:
    """The generated text of one completion (conversational or plain)."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"] if completion else ""
    if isinstance(content, list):  # structured parts: keep the text ones
        return "".join(part.get("text") or "" for part in content if part.get("type") == "text")
    return content or ""


def _scores(completions, profile, columns: dict):
    """One Scores (SetScores for a set row) per completion, through schemas.sets.score_row, the one
    single-or-set dispatch; the target columns arrive one value per completion (`targets` may be absent)."""
    sets = columns.get("targets") or [None] * len(completions)
    rows = [{"target_image": t, "equivalent_images": e, "target_box": b, "targets": s} for t, e, b, s in zip(
        columns["target_image"], columns["equivalent_images"], columns["target_box"], sets, strict=True)]
    return [score_row(completion_text(c), row, sizes, profile)
            for c, row, sizes in zip(completions, rows, columns["image_sizes"], strict=True)]


def no_target_score(scores) -> float | None:
    """1.0 when "none" is said exactly where the target is in no image, else 0.0 (a single row:
    1.0 for a parsed box, since the target is there); None when the row cannot be verified."""
    if isinstance(scores.reason, str) and scores.reason.startswith("unverifiable"):
        return None
    return float(bool(getattr(scores, "none_correct", scores.format_ok)))


def reward_func(name: str, score: Callable) -> Callable:
    """The TRL reward function of `score`: its number for each completion (single or set row alike),
    named `<name>_reward`, the name TRL logs it under (`rewards/<name>_reward/mean`)."""
    def reward(completions, profile, **columns) -> list[float | None]:
        return [score(s) for s in _scores(completions, profile, columns)]

    reward.__name__ = reward.__qualname__ = f"{name}_reward"
    reward.__doc__ = f"{score.__name__} of each completion: {score.__doc__}"
    return reward


@dataclass(frozen=True)
class Reward:
    func: Callable  # (completions, profile, **columns) -> list[float | None], as TRL calls it
    score: Callable  # schemas.scoring.Scores (or schemas.sets.SetScores) -> float | None: func's number for one completion
    weight: float  # default weight (GRPO's reward_weights, eval's per-row reward)
    default: bool = True  # in the default reward_funcs list and eval's per-row reward


_TABLE = {  # name: (score, default weight, in the default list)
    "format": (format_score, 0.1, True),
    "image": (image_score, 0.3, True),  # a set row: the image-set Jaccard
    "iou": (iou_score, 1.0, True),  # a set row: the set IoU
    # Names kept for set recipes (issue 18): the same scores as iou and image, which read set rows
    # already; only TRL's log name differs, so both can be listed and logged apart.
    "set_iou": (iou_score, 1.0, False),
    "image_set": (image_score, 0.3, False),
    "no_target": (no_target_score, 0.3, False),
}
REWARDS = {name: Reward(reward_func(name, score), score, weight, default)
           for name, (score, weight, default) in _TABLE.items()}
# Module attributes, for importers and for pickle (which finds a function by its qualname).
format_reward, image_reward, iou_reward = (REWARDS[n].func for n in ("format", "image", "iou"))
set_iou_reward, image_set_reward, no_target_reward = (REWARDS[n].func for n in ("set_iou", "image_set", "no_target"))
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
