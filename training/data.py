"""A frozen store version -> a `datasets.Dataset` in TRL's conversational format.

Columns out (SFT): `id`, `prompt` (one user turn: one `{"type": "image"}` per
image, in order, then the question + the profile's format instructions),
`completion` (one assistant turn), `images` (PIL images, decoded lazily from
the store's files). The prompt/completion split makes TRL compute the loss on
the answer only.

Columns out (GRPO): `id`, `prompt`, `images`, and the target columns the
rewards read: `target_image` (0-based), `equivalent_images`, `target_box`
(normalised 0-1 xyxy on the target image), `image_sizes` (ORIGINAL
(width, height) per image), `task_type`, `pass_rate` (rl-pool, else None), and
`targets` (a set row's [{"image", "box"}], else None: schemas/rows.py).

Before a trainer sees a row, `preflight` counts its tokens as the collator
will (chat template + visual tokens from the processor's own resize rule)
against the length limit. A row that would be cut is refused or dropped with
a named reason: TRL's collator would otherwise silently truncate the answer.
"""
from __future__ import annotations

import hashlib
import re
import sys
from collections import Counter
from dataclasses import dataclass, field

from builders.inference.student import build_prompt_messages  # the student's turn (one builder for all)
from schemas.errors import UserError
from schemas.rows import image_sizes, is_set_row
from schemas.set_answers import render_row

TRAINABLE_KINDS = ("cot", "tasks", "rl-pool")
# Text that a processor would read as an image slot: a question holding one
# would make the image count disagree with the placeholders.
IMAGE_MARKERS = ("<|image_pad|>", "<|vision_start|>", "<|video_pad|>", "<image>")
EXAMPLES_PER_REASON = 5
# Coordinates written in free text: a point "(x, y)", a box "[x1, y1, x2, y2]", or a bbox_2d key.
_REASONING_COORDS = re.compile(r"\(\s*\d+(?:\.\d+)?\s*,\s*\d+(?:\.\d+)?\s*\)"
                               r"|\[\s*\d+(?:\.\d+)?(?:\s*,\s*\d+(?:\.\d+)?){3}\s*\]|bbox_2d")


@dataclass
class DataInfo:
    """What the trainer was fed: the version's identity and what was dropped, by reason."""

    ref: str
    name: str
    version: str
    kind: str
    manifest_sha256: str
    profile: str
    profile_version: str
    rows_in: int = 0
    rows_kept: int = 0
    dropped: dict = field(default_factory=dict)
    dropped_examples: dict = field(default_factory=dict)
    max_tokens: int = 0
    max_visual_tokens: int = 0
    length_limit: int | None = None
    repeated_by_difficulty: int = 0
    image_pixels: dict | None = None  # the frame the targets were rendered in (qwen2_5_vl), else None
    downscaled: int = 0  # rows too long at the processor's bounds, trained on with smaller images

    def to_record(self) -> dict:
        return dict(vars(self))

    def summary(self) -> str:
        drops = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped.items())) or "none"
        smaller = f", {self.downscaled} with images downscaled to fit" if self.downscaled else ""
        return (f"{self.ref} ({self.kind}): {self.rows_kept}/{self.rows_in} rows{smaller}, dropped {drops}; "
                f"longest row {self.max_tokens} tokens (limit {self.length_limit}), profile {self.profile}")


def open_version(store, ref: str):
    """Resolve `ref`, verify every file it rests on, refuse benchmarks and untrainable kinds."""
    version = store.resolve(ref)
    problems = store.verify(version)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{version.ref} failed verification: {problems[0]}{more}; "
                        f"it changed since it was built (see `polyground data verify {version.ref}`)")
    store.check_trainable(version)  # after verify: a tampered manifest could hide a bench split
    if version.kind not in TRAINABLE_KINDS:
        raise UserError(f"{version.ref} is a {version.kind} version; training reads {', '.join(TRAINABLE_KINDS)}")
    return version


def data_info(version, profile) -> DataInfo:
    manifest = (version.path / "manifest.json").read_bytes()
    return DataInfo(ref=version.ref, name=version.name, version=version.id, kind=version.kind,
                    manifest_sha256=hashlib.sha256(manifest).hexdigest(), profile=profile.name,
                    profile_version=profile.version,
                    image_pixels=profile.budget.record() if getattr(profile, "budget", None) else None)


def completion_messages(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def resolve_profile(name: str | None, table, model_type: str, processor, model_profile: str | None = None):
    """Explicit name > the cot rows' own profile > the profile the model was trained on
    (its run.json) > the model family's profile.

    The qwen2_5_vl frame depends on the processor's pixel bounds, so they are taken from it."""
    from schemas.profiles import get_profile, profile_for_model, takes_budget

    data_profiles = set()
    if "profile" in table.schema.names:
        data_profiles = {p for p in table.column("profile").to_pylist() if p}
    if len(data_profiles) > 1:
        raise UserError(f"the rows mix answer profiles {sorted(data_profiles)}; train on one at a time")
    (data_profile,) = data_profiles or {None}
    if name and data_profile and name != data_profile:
        raise UserError(f"the completions were written in profile {data_profile!r}; "
                        f"--profile {name} would teach a format the rewards and eval do not parse")
    chosen = name or data_profile or model_profile or profile_for_model(model_type).name
    if takes_budget(chosen):
        size = getattr(getattr(processor, "image_processor", None), "size", None) or {}
        return get_profile(chosen, size.get("shortest_edge"), size.get("longest_edge"))
    return get_profile(chosen)


def _row_base(row: dict, store, profile) -> tuple[dict | None, str | None]:
    """id, prompt and image paths of one row, or a drop reason."""
    if any(marker in row["question"] for marker in IMAGE_MARKERS):
        return None, "placeholder_in_text"
    n = len(row["images"])
    return {
        "id": row["id"],
        "prompt": build_prompt_messages(row["question"], n, profile),
        "images": [str(store.image_path(i["sha256"])) for i in row["images"]],
    }, None


def _resized_row(row: dict, sizes) -> dict:
    """The row as if its images had these (width, height)s: what a downscaled row renders on."""
    return {**row, "images": [{**i, "width": w, "height": h} for i, (w, h) in zip(row["images"], sizes)]}


def render_target(row: dict, profile, reasoning: str = "") -> str:
    """A tasks row's answer as the profile writes it (empty reasoning): SFT without a cot version.
    A set row's answer is its whole set (schemas.set_answers), "none" for an empty one."""
    return render_row(row, profile, reasoning)


def cot_target(row: dict, profile, box: str = "annotation") -> str:
    """A cot row's answer in the trainer's frame: its reasoning, the image it names and a box,
    rendered by `profile` (the trainer's: its processor's pixel bounds).

    `box`: "annotation" (default) gives the ground-truth box, an exact label; "teacher" the
    teacher's own box, which passed the verifier's IoU gate (distillation of the teacher's
    answers, looseness included). The store keeps both canonically (normalised, with the image
    index and the reasoning), so one cot version serves any budget; the `completion` column is
    the rendering at the budget it was built with, kept for reading. A set row's answer is its
    ground-truth set whatever `box` says: no teacher set is stored."""
    reasoning = row.get("reasoning") or ""
    if box == "teacher" and not is_set_row(row):
        if row.get("pred_box") is None:
            raise ValueError("no teacher box")
        return profile.render(reasoning, row["pred_image"], row["pred_box"], image_sizes(row))
    return render_row(row, profile, reasoning, image=row.get("pred_image"))


def check_reasoning_frame(version, rows: list[dict], profile) -> None:
    """Refuse cot rows whose reasoning quotes coordinates in a pixel frame other than the trainer's.

    The answer is re-rendered (cot_target), free text is not: training on it would teach
    coordinates in one frame while the rewards read another."""
    budget = getattr(profile, "budget", None)
    if budget is None or version.kind != "cot":
        return
    built = (version.manifest.get("config") or {}).get("image_pixels")
    if built == budget.record():
        return
    quoting = [r["id"] for r in rows if _REASONING_COORDS.search(r.get("reasoning") or "")]
    if quoting:
        was = f"min_pixels={built['min_pixels']};max_pixels={built['max_pixels']}" if built else "an unrecorded budget"
        raise UserError(f"{len(quoting)} rows of {version.ref} (first: {quoting[0]}) quote coordinates in their "
                        f"reasoning in the {profile.name} frame of {was}, and this trainer reads {budget}: train with "
                        "image_min_pixels/image_max_pixels equal to the build's, or rebuild the cot version with "
                        "--image-min-pixels/--image-max-pixels equal to the trainer's")


def sft_record(row: dict, store, profile, kind: str, cot_box: str = "annotation") -> tuple[dict | None, str | None]:
    base, why = _row_base(row, store, profile)
    if why:
        return None, why
    if kind == "cot":
        single = row.get("pred_image") is not None and row.get("target_box") is not None
        if not row.get("completion") or not (single or is_set_row(row)):
            return None, "no_completion"
        try:
            text = cot_target(row, profile, cot_box)
        except ValueError:
            return None, "unrenderable_target"
    elif (row.get("target_box") is None or row.get("target_image") is None) and row.get("targets") is None:
        return None, "no_box_target"  # multiple choice: nothing for a grounding profile to render
    else:
        try:
            text = render_target(row, profile)
        except ValueError:
            return None, "unrenderable_target"
    return {**base, "completion": completion_messages(text)}, None


def grpo_record(row: dict, store, profile) -> tuple[dict | None, str | None]:
    base, why = _row_base(row, store, profile)
    if why:
        return None, why
    if is_set_row(row):  # a target set: the rewards score it with schemas.sets
        return {**base, "target_image": None, "equivalent_images": [], "target_box": None,
                "image_sizes": image_sizes(row), "task_type": row["task_type"], "pass_rate": row.get("pass_rate"),
                "targets": [{"image": t["image"], "box": list(t["box"])} for t in row["targets"]]}, None
    if row.get("target_box") is None or row.get("target_image") is None:
        return None, "no_box_target"  # every reward would be None: no signal
    return {**base, "target_image": row["target_image"], "equivalent_images": list(row.get("equivalent_images") or []),
            "target_box": list(row["target_box"]), "image_sizes": image_sizes(row),
            "task_type": row["task_type"], "pass_rate": row.get("pass_rate"), "targets": None}, None


def _collect(rows, make, info: DataInfo) -> list[dict]:
    records, drops = [], Counter()
    for row in rows:
        rec, why = make(row)
        if why:
            drops[why] += 1
            info.dropped_examples.setdefault(why, [])
            if len(info.dropped_examples[why]) < EXAMPLES_PER_REASON:
                info.dropped_examples[why].append(row["id"])
        else:
            records.append(rec)
    for k, v in drops.items():
        info.dropped[k] = info.dropped.get(k, 0) + v
    return records


def visual_tokens(processor, width: int, height: int, _cache: dict = {}) -> int:  # noqa: B006 - per-process cache
    """Tokens one image of this ORIGINAL size costs, by the processor's own resize rule."""
    # The resize bounds are in the key: set_pixel_bounds may change them after a first count.
    bounds = getattr(getattr(processor, "image_processor", None), "size", None) or {}
    key = (id(processor), tuple(sorted(dict(bounds).items())), width, height)
    if key not in _cache:
        if hasattr(processor, "_get_num_multimodal_tokens"):
            counts = processor._get_num_multimodal_tokens(image_sizes=[(height, width)])
            _cache[key] = int(counts["num_image_tokens"][0])
        else:  # any other processor: expand one image slot and count
            from PIL import Image

            out = processor(text=[processor.image_token], images=[Image.new("RGB", (width, height))])
            _cache[key] = int(sum(1 for t in out["input_ids"][0] if t == processor.image_token_id))
    return _cache[key]


@dataclass
class TokenCount:
    total: int  # prompt + completion, visual tokens included
    visual: int
    slots: int  # image slots the chat template rendered


def count_tokens(records: list[dict], processor, image_sizes: list[list[list[int]]]) -> list[TokenCount]:
    """Token counts per record, as TRL's collator will build it.

    The chat template renders one image slot per image; the processor then
    expands each slot to the image's visual tokens."""
    tok = processor.tokenizer
    slot = getattr(processor, "image_token", None)
    rendered = render_texts(records, processor)
    # Prompt and completion are tokenized apart, as the collator does.
    prompts = list(dict.fromkeys(p for p, _ in rendered))  # rows often share a question
    prompt_len = dict(zip(prompts, map(len, tok(prompts, add_special_tokens=False)["input_ids"])))
    completion_ids = tok([c for _, c in rendered], add_special_tokens=False)["input_ids"]
    out = []
    for c_ids, sizes, (prompt, _) in zip(completion_ids, image_sizes, rendered):
        visual = sum(visual_tokens(processor, w, h) for w, h in sizes)
        slots = prompt.count(slot) if slot else len(sizes)
        out.append(TokenCount(prompt_len[prompt] + len(c_ids) - slots + visual, visual, slots))
    return out


def render_texts(records: list[dict], processor) -> list[tuple[str, str]]:
    """(prompt text, completion text) per record, exactly as trl.data_utils.apply_chat_template splits them.

    Same rule (the prompt is the common prefix of the prompt rendered alone and of
    prompt + completion), but each distinct prompt is rendered once: rows that
    share a question cost one template render instead of two."""
    import json
    from itertools import takewhile

    alone: dict[str, str] = {}
    out = []
    for r in records:
        key = json.dumps(r["prompt"], sort_keys=True)
        if key not in alone:
            alone[key] = processor.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        if "completion" not in r:
            out.append((alone[key], ""))
            continue
        full = processor.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
        prompt = alone[key]
        if not full.startswith(prompt):  # e.g. a generation prompt the full render lacks
            prompt = "".join(a for a, _ in takewhile(lambda ab: ab[0] == ab[1], zip(prompt, full)))
        out.append((prompt, full[len(prompt):]))
    return out


def _problem(count: TokenCount, n_images: int, limit: int | None, budget: int) -> str | None:
    if count.slots != n_images:
        return "placeholder_mismatch"  # the processor would fail or pair images with the wrong slots
    if limit is not None and count.total + budget > limit:
        return "too_long"  # the collator would cut the answer off
    return None


def _pixel_bounds(processor) -> tuple[int, int] | None:
    size = getattr(getattr(processor, "image_processor", None), "size", None) or {}
    lo, hi = size.get("shortest_edge"), size.get("longest_edge")
    return (lo, hi) if isinstance(lo, int) and isinstance(hi, int) else None


def row_budget(processor, sizes, room: int):
    """The largest PixelBudget (same min, a lower max) at which these images cost at most `room`
    visual tokens under the processor's rule, or None when even its min_pixels costs more."""
    from schemas.boxes import PixelBudget

    bounds = _pixel_bounds(processor)
    if bounds is None:
        return None

    def cost(hi: int) -> int:
        b = PixelBudget(bounds[0], hi)
        return sum(visual_tokens(processor, *b.resized(w, h)) for w, h in sizes)

    lo, hi = bounds
    if cost(lo) > room:
        return None
    while lo < hi:  # the largest max_pixels that fits: cost grows with it
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= room else (lo, mid - 1)
    return PixelBudget(bounds[0], lo)


def _downscaled(record: dict, sizes, budget, remake) -> tuple[dict, list[tuple[int, int]]]:
    """The row remade for its images resized into `budget`: the images as bytes of exactly the
    resized size (the processor then leaves them as they are), targets rendered on those sizes."""
    from builders.sources.images import fit

    new = [budget.resized(w, h) for w, h in sizes]
    rec = remake(record, new)
    images = []
    for path, (w, h) in zip(record["images"], new):
        with open(path, "rb") as f:
            images.append({"bytes": fit(f.read(), w, h), "path": None})
    return {**rec, "images": images}, new


def preflight(records: list[dict], processor, sizes: list, limit: int | None, budget: int,
              on_overflow: str, info: DataInfo, remake=None) -> list[dict]:
    """Refuse, or drop with a named reason, every row the collator would cut or mis-pair; never truncate.

    `budget` reserves room for generated tokens (GRPO); SFT rows already hold their answer.
    A row too long at the processor's pixel bounds is first downscaled: its images resized
    within a lower max_pixels until it fits (`remake(record, new_sizes)` renders its targets
    on the new sizes, the frame the model then sees); only a row that overflows even at the
    processor's min_pixels is too_long."""
    counts = count_tokens(records, processor, sizes)
    if remake is not None and limit is not None:
        records, sizes, counts = list(records), list(sizes), list(counts)
        for i, c in enumerate(counts):
            if c.total + budget <= limit or c.slots != len(sizes[i]):
                continue
            fitted = row_budget(processor, sizes[i], limit - budget - (c.total - c.visual))
            if fitted is None:
                continue
            rec, new = _downscaled(records[i], sizes[i], fitted, remake)
            recount = count_tokens([rec], processor, [new])[0]
            if recount.total + budget <= limit:  # the re-rendered answer may be a digit longer
                records[i], sizes[i], counts[i] = rec, new, recount
                info.downscaled += 1
        if any(isinstance(r["images"][0], dict) for r in records if r["images"]):
            # One column type for datasets: every row's images as {"bytes", "path"}.
            for r in records:
                r["images"] = [im if isinstance(im, dict) else {"bytes": None, "path": im} for im in r["images"]]
    info.length_limit = limit
    info.max_tokens = max((c.total for c in counts), default=0)
    info.max_visual_tokens = max((c.visual for c in counts), default=0)
    problems = {i: why for i, c in enumerate(counts) if (why := _problem(c, len(sizes[i]), limit, budget))}
    if problems and on_overflow == "refuse":
        raise UserError(_refusal(records, counts, problems, limit, budget))
    for i, why in problems.items():
        info.dropped[why] = info.dropped.get(why, 0) + 1
        examples = info.dropped_examples.setdefault(why, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(records[i]["id"])
    return [r for i, r in enumerate(records) if i not in problems]


def _refusal(records, counts, problems: dict, limit, budget) -> str:
    long = [i for i, why in problems.items() if why == "too_long"]
    if long:
        worst = max(long, key=lambda i: counts[i].total)
        c = counts[worst]
        gen = f" + {budget} to generate" if budget else ""
        return (f"{len(long)} of {len(records)} rows would be cut at {limit} tokens (longest: {records[worst]['id']}, "
                f"{c.total} tokens with {c.visual} visual{gen}); raise the length limit, lower the processor's "
                "max_pixels, or pass --on_overflow drop")
    first = next(iter(problems))
    return (f"{len(problems)} of {len(records)} rows render {counts[first].slots} image slots for "
            f"{len(records[first]['images'])} images (first: {records[first]['id']}); pass --on_overflow drop")


def to_dataset(records: list[dict]):
    """Records with image paths -> Dataset whose `images` decode to PIL on access (nothing copied)."""
    from datasets import Dataset, Image, List

    if not records:
        raise UserError("no training row is left after the checks above")
    return Dataset.from_list(records).cast_column("images", List(Image()))


def _opened(store, ref):
    from builders.store import Version

    return ref if isinstance(ref, Version) else open_version(store, ref)


def _rows(version, max_rows: int | None) -> list[dict]:
    table = version.table()
    if max_rows is not None:
        table = table.slice(0, max_rows)
    return table.to_pylist()


def _report(info: DataInfo) -> None:
    print(f"data: {info.summary()}", file=sys.stderr)


def _open_rows(store, ref, processor, model_type, profile_name, max_rows, model_profile):
    """The checked version, its answer profile, a fresh DataInfo and the rows to adapt."""
    version = _opened(store, ref)
    profile = resolve_profile(profile_name, version.table(), model_type, processor, model_profile)
    info = data_info(version, profile)
    rows = _rows(version, max_rows)
    info.rows_in = len(rows)
    return version, profile, info, rows


def load_sft_dataset(store, ref: str, processor, model_type: str, profile_name: str | None = None,
                     max_length: int | None = None, on_overflow: str = "refuse", max_rows: int | None = None,
                     model_profile: str | None = None, cot_box: str = "annotation"):
    """(Dataset, DataInfo, profile) of prompt/completion rows from a cot (or tasks / rl-pool) version.

    `ref` is a reference, or a Version that `open_version` already checked."""
    version, profile, info, rows = _open_rows(store, ref, processor, model_type, profile_name, max_rows,
                                              model_profile)
    check_reasoning_frame(version, rows, profile)
    by_id = {r["id"]: r for r in rows}
    records = _collect(rows, lambda r: sft_record(r, store, profile, version.kind, cot_box), info)
    sizes = [image_sizes(by_id[r["id"]]) for r in records]

    def remake(rec, new_sizes):
        out, _ = sft_record(_resized_row(by_id[rec["id"]], new_sizes), store, profile, version.kind, cot_box)
        return out

    records = preflight(records, processor, sizes, max_length, 0, on_overflow, info, remake)
    info.rows_kept = len(records)
    _report(info)
    return to_dataset(records), info, profile


def repeat_by_difficulty(records: list[dict], alpha: float) -> tuple[list[dict], int]:
    """Hard tasks appear more often: round(1 + alpha * (1 - pass_rate)) copies each.

    Sampling weight rather than a loss weight, so TRL's per-group advantage
    normalisation (which would cancel a per-prompt reward scale) is untouched."""
    out, extra = [], 0
    for r in records:
        copies = max(1, round(1 + alpha * (1 - r["pass_rate"])))
        out.extend([r] * copies)
        extra += copies - 1
    return out, extra


def load_grpo_dataset(store, ref: str, processor, model_type: str, profile_name: str | None = None,
                      max_length: int | None = None, completion_budget: int = 0, on_overflow: str = "refuse",
                      max_rows: int | None = None, model_profile: str | None = None,
                      difficulty_alpha: float | None = None):
    """(Dataset, DataInfo, profile) of prompt + target rows from a tasks or rl-pool (or cot) version.

    `ref` is a reference, or a Version that `open_version` already checked."""
    version, profile, info, rows = _open_rows(store, ref, processor, model_type, profile_name, max_rows,
                                              model_profile)
    by_id = {r["id"]: r for r in rows}
    records = _collect(rows, lambda r: grpo_record(r, store, profile), info)

    def remake(rec, new_sizes):  # image_sizes become the downscaled ones: the frame the rewards read
        out, _ = grpo_record(_resized_row(by_id[rec["id"]], new_sizes), store, profile)
        return out

    records = preflight(records, processor, [r["image_sizes"] for r in records], max_length, completion_budget,
                        on_overflow, info, remake)
    if difficulty_alpha is not None:
        if version.kind != "rl-pool":
            raise UserError(f"difficulty weighting needs an rl-pool version (pass_rate); "
                            f"{version.ref} is {version.kind}")
        records, info.repeated_by_difficulty = repeat_by_difficulty(records, difficulty_alpha)
    info.rows_kept = len(records)
    _report(info)
    return to_dataset(records), info, profile


def open_store(root: str | None):
    """The store at `root`, else $POLYGROUND_STORE, else ./polyground-store (as the CLI)."""
    import os

    from builders.store import Store

    path = root or os.environ.get("POLYGROUND_STORE") or "polyground-store"
    if not os.path.isdir(os.path.join(path, "datasets")):
        raise UserError(f"no store at {path} (pass --store DIR or set POLYGROUND_STORE)")
    return Store(path)
