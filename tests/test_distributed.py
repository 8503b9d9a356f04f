"""SFT under `accelerate launch` with 2 processes on CPU: real DDP over gloo.

`accelerate launch --cpu` starts ONE process unless an MPI hostfile is given,
so the two processes come from accelerate's multi-process launcher (torchrun
underneath); on a machine without CUDA, training.configs then trains on CPU
over gloo. Checks: the ranks trained on disjoint rows, one run.json (rank 0).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from training_util import REPO, cot_version, read_run, tasks_version


@pytest.mark.slow
def test_sft_on_two_processes_splits_the_rows_and_writes_one_run(store, tiny_model, tmp_path):
    tasks = tasks_version(store, n=8)
    cot = cot_version(store, tasks)
    out = tmp_path / "ddp"
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "POLYGROUND_STORE": str(store.root), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "polyground", "train", "sft", "--data", cot.ref, "--model", str(tiny_model), "--output", str(out),
           "--max_steps", "2", "--per_device_train_batch_size", "2", "--max_length", "512"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == str(out) and lines.count(str(out)) == 1  # only rank 0 reports
    assert sorted(p.name for p in tmp_path.rglob("run.json")) == ["run.json"]
    run = read_run(out)
    assert run["world_size"] == 2 and run["metrics"]["global_step"] == 2
    rank0, rank1 = run["rows_seen"]["per_rank"]
    assert len(rank0) == len(rank1) == 4  # 2 steps x batch 2 on each rank
    assert not set(rank0) & set(rank1)  # each rank trained on its own shard of the rows
    assert set(rank0) | set(rank1) <= set(cot.table()["id"].to_pylist())
