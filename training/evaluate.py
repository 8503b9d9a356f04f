"""Evaluation on benchmark splits: a predictions version and metrics per task type.

Contract
- in: a bench (or tasks) version and one completion per task id (from a local
  model, an endpoint, or a JSONL file of {"id", "completion"}), all read with
  ONE answer profile;
- out: a `predictions` version (schemas.rows.PREDICTIONS, one row per task of
  the split; a task without a completion is scored as an empty answer) and a
  metrics dict:

    {"model", "bench", "profile", "predictions": "name@id",
     "counts": {"tasks", "predicted", "missing", "unknown", "missing_ids", "unknown_ids"},
     "by_task": {task_type: {metric: value}}, "macro": {...}, "overall": {...}}

Metrics are fractions in 0-1 (IoUs are plain area IoU on 0-1 coordinates):
- official_acc@0.3/0.5/0.7, official_miou: MIG-Bench's own numbers, exactly as
  the chosen official script computes them (schemas.official.OfficialScorer:
  `migician` or `univg-r1`, Migician's y-rescale on or off): its parser on the
  whole response, the file's answer unclipped in its frame, the named image
  IGNORED, every grounding row of a task in its denominator (a row without a
  prediction scores 0, as does an inverted ground truth);
- strict_acc@0.3/0.5/0.7, strict_miou: the same formula on the strict figure
  (schemas.scoring.score_grounding: the profile's single-box parse, `<think>`
  optional, the right image required where the question does not fix it);
  rows that cannot be verified (an inverted ground truth) are left out;
- format_rate (the strict parse succeeded), image_acc (the target image, or an
  equivalent one, was named or fixed by the question); mc_acc and format_rate
  (a letter was found) for multiple-choice tasks; mean_reward (the GRPO reward
  at default weights, training.rewards.combined_score).
Set rows (several targets, or none; schemas/rows.py `targets`) are scored by
schemas.sets.score_set_grounding (the profile's set parse, `<think>` optional) and
leave the single-box columns (official/strict IoU) empty; per task type they
give set_miou (mean set IoU), set_precision@0.5, set_recall@0.5, set_f1@0.5
(means over the rows), none_acc (of the rows whose target is in no image, the
share answered "none"), wrong_images (predicted boxes on an image without a
target, summed) and set_rows; format_rate, image_acc (the named images are
exactly the target's) and mean_reward pool both kinds. A task type without set
rows has none of these keys, so single-target numbers are what they were.
"outcomes" counts the strict parse outcomes per task type (ok, each parse
error, wrong_image, unverifiable:...), printed beside the metrics so that a
zero reads as what it is. A report names the official scorer and its version,
the bench file (MIG-Bench: MIG_data.json or the revised file) and the prompt
template the numbers came from.
"macro" is the mean of the task-type values (the "average" column of the
Migician paper), "overall" pools every item. Report files (metrics.json,
metrics.md, one PNG per metric) come from `write_report`; `compare_table`
puts several reports side by side.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

from schemas.errors import UserError

METRIC_ORDER = ("official_acc@0.3", "official_acc@0.5", "official_acc@0.7", "official_miou",
                "strict_acc@0.3", "strict_acc@0.5", "strict_acc@0.7", "strict_miou",
                "format_rate", "image_acc", "mc_acc", "mean_reward",
                "set_miou", "set_precision@0.5", "set_recall@0.5", "set_f1@0.5", "none_acc")
SET_COUNTS = ("set_rows", "wrong_images")  # counts, not fractions: in the tables, never in a chart
HEADLINE = ("official_acc@0.5", "strict_acc@0.5", "official_miou", "format_rate", "image_acc", "mc_acc")
SCORE_CHUNK = 2048  # rows scored at a time: memory stays bounded on large splits
SHOW_IDS = 20  # ids listed in the metrics for missing / unknown predictions


# ---- inputs ----------------------------------------------------------------
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


# ---- scoring ---------------------------------------------------------------
def _meta(task: dict) -> dict:
    try:
        meta = json.loads(task.get("meta") or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def official_truth(task: dict, meta: dict) -> tuple[list, str]:
    """(ground truth as released, its frame): a MIG-Bench row's raw answer, else the row's 0-1 box."""
    if meta.get("answer_frame") and isinstance(meta.get("answer_raw"), list):
        return meta["answer_raw"], meta["answer_frame"]
    return list(task["target_box"]), "0-1"


def _frame_problem(task: dict, meta: dict, official) -> str | None:
    frame = official_truth(task, meta)[1]
    if official.accepts(frame):
        return None
    return (f"the {official.name} official scorer compares 0-1000 boxes (revised_MIG_bench.json) but task "
            f"{task['id']!r} has {frame} ground truth: use --official-scorer migician")


def check_official_scorer(version, official) -> None:
    """UserError when some grounding row of the split cannot be scored by `official` (its frame)."""
    table = version.table()
    for batch in table.select(["id", "target_box", "choices", "meta"]).to_batches(max_chunksize=SCORE_CHUNK):
        for task in batch.to_pylist():
            if task["choices"] is None and task["target_box"] is not None:
                problem = _frame_problem(task, _meta(task), official)
                if problem:
                    raise UserError(problem)


def score_prediction(task: dict, completion: str | None, profile, model: str, official=None) -> dict:
    """One PREDICTIONS record: the task's completion parsed and scored (None scores as empty)."""
    from schemas.official import MIGICIAN, official_completion_iou
    from schemas.rows import image_sizes, is_set_row
    from schemas.scoring import extract_choice, image_fixed, score_completion, score_grounding
    from training.rewards import combined_score

    official = official or MIGICIAN
    text = completion or ""
    rec = {"id": task["id"], "task_type": task["task_type"], "completion": completion, "profile": profile.name,
           "pred_image": None, "pred_box": None, "pred_choice": None, "format_ok": False, "image_correct": None,
           "iou": None, "official_iou": None, "correct": None, "model": model, "outcome": None, "reward": None}
    if task.get("choices") is not None:
        letter = extract_choice(text, len(task["choices"]))
        rec.update(pred_choice=letter, format_ok=letter is not None, correct=letter == task.get("answer"))
        return rec
    if is_set_row(task):
        return _score_set(rec, task, text, profile)
    meta = _meta(task)
    truth, frame = official_truth(task, meta)
    problem = _frame_problem(task, meta, official)
    if problem:
        raise UserError(problem)
    sizes = image_sizes(task)
    target = (task["target_image"], task["equivalent_images"], task["target_box"], sizes, profile)
    s = score_grounding(text, *target, fixed=image_fixed(meta))
    if "answer_frame" in meta or not getattr(profile, "budget", None):
        official_iou = official.iou(text, truth, frame)  # exactly the script
    else:
        # Outside an official bench file, a pixel answer (qwen2_5_vl) is read in the resized frame
        # of the image it names (of the target when it names none): as 0-1000 it would be at the
        # wrong scale. Not the script's rule, so never applied to a MIG-Bench row.
        named = s.parsed.image if s.parsed.image is not None else task["target_image"]
        official_iou = official_completion_iou(text, list(task["target_box"]), profile.frame(sizes[named]))
    rec.update(pred_image=s.parsed.image, pred_box=s.parsed.box, format_ok=s.format_ok,
               image_correct=s.image_correct, iou=s.iou, outcome=s.outcome,
               reward=combined_score(score_completion(text, *target)), official_iou=official_iou)
    return rec


def _score_set(rec: dict, task: dict, text: str, profile) -> dict:
    """A set row's PREDICTIONS record (schemas.sets): eval's figure, and the reward's strict parse."""
    from schemas.rows import image_sizes, target_pairs, target_records
    from schemas.sets import score_set_completion, score_set_grounding
    from training.rewards import combined_score

    sizes = image_sizes(task)
    pairs = target_pairs(task)
    s = score_set_grounding(text, pairs, sizes, profile)
    rec.update(format_ok=s.format_ok, image_correct=s.image_correct, outcome=s.outcome,
               reward=combined_score(score_set_completion(text, pairs, sizes, profile)),
               pred_targets=target_records(s.parsed.pairs))
    if not (s.reason or "").startswith("unverifiable"):
        score = s.score  # None when the answer did not parse: every set figure is 0
        rec.update(set_iou=s.iou, set_precision=score.precision[0.5] if score else 0.0,
                   set_recall=score.recall[0.5] if score else 0.0, set_f1=score.f1[0.5] if score else 0.0,
                   wrong_images=score.wrong_image if score else 0)
        if not pairs:
            rec["none_correct"] = bool(s.none_correct)
    return rec


def predictions_table(tasks, completions_by_id: dict[str, str], profile, model: str, official=None):
    """(PREDICTIONS table, counts) for every task of `tasks` (a pyarrow table), in chunks."""
    from schemas import rows

    records, seen, missing = [], set(), []
    for batch in tasks.to_batches(max_chunksize=SCORE_CHUNK):
        for task in batch.to_pylist():
            completion = completions_by_id.get(task["id"])
            seen.add(task["id"])
            if completion is None:
                missing.append(task["id"])
            records.append(score_prediction(task, completion, profile, model, official))
    unknown = sorted(set(completions_by_id) - seen)
    predicted = len(seen) - len(missing)
    if completions_by_id and not predicted:
        raise UserError(f"none of the {len(completions_by_id)} predictions matches a task id of the split "
                        f"(first unknown: {unknown[0]!r}); is it the right --bench?")
    counts = {"tasks": len(seen), "predicted": predicted, "missing": len(missing), "unknown": len(unknown),
              "missing_ids": missing[:SHOW_IDS], "unknown_ids": unknown[:SHOW_IDS]}
    return rows.to_table(records, "predictions"), counts


def _rename(summary: dict, prefix: str) -> dict:
    """official_metrics keys (acc@t, mean_iou) -> ours (<prefix>_acc@t, <prefix>_miou)."""
    return {f"{prefix}_miou" if k == "mean_iou" else f"{prefix}_{k}": v for k, v in summary.items() if k != "n"}


def _iou_metrics(df, column: str, prefix: str) -> dict[str, dict]:
    """Per task type (plus "macro"/"overall") threshold metrics of one IoU column, by the official formula."""
    import polars as pl

    from schemas.official import official_metrics

    kept = df.filter(pl.col(column).is_not_null())
    ious = {t: g.get_column(column).to_list() for (t,), g in kept.group_by("task_type", maintain_order=True)}
    return {task: _rename(summary, prefix) for task, summary in official_metrics(ious).items()}


def _rate_metrics(df) -> dict[str, dict]:
    """format_rate, image_acc, mc_acc and mean_reward per task type (polars), plus "overall" (pooled)."""
    import polars as pl

    # `reward`: the GRPO reward (default weights) each prediction would have earned; null
    # for rows that cannot be verified (multiple choice), as training.rewards.combined_score.
    exprs = [pl.len().alias("n"), pl.col("format_ok").cast(pl.Float64).mean().alias("format_rate"),
             pl.col("image_correct").cast(pl.Float64).mean().alias("image_acc"),
             pl.col("correct").cast(pl.Float64).mean().alias("mc_acc"),
             pl.col("reward").cast(pl.Float64).mean().alias("mean_reward")]
    by_task = {r.pop("task_type"): r for r in df.group_by("task_type", maintain_order=True).agg(exprs).to_dicts()}
    by_task["overall"] = df.select(exprs).to_dicts()[0]
    return by_task


def _set_metrics(df) -> dict[str, dict]:
    """set_miou, set P/R/F1@0.5, none_acc, wrong_images, set_rows per task type with set rows (+ "overall")."""
    import polars as pl

    if "set_iou" not in df.columns:
        return {}
    kept = df.filter(pl.col("set_iou").is_not_null())
    if not kept.height:
        return {}
    exprs = [pl.len().alias("set_rows"), pl.col("set_iou").cast(pl.Float64).mean().alias("set_miou"),
             *(pl.col(f"set_{k}").cast(pl.Float64).mean().alias(f"set_{k}@0.5") for k in ("precision", "recall", "f1")),
             pl.col("none_correct").cast(pl.Float64).mean().alias("none_acc"),
             pl.col("wrong_images").sum().alias("wrong_images")]
    by_task = {r.pop("task_type"): r for r in kept.group_by("task_type", maintain_order=True).agg(exprs).to_dicts()}
    by_task["overall"] = kept.select(exprs).to_dicts()[0]
    return by_task


def compute_metrics(pred) -> dict:
    """{"by_task", "macro", "overall"} from a PREDICTIONS table (see the module docstring)."""
    import polars as pl

    cols = ["task_type", "format_ok", "image_correct", "iou", "official_iou", "correct", "outcome", "reward"]
    cols += [c for c in ("set_iou", "set_precision", "set_recall", "set_f1", "wrong_images", "none_correct")
             if c in pred.schema.names]
    df = pl.from_arrow(pred.select(cols)).with_columns(pl.col("task_type").fill_null("unknown"))
    merged: dict[str, dict] = {}
    for part in (_rate_metrics(df), _iou_metrics(df, "official_iou", "official"), _iou_metrics(df, "iou", "strict"),
                 _set_metrics(df)):
        for task, values in part.items():
            merged.setdefault(task, {}).update({k: v for k, v in values.items() if v is not None})
    overall = merged.pop("overall", {})
    macro = merged.pop("macro", {})
    for key in ("format_rate", "image_acc", "mc_acc", "mean_reward",  # official_metrics gave the IoU ones
                "set_miou", "set_precision@0.5", "set_recall@0.5", "set_f1@0.5", "none_acc"):
        values = [m[key] for m in merged.values() if m.get(key) is not None]
        if values:
            macro[key] = sum(values) / len(values)
    def ordered(m: dict) -> dict:
        return {k: m[k] for k in ("n", *METRIC_ORDER, *SET_COUNTS) if k in m}

    return {"by_task": {t: ordered(m) for t, m in sorted(merged.items())}, "macro": ordered(macro),
            "overall": ordered(overall), "outcomes": outcome_counts(df)}


def outcome_counts(df) -> dict[str, dict[str, int]]:
    """{task type: {strict parse outcome: rows}} over the grounding rows, plus "overall"."""
    import polars as pl

    kept = df.filter(pl.col("outcome").is_not_null())
    out: dict[str, dict[str, int]] = {}
    for r in kept.group_by("task_type", "outcome").len().sort("task_type", "outcome").to_dicts():
        out.setdefault(r["task_type"], {})[r["outcome"]] = r["len"]
    total: dict[str, int] = {}
    for counts in out.values():
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    if out:
        out["overall"] = dict(sorted(total.items()))
    return out


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
    with store.writer(name, "predictions", inputs=[version], config=config) as w:
        w.write(pred, None, {"metrics": {k: metrics[k] for k in ("counts", "macro", "overall", "outcomes")},
                             "usage": usage or {}})
    metrics["predictions"] = w.version.ref
    return metrics


def prompt_record(template, profile) -> dict:
    """What the predictions version records of the prompt: an official MIG-Bench template
    (schemas.official.MIG_PROMPTS: id, sha256, script) or polyground's own (the profile's)."""
    if template is None:
        return {"template": "polyground", "profile": profile.name, "profile_version": getattr(profile, "version", None)}
    return {**template.describe(), "applies_to": "mig-bench rows (others: builders.generation.prompt_text)"}


def render_official_prompt(task: dict, template) -> str | None:
    """A MIG-Bench row's prompt text as its official evaluation builds it (None for other rows)."""
    if template is None or task.get("source") != "mig-bench":
        return None
    return template.render(_meta(task).get("question_raw") or task["question"])


def generate_for_bench(store, bench_version, backend, sampling: dict, seed: int = 0, batch_size: int = 8,
                       limit: int | None = None, progress=None, template=None) -> dict[str, str]:
    """{task id: completion}: one sample per task of the split from a builders.generation backend.

    Greedy unless `sampling` says otherwise; tasks go in batches of `batch_size`,
    so memory stays bounded and the backend's cache makes a rerun free. With an
    official `template` (schemas.official.PromptTemplate), MIG-Bench rows are
    asked its prompt (`rendered_prompt`, which builders.generation sends as is)."""
    sampling = {"temperature": 0.0, **sampling}
    version = store.resolve(bench_version)
    table = version.table()
    if limit is not None:
        table = table.slice(0, limit)
    from builders.contamination import table_image_hashes

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


# ---- reports ---------------------------------------------------------------
def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    return str(value) if key in ("n", *SET_COUNTS) else f"{100 * value:.1f}"


def provenance_line(metrics: dict) -> str:
    """Where the numbers came from: official scorer and version, bench file, prompt template."""
    o = metrics.get("official_scorer") or {}
    f = metrics.get("bench_file") or {}
    pr = metrics.get("prompt") or {}
    file = (f"`{f.get('name')}` ({f.get('variant')}, {f.get('box_frame')} boxes, sha256 {str(f.get('sha256'))[:12]})"
            if f else "a split with no recorded bench file")
    prompt = (f"`{pr['template']}`" + (f" (sha256 {pr['sha256']})" if pr.get("sha256") else "")
              if pr.get("template") else "not recorded")
    return (f"official: scorer `{o.get('scorer', '?')}` v{o.get('version', '?')}, Migician y-rescale "
            f"{'on' if o.get('y_rescale') else 'off'}; bench file {file}; prompt {prompt}; "
            f"strict figure v{metrics.get('strict_version', '?')}")


def outcomes_markdown(outcomes: dict) -> list[str]:
    """The strict parse outcomes as a table: task types as rows, outcomes as columns (ok first)."""
    if not outcomes:
        return []
    names = sorted({k for c in outcomes.values() for k in c}, key=lambda k: (not k.startswith("ok"), k))
    lines = ["", "Strict parse outcomes (grounding rows):", "",
             "| task | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for task, c in outcomes.items():
        lines.append(f"| {task} | " + " | ".join(str(c.get(k, 0)) for k in names) + " |")
    return lines


def metrics_markdown(metrics: dict) -> str:
    """The metrics as one Markdown table (task types, then macro and overall rows, values in %),
    then the strict parse outcomes beside them."""
    rows = {**metrics["by_task"], "macro": metrics["macro"], "overall": metrics["overall"]}
    keys = ["n"] + [k for k in (*METRIC_ORDER, *SET_COUNTS) if any(k in m for m in rows.values())]
    lines = [f"# {metrics['model']} on {metrics['bench']}", "",
             f"Profile `{metrics['profile']}`; predictions `{metrics.get('predictions')}`; values in %. "
             "official: the official script's parser on the whole response, image ignored; "
             "strict: the profile's single-box parse, right image required where the question does not fix it.",
             "", provenance_line(metrics) + ".", "",
             "| task | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for task, m in rows.items():
        lines.append(f"| {task} | " + " | ".join(_cell(k, m.get(k)) for k in keys) + " |")
    lines += outcomes_markdown(metrics.get("outcomes") or {})
    c = metrics["counts"]
    lines += ["", f"{c['predicted']} of {c['tasks']} tasks predicted; {c['missing']} missing (scored as empty), "
                  f"{c['unknown']} unknown id(s) ignored."]
    return "\n".join(lines) + "\n"


def _chart(path: Path, metric: str, tasks: list[str], values: list[float], title: str) -> None:
    from builders.plots import figure, save_png

    fig = figure((max(4.0, 0.7 * len(tasks) + 1.5), 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.bar(range(len(tasks)), [100 * v for v in values], color="#4c72b0")
    ax.set_xticks(range(len(tasks)), tasks, rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"{metric} (%)", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.3)
    save_png(fig, path)


def write_report(metrics: dict, out_dir: str | Path) -> list[Path]:
    """metrics.json, metrics.md and one bar chart per metric across task types (+ macro)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "metrics.json", out / "metrics.md"]
    written[0].write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    written[1].write_text(metrics_markdown(metrics))
    rows = {**metrics["by_task"], "macro": metrics["macro"]}
    for metric in METRIC_ORDER:
        tasks = [t for t, m in rows.items() if m.get(metric) is not None]
        if tasks:
            path = out / f"{metric.replace('@', '_at_')}.png"
            _chart(path, metric, tasks, [rows[t][metric] for t in tasks], f"{metrics['model']}: {metric}")
            written.append(path)
    return written


def load_report(folder: str | Path) -> dict:
    path = Path(folder) / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except OSError:
        raise UserError(f"{folder}: no metrics.json (write one with `polyground eval ... --output {folder}`)") from None
    except ValueError:
        raise UserError(f"{path}: not valid JSON") from None
    if not isinstance(metrics, dict) or "by_task" not in metrics:
        raise UserError(f"{path}: not a polyground metrics file")
    return metrics


def compare_table(reports: list[tuple[str, dict]], metric_names=None) -> str:
    """Markdown: per metric, one table with task types as rows and models (labels) as columns."""
    labels = [label for label, _ in reports]
    blocks = []
    for metric in metric_names or HEADLINE:
        tasks = sorted({t for _, m in reports for t, v in m["by_task"].items() if metric in v})
        if not tasks:
            continue
        lines = [f"## {metric} (%)", "", "| task | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for task in tasks + ["macro"]:
            cells = [_cell(metric, (m["macro"] if task == "macro" else m["by_task"].get(task, {})).get(metric))
                     for _, m in reports]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    if not blocks:
        raise UserError(f"none of the reports has the metric(s) {', '.join(metric_names or HEADLINE)}")
    benches = sorted({m.get("bench", "?") for _, m in reports})
    head = f"# {len(reports)} models on {', '.join(benches)}"
    sources = "\n".join(f"- {label}: {provenance_line(m)}" for label, m in reports)
    return "\n\n".join([head, sources] + blocks) + "\n"
