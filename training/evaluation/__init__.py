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

Files: score.py (each prediction scored: the PREDICTIONS records), metrics.py (their
figures per task type), run.py (`evaluate`, `generate_for_bench`: a predictions version
written), report.py (metrics.json, metrics.md, charts, `compare_table`), config.py (EvalConfig: the
options of `polyground eval`).
"""
