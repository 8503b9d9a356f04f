"""Training configs: dataclasses extending TRL's, parsed from YAML + command line.

Three dataclasses per run, as in open-r1: `DataArguments` (which frozen
version, which answer profile, what to do with rows that do not fit),
`ModelArguments` (TRL's `ModelConfig` + the vision-tower switch) and the
trainer config (`SFTRunConfig` / `GRPORunConfig`, extending TRL's). Every
field has a help string; checks live in `__post_init__`. Values come from the
recipe YAML, then the command line (`--max_steps 4`), which wins. Unknown
keys are a one-line `UserError`, never silently ignored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from trl import GRPOConfig, ModelConfig, SFTConfig

from builders.options import option, option_factory
from schemas.errors import UserError
from training.rewards import DEFAULT_REWARDS, REWARDS

# Attention projections exist only in the language model of Qwen-VL models (the
# vision blocks use `qkv`/`proj`), so these targets leave the vision tower alone.
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
VISION_MODULES_RE = r".*\.(visual|vision_tower|vision_model)\..*"


@dataclass
class DataArguments:
    """Which frozen version to train on and how to turn it into TRL rows."""

    data: str | None = option(None,
        "Dataset reference NAME[@VERSION|@TAG] in the store (a cot, tasks or rl-pool version).")
    store: str | None = option(None, "Store folder (default: $POLYGROUND_STORE or ./polyground-store).")
    profile: str | None = option(None,
        "Answer profile (qwen2_vl, qwen2_5_vl, norm1000, short). Default: the cot rows' own profile, else the one the "
        "model was trained on (its run.json), else the model family's.")
    on_overflow: str = option("refuse",
        "Rows whose prompt + answer exceed the length limit: 'refuse' (stop with a report) or 'drop' (train without "
        "them, counted by reason).", choices=["refuse", "drop"])
    max_rows: int | None = option(None, "Use only the first N rows of the version (smoke runs); recorded in run.json.")
    cot_box: str = option("annotation",
        "SFT on cot rows: the box the answer gives. 'annotation' (default): the ground truth, an exact label. "
        "'teacher': the teacher's own box (it passed the verifier's IoU gate), as distillation of the teacher's answers "
        "does, looseness included.", choices=["annotation", "teacher"])

    def __post_init__(self):
        if self.on_overflow not in ("refuse", "drop"):
            raise ValueError(f"on_overflow must be 'refuse' or 'drop', not {self.on_overflow!r}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        if self.cot_box not in ("annotation", "teacher"):
            raise ValueError(f"cot_box must be 'annotation' or 'teacher', not {self.cot_box!r}")


@dataclass
class ModelArguments(ModelConfig):
    """TRL's ModelConfig with polyground's defaults: LoRA on the language model's attention."""

    use_peft: bool = option(True,
        "Train a LoRA adapter (default). False (or --full) trains every unfrozen parameter: a from-scratch tiny model "
        "learns only that way.")
    lora_target_modules: list[str] | None = option_factory(lambda: list(DEFAULT_LORA_TARGETS),
        "Module names (or one regex) LoRA adapts. The default touches only the language model.")
    image_min_pixels: int | None = option(None,
        "Qwen-VL: smallest resized image area in pixels (default: the processor's). Saved with the output's processor.")
    image_max_pixels: int | None = option(None,
        "Qwen-VL: largest resized image area in pixels (default: the processor's); each 28x28 block is one visual "
        "token.")
    freeze_vision_tower: bool = option(True,
        "Keep the vision encoder (and its merger) frozen, as the published recipes do. Set false to train it (a random "
        "tiny model needs that).")

    def __post_init__(self):
        super().__post_init__()
        if self.use_peft and self.lora_r < 1:
            raise ValueError("lora_r must be at least 1")


def _bf16_default() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _resolve_devices(cfg) -> None:
    """Under a multi-process launcher on a machine without CUDA, train on CPU over gloo
    (DDP): transformers would otherwise run each process on its own, unsynchronised."""
    import os

    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        cfg.use_cpu = True
        cfg.ddp_backend = cfg.ddp_backend or "gloo"


def apply_cpu_threads(cfg) -> None:
    """Set torch's thread count for a CPU run (a process-wide setting, so done by the mains)."""
    import torch

    if cfg.cpu_threads and (cfg.use_cpu or not torch.cuda.is_available()):
        torch.set_num_threads(cfg.cpu_threads)


def _resolve_precision_and_checkpointing(cfg) -> None:
    # TRL turns bf16 and gradient checkpointing on everywhere; on CPU both only
    # slow a tiny model down, so "unset" means "on where a GPU is present".
    if cfg.bf16 is None:
        cfg.bf16 = _bf16_default() and not cfg.fp16
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing;
    # either name works here, and the old one is cleared to avoid its warning.
    if cfg.activation_checkpointing is None:
        import torch

        old = cfg.gradient_checkpointing
        cfg.activation_checkpointing = torch.cuda.is_available() if old is None else bool(old)
    cfg.gradient_checkpointing = None
    if cfg.dataloader_pin_memory is None:  # pinned memory only helps host-to-GPU copies
        import torch

        cfg.dataloader_pin_memory = torch.cuda.is_available()


@dataclass
class RunDefaults:
    """polyground's defaults shared by the SFT and GRPO configs (listed first in their bases, so they win)."""

    gradient_checkpointing: bool | None = option(None,
        "Deprecated name of activation_checkpointing (trade compute for memory). Default: on with a GPU, off on CPU.")
    dataloader_pin_memory: bool | None = option(None,
        "Pin host memory for faster GPU copies. Default: on with a GPU, off on CPU.")
    cpu_threads: int = option(1,
        "Torch threads when training on CPU (0: torch's default). One is fastest for tiny models: their matmuls are "
        "too small to split, and on a shared machine extra threads spin against other work (20x slower measured).")
    logging_steps: float = option(1, "Log every N optimizer steps.")
    save_strategy: str = option("no",
        "Checkpoint strategy during training ('no', 'steps', 'epoch'); the final model is always saved.")


@dataclass
class SFTRunConfig(RunDefaults, SFTConfig):
    """TRL's SFTConfig with polyground's defaults (prompt/completion rows: loss on the answer only)."""

    remove_unused_columns: bool = option(False, "Keep the row id column so run.json can say which rows each rank saw.")

    def __post_init__(self):
        _resolve_devices(self)
        _resolve_precision_and_checkpointing(self)
        super().__post_init__()
        if self.packing:
            raise ValueError("packing is not supported for image rows")
        if self.max_length is not None and self.max_length < 16:
            raise ValueError("max_length below 16 tokens cannot hold a prompt and an answer")


@dataclass
class GRPORunConfig(RunDefaults, GRPOConfig):
    """TRL's GRPOConfig plus the choice of polyground rewards and difficulty weighting."""

    reward_funcs: list[str] = option_factory(lambda: list(DEFAULT_REWARDS),
        f"Reward functions by name, from {', '.join(REWARDS)} (default {', '.join(DEFAULT_REWARDS)}); weights in "
        "reward_weights (default: each reward's weight in training.rewards.REWARDS).")
    max_prompt_length: int | None = option(None,
        "Prompt tokens (visual ones included) a row may take; longer rows are refused or dropped (on_overflow), never "
        "truncated.")
    difficulty_weighting: bool = option(False,
        "Repeat rl-pool tasks by difficulty: a task with pass rate p appears round(1 + difficulty_alpha * (1 - p)) "
        "times per epoch.")
    difficulty_alpha: float = option(1.0, "Strength of difficulty weighting (0 = off).")

    def __post_init__(self):
        _resolve_devices(self)
        _resolve_precision_and_checkpointing(self)
        if isinstance(self.reward_funcs, str):
            self.reward_funcs = [r.strip() for r in self.reward_funcs.split(",") if r.strip()]
        unknown = [r for r in self.reward_funcs if r not in REWARDS]
        if unknown or not self.reward_funcs:
            raise ValueError(f"reward_funcs {unknown or '[]'}: choose from {', '.join(REWARDS)}")
        if self.reward_weights is None:
            self.reward_weights = [REWARDS[name].weight for name in self.reward_funcs]
        if len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} values "
                             f"for {len(self.reward_funcs)} reward_funcs")
        if self.difficulty_alpha < 0:
            raise ValueError("difficulty_alpha must be >= 0")
        super().__post_init__()


def field_names(*types) -> set[str]:
    return {f.name for t in types for f in dataclasses.fields(t)}


def parse_config(types: tuple, values: dict, argv: list[str], source: str = "config") -> tuple:
    """Build the dataclasses from YAML `values` overridden by `argv` flags.

    Unknown YAML keys, unknown flags and failed checks are each one UserError line.
    """
    from transformers import HfArgumentParser

    known = field_names(*types)
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        raise UserError(f"{source}: unknown option(s) {', '.join(unknown)} (see --help-config)")
    parser = HfArgumentParser(types)
    parser.set_defaults(**values)
    parser.error = _raise_user_error  # one line, not argparse's usage screen
    try:
        parsed = parser.parse_args_into_dataclasses(args=list(argv), return_remaining_strings=True)
    except (ValueError, TypeError) as e:
        raise UserError(f"invalid training config: {str(e).strip().splitlines()[0]}") from None
    *objs, remaining = parsed
    if remaining:
        raise UserError(f"unknown option(s) {' '.join(remaining)} (see --help-config)")
    return tuple(objs)


def _raise_user_error(message: str):
    raise UserError(message)


def config_help(types: tuple) -> str:
    from transformers import HfArgumentParser

    return HfArgumentParser(types).format_help()


def model_load_kwargs(model_args: ModelArguments) -> dict:
    """Keyword arguments for builders.inference.models.load_model_and_processor from the model arguments."""
    from trl import get_quantization_config

    kwargs = {"dtype": model_args.dtype, "min_pixels": model_args.image_min_pixels,
              "max_pixels": model_args.image_max_pixels}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if model_args.model_revision not in (None, "main"):
        kwargs["revision"] = model_args.model_revision
    quantization = get_quantization_config(model_args)  # QLoRA: load_in_4bit / load_in_8bit
    if quantization is not None:  # k-bit weights are placed on this process's own GPU
        from accelerate import PartialState

        kwargs.update(quantization_config=quantization, device_map={"": PartialState().local_process_index})
    return kwargs


def lora_config(model_args: ModelArguments):
    """PEFT LoraConfig from the model arguments; None for full-parameter training."""
    if not model_args.use_peft:
        return None
    from peft import LoraConfig

    extra = {}
    if model_args.lora_target_parameters is not None:
        extra["target_parameters"] = model_args.lora_target_parameters
    return LoraConfig(
        task_type=model_args.lora_task_type, r=model_args.lora_r, lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout, target_modules=model_args.lora_target_modules, bias="none",
        use_rslora=model_args.use_rslora, use_dora=model_args.use_dora,
        modules_to_save=model_args.lora_modules_to_save,
        # A broad target ("all-linear", gate_proj...) would also match vision blocks.
        exclude_modules=VISION_MODULES_RE if model_args.freeze_vision_tower else None, **extra)


def as_record(*objs) -> dict:
    """JSON-able view of the parsed configs, for run.json."""
    import json

    out = {}
    for obj in objs:
        d = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
        out.update(json.loads(json.dumps(d, default=str)))
    return {k: v for k, v in out.items() if "token" not in k.lower() or k in ("pad_token", "eos_token")}
