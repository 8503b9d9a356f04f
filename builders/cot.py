"""CoT builder: teacher trajectories (or annotation-built ones) behind a verifier gate.

Columns in: a `tasks` version (grounding rows; multiple-choice rows are
rejected as `not_grounding`). Columns out: the `cot` row contract
(schemas/rows.py): every task column, `task_id`, `id = <task_id>#<sample>`,
`prompt` (the student's prompt: question + the answer profile's format),
`completion` (rewritten into the answer profile), `reasoning`, the verifier's
scores of the teacher's own answer (`pred_image`, `pred_box`, `format_ok`,
`image_correct`, `iou`) and the generator (model, kind, sampling, template).

Teacher mode (MGrounding-R1's cold start): each task goes to an
OpenAI-compatible endpoint (builders/inference/endpoint.py) with its images in order and
the versioned teacher prompt (builders/prompts/teacher_v1.txt; `--hint answer`
appends answer_hint_v1.txt with the ground truth). A sample is kept only if it
parses in the teacher profile, names the target (or an equivalent) image and
reaches `min_iou`; at most `keep_per_task` best (highest IoU, then lowest
sample index) are kept. Every other sample is a reject with its reason:
truncated, refusal, empty, unparsable, wrong_image, low_iou, over_keep_limit;
a task whose request failed is a `request_failed` reject (rerun to retry it).

Rewrite: the kept reasoning is re-rendered by the ANSWER profile with the
ground-truth box on the image the teacher named (the target or an equivalent
one). The teacher's box passed the IoU gate, so the reasoning agrees with it,
and the label is exact: SFT data has one format whatever the teacher's style.

Set rows (several targets, or none: schemas/rows.py `targets`) go the same way,
scored by schemas.sets: a sample passes when it names exactly the target images
(none for an empty set) and its set IoU reaches `min_iou`; its reasoning is
re-rendered with the ground-truth set (schemas.set_answers).

Version id inputs (config): mode, teacher model, teacher profile, sampling,
samples, hint, min_iou, keep_per_task, answer profile, template ids and
hashes, shard, scoring version. Not the endpoint URL: the same model served
elsewhere is the same teacher (its rows decide the id anyway).
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass

from builders.inference.backends import ENDPOINT_DEFAULTS
from builders.options import option
from builders.sources.base import Reject
from builders.inference.student import student_prompt
from builders.templates import Template, load_template
from schemas.errors import UserError
from schemas.rows import image_sizes, target_pairs
from schemas.set_answers import render_row, render_row_answer

TEACHER_TEMPLATE, HINT_TEMPLATE = "teacher_v1", "answer_hint_v1"
MODES, HINTS = ("teacher", "annotations"), ("none", "answer")
# A refusal without the API's `refusal` field: only checked on text that did not parse.
_REFUSAL = re.compile(r"^\W*(I'?m sorry|I am sorry|sorry\b|I can(?:'|no)t (?:help|assist|comply)|"
                      r"I (?:am )?(?:unable|not able) to (?:help|assist|comply))", re.IGNORECASE)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`i/n` with 0 <= i < n (0-based), or None."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise UserError(f"--shard {text!r}: use i/n with 0 <= i < n, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def in_shard(task_id: str, shard: tuple[int, int] | None) -> bool:
    """Deterministic split by task id hash: the same task always lands in the same shard."""
    if shard is None:
        return True
    return int(hashlib.sha256(task_id.encode()).hexdigest()[:16], 16) % shard[1] == shard[0]


@dataclass
class CotConfig:
    """Options of `build cot`; each field is its flag (polyground.cli.add_config_flags).

    The endpoint's (concurrency, timeout, teacher_api_key_env) and the pixel budget's
    flags are the shared ones (polyground.cli.add_endpoint_options,
    add_pixel_budget_options); their defaults are the same values."""

    mode: str = option("teacher", "teacher (an endpoint writes the reasoning) or annotations (written offline "
                                  "from the rows' object annotations)", choices=MODES)
    teacher_url: str | None = option(None, "OpenAI-compatible base URL, e.g. http://host:8000/v1")
    teacher_model: str | None = option(None, "the served model's name")
    teacher_profile: str = option("norm1000", "answer format asked of the teacher (norm1000: JSON on 0-1000)")
    profile: str = option("qwen2_vl", "answer profile of the written completions")
    samples: int = option(4, "samples per task")
    temperature: float = option(0.7, "sampling temperature")
    top_p: float = option(1.0, "nucleus sampling")
    max_tokens: int = option(1024, "completion tokens per sample")
    seed: int = option(0, "sampling seed; request seed = seed + first sample index")
    hint: str = option("none", "answer: give the teacher the ground truth to reason towards", choices=HINTS)
    min_iou: float = option(0.5, "keep a sample with the right image and IoU >= this")
    keep_per_task: int = option(1, "at most this many best samples kept per task")
    concurrency: int = option(ENDPOINT_DEFAULTS["concurrency"], "endpoint: requests in flight")
    timeout: float = option(ENDPOINT_DEFAULTS["timeout"], "endpoint: seconds per request, in total")
    teacher_api_key_env: str = option(ENDPOINT_DEFAULTS["api_key_env"], "endpoint: variable holding the API key")
    max_retries: int = option(6, "retries of a failed request")
    breaker_after: int = option(20, "stop the build when this many attempts in a row fail: the endpoint is down")
    no_n: bool = option(False, "one request per sample, for servers that ignore `n`")
    price_in: float | None = option(None, "price per million prompt tokens (for the cost in the manifest)")
    price_out: float | None = option(None, "price per million completion tokens")
    shard: str | None = option(None, "i/n: build only shard i (0-based) of n, split by task id hash")
    image_min_pixels: int | None = option(None, "the pixel budget's smallest area (default: a stock served "
                                                "Qwen2.5-VL's, 3136)")
    image_max_pixels: int | None = option(None, "the pixel budget's largest area (default: a stock served "
                                                "Qwen2.5-VL's, 12845056)")

    def __post_init__(self):
        if self.mode not in MODES:
            raise UserError(f"--mode {self.mode!r}: choose from {', '.join(MODES)}")
        if self.hint not in HINTS:
            raise UserError(f"--hint {self.hint!r}: choose from {', '.join(HINTS)}")
        if self.mode == "teacher" and not (self.teacher_url and self.teacher_model):
            raise UserError("--mode teacher needs --teacher-url and --teacher-model")
        if min(self.samples, self.keep_per_task, self.concurrency, self.max_tokens, self.breaker_after) < 1:
            raise UserError("--samples, --keep-per-task, --concurrency, --max-tokens and --breaker-after must be >= 1")
        if not 0.0 <= self.min_iou <= 1.0:
            raise UserError(f"--min-iou must be within 0..1, got {self.min_iou}")
        if any(p is not None and p < 0 for p in (self.price_in, self.price_out)):
            raise UserError("--price-in and --price-out must be >= 0")
        parse_shard(self.shard)
        if self.teacher_url is not None:
            from builders.secrets import check_url

            check_url(self.teacher_url, "--teacher-url")
        self.budget  # a one-line error now, not after the first request

    @property
    def budget(self):
        """The teacher is sent images resized into this budget, and a qwen2_5_vl answer
        (teacher's or written) is in its frame (schemas.boxes.PixelBudget)."""
        from builders.inference.backends import pixel_budget

        return pixel_budget(self.image_min_pixels, self.image_max_pixels)

    @property
    def sampling(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens, "seed": self.seed}


def teacher_messages(task: dict, template: Template, hint: Template | None, teacher_profile,
                     budget=None) -> list[dict]:
    """One user turn: the images in order (lazy `image_ref` parts, sized by `budget`), then the
    teacher prompt."""
    from builders.inference.backends import image_ref

    hint_text = ""
    if hint is not None:
        answer = render_row_answer(task, teacher_profile)
        hint_text = "\n\n" + hint.text.format(answer=answer)
    text = template.text.format(n_images=len(task["images"]), question=task["question"],
                                answer_format=teacher_profile.answer_hint(), hint=hint_text)
    content = [image_ref(i, budget) for i in task["images"]]
    return [{"role": "user", "content": content + [{"type": "text", "text": text}]}]


def classify(sample, task: dict, teacher_profile, min_iou: float):
    """(reject reason or None, detail, Scores or None) of one teacher sample."""
    from schemas.sets import score_row

    if sample.finish_reason == "length":
        return "truncated", f"finish_reason length after {sample.completion_tokens} tokens", None
    if sample.refusal or sample.finish_reason == "content_filter":
        return "refusal", (sample.refusal or sample.finish_reason)[:200], None
    if not sample.text.strip():
        return "empty", f"finish_reason {sample.finish_reason}", None
    scores = score_row(sample.text, task, image_sizes(task), teacher_profile)
    if scores.reason and scores.reason.startswith("unverifiable"):
        return "unverifiable", scores.reason, scores
    if not scores.format_ok:
        if _REFUSAL.match(sample.text):
            return "refusal", sample.text[:200], scores
        return "unparsable", scores.reason, scores
    if not scores.image_correct:
        return "wrong_image", _image_detail(task, scores), scores
    if scores.iou < min_iou:
        return "low_iou", f"iou {scores.iou:.3f} < {min_iou}", scores
    return None, "", scores


def _image_detail(task: dict, scores) -> str:
    if task.get("targets") is None:
        return f"named image {scores.parsed.image + 1}, target {task['target_image'] + 1}"
    named = sorted({i + 1 for i, _ in scores.parsed.pairs})
    wanted = sorted({t["image"] + 1 for t in task["targets"]})
    return f"named images {named or 'none'}, target images {wanted or 'none'}"


def reject(task: dict, reason: str, detail: str, sample=None, **extra) -> dict:
    """A rejects row: `<task_id>#<sample>` (or the task id), reason, detail, and a JSON record."""
    record = {"task_id": task["id"], "task_type": task["task_type"], **extra}
    if sample is not None:
        record.update(sample_index=sample.index, finish_reason=sample.finish_reason, completion=sample.text)
    rid = task["id"] if sample is None else f"{task['id']}#{sample.index}"
    return Reject(rid, reason, detail, record).row()


def cot_row(task: dict, profile, reasoning: str, image: int, scores, generator: dict, sample_index: int) -> dict:
    """A cot row: the task's columns, the rewritten completion and the verifier's scores."""
    parsed = scores.parsed
    return {
        **task, "task_id": task["id"], "id": f"{task['id']}#{sample_index}",
        "prompt": student_prompt(task, profile),
        "completion": render_row(task, profile, reasoning, image),
        "reasoning": reasoning, "profile": profile.name, "pred_image": getattr(parsed, "image", None),
        "pred_box": getattr(parsed, "box", None),
        "format_ok": scores.format_ok, "image_correct": scores.image_correct, "iou": scores.iou,
        "sample_index": sample_index, **generator,
    }


def gate(task: dict, samples: list, cfg: CotConfig, teacher_profile, profile, generator: dict):
    """(kept rows, rejects) of one task's samples: verify, keep the best, rewrite."""
    rows, rejects, passed = [], [], []
    for s in samples:
        reason, detail, scores = classify(s, task, teacher_profile, cfg.min_iou)
        if reason:
            rejects.append(reject(task, reason, detail, s))
        else:
            passed.append((s, scores))
    passed.sort(key=lambda p: (-p[1].iou, p[0].index))
    for rank, (s, scores) in enumerate(passed):
        if rank >= cfg.keep_per_task:
            rejects.append(reject(task, "over_keep_limit", f"rank {rank + 1} of {len(passed)} passing", s))
            continue
        try:
            rows.append(cot_row(task, profile, scores.parsed.think.strip(), getattr(scores.parsed, "image", None),
                                scores, generator, s.index))
        except ValueError as e:  # reasoning the answer profile cannot hold
            rejects.append(reject(task, "unparsable", str(e), s))
    rows.sort(key=lambda r: r["sample_index"])
    return rows, rejects


def usage(samples: list, cfg: CotConfig) -> dict:
    """Tokens of every sample this version rests on (cached or fresh), and their cost."""
    prompt = sum(s.prompt_tokens for s in samples)
    completion = sum(s.completion_tokens for s in samples)
    out = {"prompt_tokens": prompt, "completion_tokens": completion, "samples": len(samples)}
    if cfg.price_in is not None or cfg.price_out is not None:
        out["cost"] = round((prompt * (cfg.price_in or 0) + completion * (cfg.price_out or 0)) / 1e6, 6)
    return out


def load_tasks(store, ref: str, shard) -> tuple[object, list[dict]]:
    """The tasks version (never a bench split) and its rows in this shard, in table order."""
    version = store.resolve(ref)
    store.check_trainable(version)
    if version.kind != "tasks":
        raise UserError(f"{version.ref} is a {version.kind} version; build cot reads a tasks version")
    return version, [t for t in version.table().to_pylist() if in_shard(t["id"], shard)]


class Progress:
    """A line on stderr at most every 2 s, and at the end."""

    def __init__(self, total: int, stats: Counter, quiet: bool):
        self.total, self.stats, self.quiet, self.last = total, stats, quiet, 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if self.quiet or (now - self.last < 2.0 and done < self.total):
            return
        self.last = now
        s = self.stats
        print(f"cot: {done}/{self.total} tasks; {s['requests']} requests, {s['cache_hits']} cached samples, "
              f"{s['retries']} retries, {s['failed']} failed", file=sys.stderr, flush=True)


def build_teacher(store, tasks: list[dict], cfg: CotConfig, quiet: bool = False):
    """(rows, rejects, extra manifest, config) of a teacher run over `tasks`."""
    import asyncio

    from builders.inference.cache import ResponseCache
    from builders.inference.endpoint import EndpointClient, Request, RequestFailed
    from schemas.profiles import profile_with_budget

    budget = cfg.budget
    profile, teacher_profile = profile_with_budget(cfg.profile, budget), profile_with_budget(cfg.teacher_profile, budget)
    template = load_template(TEACHER_TEMPLATE)
    hint = load_template(HINT_TEMPLATE) if cfg.hint == "answer" else None
    client = EndpointClient(cfg.teacher_url, cfg.teacher_model, api_key_env=cfg.teacher_api_key_env,
                            timeout=cfg.timeout, max_retries=cfg.max_retries, concurrency=cfg.concurrency, supports_n=not cfg.no_n,
                            breaker_after=cfg.breaker_after,
                            cache=ResponseCache(store.root / "cache" / "responses.sqlite"),
                            image_loader=store.read_image)
    grounding, rejects = [], []
    for t in tasks:
        if target_pairs(t) is not None:
            grounding.append(t)
        else:
            rejects.append(reject(t, "not_grounding", "no box target to verify"))
    requests = (Request(teacher_messages(t, template, hint, teacher_profile, budget), n=cfg.samples,
                        sampling=cfg.sampling)
                for t in grounding)
    results = asyncio.run(client.generate_all(requests, Progress(len(grounding), client.stats, quiet)))
    template_id = template.id + (f"+{hint.id}" if hint else "")
    sampling = {**cfg.sampling, "n": cfg.samples}
    generator = {"generator_model": cfg.teacher_model, "generator_kind": "endpoint",
                 "sampling": json.dumps(sampling, sort_keys=True), "template_id": template_id}
    rows, received = [], []
    for task, result in zip(grounding, results):
        if isinstance(result, RequestFailed):
            rejects.append(reject(task, "request_failed", result.detail))
            continue
        received += result
        kept, dropped = gate(task, result, cfg, teacher_profile, profile, generator)
        rows += kept
        rejects += dropped
    templates = {"teacher": template.record(), **({"hint": hint.record()} if hint else {})}
    extra = {"generator": {**client.describe(), "teacher_profile": teacher_profile.name,
                           "teacher_profile_version": teacher_profile.version, "sampling": sampling,
                           "templates": templates, "prices_per_million": {"in": cfg.price_in, "out": cfg.price_out}},
             "usage": usage(received, cfg),
             "run": {k: v for k, v in sorted(client.stats.items()) if k not in ("prompt_tokens", "completion_tokens")}}
    config = {"teacher_model": cfg.teacher_model, "teacher_profile": teacher_profile.name, "sampling": sampling,
              "hint": cfg.hint, "min_iou": cfg.min_iou, "keep_per_task": cfg.keep_per_task, "templates": templates}
    return rows, rejects, extra, config


def build_annotations(tasks: list[dict], cfg: CotConfig):
    """(rows, rejects, extra manifest, config) of annotation-built trajectories."""
    from builders.annotations import (
        SETS_TEMPLATE_ID, TEMPLATE_ID, parse_sections, reasoning_for, set_reasoning_for,
    )
    from schemas.profiles import profile_with_budget
    from schemas.sets import score_row

    profile, template = profile_with_budget(cfg.profile, cfg.budget), load_template(TEMPLATE_ID)
    sections = parse_sections(template.text)
    has_sets = any(t.get("targets") is not None for t in tasks)
    sets_template = load_template(SETS_TEMPLATE_ID) if has_sets else None
    set_sections = parse_sections(sets_template.text) if has_sets else {}
    generator = {"generator_model": "annotations", "generator_kind": "annotations", "sampling": "{}",
                 "template_id": template.id}
    rows, rejects = [], []
    for task in tasks:
        if target_pairs(task) is None:
            rejects.append(reject(task, "not_grounding", "no box target to describe"))
            continue
        several = task.get("targets") is not None
        reasoning = set_reasoning_for(task, set_sections) if several else reasoning_for(task, sections)
        if reasoning is None:
            rejects.append(reject(task, "no_annotations", "meta.objects does not describe every image"))
            continue
        completion = render_row(task, profile, reasoning, task["target_image"])
        # Verified like a teacher's: what the profile renders must parse back to the target.
        scores = score_row(completion, task, image_sizes(task), profile)
        if not scores.format_ok or not scores.image_correct or scores.iou < cfg.min_iou:
            rejects.append(reject(task, scores.reason or "low_iou", f"rendered answer scores iou {scores.iou}"))
            continue
        gen = {**generator, "template_id": sets_template.id} if several else generator
        rows.append(cot_row(task, profile, reasoning, task["target_image"], scores, gen, 0))
    templates = {"annotations": template.record(), **({"annotations_sets": sets_template.record()} if has_sets else {})}
    extra = {"generator": {"kind": "annotations", "templates": templates}}
    config = {"templates": templates}
    return rows, rejects, extra, config


def build_cot(store, cfg: CotConfig, tasks_ref: str, name: str, refuse_contamination: bool = False,
              quiet: bool = False):
    """Build and commit one cot version: a builders.steps.BuildResult (summary: the manifest's
    `cot` block and the usage)."""
    from builders.store.contamination import contamination_fields
    from builders.steps import commit
    from schemas import rows as contract
    from schemas.scoring import SCORING_VERSION

    shard = parse_shard(cfg.shard)
    version, tasks = load_tasks(store, tasks_ref, shard)
    # Every image the new rows will reference, hashed once before any work or request.
    store.check_images({i["sha256"] for t in tasks for i in t["images"]}, version.ref)
    if cfg.mode == "teacher":
        rows, rejects, extra, config = build_teacher(store, tasks, cfg, quiet)
    else:
        rows, rejects, extra, config = build_annotations(tasks, cfg)
    extra.update(contamination_fields(store, rows, refuse=refuse_contamination))
    failed = sum(1 for r in rejects if r["reason"] == "request_failed")
    pixels = cfg.budget.record()
    extra["cot"] = {"mode": cfg.mode, "tasks": len(tasks), "kept_rows": len(rows),
                    "tasks_kept": len({r["task_id"] for r in rows}), "tasks_failed": failed,
                    "profile": cfg.profile, "shard": cfg.shard, "scoring_version": SCORING_VERSION,
                    "image_pixels": pixels}
    config = {"mode": cfg.mode, "profile": cfg.profile, "shard": cfg.shard, "scoring_version": SCORING_VERSION,
              "image_pixels": pixels, **config}
    return commit(store, name, "cot", contract.to_table(rows, "cot"), rejects, inputs=[version], config=config,
                  extra=extra, summary={**extra["cot"], "usage": extra.get("usage")})

