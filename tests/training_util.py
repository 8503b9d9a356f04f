"""Helpers for the training tests: real store versions of synthetic tasks, cot and rl-pool rows.

The cot rows here are built the annotation way (a short reasoning + the
profile's rendered answer), standing in for `build cot` so the trainers can be
tested on their own.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = "short"  # compact answers keep the tiny model's sequences short


# Non-square and unequal on purpose: a width/height swap or an image-order slip changes what a test sees.
# Each 56 px synthetic image gets a blank 28 px band on the right or at the bottom (84x56 or 56x84), so
# every grid cell stays one merged visual token (28 px) and the tiny model still learns the family fast.
PADS = [(28, 0), (0, 28)]


def padded(items, pads=PADS):
    """The synthetic items with image k of item i padded by pads[(i + k) % len(pads)] = (right, bottom) px.

    Boxes are normalised to the new size, so the targets stay exact."""
    import dataclasses
    import io

    from PIL import Image

    for i, item in enumerate(items):
        images, sizes = [], []
        for k, data in enumerate(item.images):
            im = Image.open(io.BytesIO(data)).convert("RGB")
            right, bottom = pads[(i + k) % len(pads)]
            out = Image.new("RGB", (im.width + right, im.height + bottom), im.getpixel((0, 0)))
            out.paste(im, (0, 0))
            buf = io.BytesIO()
            out.save(buf, format="PNG")
            images.append(buf.getvalue())
            sizes.append((im.width / out.width, im.height / out.height))
        box = item.target_box
        if box is not None:
            sx, sy = sizes[item.target_image]
            box = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
        yield dataclasses.replace(item, images=images, target_box=box)


def tasks_version(store, name: str = "tasks", n: int = 8, seed: int = 0, kind: str = "tasks", pads=PADS):
    """A committed tasks (or bench) version of the learnable synthetic family, images `padded` by `pads` (None: square)."""
    from builders.sources.ingest import ingest
    from builders.sources.synthetic import read_synthetic
    from schemas import rows

    items = read_synthetic(None, n=n, seed=seed)
    records, rejects = ingest(padded(items, pads) if pads else items, store, progress=False)
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


@contextlib.contextmanager
def recorded_rewards():
    """Every reward call GRPO makes in the block, as dicts: name, completions, kwargs, rewards returned.

    training.rewards.make_reward_funcs is wrapped, so TRL calls the real functions and the test
    sees exactly what each one was given and gave back."""
    import pytest

    from training import rewards

    calls, real = [], rewards.make_reward_funcs

    def recording(names, profile):
        def wrap(func, name):
            def recorded(completions, **kwargs):
                out = func(completions, **kwargs)
                calls.append({"name": name, "completions": completions, "kwargs": kwargs, "rewards": list(out)})
                return out

            recorded.__name__ = func.func.__name__  # TRL logs rewards under the function's name
            return recorded

        return [wrap(f, n) for f, n in zip(real(names, profile), names)]

    mp = pytest.MonkeyPatch()
    mp.setattr(rewards, "make_reward_funcs", recording)
    try:
        yield calls
    finally:
        mp.undo()
