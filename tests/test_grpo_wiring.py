"""GRPO wiring on a model with reward variance: every reward TRL computed, recounted from the task's own target.

The right model (tests/right_model.py) passes 3-5 of 6 samples on most
red_image tasks at temperature 1, so GRPO's groups have reward variance and
its gradient is not zero. The reward functions are wrapped (the real ones
still compute every value) to record each call: completions, row columns and
rewards. Each recorded reward is then recomputed by `right_model.short_score`
from the task row IN THE STORE (found by the row's id), and the images TRL
was given are checked against that task's images, in order. GRPO rows whose
images were reversed (prompt and target disagree) fail here: the recorded
images differ from the task's, and the right model's image reward falls from
~0.8 to ~0.2.
"""
from __future__ import annotations

import pytest

from right_model import red_tasks, short_score
from training_util import read_run, recorded_rewards

pytestmark = pytest.mark.slow  # the right model (once a session) plus 3 GRPO steps


@pytest.fixture(scope="module")
def grpo_run(right_model, tmp_path_factory):
    import contextlib
    import io

    from builders.store import Store
    from polyground.cli import main

    store = Store(tmp_path_factory.mktemp("grpo") / "store")
    tasks = red_tasks(store, "rl", n=8, seed=11)
    out = tmp_path_factory.mktemp("grpo-out") / "adapter"
    with recorded_rewards() as calls, contextlib.redirect_stdout(io.StringIO()):
        code = main(["--store", str(store.root), "train", "grpo", "--data", tasks.ref, "--model", str(right_model),
                     "--output", str(out), "--max_steps", "3", "--num_generations", "4",
                     "--per_device_train_batch_size", "8", "--max_completion_length", "32", "--temperature", "1.0",
                     "--learning_rate", "1e-2", "--reward_funcs", "format", "image", "iou", "--reward_weights",
                     "0.1", "0.3", "1.0", "--seed", "0", "--disable_tqdm", "true"])
    assert code == 0
    return {"store": store, "tasks": {t["id"]: t for t in tasks.table().to_pylist()}, "calls": calls, "out": out}


def pixels(image) -> tuple:
    from PIL import Image

    im = image if isinstance(image, Image.Image) else Image.open(image)
    return im.size, im.convert("RGB").tobytes()


def completion_text(c) -> str:
    return c[0]["content"] if isinstance(c, list) else c


def test_every_reward_is_the_recount_from_the_tasks_own_target(grpo_run):
    store, tasks, calls = grpo_run["store"], grpo_run["tasks"], grpo_run["calls"]
    assert {c["name"] for c in calls} == {"format", "image", "iou"}
    key = {"format": "format_ok", "image": "image_ok", "iou": "iou"}
    seen = 0
    for call in calls:
        kw = call["kwargs"]
        for j, completion in enumerate(call["completions"]):
            task = tasks[kw["id"][j]]
            # the prompt's images are the task's images, in order (pixels equal to the stored ones)
            assert [pixels(im) for im in kw["images"][j]] == [pixels(store.image_path(i["sha256"]))
                                                              for i in task["images"]]
            want = float(short_score(completion_text(completion), task)[key[call["name"]]])
            assert call["rewards"][j] == pytest.approx(want, abs=1e-6), (call["name"], kw["id"][j])
            seen += 1
    assert seen >= 3 * 8 * 3  # 3 steps x 8 completions x 3 rewards
    image = [r for c in calls if c["name"] == "image" for r in c["rewards"]]
    assert sum(image) / len(image) >= 0.5  # the right model is rewarded for reading the right image


def test_logged_rewards_are_the_recorded_ones_and_grpo_moved_the_adapter(grpo_run):
    from safetensors.torch import load_file

    run = read_run(grpo_run["out"])
    logged = [e for e in run["log_history"] if "rewards/image_reward/mean" in e]
    image_calls = [c for c in grpo_run["calls"] if c["name"] == "image"]
    assert len(logged) == len(image_calls) == 3
    for entry, call in zip(logged, image_calls):
        assert entry["rewards/image_reward/mean"] == pytest.approx(sum(call["rewards"]) / len(call["rewards"]))
    assert min(e["frac_reward_zero_std"] for e in logged) < 1  # some group had reward variance
    weights = load_file(grpo_run["out"] / "adapter_model.safetensors")
    lora_b = [t for n, t in weights.items() if "lora_B" in n]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: GRPO changed it
