"""An evaluation run: completions in (a JSONL file or a generation backend), a predictions version out."""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

from schemas.errors import UserError
from training.evaluation.metrics import compute_metrics
from training.evaluation.score import _meta, predictions_table


def read_predictions_jsonl(path: str | Path) -> dict[str, str]:
    """{"id", "completion"} lines -> {id: completion}; a bad or repeated line is a UserError."""
    out: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"cannot read predictions {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            raise UserError(f"{path}:{n}: not a JSON object") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or not isinstance(rec.get("completion"), str):
            raise UserError(f'{path}:{n}: expected {{"id": str, "completion": str}}')
        if rec["id"] in out:
            raise UserError(f"{path}:{n}: id {rec['id']!r} appears twice")
        out[rec["id"]] = rec["completion"]
    if not out:
        raise UserError(f"{path}: no prediction in the file")
    return out


def model_slug(name: str) -> str:
    """A store-safe slug of a model name or path: `/x/Qwen2.5-VL-7B/` -> `qwen2.5-vl-7b`."""
    base = Path(name.rstrip("/")).name if "/" in name and not name.startswith("http") else name
    slug = re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-._")
    return slug[:60] or "model"


def evaluate(store, bench_version, completions_by_id: dict[str, str], profile, model_name: str,
             name: str | None = None, source: dict | None = None, limit: int | None = None,
             usage: dict | None = None, official=None, prompt: dict | None = None) -> dict:
    """Score completions on a split, write the predictions version, return the metrics dict.

    `source` says where the completions came from (file hash, endpoint,
    weights hash, sampling); it is hashed into the version id, while `usage`
    (requests, tokens: they differ between a run and its cached rerun) is not.
    `limit` scores only the split's first N tasks (as `generate_for_bench(limit=N)`).
    `official` is the schemas.official.OfficialScorer (default: Migician's, no
    y-rescale); `prompt` records the prompt template the completions came from
    (`prompt_record`); both are part of the version id and of every report."""
    from builders.steps import commit
    from schemas.official import MIGICIAN
    from schemas.scoring import SCORING_VERSION, STRICT_VERSION

    official = official or MIGICIAN
    version = store.resolve(bench_version)
    table = version.table() if limit is None else version.table().slice(0, limit)
    pred, counts = predictions_table(table, completions_by_id, profile, model_name, official)
    if counts["missing"] or counts["unknown"]:
        print(f"eval: {counts['missing']} task(s) without a prediction (scored as empty answers), "
              f"{counts['unknown']} prediction(s) for unknown ids (ignored)", file=sys.stderr)
    provenance = {"official_scorer": official.describe(), "strict_version": STRICT_VERSION,
                  "bench_file": (version.manifest.get("source") or {}).get("bench_file"),
                  "prompt": prompt or {"template": None, "note": "not recorded"}}
    metrics = {"model": model_name, "bench": version.ref, "profile": profile.name,
               "profile_version": profile.version, **provenance, "counts": counts, **compute_metrics(pred)}
    config = {"model": model_name, "profile": profile.name, "profile_version": getattr(profile, "version", None),
              "scoring_version": SCORING_VERSION, "source": source or {}, "limit": limit,
              **{k: provenance[k] for k in ("official_scorer", "strict_version", "prompt")}}
    name = name or f"{version.name}-pred-{model_slug(model_name)}"
    written = commit(store, name, "predictions", pred, None, inputs=[version], config=config,
                     extra={"metrics": {k: metrics[k] for k in ("counts", "macro", "overall", "outcomes")},
                            "usage": usage or {}})
    metrics["predictions"] = written.version.ref
    return metrics


def prompt_record(template, profile) -> dict:
    """What the predictions version records of the prompt: an official MIG-Bench template
    (schemas.official.MIG_PROMPTS: id, sha256, script) or polyground's own (the profile's)."""
    if template is None:
        return {"template": "polyground", "profile": profile.name, "profile_version": getattr(profile, "version", None)}
    return {**template.describe(), "applies_to": "mig-bench rows (others: builders.inference.backends.prompt_text)"}


def render_official_prompt(task: dict, template) -> str | None:
    """A MIG-Bench row's prompt text as its official evaluation builds it (None for other rows)."""
    if template is None or task.get("source") != "mig-bench":
        return None
    return template.render(_meta(task).get("question_raw") or task["question"])


def generate_for_bench(store, bench_version, backend, sampling: dict, seed: int = 0, batch_size: int = 8,
                       limit: int | None = None, progress=None, template=None) -> dict[str, str]:
    """{task id: completion}: one sample per task of the split from a builders.inference.backends backend.

    Greedy unless `sampling` says otherwise; tasks go in batches of `batch_size`,
    so memory stays bounded and the backend's cache makes a rerun free. With an
    official `template` (schemas.official.PromptTemplate), MIG-Bench rows are
    asked its prompt (`rendered_prompt`, which builders.inference.backends sends as is)."""
    sampling = {"temperature": 0.0, **sampling}
    version = store.resolve(bench_version)
    table = version.table()
    if limit is not None:
        table = table.slice(0, limit)
    from builders.store.contamination import table_image_hashes

    store.check_images(table_image_hashes(table), version.ref)  # hashed once, before any generation
    out: dict[str, str] = {}
    done = 0
    for batch in table.to_batches(max_chunksize=batch_size):
        tasks = batch.to_pylist()
        for task in tasks:
            text = render_official_prompt(task, template)
            if text is not None:
                task["rendered_prompt"] = text
        for task, samples in zip(tasks, backend.generate(tasks, 1, sampling, seed)):
            if samples:  # a request that failed for good: reported as a missing prediction
                out[task["id"]] = samples[0]
        done += batch.num_rows
        if progress:
            progress(done, table.num_rows)
    return out


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
