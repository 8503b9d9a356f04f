"""Scoring each prediction of a split: one PREDICTIONS record per task (see the package docstring)."""
from __future__ import annotations

import json

from schemas.errors import UserError

SCORE_CHUNK = 2048  # rows scored at a time: memory stays bounded on large splits
SHOW_IDS = 20  # ids listed in the metrics for missing / unknown predictions


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
