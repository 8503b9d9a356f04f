"""The official MIG-Bench answer parsing and metric, reproduced for comparable numbers.

Source: Migician `eval/utils.py` (`extract_bbox`, `calculate_iou`) and
`eval/MIG_bench_eval.py` (`compute_iou`); see ../shared/docs/formats.md.
Reproduced on purpose, quirks included:
- the regexes use `\\d`, which in Python matches any Unicode digit, so '٣'
  parses as 3 (our strict profiles reject it);
- with exactly one match every value >= 1 is divided by 1000; with several
  matches the first box is scored and only values > 1 are divided (a literal
  1 stays 1.0 there);
- a parse failure scores as [0, 0, 0, 0], i.e. IoU 0;
- the official evaluation never checks which image was named, and does not
  clip the ground truth (values up to 1.048 exist).
`strict_official_iou` is the stricter variant: the same lenient box, but 0
unless the completion names the target image (or an equivalent one).
"""
from __future__ import annotations

import re

from schemas.profiles import image_mentions

# In the official order; the first pattern with any match wins.
OFFICIAL_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"\((\d+),\s*(\d+)\),\s*\((\d+),\s*(\d+)\)",
        r"\[(\d+\.\d+),\s*(\d+\.\d+),\s*(\d+\.\d+),\s*(\d+\.\d+)\]",
        r"\((\d+\.\d+),(\d+\.\d+)\),\((\d+\.\d+),(\d+\.\d+)\)",
        r"\((\d+\.\d+),\s*(\d+\.\d+),\s*(\d+\.\d+),\s*(\d+\.\d+)\)",
        r"\[(\d+),\s*(\d+),\s*(\d+),\s*(\d+)\]",
        r"<box>(\d+)\s+(\d+)\s+(\d+)\s+(\d+)</box>",
    )
)
THRESHOLDS = (0.3, 0.5, 0.7)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)


def official_extract_bbox(text: str, frame: tuple[float, float] | None = None) -> list[float]:
    """The official lenient box parser: first box found, normalised; [0,0,0,0] on failure.

    `frame` (width, height) is ours, for answers in pixels (Qwen2.5-VL: the resized
    target image): the values are divided by it instead of by 1000, which on a
    pixel answer would give a box at the wrong scale."""
    matches: list = []
    for pattern in OFFICIAL_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            break
    if not matches:
        return [0.0, 0.0, 0.0, 0.0]
    # float() accepts every Unicode digit that \d matches (all 660 of them), so
    # upstream's bare `except` never fires on these patterns.
    values = [float(v) for v in matches[0]]
    if frame is not None:
        fw, fh = frame
        return [values[0] / fw, values[1] / fh, values[2] / fw, values[3] / fh]
    if len(matches) == 1:
        return [v / 1000 if v >= 1 else v for v in values]
    return [v / 1000 if v > 1 else v for v in values]


def official_iou(ground_truth, prediction) -> float:
    """The official `calculate_iou`: IoU, 0 when the overlap is empty.

    Kept as upstream wrote it so the two can be compared line by line; on
    finite boxes it equals `boxes.iou` (tests check it), except that where
    upstream divides by a zero union (two boxes without area) this gives 0.0.
    """
    g, p = ground_truth, prediction
    x_left, y_top = max(g[0], p[0]), max(g[1], p[1])
    x_right, y_bottom = min(g[2], p[2]), min(g[3], p[3])
    if x_right < x_left or y_bottom < y_top:
        return 0.0
    inter = (x_right - x_left) * (y_bottom - y_top)
    union = (g[2] - g[0]) * (g[3] - g[1]) + (p[2] - p[0]) * (p[3] - p[1]) - inter
    return float(inter / union) if union else 0.0


def answer_span(completion: str) -> str:
    """The text inside the first <answer> (closed or not), else the whole completion.

    The official eval parsed short, reasoning-free answers; on a reasoning
    model's completion it would pick up boxes quoted in the <think> block.
    """
    m = _ANSWER.search(completion)
    return m.group(1) if m else completion


def official_completion_iou(completion: str, target_box, frame: tuple[float, float] | None = None) -> float:
    """Lenient IoU of a completion: official parser on its answer span, image ignored
    (`frame`: see official_extract_bbox)."""
    return official_iou(target_box, official_extract_bbox(answer_span(completion), frame))


def official_named_image(completion: str) -> int | None:
    """The first image (0-based) the answer span names in words or digits, else None."""
    named = image_mentions(answer_span(completion))
    return named[0] if named else None


def strict_official_iou(completion: str, target_box, target_image: int, equivalent_images=()) -> float:
    """Lenient box, but 0.0 unless the named image is the target or an equivalent one."""
    named = official_named_image(completion)
    if named is None or (named != target_image and named not in equivalent_images):
        return 0.0
    return official_completion_iou(completion, target_box)


def _summary(ious: list[float]) -> dict:
    n = len(ious)
    out: dict = {"n": n}
    for t in THRESHOLDS:
        out[f"acc@{t}"] = sum(1 for v in ious if v >= t) / n if n else None
    out["mean_iou"] = sum(ious) / n if n else None
    return out


def official_metrics(ious_by_task: dict[str, list[float]]) -> dict[str, dict]:
    """Per task {"n", "acc@0.3", "acc@0.5", "acc@0.7", "mean_iou"}, plus two totals.

    "overall" pools every item (micro average); "macro" is the mean of the
    task values, the "average" column of the Migician paper's table. A task
    with no items has None values and is left out of "macro".
    """
    for reserved in ("overall", "macro"):
        if reserved in ious_by_task:
            raise ValueError(f"a task may not be called {reserved!r}: it names a total")
    out = {task: _summary(list(ious)) for task, ious in ious_by_task.items()}
    out["overall"] = _summary([v for ious in ious_by_task.values() for v in ious])
    tasks = [m for task, m in out.items() if task != "overall" and m["n"]]
    macro: dict = {"n": sum(m["n"] for m in tasks)}
    for key in [f"acc@{t}" for t in THRESHOLDS] + ["mean_iou"]:
        macro[key] = sum(m[key] for m in tasks) / len(tasks) if tasks else None
    out["macro"] = macro
    return out

