"""schemas.boxes: named box problems, frames, smart_resize against transformers, IoU."""
from __future__ import annotations

import ast
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.boxes import (
    box_problem,
    clip01,
    from_1000,
    iou,
    iou_many,
    norm_to_1000,
    norm_to_pixels,
    pixels_to_norm,
    smart_resize,
)

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "box, expected",
    [
        ([0.1, 0.2, 0.5, 0.75], None),
        ([0, 0, 1, 1], None),
        ((0.0, 0.0, 1.048, 1.0), None),  # MIG-Bench's largest value, within tol
        (np.array([0.1, 0.2, 0.5, 0.75]), None),
        ([np.float32(0.1), 0.2, 0.5, 0.75], None),
        ([0.1, 0.2, 0.5], "not_four_numbers"),
        ([0.1, 0.2, 0.5, 0.7, 0.9], "not_four_numbers"),
        (None, "not_four_numbers"),
        ("0.1,0.2,0.5,0.7", "not_four_numbers"),
        (["0.1", 0.2, 0.5, 0.75], "not_four_numbers"),
        ([True, 0.2, 0.5, 0.75], "not_four_numbers"),
        ([0.1, None, 0.5, 0.75], "not_four_numbers"),
        ([0.1, NAN, 0.5, 0.75], "nan"),
        ([0.1, 0.2, INF, 0.75], "nan"),
        ([-0.06, 0.2, 0.5, 0.75], "out_of_range"),
        ([0.1, 0.2, 1.06, 0.75], "out_of_range"),
        ([120, 300, 450, 800], "out_of_range"),  # a 0-1000 box where 0-1 belongs
        ([0.5, 0.2, 0.1, 0.75], "inverted"),
        ([0.1, 0.75, 0.5, 0.2], "inverted"),
        ([0.3, 0.2, 0.3, 0.75], "zero_area"),
        ([1.01, 0.2, 1.04, 0.75], "zero_area"),  # wholly past the right border
    ],
)
def test_box_problem(box, expected):
    assert box_problem(box) == expected


def test_box_problem_tolerance_is_a_parameter():
    assert box_problem([0, 0, 1.1, 1], tol=0.2) is None
    assert box_problem([0, 0, 1.01, 1], tol=0.0) == "out_of_range"


@pytest.mark.parametrize(
    "fn, args, expected",
    [
        (clip01, ([-0.1, 0.5, 1.048, 1.0],), [0.0, 0.5, 1.0, 1.0]),
        (norm_to_1000, ([0.12, 0.3, 0.45, 0.8],), [120, 300, 450, 800]),
        (norm_to_1000, ([0.0005, 0.0015, 0.9995, 1.0],), [0, 2, 1000, 1000]),  # halves to even
        (from_1000, ([120, 300, 450, 800],), [0.12, 0.3, 0.45, 0.8]),
        (norm_to_pixels, ([0.25, 0.5, 0.75, 1.0], 640, 480), [160.0, 240.0, 480.0, 480.0]),
        (pixels_to_norm, ([160, 240, 480, 480], 640, 480), [0.25, 0.5, 0.75, 1.0]),
    ],
)
def test_conversions(fn, args, expected):
    out = fn(*args)
    assert out == expected
    assert type(out) is list


def test_norm_to_1000_gives_ints():
    assert all(type(v) is int for v in norm_to_1000([0.1, 0.2, 0.3, 0.4]))


# ---- smart_resize: identical to the installed transformers -----------------------------
def _transformers_smart_resize():
    """transformers' own function. Importing its module needs torchvision, which
    this project never installs, so read the function out of the installed file."""
    try:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as ref

        return ref
    except ImportError:
        pass
    root = Path(importlib.util.find_spec("transformers").submodule_search_locations[0])
    path = root / "models" / "qwen2_vl" / "image_processing_qwen2_vl.py"
    tree = ast.parse(path.read_text())
    (node,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "smart_resize"]
    namespace = {"math": math}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["smart_resize"]


REFERENCE = _transformers_smart_resize()
SIDES = [1, 2, 13, 27, 28, 29, 41, 42, 55, 56, 57, 100, 224, 333, 480, 500, 719, 720, 1080, 1920, 4000, 8192, 30000]
EXTREME = [(1, 200), (200, 1), (1, 201), (201, 1), (5, 1000), (5, 1001), (28, 5600), (3, 600), (500, 100000), (0, 5), (5, 0)]
PIXEL_BOUNDS = [
    {},  # the function's defaults
    {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280},  # the processor's defaults
    {"min_pixels": 3136, "max_pixels": 12845056},  # Qwen2.5-VL hub configs
    {"min_pixels": 256 * 28 * 28, "max_pixels": 512 * 28 * 28},  # forces the upscale branch
    {"factor": 32, "min_pixels": 32 * 32, "max_pixels": 1024 * 1024},
]


def _outcome(fn, h, w, kw):
    try:
        return fn(h, w, **kw)
    except Exception as e:  # the exception type and message must match too
        return type(e), str(e)


@pytest.mark.parametrize("kw", PIXEL_BOUNDS)
def test_smart_resize_matches_transformers_on_a_grid(kw):
    sizes = [(h, w) for h in SIDES for w in SIDES] + EXTREME
    assert [_outcome(smart_resize, h, w, kw) for h, w in sizes] == [_outcome(REFERENCE, h, w, kw) for h, w in sizes]


@settings(max_examples=400, deadline=None)
@given(
    h=st.integers(1, 60000),
    w=st.integers(1, 60000),
    kw=st.sampled_from(PIXEL_BOUNDS),
)
def test_smart_resize_matches_transformers_anywhere(h, w, kw):
    assert _outcome(smart_resize, h, w, kw) == _outcome(REFERENCE, h, w, kw)


@pytest.mark.parametrize(
    "h, w, kw, expected",
    [
        (480, 640, {}, (476, 644)),
        (500, 1000, {}, (504, 1008)),
        (3000, 4000, {"max_pixels": 28 * 28 * 1280}, (840, 1148)),
        (3000, 4000, {"max_pixels": 12845056}, (2996, 4004)),
        (10, 10, {}, (56, 56)),
        (1, 200, {}, (28, 812)),
    ],
)
def test_smart_resize_literal_values(h, w, kw, expected):
    assert smart_resize(h, w, **kw) == expected


def test_smart_resize_raises_like_transformers():
    with pytest.raises(ValueError, match="aspect ratio must be smaller than 200, got 201.0"):
        smart_resize(1, 201)
    with pytest.raises(ZeroDivisionError):
        smart_resize(0, 5)


# ---- IoU ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([0.25, 0.25, 0.75, 0.75], [0.25, 0.25, 0.75, 0.75], 1.0),
        ([0.25, 0.25, 0.75, 0.75], [0.25, 0.25, 0.5, 0.75], 0.5),
        ([0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5], 0.25),
        ([0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75], 1 / 7),
        ([0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], 0.0),  # touching edges
        ([0.0, 0.0, 0.25, 0.25], [0.5, 0.5, 1.0, 1.0], 0.0),  # apart
        ([0.5, 0.0, 0.25, 1.0], [0.0, 0.0, 1.0, 1.0], 0.0),  # inverted
        ([0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], 0.0),  # no area at all
        ([0.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.75, 0.75], 0.0),  # official parse failure
        ([0.0, 0.0, 1.0, 1.0], [0.0, 0.0, NAN, 0.5], 0.0),  # min() would skip the NaN
        ([0.0, 0.0, 1.0, 1.0], [0.0, 0.0, INF, 0.5], 0.0),
        ([0, 0, 500, 500], [250, 250, 750, 750], 1 / 7),  # any frame, as long as both share it
    ],
)
def test_iou(a, b, expected):
    assert iou(a, b) == pytest.approx(expected, abs=1e-15)
    assert iou(b, a) == pytest.approx(expected, abs=1e-15)


coord = st.one_of(
    st.floats(-0.5, 1.5, allow_nan=False),
    st.sampled_from([0.0, 1.0, 0.5, -0.0, NAN, INF, -INF, 1e308, -1e308]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(coord, min_size=4, max_size=4), st.lists(coord, min_size=4, max_size=4)), max_size=20))
def test_iou_many_equals_scalar_iou_bit_for_bit(pairs):
    a = np.array([p[0] for p in pairs], dtype=np.float64).reshape(-1, 4)
    b = np.array([p[1] for p in pairs], dtype=np.float64).reshape(-1, 4)
    out = iou_many(a, b)
    assert out.shape == (len(pairs),)
    assert out.tolist() == [iou(x, y) for x, y in pairs]
    assert not np.isnan(out).any() and ((out >= 0) & (out <= 1)).all()


def test_iou_many_on_random_boxes_and_lists():
    rng = np.random.default_rng(0)
    a, b = rng.random((5000, 4)), rng.random((5000, 4))
    assert iou_many(a, b).tolist() == [iou(x, y) for x, y in zip(a, b)]
    assert iou_many([[0.25, 0.25, 0.75, 0.75]], [[0.25, 0.25, 0.5, 0.75]]).tolist() == [0.5]
    assert iou_many(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0,)
    with pytest.raises(ValueError, match="same shape"):
        iou_many(a, b[:10])
