"""Pinned losses (as torchtune's recipe tests): a fixed SFT and GRPO run of the tiny model, compared with recorded values.

The tiny "test" Qwen2.5-VL (the session's `tiny_model`, seed 0) is trained
through the real CLI on 8 synthetic tasks (tests/training_util.py): full SFT
(vision tower frozen) for SFT_STEPS steps at a constant lr, then GRPO for 3
steps from that model with the default rewards and weights. Its SFT has made
the answer format likely enough that GRPO's groups have reward variance, so
its loss is not zero and its rewards are worth pinning. Every value logged at
the pinned steps is compared with the one recorded here, on this CPU build
(torch 2.13 CPU, one thread: the test sets it, so the core count does not
change the reductions).

A real change shows: the loss mask (loss on the prompt too), the label shift,
the learning rate or scheduler, the optimizer, the data order, the collator,
the reward weights, the reward functions, GRPO's advantage or loss. A deliberate
change (a new TRL, a new default) re-records: the failure message holds the
values now observed, ready to paste.
"""
from __future__ import annotations

import contextlib
import io

import pytest

from training_util import cot_version, read_run, tasks_version

pytestmark = pytest.mark.slow

SFT_STEPS = 100
SFT = ["--full", "--freeze_vision_tower", "true", "--per_device_train_batch_size", "8", "--learning_rate", "1e-2",
       "--lr_scheduler_type", "constant", "--max_length", "512", "--logging_steps", "1", "--seed", "0",
       "--max_steps", str(SFT_STEPS), "--disable_tqdm", "true"]
GRPO = ["--max_steps", "3", "--num_generations", "4", "--per_device_train_batch_size", "8",
        "--max_completion_length", "48", "--temperature", "1.0", "--learning_rate", "1e-2", "--logging_steps", "1",
        "--seed", "0", "--disable_tqdm", "true"]

# "<step>/<logged key>" -> value, recorded on torch 2.13 CPU
SFT_PINNED = {"1/loss": 6.265654, "1/grad_norm": 2.413537, "2/loss": 5.830234, "2/grad_norm": 3.904743,
              "3/loss": 5.041377, "3/grad_norm": 3.065583, "4/loss": 4.439239, "5/loss": 3.84893,
              f"{SFT_STEPS}/loss": 0.040696}
GRPO_PINNED = {
    "1/loss": -0.020782, "1/reward": 0.924375, "1/rewards/format_reward/mean": 0.75,
    "1/rewards/image_reward/mean": 0.75, "1/rewards/iou_reward/mean": 0.624375, "1/completions/mean_length": 31.25,
    "2/loss": 0.0, "2/reward": 0.574625, "2/rewards/format_reward/mean": 0.5,
    "2/rewards/image_reward/mean": 0.5, "2/rewards/iou_reward/mean": 0.374625, "2/completions/mean_length": 28.0,
    "3/loss": -0.003759, "3/reward": 0.174875, "3/rewards/format_reward/mean": 0.125,
    "3/rewards/image_reward/mean": 0.125, "3/rewards/iou_reward/mean": 0.124875, "3/completions/mean_length": 33.25,
}
GRPO_KEYS = ("loss", "reward", "rewards/format_reward/mean", "rewards/image_reward/mean", "rewards/iou_reward/mean",
             "completions/mean_length")


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    import torch

    from builders.store import Store
    from polyground.cli import main

    root = tmp_path_factory.mktemp("pinned")
    store = Store(root / "store")
    tasks = tasks_version(store, n=8, seed=0)
    cot = cot_version(store, tasks)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["--store", str(store.root), "train", "sft", "--data", cot.ref, "--model", str(tiny_model),
                         "--output", str(root / "sft"), *SFT]) == 0
            assert main(["--store", str(store.root), "train", "grpo", "--data", tasks.ref, "--model", str(root / "sft"),
                         "--output", str(root / "grpo"), *GRPO]) == 0
    finally:
        torch.set_num_threads(threads)
    return read_run(root / "sft")["log_history"], read_run(root / "grpo")["log_history"]


def logged(log_history: list, keys) -> dict:
    """{"<step>/<key>": value} of every training log entry (pytest.approx compares flat dicts)."""
    return {f"{e['step']}/{k}": round(e[k], 6) for e in log_history if "loss" in e for k in keys if k in e}


def test_sft_losses_are_the_recorded_ones(runs):
    got = logged(runs[0], ("loss", "grad_norm"))
    assert SFT_PINNED and {k: got.get(k) for k in SFT_PINNED} == pytest.approx(SFT_PINNED, rel=1e-3), \
        f"observed: {got}"


def test_grpo_losses_and_rewards_are_the_recorded_ones(runs):
    got = logged(runs[1], GRPO_KEYS)
    assert GRPO_PINNED and got == pytest.approx(GRPO_PINNED, rel=1e-3, abs=1e-4), f"observed: {got}"
