"""Boxes: validation with named reasons, clipping, coordinate frames, IoU.

The canonical frame is normalised 0-1 `[x1, y1, x2, y2]` on the TARGET image
(see docs/internals.md). Everything else is an edge frame:
- 0-1000 integers (Qwen2-VL, MIG-Bench text, the `norm1000` profile);
- absolute pixels of the ORIGINAL image (`norm_to_pixels`);
- absolute pixels of the image AFTER the Qwen2-VL/2.5-VL processor resize
  (`smart_resize` gives that size; Qwen2.5-VL answers in it).

IoU is plain area intersection over union on the given coordinates, with no
"+1 pixel" terms, and 0 when the boxes do not overlap: the MIG-Bench metric.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

BOX_PROBLEMS = ("not_four_numbers", "nan", "out_of_range", "inverted", "zero_area")


def _is_number(v) -> bool:
    # bool is an int subclass; a True coordinate is a bug, not 1.0.
    return isinstance(v, Real) and not isinstance(v, (bool, np.bool_))


def box_problem(box, tol: float = 0.05) -> str | None:
    """Name what is wrong with a normalised 0-1 xyxy box, or None when it is usable.

    Checked in this order: "not_four_numbers", "nan" (any non-finite value),
    "out_of_range" (a value below -tol or above 1+tol: MIG-Bench has values up
    to 1.048, which are kept and clipped for scoring), "inverted" (x2 < x1 or
    y2 < y1), "zero_area" (no area left once clipped to the image).
    """
    if isinstance(box, (str, bytes, dict)):
        return "not_four_numbers"
    try:
        x1, y1, x2, y2 = box
    except (TypeError, ValueError):
        return "not_four_numbers"
    # Exact float first: the ABC check is ten times slower, and this runs per completion.
    if not (type(x1) is type(y1) is type(x2) is type(y2) is float) and not all(map(_is_number, (x1, y1, x2, y2))):
        return "not_four_numbers"
    total = x1 + y1 + x2 + y2  # finite unless a value is NaN/inf (or all are near 1e308)
    if total - total != 0.0:
        fin = math.isfinite
        if not (fin(x1) and fin(y1) and fin(x2) and fin(y2)):
            return "nan"
    lo, hi = -tol, 1 + tol
    if not (lo <= x1 <= hi and lo <= y1 <= hi and lo <= x2 <= hi and lo <= y2 <= hi):
        return "out_of_range"
    if x2 < x1 or y2 < y1:
        return "inverted"
    # Clipped: a box lying wholly past the border (within tol) has no area left.
    if (x2 if x2 < 1 else 1) <= (x1 if x1 > 0 else 0) or (y2 if y2 < 1 else 1) <= (y1 if y1 > 0 else 0):
        return "zero_area"
    return None


def clip01(box) -> list[float]:
    """Clip every coordinate into [0, 1] (scoring clips ground truth this way); NaN stays NaN."""
    return [0.0 if v < 0 else 1.0 if v > 1 else float(v) for v in box]


def norm_to_1000(box) -> list[int]:
    """Normalised 0-1 -> integers on the 0-1000 grid (round half to even)."""
    return [round(float(v) * 1000) for v in box]


def from_1000(box) -> list[float]:
    """0-1000 grid -> normalised 0-1 floats."""
    return [float(v) / 1000 for v in box]


def norm_to_pixels(box, width: float, height: float) -> list[float]:
    """Normalised 0-1 -> absolute pixels of an image of the given size."""
    x1, y1, x2, y2 = box
    return [x1 * width, y1 * height, x2 * width, y2 * height]


def pixels_to_norm(box, width: float, height: float) -> list[float]:
    """Absolute pixels of an image of the given size -> normalised 0-1."""
    x1, y1, x2, y2 = box
    return [x1 / width, y1 / height, x2 / width, y2 / height]


def smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = 56 * 56,
    max_pixels: int = 14 * 14 * 4 * 1280,
) -> tuple[int, int]:
    """The (height, width) the Qwen2-VL / Qwen2.5-VL processor resizes an image to.

    A line-for-line copy of
    `transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize`
    (copied, not imported, so that schemas/ never pulls in transformers and
    torchvision); tests/test_boxes.py checks it against the installed one,
    results and exceptions alike. Sides become multiples of `factor`
    (patch 14 x merge 2 = 28) and the area lands within [min_pixels,
    max_pixels]. Note Python's round() rounds halves to even, as upstream.
    Raises ValueError for an aspect ratio above 200, and ZeroDivisionError for
    a zero side, exactly like upstream.
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class PixelBudget:
    """The area bounds a Qwen-VL processor resizes every image into (`smart_resize`).

    One budget decides, per stage, both the size of the image a model is sent
    (or that the training processor feeds it) and the frame of the
    `qwen2_5_vl` answer profile: a Qwen2.5-VL answers in pixels of the image
    it saw. `resized` is exact: an image already of that size resizes to
    itself, so a server whose own bounds contain it leaves it as it is.
    """

    min_pixels: int
    max_pixels: int

    def __post_init__(self):
        ok = all(type(v) is int for v in (self.min_pixels, self.max_pixels))
        if not ok or not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need integers 0 < min_pixels <= max_pixels, got {self.min_pixels!r}, {self.max_pixels!r}")

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of an image of this size after the processor's resize."""
        h, w = smart_resize(height, width, 28, self.min_pixels, self.max_pixels)
        return w, h

    def record(self) -> dict:
        return {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}

    def __str__(self) -> str:
        return f"min_pixels={self.min_pixels};max_pixels={self.max_pixels}"


# What a stock served Qwen2.5-VL resizes with: the Hub preprocessor_config.json of
# Qwen/Qwen2.5-VL-7B-Instruct (min_pixels 3136, max_pixels 12845056, patch 14,
# merge 2). transformers' class default (max 1003520) is NOT what vLLM serves.
SERVED_QWEN2_5_VL = PixelBudget(3136, 12845056)


def iou(a, b) -> float:
    """Plain area IoU of two xyxy boxes; 0.0 when they do not overlap.

    An inverted box has no area, so it overlaps nothing. A NaN or infinite
    coordinate gives 0.0 (tested through the sum of all eight, which is
    finite exactly when they all are, short of an overflow past 1e308):
    Python's min/max skip NaN depending on argument order, which would
    otherwise credit a NaN box with a real overlap. Conditional expressions
    instead of min()/max() calls: this runs once per completion in GRPO.
    """
    a0, a1, a2, a3 = map(float, a)
    b0, b1, b2, b3 = map(float, b)
    total = a0 + a1 + a2 + a3 + b0 + b1 + b2 + b3
    if total - total != 0.0:
        return 0.0
    ix = (a2 if a2 < b2 else b2) - (a0 if a0 > b0 else b0)
    iy = (a3 if a3 < b3 else b3) - (a1 if a1 > b1 else b1)
    if not (ix > 0.0 and iy > 0.0):
        return 0.0
    inter = ix * iy
    wa, ha, wb, hb = a2 - a0, a3 - a1, b2 - b0, b3 - b1
    union = (wa if wa > 0.0 else 0.0) * (ha if ha > 0.0 else 0.0) + (wb if wb > 0.0 else 0.0) * (hb if hb > 0.0 else 0.0) - inter
    if not union > 0.0:
        return 0.0
    return inter / union


def iou_many(boxes_a, boxes_b) -> np.ndarray:
    """Row-wise IoU of two (N, 4) arrays: out[i] == iou(A[i], B[i]) exactly.

    The same float64 operations in the same order as `iou`, so the results
    are bit-identical (tests check it), including NaN and inverted rows.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    if a.shape != b.shape:
        raise ValueError(f"iou_many needs two arrays of the same shape, got {a.shape} and {b.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        ix = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
        iy = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
        hit = (ix > 0.0) & (iy > 0.0)
        inter = np.where(hit, ix * iy, 0.0)
        area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
        area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
        union = area_a + area_b - inter
        # The same left-to-right sum as `iou`, so both agree even on overflow.
        total = a[:, 0] + a[:, 1] + a[:, 2] + a[:, 3] + b[:, 0] + b[:, 1] + b[:, 2] + b[:, 3]
        finite = (total - total) == 0.0
        ok = hit & (union > 0.0) & finite
        out = np.zeros(len(a), dtype=np.float64)
        np.divide(inter, union, out=out, where=ok)
    return out
