"""Helpers for the training tests: real store versions of synthetic tasks, cot and rl-pool rows.

The cot rows here are built the annotation way (a short reasoning + the
profile's rendered answer), standing in for `build cot` so the trainers can be
tested on their own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = "short"  # compact answers keep the tiny model's sequences short


def tasks_version(store, name: str = "tasks", n: int = 8, seed: int = 0, kind: str = "tasks"):
    """A committed tasks (or bench) version of the learnable synthetic family."""
    from builders.ingest import ingest
    from builders.sources.synthetic import read_synthetic
    from schemas import rows

    records, rejects = ingest(read_synthetic(None, n=n, seed=seed), store, progress=False)
    with store.writer(name, kind, config={"n": n, "seed": seed}) as w:
        w.write(rows.to_table(records, kind), rows.to_table(rejects, "rejects"))
    return w.version


def _cot_record(task: dict, profile, i: int = 0) -> dict:
    sizes = [[im["width"], im["height"]] for im in task["images"]]
    reasoning = f"The red object is in image {task['target_image'] + 1}."
    completion = profile.render(reasoning, task["target_image"], task["target_box"], sizes)
    return {**task, "task_id": task["id"], "id": f"{task['id']}#{i}", "prompt": task["question"],
            "completion": completion, "reasoning": reasoning, "profile": profile.name,
            "pred_image": task["target_image"], "pred_box": task["target_box"], "format_ok": True,
            "image_correct": True, "iou": 1.0, "generator_model": "annotations",
            "generator_kind": "annotations", "sampling": "{}", "template_id": "test", "sample_index": i}


def cot_version(store, tasks, name: str = "cot", profile_name: str = PROFILE, edit=None):
    """A cot version over `tasks`: one annotation-style trajectory per task; `edit(record)` may alter rows."""
    from schemas import rows
    from schemas.profiles import get_profile

    profile = get_profile(profile_name)
    records = [_cot_record(t, profile) for t in tasks.table().to_pylist()]
    if edit:
        records = [edit(r) for r in records]
    with store.writer(name, "cot", inputs=[tasks], config={"profile": profile_name}) as w:
        w.write(rows.to_table(records, "cot"))
    return w.version


def rl_pool_version(store, tasks, name: str = "rl", pass_rates=None):
    from schemas import rows

    records = []
    for i, t in enumerate(tasks.table().to_pylist()):
        p = pass_rates[i % len(pass_rates)] if pass_rates else 0.5
        records.append({**t, "k": 4, "pass_rate": p, "mean_iou": p, "max_iou": 1.0,
                        "difficulty": "hard" if p < 0.5 else "easy", "policy": "test"})
    with store.writer(name, "rl-pool", inputs=[tasks], config={}) as w:
        w.write(rows.to_table(records, "rl-pool"))
    return w.version


def run_cli(*argv: str, env_extra: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m polyground ARGV` in a subprocess (the real console entry point)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "polyground", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def read_run(output: Path) -> dict:
    return json.loads((Path(output) / "run.json").read_text())
