"""Scores shared by the CoT verifier, rejection sampling, GRPO rewards and eval.

One function, `score_completion`, turns a completion into `Scores`; the
reward-sized numbers come from `format_score`, `image_score` and `iou_score`
(training.rewards registers them as GRPO's rewards, with their weights). Units: IoU is plain area IoU in 0-1 on the TARGET image.

Rules (design.md, "Rewards"):
- format: the strict profile parse succeeded (think/answer envelope and a
  parsable answer);
- image: the named image is the target or one of `equivalent_images`
  (MIRG-RL's image-level reward);
- IoU: the predicted box against clip01(target_box) on the target image, 0
  when the wrong image is named (object-level reward). The prediction is not
  clipped: a box past the border is scored as the model wrote it;
- None, never a false 0, for a row that cannot be verified (no target box or
  target image, or a target box that is itself invalid).
Bump SCORING_VERSION whenever a rule above changes: it is recorded in the
manifests of cot, rl-pool and predictions versions.

`score_grounding` is eval's strict figure, which measures grounding rather
than the reward's envelope: the profile's strict single-box parse of the
answer; the `<think>` envelope optional (a bare answer, `<answer>A</answer>`,
`<think>R</think>A` or the full envelope); the image named in the answer
required only where the answer must choose it, i.e. where the question does
not fix the target (`image_fixed`: MIG-Bench's `diff` and group grounding, or
any source that records no `target_from`). Where it must choose and the answer
names none, one single image named in the reasoning counts (UniVG-R1 names it
there). `Scores.image_from` says where the image came from. Bump STRICT_VERSION
when one of these rules changes (the reward's rules above have SCORING_VERSION).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.boxes import box_problem, clip01, iou
from schemas.profiles import Parsed, Profile, image_mentions

SCORING_VERSION = "1"
STRICT_VERSION = "1"  # score_grounding's rules; recorded with eval's numbers


@dataclass(slots=True)
class Scores:
    """The verdict on one completion. `reason` names why it lost points
    (a parse error, "wrong_image") or why it cannot be verified
    ("unverifiable:<why>"); None when all is well."""

    format_ok: bool
    image_correct: bool | None
    iou: float | None
    parsed: Parsed
    reason: str | None
    image_from: str | None = None  # score_grounding: "answer", "question" or "think"

    @property
    def outcome(self) -> str:
        """"ok" (or "ok:image_from_question|think"), a parse error, "wrong_image" or "unverifiable:<why>"."""
        if self.reason:
            return self.reason
        return "ok" if self.image_from in (None, "answer") else f"ok:image_from_{self.image_from}"


def _unverifiable(target_image, target_box, n_images: int) -> str | None:
    if target_box is None:
        return "unverifiable:no_target_box"
    if target_image is None or not 0 <= target_image < n_images:
        return "unverifiable:no_target_image"
    # Not cached per box: (True, 0, 1, 1) == (1, 0, 1, 1) in Python, so a
    # cache keyed on values would hand a bool box the verdict of an int box.
    problem = box_problem(target_box)
    return f"unverifiable:target_box_{problem}" if problem else None


def score_completion(completion: str, target_image, equivalent_images, target_box, image_sizes, profile: Profile) -> Scores:
    """Parse `completion` with `profile` and score it against the row's target.

    `target_image` is 0-based; `equivalent_images` are other 0-based images
    where the same box is also right (MIG-Bench `diff`); `target_box` is
    normalised 0-1 xyxy; `image_sizes` the ORIGINAL (width, height) per image.
    """
    parsed = profile.parse(completion, image_sizes)
    return _judge(parsed, target_image, equivalent_images, target_box, len(image_sizes))


def _judge(parsed, target_image, equivalent_images, target_box, n_images: int, image_from=None) -> Scores:
    """Scores of a parsed answer: unverifiable, unparsed, wrong image, or its IoU on the target."""
    ok = parsed.error is None
    why = _unverifiable(target_image, target_box, n_images)
    if why:
        return Scores(ok, None, None, parsed, why)
    if not ok:
        return Scores(False, False, 0.0, parsed, parsed.error)
    if parsed.image != target_image and parsed.image not in (equivalent_images or ()):
        return Scores(True, False, 0.0, parsed, "wrong_image", image_from)
    return Scores(True, True, iou(parsed.box, clip01(target_box)), parsed, None, image_from)


def image_fixed(meta: dict) -> bool:
    """Whether the question itself names the target image (readers record `target_from`;
    MIG-Bench: "question", against "additional_info" for group grounding and "task_rule:diff")."""
    return (meta or {}).get("target_from") == "question"


def split_optional_envelope(text: str) -> tuple[str | None, str | None, str | None]:
    """(reasoning or None, answer, None), or (..., None, error) with a PARSE_ERRORS name.

    Accepts a bare answer, `<answer>A</answer>`, `<think>R</think>A`, `R</think>A`
    (a template that opens <think> in the prompt) and the full envelope; refuses
    repeated tags, an unclosed block and text outside the tags of an answer block."""
    count = {t: text.count(t) for t in ("<think>", "</think>", "<answer>", "</answer>")}
    if count["<answer>"] > 1 or count["</answer>"] > 1:
        return None, None, "several_answers"
    if count["<think>"] > 1 or count["</think>"] > 1:
        return None, None, "no_think"
    think, rest = None, text
    if count["</think>"]:
        t0, t1 = text.find("<think>"), text.find("</think>")
        if t0 > t1:
            return None, None, "no_think"
        if "<answer>" in text[:t1]:
            return None, None, "answer_before_think"
        if t0 > 0 and text[:t0].strip():
            return None, None, "text_outside_tags"
        think, rest = text[(t0 + 7 if t0 >= 0 else 0):t1], text[t1 + 8:]
    elif count["<think>"]:
        return None, None, "no_think" if count["<answer>"] else "truncated"
    if count["<answer>"]:
        a0 = rest.find("<answer>")
        a1 = rest.find("</answer>", a0)
        if a1 < 0:
            return think, None, "truncated"
        if rest[:a0].strip() or rest[a1 + 9:].strip():
            return think, None, "text_outside_tags"
        return think, rest[a0 + 8:a1], None
    if count["</answer>"]:
        return think, None, "no_answer_tag"
    return think, rest, None


def score_grounding(completion: str, target_image, equivalent_images, target_box, image_sizes, profile: Profile,
                    fixed: bool = False) -> Scores:
    """Eval's strict figure (see the module docstring); `fixed`: the question names the target image.

    The IoU is against clip01(target_box) on the target image, 0 for a wrong
    image, None (with an "unverifiable:" reason) where the row cannot be verified."""
    think, answer, error = split_optional_envelope(completion)
    parsed = Parsed(None, None, error) if error else profile.parse_answer(answer, image_sizes)
    image_from = "answer"
    if parsed.error == "no_image" and isinstance(target_image, int) and 0 <= target_image < len(image_sizes):
        named = set(image_mentions(think or ""))
        if fixed:
            k, image_from = target_image, "question"
        else:
            k, image_from = (named.pop(), "think") if len(named) == 1 else (None, None)
        if k is not None and 0 <= k < len(image_sizes):
            # Parsed against that image alone: its frame, and nothing left to name.
            again = profile.parse_answer(answer, [image_sizes[k]])
            if again.error is None:
                parsed = Parsed(k, again.box, None)
    parsed.think, parsed.answer = think, answer
    return _judge(parsed, target_image, equivalent_images, target_box, len(image_sizes), image_from)


def format_score(scores: Scores) -> float:
    """1.0 when the completion parsed strictly, else 0.0 (always verifiable)."""
    return 1.0 if scores.format_ok else 0.0


def image_score(scores: Scores) -> float | None:
    """1.0 for the target (or an equivalent) image, 0.0 otherwise, None if unverifiable.
    A set row's (schemas.sets.SetScores): the Jaccard of the named and the target image sets."""
    fraction = getattr(scores, "image_fraction", None)
    if fraction is not None:
        return fraction
    if scores.image_correct is None:
        return None
    return 1.0 if scores.image_correct else 0.0


def iou_score(scores: Scores) -> float | None:
    """IoU on the target image (0.0 for a wrong image), None if unverifiable."""
    return scores.iou


# ---- multiple choice -----------------------------------------------------------
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# Tried in order on the answer tag's content, else on the whole text. A lone
# lowercase letter only counts when nothing word-like follows it, so that
# "the answer is a cat" is not read as choice A. No two unbounded whitespace
# runs sit side by side (quadratic backtracking on a long blank answer).
_CHOICE_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"^\(?([A-Za-z])\)?[.:)]?$",  # the whole thing is a letter: "B", "(B)", "b."
        r"(?i:answer)(?:\s+(?i:is))?(?:[ \t]*:)?\s*\(?([A-Z])\)?(?![A-Za-z])",  # "Answer: B", "answer is (C)"
        r"(?i:answer)(?:\s+(?i:is))?(?:[ \t]*:)?\s*\(?([a-z])\)?(?=[ \t]*(?:$|[.,;!)\]]))",  # "the answer is b"
        r"\(([A-Z])\)",  # "(B) a red car"
        r"(?m)^[ \t]*([A-Z])[.):](?:\s|$)",  # "B. a red car" at the start of a line
    )
)


def extract_choice(text: str, n_choices: int) -> str | None:
    """The chosen letter, one of the first `n_choices` capitals ("A", "B", ...), or None."""
    answers = _ANSWER_TAG.findall(text)
    span = (answers[-1] if answers else text).strip()
    valid = {chr(ord("A") + i) for i in range(n_choices)}
    for pattern in _CHOICE_PATTERNS:
        m = pattern.search(span)
        if m:
            letter = m.group(1).upper()
            return letter if letter in valid else None
    return None


def score_choice(text: str, answer: str | None, n_choices: int) -> float | None:
    """1.0 when the extracted letter equals `answer` ("B" or "(B)"), else 0.0; None without an answer."""
    if not answer:
        return None
    return 1.0 if extract_choice(text, n_choices) == answer.strip().strip("()").upper() else 0.0
