"""Seconds per SFT and GRPO step for the tiny model, and the data adapter's overhead.

    .venv/bin/python bench/train_bench.py [--size test|demo] [--steps 10] [--rows 64]

The adapter (training.data: verify the version, build TRL rows, pre-flight
token count) is compared with feeding the same rows to TRL directly (a
`datasets.Dataset` built by hand from the Arrow table, no checks): the
overhead is the adapter's extra one-time cost (it grows with the rows) plus
any per-batch difference, relative to one epoch over the rows. Target: <= 5%.
Offline; CPU unless CUDA is present.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_store(root: Path, rows: int, profile):
    """A tasks version and an annotation-style cot version of the learnable synthetic family."""
    from builders.sources.ingest import ingest
    from builders.sources.synthetic import read_synthetic
    from builders.store import Store
    from schemas import rows as R

    store = Store(root)
    records, _ = ingest(read_synthetic(None, n=rows, seed=0), store, progress=False)
    with store.writer("tasks", "tasks", config={"bench": rows}) as w:
        w.write(R.to_table(records, "tasks"))
    cot = []
    for t in records:
        sizes = [[i["width"], i["height"]] for i in t["images"]]
        text = profile.render("Red is there.", t["target_image"], t["target_box"], sizes)
        cot.append({**t, "task_id": t["id"], "id": t["id"] + "#0", "completion": text, "profile": profile.name,
                    "sample_index": 0})
    with store.writer("cot", "cot", inputs=[w.version], config={}) as c:
        c.write(R.to_table(cot, "cot"))
    return store, w.version, c.version


def direct_sft_dataset(store, version, profile):
    """What a user would hand to TRL without polyground's adapter: same rows, no checks."""
    from datasets import Dataset, Image, List

    from training.data import build_prompt_messages

    recs = [{"prompt": build_prompt_messages(r["question"], len(r["images"]), profile),
             "completion": [{"role": "assistant", "content": [{"type": "text", "text": r["completion"]}]}],
             "images": [str(store.image_path(i["sha256"])) for i in r["images"]], "id": r["id"]}
            for r in version.table().to_pylist()]
    return Dataset.from_list(recs).cast_column("images", List(Image()))


class StepTimer:
    """A TrainerCallback that keeps the wall time of every optimizer step."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                timer.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                timer.times.append(time.perf_counter() - timer.t0)

        self.times, self.callback = [], _CB()

    def per_step(self) -> float:
        steady = sorted(self.times[1:] or self.times)  # the first step pays for lazy initialisation
        return steady[len(steady) // 2]  # median: robust to other work on a shared machine


def train_sft(model_dir, dataset, processor, steps, out) -> float:
    from trl import SFTTrainer

    from training.configs import SFTRunConfig
    from builders.inference.models import load_model_and_processor

    model, _ = load_model_and_processor(model_dir)
    args = SFTRunConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-3,
                        max_length=512, disable_tqdm=True, cpu_threads=0)
    timer = StepTimer()
    SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
               callbacks=[timer.callback]).train()
    return timer.per_step()


def train_grpo(model_dir, store, version, steps, out) -> float:
    from trl import GRPOTrainer

    from training.configs import GRPORunConfig
    from training.data import load_grpo_dataset
    from builders.inference.models import load_model_and_processor
    from training.rewards import make_reward_funcs

    model, processor = load_model_and_processor(model_dir)
    dataset, _, profile = load_grpo_dataset(store, version.ref, processor, "qwen2_5_vl", profile_name="short",
                                            max_length=4096, completion_budget=24)
    args = GRPORunConfig(output_dir=str(out), max_steps=steps, num_generations=8, per_device_train_batch_size=16,
                         max_completion_length=24, learning_rate=3e-4, beta=0.0, disable_tqdm=True,
                         cpu_threads=0)
    timer = StepTimer()
    GRPOTrainer(model=model, reward_funcs=make_reward_funcs(args.reward_funcs, profile), args=args,
                train_dataset=dataset, processing_class=processor, callbacks=[timer.callback]).train()
    return timer.per_step()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("test", "demo"), default="test")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the trainers' CPU default is 1)")
    args = p.parse_args()

    import datasets
    import torch

    from schemas.profiles import get_profile
    from training.data import load_sft_dataset
    from builders.inference.models import load_model_and_processor
    from training.models import build_tiny_model

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    profile = get_profile("short")
    tmp = Path(tempfile.mkdtemp(prefix="train-bench-"))
    model_dir = build_tiny_model(tmp / "model", size=args.size)
    store, tasks, cot = make_store(tmp / "store", args.rows, profile)
    _, processor = load_model_and_processor(model_dir)

    t_ours = best_of(3, lambda: load_sft_dataset(store, cot.ref, processor, "qwen2_5_vl", max_length=512))
    t_direct = best_of(3, lambda: direct_sft_dataset(store, cot, profile))
    ours, _, _ = load_sft_dataset(store, cot.ref, processor, "qwen2_5_vl", max_length=512)
    direct = direct_sft_dataset(store, cot, profile)
    c_ours, c_direct = collate_time(ours, processor), collate_time(direct, processor)

    s_sft = train_sft(model_dir, ours, processor, args.steps, tmp / "sft")
    s_grpo = train_grpo(model_dir, store, tasks, max(3, args.steps // 2), tmp / "grpo")

    # Same rows and the same collator, so per-step training cost is shared; the adapter
    # adds its one-time build (verify + pre-flight) and any per-batch data difference.
    extra = (t_ours - t_direct) + args.steps * (c_ours - c_direct)
    base = t_direct + args.steps * s_sft
    print(f"tiny model '{args.size}', {torch.get_num_threads()} threads, {args.rows} rows; SFT batch 8, "
          f"GRPO 16 completions (2 prompts x 8 generations, 24 tokens)")
    print(f"SFT  s/step: {s_sft:.3f} (full-parameter)")
    print(f"GRPO s/step: {s_grpo:.3f} (full-parameter)")
    print(f"dataset build: adapter {t_ours:.3f}s (verify + rows + pre-flight), direct {t_direct:.3f}s")
    print(f"data per batch (read rows + collate): adapter {c_ours * 1000:.1f} ms, direct {c_direct * 1000:.1f} ms")
    print(f"adapter overhead over a {args.steps}-step SFT run: {100 * extra / base:+.2f}%")
    epoch = -(-args.rows // 8)  # one pass over the rows at batch 8
    extra_epoch = (t_ours - t_direct) + epoch * (c_ours - c_direct)
    print(f"adapter overhead over one epoch ({epoch} steps): "
          f"{100 * extra_epoch / (t_direct + epoch * s_sft):+.2f}% (target <= 5%)")


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def collate_time(dataset, processor, batches: int = 8, size: int = 8) -> float:
    """Seconds per batch to read rows (images decoded) and collate them as SFTTrainer does."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    collator = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)

    def run():
        for b in range(batches):
            idx = [(b * size + i) % len(dataset) for i in range(size)]
            collator([dict(dataset[i]) for i in idx])

    return best_of(3, run) / batches


if __name__ == "__main__":
    main()
