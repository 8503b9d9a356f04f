"""Row contracts: one explicit pyarrow schema per dataset kind, plus validators.

Every writer passes these schemas explicitly (never an inferred one). Boxes are
normalised 0-1 xyxy floats on the TARGET image; `target_image` is 0-based.

A grounding target is a set of (image, box) pairs. One pair, the common case,
lives in `target_image` + `target_box` (and `targets` is null). Any other set
lives in `targets`, a list of {image (0-based), box (0-1 xyxy on that image)}
structs, with `target_image`/`target_box` null: two or more pairs (several
targets, on one image or several), or an EMPTY list (the target is in no
image: saying "none" is right). `target_pairs` reads either form.
`meta` is a JSON string holding the source's extra fields (raw answer,
additional info, object annotations), kept for traceability.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pyarrow as pa

IMAGE_REF = pa.struct([("sha256", pa.string()), ("width", pa.int32()), ("height", pa.int32())])
TARGET = pa.struct([("image", pa.int32()), ("box", pa.list_(pa.float32()))])

TASK_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("task_type", pa.string(), nullable=False),
    pa.field("images", pa.list_(IMAGE_REF), nullable=False),
    pa.field("question", pa.string(), nullable=False),
    pa.field("target_image", pa.int32()),
    pa.field("equivalent_images", pa.list_(pa.int32())),
    pa.field("target_box", pa.list_(pa.float32())),
    pa.field("choices", pa.list_(pa.string())),
    pa.field("answer", pa.string()),
    pa.field("meta", pa.string()),
    pa.field("targets", pa.list_(TARGET)),  # a target set other than one pair (module docstring)
]
TASKS = pa.schema(TASK_FIELDS)

# A CoT row carries every task column (train without a join) under the task's
# own `id` as `task_id`; `id` is `<task_id>#<sample_index>`.
COT = pa.schema(
    [pa.field("task_id", pa.string(), nullable=False)]
    + TASK_FIELDS
    + [
        pa.field("prompt", pa.string()),
        pa.field("completion", pa.string()),
        pa.field("reasoning", pa.string()),
        pa.field("profile", pa.string()),
        pa.field("pred_image", pa.int32()),
        pa.field("pred_box", pa.list_(pa.float32())),
        pa.field("format_ok", pa.bool_()),
        pa.field("image_correct", pa.bool_()),
        pa.field("iou", pa.float32()),
        pa.field("generator_model", pa.string()),
        pa.field("generator_kind", pa.string()),  # endpoint | local | annotations
        pa.field("sampling", pa.string()),  # JSON of sampling parameters
        pa.field("template_id", pa.string()),
        pa.field("sample_index", pa.int32()),
    ]
)

RL_POOL = pa.schema(
    TASK_FIELDS
    + [
        pa.field("k", pa.int32()),
        pa.field("pass_rate", pa.float32()),
        pa.field("mean_iou", pa.float32()),
        pa.field("max_iou", pa.float32()),
        pa.field("difficulty", pa.string()),
        pa.field("policy", pa.string()),
    ]
)

PREDICTIONS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("task_type", pa.string()),
        pa.field("completion", pa.string()),
        pa.field("profile", pa.string()),
        pa.field("pred_image", pa.int32()),
        pa.field("pred_box", pa.list_(pa.float32())),
        pa.field("pred_choice", pa.string()),
        pa.field("format_ok", pa.bool_()),
        pa.field("image_correct", pa.bool_()),
        pa.field("iou", pa.float32()),  # strict: 0 when the wrong image is named
        pa.field("official_iou", pa.float32()),  # lenient MIG-Bench parse, image ignored
        pa.field("correct", pa.bool_()),  # multiple choice
        pa.field("model", pa.string()),
        pa.field("outcome", pa.string()),  # strict parse outcome: ok, a parse error, wrong_image, unverifiable:...
        pa.field("reward", pa.float32()),  # the GRPO reward at default weights (training.rewards.combined_score)
        # Set rows only (several targets, or none; null on single-target rows): schemas.sets
        pa.field("pred_targets", pa.list_(TARGET)),  # the parsed set
        pa.field("set_iou", pa.float32()),
        pa.field("set_precision", pa.float32()),  # at IoU 0.5
        pa.field("set_recall", pa.float32()),
        pa.field("set_f1", pa.float32()),
        pa.field("wrong_images", pa.int32()),  # predicted boxes on an image holding no target
        pa.field("none_correct", pa.bool_()),  # rows whose target is in no image: "none" was said
    ]
)

REJECTS = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("record", pa.string()),
    ]
)

SCHEMAS = {"tasks": TASKS, "bench": TASKS, "cot": COT, "rl-pool": RL_POOL, "predictions": PREDICTIONS}


@dataclass
class ImageInfo:
    sha256: str
    width: int
    height: int


@dataclass
class TaskRow:
    """One task: a grounding target (image + box) or a multiple-choice target."""

    id: str
    source: str
    task_type: str
    images: list[ImageInfo]
    question: str
    target_image: int | None = None
    equivalent_images: list[int] = field(default_factory=list)
    target_box: list[float] | None = None
    choices: list[str] | None = None
    answer: str | None = None
    meta: dict = field(default_factory=dict)
    targets: list[tuple[int, list[float]]] | None = None  # a set of 0 or 2+ (image, box) pairs

    @property
    def is_grounding(self) -> bool:
        return self.target_box is not None or self.targets is not None

    def to_record(self) -> dict:
        return {
            "id": self.id,
            "source": self.source,
            "task_type": self.task_type,
            "images": [vars(i) for i in self.images],
            "question": self.question,
            "target_image": self.target_image,
            "equivalent_images": list(self.equivalent_images),
            "target_box": None if self.target_box is None else [float(v) for v in self.target_box],
            "choices": self.choices,
            "answer": self.answer,
            "meta": json.dumps(self.meta, sort_keys=True, ensure_ascii=False),
            "targets": target_records(self.targets),
        }

    @classmethod
    def from_record(cls, r: dict) -> "TaskRow":
        return cls(
            id=r["id"],
            source=r["source"],
            task_type=r["task_type"],
            images=[ImageInfo(**i) for i in r["images"]],
            question=r["question"],
            target_image=r.get("target_image"),
            equivalent_images=list(r.get("equivalent_images") or []),
            target_box=None if r.get("target_box") is None else list(r["target_box"]),
            choices=r.get("choices"),
            answer=r.get("answer"),
            meta=json.loads(r["meta"]) if r.get("meta") else {},
            targets=None if r.get("targets") is None else [(t["image"], list(t["box"])) for t in r["targets"]],
        )


def target_records(pairs) -> list[dict] | None:
    """(image, box) pairs -> the `targets` column's structs (None stays None)."""
    if pairs is None:
        return None
    return [{"image": int(i), "box": [float(v) for v in b]} for i, b in pairs]


def is_set_row(r: dict) -> bool:
    """Whether a row's target lives in `targets` (0 or 2+ pairs) rather than target_image/target_box."""
    return r.get("targets") is not None


def target_pairs(r: dict) -> list[tuple[int, list[float]]] | None:
    """A grounding row's target set as (0-based image, 0-1 box) pairs, whichever columns hold it;
    None for a multiple-choice row."""
    if r.get("targets") is not None:
        return [(t["image"], list(t["box"])) for t in r["targets"]]
    if r.get("target_box") is not None and r.get("target_image") is not None:
        return [(r["target_image"], list(r["target_box"]))]
    return None


def image_sizes(row: dict) -> list[tuple[int, int]]:
    """The ORIGINAL (width, height) of each image of a row, in order: what profiles and scoring take."""
    return [(i["width"], i["height"]) for i in row.get("images") or []]


def validate_task(r: dict) -> str | None:
    """Return None when a task record is valid, else `column: why`."""
    for col in ("id", "source", "task_type", "question"):
        if not isinstance(r.get(col), str) or not r[col]:
            return f"{col}: missing or empty"
    images = r.get("images") or []
    if not images:
        return "images: no image"
    for i in images:
        if not (i.get("width", 0) > 0 and i.get("height", 0) > 0) or not i.get("sha256"):
            return "images: bad image reference"
    grounding = r.get("target_box") is not None or r.get("targets") is not None
    mc = r.get("choices") is not None
    if grounding == mc:
        return "target_box: a task has either a box target or choices, not both or neither"
    if r.get("targets") is not None:
        return _targets_problem(r, len(images))
    if grounding:
        t = r.get("target_image")
        if t is None or not 0 <= t < len(images):
            return f"target_image: {t} out of range for {len(images)} images"
        for e in r.get("equivalent_images") or []:
            if not 0 <= e < len(images):
                return f"equivalent_images: {e} out of range"
        box = r["target_box"]
        if len(box) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
            return "target_box: needs 4 finite numbers"
    else:
        letters = [chr(ord("A") + i) for i in range(len(r["choices"]))]
        if r.get("answer") not in letters:
            return f"answer: {r.get('answer')!r} is not one of {letters}"
    return None


def _finite_box(box) -> bool:
    return (isinstance(box, (list, tuple)) and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box))


def _targets_problem(r: dict, n_images: int) -> str | None:
    if r.get("target_box") is not None or r.get("target_image") is not None:
        return "targets: a target set leaves target_image and target_box empty"
    if r.get("equivalent_images"):
        return "equivalent_images: not used with a target set (list each pair)"
    pairs = r["targets"]
    if len(pairs) == 1:
        return "targets: one pair belongs in target_image and target_box"
    seen = set()
    for t in pairs:
        i, box = t.get("image"), t.get("box")
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n_images:
            return f"targets: image {i} out of range for {n_images} images"
        if not _finite_box(box):
            return "targets: each box needs 4 finite numbers"
        key = (i, tuple(float(v) for v in box))
        if key in seen:
            return f"targets: the pair (image {i}, {list(box)}) is listed twice"
        seen.add(key)
    return None


def to_table(records: list[dict], kind: str) -> pa.Table:
    """Build a table with the kind's explicit schema (raises on a mismatch)."""
    schema = SCHEMAS[kind] if kind in SCHEMAS else REJECTS
    return pa.Table.from_pylist(records, schema=schema)


def validate_table(table: pa.Table, kind: str) -> str | None:
    """Name the first column that differs from the kind's schema, else None."""
    expected = SCHEMAS[kind]
    for f in expected:
        if f.name not in table.schema.names:
            return f"{f.name}: missing column"
        got = table.schema.field(f.name).type
        if got != f.type:
            return f"{f.name}: type {got}, expected {f.type}"
    if table.num_rows and table.column("id").null_count:
        return "id: null ids"
    return None
