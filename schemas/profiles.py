"""Answer profiles: how a model writes its answer, rendered and parsed back.

A completion is `<think>REASONING</think><answer>ANSWER</answer>`. What sits
inside `<answer>` depends on the model family's coordinate frame, so it is a
profile (design.md, "The answer format"):

  qwen2_vl    `the second image: <|box_start|>(x1,y1),(x2,y2)<|box_end|>`, 0-1000
              integers, image named in words ("second", "2nd", "image 2")
  qwen2_5_vl  `{"image": 2, "bbox_2d": [x1, y1, x2, y2]}`, 1-based image,
              absolute pixels of THAT image after the processor's smart_resize
  norm1000    the same JSON with 0-1000 integers
  short       `image 2: (x1,y1),(x2,y2)`, 0-1000 integers; for tiny models

A target SET (several boxes, or none) is rendered and parsed by
schemas.set_answers with the same profiles.
`image_sizes` is always the ORIGINAL (width, height) of every image, in
order. `parse` is strict (it serves rewards): it never raises on a completion
and names the first problem in `Parsed.error` (see PARSE_ERRORS).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache

from schemas.boxes import SERVED_QWEN2_5_VL, PixelBudget, clip01, smart_resize
from schemas.errors import UserError

PARSE_ERRORS = (
    "no_answer_tag",  # no <answer> at all
    "several_answers",  # several answer tags, boxes, images named, or duplicate JSON keys
    "truncated",  # <answer> never closed (generation stopped early)
    "no_think",  # think block missing or its tags repeated
    "answer_before_think",  # <answer> is not after </think>
    "text_outside_tags",  # non-blank text before <think>, between the blocks, or after </answer>
    "bad_json",  # JSON profiles: the answer is not one JSON value
    "no_box",
    "unparsable_numbers",  # a box is there but its values are not 4 finite ASCII numbers
    "no_image",  # several images and none named
    "image_out_of_range",
    "duplicate_box",  # target sets (schemas.set_answers): the same image and box twice
    "none_with_boxes",  # target sets: "none" said beside a box
)
_RESERVED_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


@dataclass(slots=True)
class Parsed:
    """A parsed completion. `image` is 0-based; `box` is normalised 0-1 xyxy,
    NOT clipped (a box past the border is what the model said)."""

    image: int | None
    box: list[float] | None
    error: str | None
    think: str | None = None  # the reasoning, when the envelope was well formed
    answer: str | None = None  # the raw text inside <answer>


def split_envelope(text: str) -> tuple[str | None, str | None, str | None]:
    """Split `<think>R</think><answer>A</answer>` into (R, A, None), or name the error."""
    n_open = text.count("<answer>")
    if n_open == 0:
        return None, None, "no_answer_tag"
    n_close = text.count("</answer>")
    if n_open > 1 or n_close > 1:
        return None, None, "several_answers"
    a0 = text.find("<answer>")
    a1 = text.find("</answer>", a0)
    if a1 < 0:
        return None, None, "truncated"
    if text.count("<think>") != 1 or text.count("</think>") != 1:
        return None, None, "no_think"
    t0 = text.find("<think>")
    t1 = text.find("</think>")
    if not t0 < t1 < a0:
        return None, None, "answer_before_think"
    if text[:t0].strip() or text[t1 + 8 : a0].strip() or text[a1 + 9 :].strip():
        return None, None, "text_outside_tags"
    return text[t0 + 7 : t1], text[a0 + 8 : a1], None


# ---- naming an image in words ------------------------------------------------
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_ORDINAL_INDEX = {w: i for i, w in enumerate(ORDINALS)}
# ASCII digits only ([0-9], not \d): '٣' is not a number a reward should accept.
_IMAGE_REF = re.compile(
    r"\b(?:(" + "|".join(ORDINALS) + r")|([0-9]+)(?:st|nd|rd|th))\s+(?:image|picture)\b"
    r"|\b(?:image|picture)[ \t#_-]*([0-9]+)\b",
    re.IGNORECASE,
)


def ordinal(index: int) -> str:
    """0 -> "first" ... 9 -> "tenth", then "11th", "12th", "21st", "22nd"."""
    if index < len(ORDINALS):
        return ORDINALS[index]
    n = index + 1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def image_mentions(text: str) -> list[int]:
    """0-based indices of every image named in `text`, in order ("image 0" -> -1)."""
    out = []
    for word, nth, num in _IMAGE_REF.findall(text):
        out.append(_ORDINAL_INDEX[word.lower()] if word else int(nth or num) - 1)
    return out


def _named_image(text: str, n_images: int) -> tuple[int | None, str | None]:
    named = set(image_mentions(text))
    if not named:
        # With one image there is nothing to name.
        return (0, None) if n_images == 1 else (None, "no_image")
    if len(named) > 1:
        return None, "several_answers"
    (k,) = named
    return (k, None) if 0 <= k < n_images else (None, "image_out_of_range")


# ---- numbers -----------------------------------------------------------------
# Loose on purpose: find anything shaped like (a,b),(c,d), then check the values,
# so "(١,2),(3,4)" is "unparsable_numbers" rather than "no_box". The parts hold
# no comma or parenthesis, which makes the pattern unambiguous and so linear:
# "[^()]*,[^()]*" backtracks quadratically on "(" and ten thousand commas.
_TUPLE_BOX = re.compile(r"\([^(),]*,[^(),]*\)\s*,\s*\([^(),]*,[^(),]*\)")
_N = r"\s*([-+]?[0-9]+(?:\.[0-9]+)?)\s*"
_STRICT_TUPLE_BOX = re.compile(rf"\({_N},{_N}\)\s*,\s*\({_N},{_N}\)")


def _json_box(values) -> list[float] | None:
    """Four finite JSON numbers (never bools, never nested lists), else None."""
    if len(values) != 4:
        return None
    out = []
    for v in values:
        t = type(v)
        if t is int:
            if abs(v) > 1 << 53:  # float() of a 400-digit int raises; such a box is garbage
                return None
            v = float(v)
        elif t is not float or not math.isfinite(v):  # json.loads accepts NaN and 1e999
            return None
        out.append(v)
    return out


def _check_reasoning(reasoning: str) -> None:
    for tag in _RESERVED_TAGS:
        if tag in reasoning:
            raise ValueError(f"reasoning contains the reserved tag {tag}; it would not parse back")


@dataclass(frozen=True)
class Profile:
    """Base of every profile: the think/answer envelope; subclasses fill the answer."""

    name: str
    version: str
    description: str

    def prompt_suffix(self, n_images: int) -> str:
        return (
            f" There are {n_images} images, numbered from 1. Think step by step inside "
            f"<think></think>, then give only the final answer inside <answer></answer>, "
            f"as {self.answer_hint()}."
        )

    def answer_hint(self) -> str:
        raise NotImplementedError

    def render(self, reasoning: str, image_index: int, box, image_sizes) -> str:
        """The training target: `<think>reasoning</think><answer>...</answer>`."""
        _check_reasoning(reasoning)
        return f"<think>{reasoning}</think><answer>{self.render_answer(image_index, box, image_sizes)}</answer>"

    def render_answer(self, image_index: int, box, image_sizes) -> str:
        raise NotImplementedError

    def parse(self, completion: str, image_sizes) -> Parsed:
        """Strict parse of a whole completion; never raises on the completion text."""
        think, answer, error = split_envelope(completion)
        if error:
            return Parsed(None, None, error)
        parsed = self.parse_answer(answer, image_sizes)
        parsed.think, parsed.answer = think, answer
        return parsed

    def parse_answer(self, answer: str, image_sizes) -> Parsed:
        raise NotImplementedError


@dataclass(frozen=True)
class TupleProfile(Profile):
    """Image named in words, box as `(x1,y1),(x2,y2)` on the 0-1000 grid."""

    template: str = "the {ordinal} image: <|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"
    hint: str = "the N-th image: <|box_start|>(x1,y1),(x2,y2)<|box_end|>"
    # A terse suffix template ({n} = image count) replaces the full instruction:
    # for tiny models every constant prompt token is compute spent on nothing.
    suffix: str = ""

    def prompt_suffix(self, n_images: int) -> str:
        return self.suffix.format(n=n_images) if self.suffix else super().prompt_suffix(n_images)

    def answer_hint(self) -> str:
        return f"`{self.hint}` with integer coordinates from 0 to 1000 relative to that image"

    def render_answer(self, image_index: int, box, image_sizes) -> str:
        x1, y1, x2, y2 = (round(v * 1000) for v in clip01(box))
        return self.template.format(ordinal=ordinal(image_index), n=image_index + 1, x1=x1, y1=y1, x2=x2, y2=y2)

    def parse_answer(self, answer: str, image_sizes) -> Parsed:
        text = answer
        if "<|box_" in text:  # the box tokens are optional (decoding may drop them)
            text = text.replace("<|box_start|>", " ").replace("<|box_end|>", " ")
        m = _TUPLE_BOX.search(text)
        if m is None:
            return Parsed(None, None, "no_box")
        if _TUPLE_BOX.search(text, m.end()):
            return Parsed(None, None, "several_answers")
        strict = _STRICT_TUPLE_BOX.fullmatch(m.group(0))
        if strict is None:
            return Parsed(None, None, "unparsable_numbers")
        x1, y1, x2, y2 = map(float, strict.groups())
        if not math.isfinite(x1 + y1 + x2 + y2):  # hundreds of digits overflow to inf
            return Parsed(None, None, "unparsable_numbers")
        image, error = _named_image(text[: m.start()] + " " + text[m.end() :], len(image_sizes))
        if error:
            return Parsed(None, None, error)
        return Parsed(image, [x1 / 1000, y1 / 1000, x2 / 1000, y2 / 1000], None)


def _load_answer_json(answer: str):
    """(object, error). Tolerates a ```json fence, which Qwen2.5-VL often writes."""
    text = answer.strip()
    if len(text) >= 6 and text.startswith("```") and text.endswith("```"):
        text = text[3:-3]
        text = text[4:] if text.startswith("json") else text
    # json.loads keeps the last of two equal keys without a word; counting the
    # two keys that matter is 5x cheaper than an object_pairs_hook.
    if text.count('"bbox_2d"') > 1 or text.count('"image"') > 1:
        return None, "several_answers"
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None, "bad_json"
    if isinstance(obj, list):  # Qwen2.5-VL's native form is a list of objects
        if len(obj) > 1:
            return None, "several_answers"
        obj = obj[0] if obj else None
    if not isinstance(obj, dict) or "bbox_2d" not in obj:
        return None, "no_box"
    return obj, None


@dataclass(frozen=True)
class JsonProfile(Profile):
    """`{"image": k (1-based), "bbox_2d": [x1, y1, x2, y2]}` in a per-profile frame."""

    def frame(self, image_size) -> tuple[float, float]:
        """(width, height) of the coordinate frame for an image of this ORIGINAL size."""
        return 1000.0, 1000.0

    def answer_hint(self) -> str:
        return '`{"image": N, "bbox_2d": [x1, y1, x2, y2]}` with integer coordinates from 0 to 1000 relative to that image'

    def render_answer(self, image_index: int, box, image_sizes) -> str:
        fw, fh = self.frame(image_sizes[image_index])
        x1, y1, x2, y2 = clip01(box)
        coords = [round(x1 * fw), round(y1 * fh), round(x2 * fw), round(y2 * fh)]
        return json.dumps({"image": image_index + 1, "bbox_2d": coords})

    def parse_answer(self, answer: str, image_sizes) -> Parsed:
        obj, error = _load_answer_json(answer)
        if error:
            return Parsed(None, None, error)
        bbox = obj["bbox_2d"]
        if type(bbox) is not list:
            return Parsed(None, None, "unparsable_numbers")
        if bbox and type(bbox[0]) is list:  # [[...], [...]]: one box per object
            return Parsed(None, None, "several_answers" if len(bbox) > 1 else "unparsable_numbers")
        values = _json_box(bbox)
        if values is None:
            return Parsed(None, None, "unparsable_numbers")
        image = obj.get("image")
        if image is None:
            if len(image_sizes) != 1:
                return Parsed(None, None, "no_image")
            image = 1
        if isinstance(image, bool) or not isinstance(image, int):
            return Parsed(None, None, "no_image")
        if not 1 <= image <= len(image_sizes):
            return Parsed(None, None, "image_out_of_range")
        fw, fh = self.frame(image_sizes[image - 1])
        x1, y1, x2, y2 = values
        return Parsed(image - 1, [x1 / fw, y1 / fh, x2 / fw, y2 / fh], None)


@dataclass(frozen=True)
class ResizedPixelProfile(JsonProfile):
    """Qwen2.5-VL: pixels of the image after smart_resize with these bounds.

    The bounds MUST be those of what resized the image the model saw: the
    training processor's (`image_processor.size`), or the pixel budget
    polyground resized a request's images to (schemas.boxes.PixelBudget). The
    default is a stock served Qwen2.5-VL's (3136 .. 12845056), not
    transformers' class default. They are part of `version`, so a run records
    the frame.
    """

    min_pixels: int = SERVED_QWEN2_5_VL.min_pixels
    max_pixels: int = SERVED_QWEN2_5_VL.max_pixels

    @property
    def budget(self) -> PixelBudget:
        return PixelBudget(self.min_pixels, self.max_pixels)

    def frame(self, image_size) -> tuple[float, float]:
        width, height = image_size
        return _resized_frame(width, height, self.min_pixels, self.max_pixels)

    def answer_hint(self) -> str:
        return '`{"image": N, "bbox_2d": [x1, y1, x2, y2]}` in pixel coordinates of that image'


@lru_cache(maxsize=65536)
def _resized_frame(width: int, height: int, min_pixels: int, max_pixels: int) -> tuple[float, float]:
    # Cached: a GRPO group scores k completions on the same images.
    h, w = smart_resize(height, width, 28, min_pixels, max_pixels)
    return float(w), float(h)


def _qwen25(min_pixels: int = SERVED_QWEN2_5_VL.min_pixels,
           max_pixels: int = SERVED_QWEN2_5_VL.max_pixels) -> ResizedPixelProfile:
    if not 0 < min_pixels <= max_pixels:
        raise UserError(f"qwen2_5_vl profile: need 0 < min_pixels <= max_pixels, got {min_pixels}, {max_pixels}")
    return ResizedPixelProfile(
        "qwen2_5_vl",
        f"1;min_pixels={min_pixels};max_pixels={max_pixels}",
        "Qwen2.5-VL JSON bbox_2d in pixels of the smart_resize frame, 1-based image",
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    )


PROFILES: dict[str, Profile] = {
    "qwen2_vl": TupleProfile("qwen2_vl", "1", "Qwen2-VL / MIG-Bench text: image in words, (x1,y1),(x2,y2) on 0-1000"),
    "qwen2_5_vl": _qwen25(),
    "norm1000": JsonProfile("norm1000", "1", "JSON bbox_2d on 0-1000, 1-based image"),
    "short": TupleProfile(
        "short",
        "2",  # 2: terse prompt suffix
        "compact text for tiny models: image N: (x1,y1),(x2,y2) on 0-1000",
        template="image {n}: ({x1},{y1}),({x2},{y2})",
        hint="image N: (x1,y1),(x2,y2)",
        suffix=" ({n} images) <think></think><answer></answer>",
    ),
}


def takes_budget(name: str | None) -> bool:
    """Whether the frame of profile `name` depends on the pixel budget (qwen2_5_vl: pixels of
    the resized image): the one place that knows which profiles do."""
    return isinstance(PROFILES.get(name), ResizedPixelProfile)


def get_profile(name: str, min_pixels: int | None = None, max_pixels: int | None = None) -> Profile:
    """The profile called `name`; pixel bounds apply only to a profile that `takes_budget`."""
    if name not in PROFILES:
        raise UserError(f"unknown answer profile {name!r}; known: {', '.join(sorted(PROFILES))}")
    if min_pixels is None and max_pixels is None:
        return PROFILES[name]
    if not takes_budget(name):
        which = ", ".join(n for n in PROFILES if takes_budget(n))
        raise UserError(f"profile {name!r} takes no min_pixels/max_pixels (only {which} does)")
    base = PROFILES[name]
    return _qwen25(min_pixels or base.min_pixels, max_pixels or base.max_pixels)


def profile_with_budget(name: str, budget: PixelBudget | None) -> Profile:
    """The profile called `name`, in the frame of `budget` where its frame depends on one."""
    if budget is None or not takes_budget(name):
        return get_profile(name)
    return get_profile(name, budget.min_pixels, budget.max_pixels)


# Model families whose answer format is known; anything else must name its profile.
# Qwen3-VL went back to 0-1000 relative coordinates (its model card's grounding examples).
_FAMILIES = (("qwen2_5_vl", "qwen2_5_vl"), ("qwen2_vl", "qwen2_vl"), ("qwen3_vl", "norm1000"))


def family_profile(model_type_or_name: str) -> str | None:
    """The profile name of the model family a model type or served name names, else None."""
    key = model_type_or_name.lower().replace("-", "_").replace(".", "_")
    for family, profile in _FAMILIES:
        if family in key:
            return profile
    return None


def profile_for_model(model_type_or_name: str) -> Profile:
    """The family's profile (family_profile); a model of no known family gets norm1000.

    Only for callers that KNOW the model answers in 0-1000 JSON when its family is
    unknown (e.g. a trainer whose data fixes the format); generation and eval refuse
    instead (builders.inference.backends.resolve_frame)."""
    return PROFILES[family_profile(model_type_or_name) or "norm1000"]
