"""bench/step_bench.py stays runnable: both training paths side by side at the tiny size on CPU.

The bench itself refuses when the two paths trained on different rows or with
different TRL config values, so a passing run also says the comparison is fair.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import step_bench  # noqa: E402

# A few steps on small images: seconds per run, the whole path (store builders, both trainers) exercised.
# --in-process: the suite has already run torch's thread pools, and a forked child of such a
# process can deadlock (it did in CI: a 300 s timeout with the CPU idle).
FAST = ["--size", "tiny", "--steps", "3", "--warmup", "1", "--rows", "8", "--pixels", "3136", "--accum", "1",
        "--gen-len", "8", "--in-process"]


@pytest.mark.slow
def test_both_paths_side_by_side(capsys):
    results = step_bench.main(FAST)
    out = capsys.readouterr().out
    for method in ("sft", "grpo"):
        for path in ("polyground", "trl"):
            assert f"{method:6} {path:10}" in out
            f = results[method][path]
            assert f["step_s"] > 0 and f["tok_s"] > 0 and f["mem_gb"] > 0.05 and f["mem_kind"] == "rss"
        ratio = results[method]["ratio"]
        assert all(math.isfinite(v) and v > 0 for v in ratio.values()), ratio
        assert f"{method:6} {'ratio':10}" in out


def test_trl_config_holds_polyground_values(tmp_path):
    """The TRL config given to the direct path equals polyground's resolved one, field by field."""
    from types import SimpleNamespace

    prep = {"model": "m", "store": str(tmp_path), "data": {"sft": "cot", "grpo": "rl"}}
    args = SimpleNamespace(pixels=None, steps=3, accum=None, threads=1, gen_len=8)
    for method in ("sft", "grpo"):
        values = step_bench.bench_values(method, prep, tmp_path / method, args)
        _, ours, _ = step_bench.parsed(method, values)
        theirs = step_bench.trl_config(method, ours)
        assert type(theirs).__module__.startswith("trl.")
        assert theirs.gradient_accumulation_steps == ours.gradient_accumulation_steps
        assert theirs.to_dict()["activation_checkpointing"] is True  # the recipe's, on both paths


def test_pixel_budget_and_published_7b_architecture():
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from training.models import _train_tokenizer, tiny_corpus

    lo, hi = step_bench.pixel_bounds(401408)  # the recipes' image_max_pixels
    assert (lo, hi) == (616 * 616, 401408)  # 22 x 22 blocks of 28 px: 484 visual tokens, within 512
    tok = _train_tokenizer(tiny_corpus(), vocab_size=512, chat_template="")
    with torch.device("meta"):  # shapes only: no memory, no time
        model = Qwen2_5_VLForConditionalGeneration._from_config(step_bench.config_7b(tok))
    assert sum(p.numel() for p in model.parameters()) == 8_292_166_656  # Qwen2.5-VL-7B-Instruct's 8.29B


def _answer(x):
    print("to the log")
    return {"x": x, "pid": __import__("os").getpid()}


def _refuse():
    from schemas.errors import UserError

    raise UserError("bad input")


@pytest.mark.parametrize("forked", [True, False])
def test_runs_report_back_from_a_child_or_in_process(tmp_path, monkeypatch, capsys, forked):
    import os

    from schemas.errors import UserError

    monkeypatch.setattr(step_bench, "_cuda_initialized", lambda: not forked)  # in process where CUDA is live
    monkeypatch.setattr(step_bench, "IN_PROCESS", False)
    got = step_bench.in_child(_answer, tmp_path / "a.log", 3)
    assert got["x"] == 3 and (got["pid"] != os.getpid()) == forked
    assert (tmp_path / "a.log").read_text() == "to the log\n" and "to the log" not in capsys.readouterr().out
    with pytest.raises(UserError, match="bad input"):
        step_bench.in_child(_refuse, tmp_path / "b.log")
