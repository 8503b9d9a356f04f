"""Seconds per training step, polyground's path vs TRL fed directly: LoRA SFT and GRPO.

    .venv/bin/python bench/step_bench.py [--size tiny|demo|7b] [--steps 6] [--warmup 1] [--rows 32]
        [--gen-len 32] [--pixels N] [--accum N] [--threads 1] [--methods sft,grpo] [--trl-first]
        [--store DIR [--prepare-only]] [--json OUT] [--keep]

One Qwen2.5-VL is built from a config with random weights: `tiny` and `demo` are
the project's tiny-model factory (training.models.build_tiny_model, its "test"
and "demo" sizes), `7b` the published Qwen2.5-VL-7B-Instruct architecture
(QWEN2_5_VL_7B below; the tiny factory's tokenizer stands in for Qwen's, the
embedding keeps the published 152064 rows). bf16 on a GPU, float32 on CPU.

The rows, built in a temporary store with the project's own builders: synthetic
tasks (`build tasks --source synthetic`, two images per task), a cot version
(`build cot --mode annotations` at the bench's pixel budget) and an rl-pool version (`build rl-pool` with the
local backend: the tiny random policy, band [0,1] so every task stays). Images
cost the recipes' pixel budget: the processor resizes each one to the largest
square grid within `image_max_pixels` of recipes/qwen2_5_vl_7b_*.yaml (484
visual tokens), or `--pixels`.

Each method runs twice on those rows, with the recipe's values (LoRA r64 on the
language model's seven projections, activation checkpointing, batch and
accumulation) but for the overrides in `bench_values`:
  - polyground: training.sft.main / training.grpo.main, exactly as `polyground
    train sft|grpo` calls them (config parsed by training.configs.parse_config);
  - trl: TRL's SFTTrainer / GRPOTrainer given the model loaded with plain
    transformers, a datasets.Dataset built by hand from the version's Arrow table
    (no verification, no pre-flight), the same LoraConfig, the same rewards, and a
    TRL config holding the very values polyground resolved (checked field by field).
Each run is a forked child of one parent that imported everything first, so
both paths start from the same state and each has its own peak memory. The
bench checks that both paths trained on the same rows (a hash of the trainer's
dataset) and prints, per path: setup seconds (start to the first step: model
load, dataset build, trainer init), seconds per step (median after the warm-up
steps; a step is optimizer step end to step end, so fetching and collating the
batch count), tokens per second (TRL's own `num_tokens`, prompt + completion,
visual tokens included), peak memory (GPU max allocated, or the process's peak
RSS on CPU), and the ratio polyground / TRL. Setup and step times are also given
in CPU seconds of the child: on a shared CPU the wall clock of two identical runs
differs by 2x, their CPU seconds by a few percent, so compare those there
(`--trl-first` swaps the order, to tell an order effect from a path effect; the
JSON holds each run's schedstat: seconds on a CPU and waiting for one).

On a GPU machine (bench/README.md has the one prepared command with the wheels
to carry): `--size 7b --steps 4 --gen-len 32`, estimated at 6 to 8 minutes (not run yet).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import fields
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # asking for CUDA must not initialise it before fork

RECIPES = {"sft": REPO / "recipes" / "qwen2_5_vl_7b_sft.yaml", "grpo": REPO / "recipes" / "qwen2_5_vl_7b_grpo.yaml"}
TINY_FACTORY_SIZE = {"tiny": "test", "demo": "demo"}
# Qwen/Qwen2.5-VL-7B-Instruct's published config.json (8.29B parameters with the vision tower).
QWEN2_5_VL_7B = {
    "text": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                 intermediate_size=18944, vocab_size=152064, max_position_embeddings=128000, rms_norm_eps=1e-6,
                 hidden_act="silu", tie_word_embeddings=False,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}),
    "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                   patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                   fullatt_block_indexes=[7, 15, 23, 31], hidden_act="silu", tokens_per_second=2),
}
# Visual tokens are 28x28 pixel blocks (patch 14, merge 2).
BLOCK = 28
# The printed figures: key, title, width, decimals. CPU seconds are this process's own: on a
# shared CPU they barely move when other work slows the wall clock down.
COLUMNS = (("setup_s", "setup s", 8, 2), ("cpu_setup_s", "cpu setup", 9, 2), ("step_s", "s/step", 8, 3),
           ("cpu_step_s", "cpu s/step", 10, 3), ("tok_s", "tok/s", 8, 0), ("mem_gb", "peak GB", 8, 2))


# ---- forked children: each run starts from the parent's imported state --------------------
# --in-process: no fork. A process that has already run torch's thread pools (a test suite)
# can deadlock in a forked child; the suite's run of the bench takes this path.
IN_PROCESS = False


def in_child(fn, log: Path, *args):
    """fn(*args) in a forked child; its output goes to `log`, its JSON-able result comes back.

    Where the parent has initialised CUDA (which a forked child cannot use), fn runs in this
    process instead, with CUDA's peak memory counter reset first."""
    out = log.with_suffix(".json")
    if IN_PROCESS or _cuda_initialized():
        _run_logged(fn, args, log, out)
    else:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = _run_logged(fn, args, log, out)
            os._exit(code)
        os.waitpid(pid, 0)
    if not out.is_file():
        raise RuntimeError(f"the child running {fn.__name__} died without a result; see {log}")
    result = json.loads(out.read_text())
    if "user_error" in result:
        from schemas.errors import UserError

        raise UserError(result["user_error"])
    if "error" in result:
        raise RuntimeError(f"{fn.__name__} failed (log: {log}):\n{result['error']}")
    return result["ok"]


def _cuda_initialized() -> bool:
    import torch

    return torch.cuda.is_initialized()


def _run_logged(fn, args, log: Path, out: Path) -> int:
    """fn(*args) with file descriptors 1 and 2 on `log`; the result (or error) as JSON in `out`."""
    import gc

    import torch

    code = 0
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        with open(log, "w", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            os.dup2(f.fileno(), 1)  # native libraries write to the descriptors, Python to sys.stdout
            os.dup2(f.fileno(), 2)
            if torch.cuda.is_initialized():
                torch.cuda.reset_peak_memory_stats()
            result = {"ok": fn(*args)}
    except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
        from schemas.errors import UserError

        result = {"user_error": str(e)} if isinstance(e, UserError) else {"error": traceback.format_exc()}
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    out.write_text(json.dumps(result, default=str))
    return code


def peak_memory() -> dict:
    """GPU max allocated when training ran on CUDA, else this process's peak RSS (VmHWM)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return {"kind": "gpu", "bytes": int(torch.cuda.max_memory_allocated())}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return {"kind": "rss", "bytes": int(line.split()[1]) * 1024}
    import resource

    return {"kind": "rss", "bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


# ---- the model and the rows -------------------------------------------------------------
def config_7b(tokenizer):
    """Qwen2.5-VL-7B-Instruct's architecture around `tokenizer`'s special token ids."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|im_end|>", "<|endoftext|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    text = dict(QWEN2_5_VL_7B["text"], bos_token_id=None, eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"])
    return Qwen2_5_VLConfig(text_config=text, vision_config=dict(QWEN2_5_VL_7B["vision"]),
                            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                            vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])


def build_7b(folder: Path, device: str = "cuda") -> None:
    """Replace the tiny model in `folder` by the published 7B architecture, random, in bf16 (GPU only)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from schemas.errors import UserError
    from builders.inference.models import load_processor

    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--size 7b needs a CUDA GPU (16.6 GB of bf16 weights); use --size tiny or demo on CPU")
    config = config_7b(load_processor(str(folder)).tokenizer)
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU: seconds, where 8B parameters on CPU take minutes
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    for f in folder.glob("model*.safetensors*"):
        f.unlink()  # the tiny weights would otherwise sit beside the 7B shards
    model.save_pretrained(folder)


def cli(*argv: str) -> str:
    """`polyground ARGV` in process; the last line of its standard output (the new version's ref)."""
    from polyground.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(argv))
    if code:
        raise RuntimeError(f"polyground {' '.join(argv)} exited {code}")
    return buf.getvalue().strip().splitlines()[-1]


def stored_ref(store, name: str, image_pixels: dict | None = None) -> str | None:
    """The newest `name` version in the store (built at `image_pixels`, when given), or None."""
    from schemas.errors import UserError

    try:
        version = store.resolve(name)
    except UserError:
        return None
    if image_pixels is not None and (version.manifest.get("config") or {}).get("image_pixels") != image_pixels:
        return None
    return version.ref


def prepare(tmp: Path, size: str, rows: int, store_dir: Path | None, bounds: tuple[int, int],
            model: bool = True) -> dict:
    """The model folder and a store holding tasks, cot and rl-pool versions (run in a child).

    Versions already in `store_dir` (an earlier `--prepare-only`) are reused; the cot one only
    when it was built at the same pixel budget: polyground renders a cot answer in the
    trainer's frame, and TRL fed directly reads the stored completion, so they must agree."""
    import torch

    from builders.store import Store
    from training.models import build_tiny_model

    torch.set_num_threads(1)
    root = (store_dir or tmp / "store").resolve()
    store, at = str(root), ["--image-min-pixels", str(bounds[0]), "--image-max-pixels", str(bounds[1])]
    have = Store(root)
    policy = None
    tasks = stored_ref(have, "tasks") or cli("--store", store, "build", "tasks", "--source", "synthetic", "--name",
                                             "tasks", "--n", str(rows), "--quiet")
    cot = stored_ref(have, "cot", {"min_pixels": bounds[0], "max_pixels": bounds[1]}) or cli(
        "--store", store, "build", "cot", "--tasks", tasks, "--name", "cot", "--mode", "annotations", "--profile",
        "qwen2_5_vl", *at, "--quiet")
    rl = stored_ref(have, "rl")
    if rl is None:
        policy = build_tiny_model(tmp / "policy", size="test")  # the pool's sampling policy at every size
        rl = cli("--store", store, "build", "rl-pool", "--tasks", tasks, "--policy", str(policy), "--k", "2",
                 "--max-tokens", "8", "--band", "[0,1]", "--device", "cpu", "--name", "rl", "--quiet")
    folder = None
    if model:
        if size == "tiny" and policy is not None:
            folder = policy
        else:
            folder = build_tiny_model(tmp / "model", size=TINY_FACTORY_SIZE.get(size, "test"))
            if size == "7b":
                build_7b(folder)
    return {"model": str(folder), "store": store, "data": {"sft": cot, "grpo": rl}}


def pixel_bounds(budget: int) -> tuple[int, int]:
    """(min, max) pixels that resize every image to the largest square grid within `budget`."""
    side = int(budget ** 0.5) // BLOCK * BLOCK
    return side * side, budget


def budget_bounds(args) -> tuple[int, int]:
    """The (min, max) pixels every image is resized into: --pixels, else the recipes' max."""
    import yaml

    return pixel_bounds(args.pixels or yaml.safe_load(RECIPES["sft"].read_text())["image_max_pixels"])


def bench_values(method: str, prep: dict, out: Path, args) -> dict:
    """The recipe's values with the bench's overrides (each says why)."""
    import yaml

    values = yaml.safe_load(RECIPES[method].read_text())
    values.update(
        model_name_or_path=prep["model"], store=prep["store"], data=prep["data"][method], output_dir=str(out),
        max_steps=args.steps, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        cpu_threads=args.threads,
    )
    values["image_min_pixels"], values["image_max_pixels"] = budget_bounds(args)
    if args.accum:
        values["gradient_accumulation_steps"] = args.accum
    if method == "grpo":
        values.update(
            max_completion_length=args.gen_len,  # short rollouts: a step time, not a reasoning run
            use_vllm=False,  # not installed where TRL is fed directly either; HF generate on both paths
            log_completions=False,  # a rich table per step on the terminal, the same on both paths
            difficulty_weighting=False,  # repeats rows: TRL fed directly would train on different rows
            # Two images at the budget (2 x 484 visual tokens) + the text exceed the recipe's 1024.
            max_prompt_length=max(values.get("max_prompt_length") or 0, 2048),
        )
    return values


# ---- one timed run --------------------------------------------------------------------
class StepClock:
    """A TrainerCallback keeping each optimizer step's wall time (step end to step end) and the rows' hash."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self
        self.t_start, self.cpu_start = time.perf_counter(), time.process_time()
        self.t_begin, self.ends, self.rows_hash, self.rows = None, [], None, 0
        self.cpu_begin, self.cpu_ends, self.sched_begin = None, [], {}

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, train_dataloader=None, **kw):
                clock.t_begin, clock.cpu_begin = time.perf_counter(), time.process_time()
                clock.sched_begin = sched_seconds()
                if train_dataloader is not None:
                    clock.rows_hash, clock.rows = dataset_hash(train_dataloader.dataset)

            def on_step_end(self, args, state, control, **kw):
                clock.ends.append(time.perf_counter())
                clock.cpu_ends.append(time.process_time())

        self.callback = _CB()

    def steps(self) -> list[float]:
        marks = [self.t_begin, *self.ends]
        return [b - a for a, b in zip(marks, marks[1:])]

    def cpu_steps(self) -> list[float]:
        """CPU seconds of this process per step: on a shared CPU, far steadier than wall time."""
        marks = [self.cpu_begin, *self.cpu_ends]
        return [b - a for a, b in zip(marks, marks[1:])]


def sched_seconds() -> dict:
    """Seconds this process's threads ran on a CPU and waited runnable for one (Linux schedstat):
    a wall clock far above the CPU time is either waiting for a CPU or blocked in a call."""
    run = wait = 0
    tasks = sorted(Path("/proc/self/task").glob("*/schedstat"))
    for f in tasks:
        try:
            on_cpu, queued, _ = (int(x) for x in f.read_text().split())
        except (OSError, ValueError):
            continue
        run, wait = run + on_cpu, wait + queued
    return {"run_s": run / 1e9, "wait_s": wait / 1e9, "threads": len(tasks)}


def dataset_hash(dataset) -> tuple[str, int]:
    """sha256 of the rows as stored (image paths, not pixels), columns in name order."""
    import hashlib

    table = dataset.data.table if hasattr(dataset, "data") else None
    if table is None:
        return "unknown", len(dataset)
    table = table.select(sorted(table.column_names))
    h = hashlib.sha256(json.dumps(table.to_pylist(), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16], table.num_rows


def parsed(method: str, values: dict):
    from training.configs import parse_config

    if method == "sft":
        from training.sft import CONFIG_TYPES
    else:
        from training.grpo import CONFIG_TYPES
    return parse_config(CONFIG_TYPES, values, [], "step bench")


def device_values(values: dict) -> dict:
    """bf16 weights on a GPU (the recipe's dtype), float32 on CPU."""
    import torch

    return values if torch.cuda.is_available() else {**values, "dtype": "float32"}


def run_polyground(method: str, values: dict) -> dict:
    """training.sft.main / training.grpo.main, as `polyground train` calls them."""
    clock = StepClock()
    data_args, training_args, model_args = parsed(method, device_values(values))
    if method == "sft":
        from training.sft import main
    else:
        from training.grpo import main
    record = main(data_args, training_args, model_args, callbacks=[clock.callback])
    return summary(clock, record["log_history"], record["model"]["parameters"], training_args)


def trl_config(method: str, training_args):
    """A plain TRL config holding the values polyground resolved; refuses if any shared field differs."""
    from trl import GRPOConfig, SFTConfig

    base = SFTConfig if method == "sft" else GRPOConfig
    names = [f.name for f in fields(base) if f.init]
    raw = {n: getattr(training_args, n) for n in names}
    raw.pop("generation_batch_size", None)  # GRPO derives it from steps_per_generation and refuses both
    cfg = base(**raw)
    ours, theirs = training_args.to_dict(), cfg.to_dict()
    differ = sorted(n for n in names if n in ours and ours[n] != theirs.get(n))
    if differ:
        raise RuntimeError(f"the TRL config differs from polyground's in {differ}")
    return cfg


def direct_records(method: str, store, ref: str, profile) -> list[dict]:
    """The rows a user would hand TRL without polyground's adapter: straight from the Arrow table."""
    from training.data import build_prompt_messages, completion_messages

    out = []
    for r in store.resolve(ref).table().to_pylist():
        rec = {"id": r["id"], "prompt": build_prompt_messages(r["question"], len(r["images"]), profile),
               "images": [str(store.image_path(i["sha256"])) for i in r["images"]]}
        if method == "sft":
            rec["completion"] = completion_messages(r["completion"])
        else:
            rec.update(target_image=r["target_image"], equivalent_images=list(r["equivalent_images"] or []),
                       target_box=list(r["target_box"]),
                       image_sizes=[[i["width"], i["height"]] for i in r["images"]], task_type=r["task_type"],
                       pass_rate=r["pass_rate"], targets=r.get("targets"))  # null: one target (issue 18)
        out.append(rec)
    return out


def run_trl(method: str, values: dict) -> dict:
    """TRL's trainer fed directly: plain transformers load, a hand-built Dataset, the same LoRA and config."""
    import torch
    from datasets import Dataset, Image, List
    from transformers import AutoModelForImageTextToText

    from builders.store import Store
    from schemas.profiles import get_profile
    from training.configs import lora_config
    from builders.inference.models import load_processor, set_pixel_bounds

    clock = StepClock()
    data_args, training_args, model_args = parsed(method, device_values(values))
    if training_args.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(training_args.cpu_threads)  # what polyground's main does on CPU
    cfg = trl_config(method, training_args)
    kwargs = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    model = AutoModelForImageTextToText.from_pretrained(model_args.model_name_or_path, dtype=model_args.dtype,
                                                        **kwargs)
    processor = load_processor(model_args.model_name_or_path)  # the stock one where torchvision is installed
    set_pixel_bounds(processor, model_args.image_min_pixels, model_args.image_max_pixels)
    size = processor.image_processor.size
    profile = get_profile(data_args.profile, size["shortest_edge"], size["longest_edge"])
    store = Store(data_args.store)
    dataset = Dataset.from_list(direct_records(method, store, data_args.data, profile))
    dataset = dataset.cast_column("images", List(Image()))
    if method == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(model=model, args=cfg, train_dataset=dataset, processing_class=processor,
                             peft_config=lora_config(model_args), callbacks=[clock.callback])
    else:
        from trl import GRPOTrainer

        from training.rewards import make_reward_funcs

        trainer = GRPOTrainer(model=model, reward_funcs=make_reward_funcs(training_args.reward_funcs, profile),
                              args=cfg, train_dataset=dataset, processing_class=processor,
                              peft_config=lora_config(model_args), callbacks=[clock.callback])
    trainer.train()
    trainer.save_model(cfg.output_dir)  # as polyground's path does (its finish_run), outside the step times
    return summary(clock, trainer.state.log_history, sum(p.numel() for p in trainer.model.parameters()),
                   training_args)


def summary(clock: StepClock, log_history: list, parameters: int, training_args) -> dict:
    import torch

    steps = clock.steps()
    tokens = {e["step"]: e["num_tokens"] for e in log_history if "num_tokens" in e and "step" in e}
    return {"steps": steps, "cpu_steps": clock.cpu_steps(), "tokens": tokens, "setup_s": clock.t_begin - clock.t_start,
            "cpu_setup_s": clock.cpu_begin - clock.cpu_start,
            "sched": {k: v - clock.sched_begin.get(k, 0) if k != "threads" else v  # seconds since train began
                      for k, v in sched_seconds().items()},
            "rows_hash": clock.rows_hash, "rows": clock.rows, "parameters": parameters,
            "memory": peak_memory(), "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_initialized() else "cpu",
            "bf16": bool(training_args.bf16)}


def figures(run: dict, warmup: int) -> dict:
    """Median s/step after the warm-up, tokens/s over the same steps, peak memory."""
    steps = run["steps"]
    steady = steps[warmup:] or steps
    first = len(steps) - len(steady)  # steps before the steady ones
    tokens = {int(k): v for k, v in run["tokens"].items()}
    last = max(tokens) if tokens else 0
    seen = tokens.get(last, 0) - tokens.get(first, 0)
    return {"setup_s": run["setup_s"], "cpu_setup_s": run["cpu_setup_s"], "step_s": statistics.median(steady),
            "cpu_step_s": statistics.median(run["cpu_steps"][warmup:] or run["cpu_steps"]),
            "tok_s": seen / sum(steady) if steady and seen else float("nan"),
            "mem_gb": run["memory"]["bytes"] / 2 ** 30, "mem_kind": run["memory"]["kind"]}


# ---- the bench -------------------------------------------------------------------------
def import_everything() -> None:
    """Import (never run) what the children need, so that each fork starts warm and alike."""
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLForConditionalGeneration  # noqa: F401
    from trl import GRPOTrainer, SFTTrainer  # noqa: F401

    import polyground.cli  # noqa: F401
    import training.grpo  # noqa: F401
    import training.sft  # noqa: F401
    from training import data, lineage, models, rewards  # noqa: F401

    datasets.disable_progress_bars()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("tiny", "demo", "7b"), default="tiny")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per run (default 6)")
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the median (default 1)")
    p.add_argument("--rows", type=int, default=32, help="synthetic tasks in the store (default 32)")
    p.add_argument("--gen-len", type=int, default=32, help="GRPO completion tokens (default 32)")
    p.add_argument("--pixels", type=int, help="pixel budget per image (default: the recipes' image_max_pixels)")
    p.add_argument("--accum", type=int, help="gradient accumulation steps (default: the recipes')")
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU, both paths (default 1)")
    p.add_argument("--methods", default="sft,grpo", help="comma-separated: sft, grpo")
    p.add_argument("--store", type=Path, help="keep the rows in this store folder; one that already holds them "
                   "(an earlier run's, or --prepare-only's) is reused, so the GPU machine needs no store builders")
    p.add_argument("--prepare-only", action="store_true", help="build the rows into --store and stop")
    p.add_argument("--trl-first", action="store_true",
                   help="run TRL's path before polyground's (an order effect shows as a ratio that flips)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, store, model)")
    p.add_argument("--in-process", action="store_true",
                   help="run every step here instead of in forked children (for callers that already ran torch)")
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.methods or any(m not in RECIPES for m in args.methods):
        p.error("--methods takes sft and/or grpo")
    if args.steps <= args.warmup:
        p.error("--steps must exceed --warmup")
    if args.prepare_only and not args.store:
        p.error("--prepare-only needs --store")
    return args


def main(argv=None) -> dict:
    """Run the bench; returns {method: {path: figures, "ratio": {...}}} (also printed)."""
    import shutil

    global IN_PROCESS
    args = parse_args(argv)
    IN_PROCESS = args.in_process
    import_everything()
    tmp = Path(tempfile.mkdtemp(prefix="step-bench-"))
    try:
        t0 = time.perf_counter()
        prep = in_child(prepare, tmp / "prepare.log", tmp, args.size, args.rows, args.store, budget_bounds(args),
                        not args.prepare_only)
        print(f"rows and model ready in {time.perf_counter() - t0:.1f}s ({tmp})", file=sys.stderr)
        if args.prepare_only:
            print(f"{prep['store']}: {prep['data']['sft']}, {prep['data']['grpo']}")
            return {}
        results, runs = {}, {}
        for method in args.methods:
            runs[method] = {}
            order = (("polyground", run_polyground), ("trl", run_trl))
            for path, fn in order[::-1] if args.trl_first else order:
                values = bench_values(method, prep, tmp / f"out-{method}-{path}", args)
                runs[method][path] = in_child(fn, tmp / f"{method}-{path}.log", method, values)
            ours, theirs = runs[method]["polyground"], runs[method]["trl"]
            if ours["rows_hash"] != theirs["rows_hash"]:
                raise RuntimeError(f"{method}: the two paths trained on different rows "
                                   f"({ours['rows']} vs {theirs['rows']}); logs in {tmp}")
            a, b = figures(ours, args.warmup), figures(theirs, args.warmup)
            results[method] = {"polyground": a, "trl": b, "ratio": {
                k: a[k] / b[k] if b[k] else float("nan") for k, *_ in COLUMNS}}
        report(args, prep, runs, results)
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                             "results": results, "runs": runs}, indent=2, default=str))
        return results
    finally:
        IN_PROCESS = False  # a later caller in this process forks again unless it asks
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def report(args, prep: dict, runs: dict, results: dict) -> None:
    any_run = next(iter(next(iter(runs.values())).values()))
    lo, _ = budget_bounds(args)
    print(f"step bench: Qwen2.5-VL '{args.size}' ({any_run['parameters'] / 1e6:.1f}M parameters with LoRA), "
          f"{any_run['device']}, {'bf16' if any_run['bf16'] else 'float32'}, {any_run['threads']} thread(s); "
          f"images resized to {int(lo ** 0.5)} px ({lo // BLOCK ** 2} visual tokens each); "
          f"{args.steps} steps, median of the last {args.steps - args.warmup}")
    print(f"{'method':6} {'path':10} " + " ".join(f"{title:>{w}}" for _, title, w, _ in COLUMNS) + "  rows")
    for method, res in results.items():
        for path in ("polyground", "trl"):
            f, run = res[path], runs[method][path]
            cells = " ".join(f"{f[k]:{w}.{d}f}" for k, _, w, d in COLUMNS)
            print(f"{method:6} {path:10} {cells}  {run['rows']} ({run['rows_hash']}), memory: {f['mem_kind']}")
        cells = " ".join(f"{res['ratio'][k]:{w}.3f}" for k, _, w, _ in COLUMNS)
        print(f"{method:6} {'ratio':10} {cells}  polyground / trl")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a one-line error for bad input; a traceback for anything else
        from schemas.errors import UserError

        if isinstance(e, UserError):
            sys.exit(f"error: {e}")
        raise
