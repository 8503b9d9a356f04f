"""MIG-Bench's official scoring and prompts, reproduced line by line for comparable numbers.

Two scripts produced the published MIG-Bench numbers. Both are reproduced here,
quirks included; each rule names the upstream line it comes from.

`migician`: thunlp/Migician @ 7b868a2, `eval/utils.py` and
`eval/MIG_bench_eval.py`, written for `MIG_data.json` (0-1 float boxes):
- `prediction = extract_bbox(response[0])`: the parser reads the WHOLE decoded
  response, a `<think>` block included (`migician_extract_bbox`);
- `extract_bbox` (utils.py l.24-34): six regexes tried in order, the first with
  any match wins (OFFICIAL_PATTERNS). `\\d` is Unicode, so '٣' parses as 3;
- one match (l.36-38): every value >= 1 is divided by 1000 (a literal 1 becomes
  0.001); several (l.40-41): a list of boxes where only values > 1 are divided,
  and `calculate_iou` scores the first (l.64-65); none: the else branch returns
  `[]`, which `calculate_iou` scores 0 (l.62-63);
- `calculate_iou(box1=ground truth, box2=prediction)` (l.61-83): plain area IoU,
  0 when `x_right < x_left or y_bottom < y_top`; upstream divides by a zero
  union (and raises), here that is 0.0;
- `compute_iou(obj['answer'], prediction, acc, task)` (MIG_bench_eval.py): the
  ground truth is the file's `answer`, NOT clipped (values up to 1.048); per
  task, counts of IoU >= 0.7 / 0.5 / 0.3 and the IoU sum over `TOTAL`, which is
  every item of the task: nothing is skipped, so the 5 inverted boxes of
  `MIG_data.json` score 0 and stay in the denominator (`official_metrics`);
- the image the answer names is never looked at;
- `migician_eval` only: `prediction[1] = round(min(prediction[1]*1.05, 0.999), 3)`
  and `prediction[3]` likewise with 1.10, inside `try/except: pass`: it applies
  to a single parsed box only (several boxes are a list of lists, and a list
  times a float raises; no box is `[]`, which raises IndexError)
  (`migician_y_rescale`; OfficialScorer(y_rescale=True));
- `qwen2_process`: the images in order, then `question + format_qwen` as one
  user turn, greedy, `max_new_tokens=128` (MIG_PROMPTS["migician-qwen"]).

`univg-r1`: AMAP-ML/UniVG-R1 @ 44868ea, `eval/MIG_bench/utils.py` and
`eval/MIG_bench/MIG_bench_eval.py`, which opens `revised_MIG_bench.json`
(0-1000 integer boxes), the file the published tables agree with:
- the same six regexes, but the values go through `int()`: a decimal match
  (patterns 2-4, e.g. Qwen2.5-VL's `[0.12, 0.3, 0.45, 0.8]`) raises and the bare
  `except` returns `[0.0, 0.0, 0.0, 0.0]`; nothing is divided (the boxes stay on
  the 0-1000 grid of the revised ground truth); several matches: `matches[:-1]`
  then `[0]`, the first box; none: IndexError, `[0.0, 0.0, 0.0, 0.0]`
  (`univg_extract_bbox`);
- `calculate_iou` and `compute_iou` as above, on 0-1000 numbers;
- `migician_eval`: `int(round(min(p/1000*1.05, 0.999), 3) * 1000)` for
  `prediction[1]` (1.10 for `prediction[3]`), on every parsed box (always a
  flat list there) (`univg_y_rescale`);
- prompts: `format_qwen` with `<|box_end|>` (Migician's typo fixed) and, for
  UniVG-R1 itself, `format_univg`; `max_new_tokens=256`; the processor with
  min_pixels=3136, max_pixels=401408.
The UniVG-R1 scorer compares 0-1000 numbers, so it needs a 0-1000 file; the
Migician scorer reads a 0-1000 ground truth divided by 1000.

Bump SCORER_VERSION whenever a rule above changes: it is recorded with every
reported number (training.evaluation).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

SCORER_VERSION = "2"  # 2: whole response parsed, raw ground truth in its frame, univg-r1, y-rescale
SCORERS = {
    "migician": "thunlp/Migician@7b868a2 eval/utils.py extract_bbox + calculate_iou, "
                "eval/MIG_bench_eval.py compute_iou",
    "univg-r1": "AMAP-ML/UniVG-R1@44868ea eval/MIG_bench/utils.py extract_bbox + calculate_iou, "
                "eval/MIG_bench/MIG_bench_eval.py compute_iou",
}
FRAME_SCALE = {"0-1": 1, "0-1000": 1000}

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
ZERO = [0.0, 0.0, 0.0, 0.0]


def _matches(text: str) -> list[tuple[str, ...]]:
    for pattern in OFFICIAL_PATTERNS:
        found = pattern.findall(text)
        if found:
            return found
    return []


def migician_extract_bbox(text: str) -> list:
    """Migician's `extract_bbox`, return value included: one box, a list of boxes, or []."""
    matches = _matches(text)
    # float() accepts every Unicode digit that \d matches, so upstream's bare
    # `except` (returning [0, 0, 0, 0]) never fires on these patterns.
    if len(matches) == 1:
        return [v / 1000 if v >= 1 else v for v in map(float, matches[0])]
    return [[float(v) / 1000 if float(v) > 1 else float(v) for v in m] for m in matches]


def univg_extract_bbox(text: str) -> list:
    """UniVG-R1's `extract_bbox`: the first box as 0-1000 ints, [0.0]*4 on a decimal match or none."""
    matches = _matches(text)
    try:
        first = matches[0] if len(matches) == 1 else matches[:-1][0]
        return [int(v) for v in first]
    except (ValueError, IndexError):  # upstream: a bare except
        return list(ZERO)


def calculate_iou(ground_truth, prediction) -> float:
    """The official `calculate_iou` (both scripts): [] -> 0, a list of boxes -> its first."""
    if prediction == []:
        return 0.0
    if isinstance(prediction[0], list):
        prediction = prediction[0]
    g, p = ground_truth, prediction
    x_left, y_top = max(g[0], p[0]), max(g[1], p[1])
    x_right, y_bottom = min(g[2], p[2]), min(g[3], p[3])
    if x_right < x_left or y_bottom < y_top:
        return 0.0
    inter = (x_right - x_left) * (y_bottom - y_top)
    union = (g[2] - g[0]) * (g[3] - g[1]) + (p[2] - p[0]) * (p[3] - p[1]) - inter
    return float(inter / union) if union else 0.0  # upstream: ZeroDivisionError


def migician_y_rescale(prediction: list) -> list:
    """Migician's `migician_eval` y stretch; a copy, unchanged where upstream's try fails."""
    p = list(prediction)
    try:
        p[1] = round(min(p[1] * 1.05, 0.999), 3)
        p[3] = round(min(p[3] * 1.10, 0.999), 3)
    except (TypeError, IndexError):  # several boxes (list * float) or none ([][1])
        return list(prediction)
    return p


def univg_y_rescale(prediction: list) -> list:
    """UniVG-R1's copy of the stretch, on the 0-1000 grid with int() truncation."""
    p = list(prediction)
    p[1] = int(round(min(p[1] / 1000 * 1.05, 0.999), 3) * 1000)
    p[3] = int(round(min(p[3] / 1000 * 1.10, 0.999), 3) * 1000)
    return p


@dataclass(frozen=True)
class OfficialScorer:
    """Which official script to reproduce, and whether Migician's y-rescaling is on."""

    name: str = "migician"
    y_rescale: bool = False

    def __post_init__(self):
        if self.name not in SCORERS:
            raise ValueError(f"unknown official scorer {self.name!r}; known: {', '.join(SCORERS)}")

    def describe(self) -> dict:
        return {"scorer": self.name, "version": SCORER_VERSION, "y_rescale": self.y_rescale,
                "script": SCORERS[self.name]}

    def accepts(self, frame: str) -> bool:
        """Whether ground truth in `frame` ("0-1" or "0-1000") can be scored as the script did."""
        return frame in FRAME_SCALE and (self.name == "migician" or frame == "0-1000")

    def ground_truth(self, answer_raw, frame: str) -> list:
        """The file's answer, unclipped, in the frame this script compares in."""
        if not self.accepts(frame):
            raise ValueError(f"the {self.name} scorer compares 0-1000 boxes; this ground truth is {frame}")
        if self.name == "migician" and frame == "0-1000":
            return [v / 1000 for v in answer_raw]
        return list(answer_raw)

    def prediction(self, completion: str) -> list:
        if self.name == "migician":
            p = migician_extract_bbox(completion)
            return migician_y_rescale(p) if self.y_rescale else p
        p = univg_extract_bbox(completion)
        return univg_y_rescale(p) if self.y_rescale else p

    def iou(self, completion: str, answer_raw, frame: str = "0-1") -> float:
        return calculate_iou(self.ground_truth(answer_raw, frame), self.prediction(completion))


MIGICIAN = OfficialScorer()


def official_extract_bbox(text: str, frame: tuple[float, float] | None = None) -> list[float]:
    """Migician's parse reduced to the box it scores (normalised 0-1), [0, 0, 0, 0] for none.

    `frame` (width, height) is ours, NOT the script's, for answers in pixels
    outside an official bench file (Qwen2.5-VL: the resized target image): the
    first box's values are divided by it instead of by 1000, which on a pixel
    answer would give a box at the wrong scale."""
    if frame is not None:
        matches = _matches(text)
        if not matches:
            return ZERO[:]
        x1, y1, x2, y2 = map(float, matches[0])
        fw, fh = frame
        return [x1 / fw, y1 / fh, x2 / fw, y2 / fh]
    p = migician_extract_bbox(text)
    return ZERO[:] if p == [] else (p[0] if isinstance(p[0], list) else p)


def official_iou(ground_truth, prediction) -> float:
    """`calculate_iou` on two boxes. On finite boxes it equals `boxes.iou` (tests check it),
    except that where upstream divides by a zero union (two boxes without area) this gives 0.0."""
    return calculate_iou(ground_truth, prediction)


def official_completion_iou(completion: str, ground_truth, frame: tuple[float, float] | None = None) -> float:
    """Migician's IoU of a whole completion against a 0-1 ground truth (not clipped), image ignored
    (`frame`: see official_extract_bbox)."""
    if frame is not None:
        return calculate_iou(ground_truth, official_extract_bbox(completion, frame))
    return MIGICIAN.iou(completion, ground_truth, "0-1")


# ---- prompts -------------------------------------------------------------------
@dataclass(frozen=True)
class PromptTemplate:
    """An official prompt: the file's question, spaces kept, then a fixed suffix (one user turn,
    after the images in order)."""

    id: str
    suffix: str
    script: str
    max_new_tokens: int

    def render(self, question_raw: str) -> str:
        return question_raw + self.suffix

    @property
    def sha256(self) -> str:
        return hashlib.sha256(f"{self.id}\0question+\0{self.suffix}".encode()).hexdigest()[:12]

    def describe(self) -> dict:
        return {"template": self.id, "sha256": self.sha256, "script": self.script,
                "max_new_tokens": self.max_new_tokens}


MIG_PROMPTS = {t.id: t for t in (
    # `format_qwen`, typo included: the second tag is <|box_start|> again, and "addtional".
    PromptTemplate("migician-qwen", "Format:<|box_start|>(x1,y1),(x2,y2)<|box_start|>. Don't generate addtional words.",
                   "thunlp/Migician@7b868a2 eval/MIG_bench_eval.py qwen2_process "
                   "(PROMPT_TEMPLATE['format_qwen'])", 128),
    PromptTemplate("univg-r1-qwen", "Format:<|box_start|>(x1,y1),(x2,y2)<|box_end|>. Don't generate addtional words.",
                   "AMAP-ML/UniVG-R1@44868ea eval/MIG_bench/MIG_bench_eval.py qwen2_process "
                   "(PROMPT_TEMPLATE['format_qwen'])", 256),
    PromptTemplate("univg-r1-think", " First output the thinking process in <think> </think> tags and then output "
                                     "the bounding box in <answer> </answer> tags.",
                   "AMAP-ML/UniVG-R1@44868ea eval/MIG_bench/MIG_bench_eval.py univgr1_process "
                   "(PROMPT_TEMPLATE['format_univg'])", 256),
)}
DEFAULT_PROMPT = "migician-qwen"


# ---- the metric ----------------------------------------------------------------
def _summary(ious: list[float]) -> dict:
    n = len(ious)
    out: dict = {"n": n}
    for t in THRESHOLDS:
        out[f"acc@{t}"] = sum(1 for v in ious if v >= t) / n if n else None
    out["mean_iou"] = sum(ious) / n if n else None
    return out


def official_metrics(ious_by_task: dict[str, list[float]]) -> dict[str, dict]:
    """Per task {"n", "acc@0.3", "acc@0.5", "acc@0.7", "mean_iou"}, plus two totals.

    As `compute_iou`/`post_processing`: each count divided by every item of the
    task (`TOTAL`). "overall" pools every item (micro average); "macro" is the
    mean of the task values, the "average" column of the Migician paper's table.
    A task with no items has None values and is left out of "macro".
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
