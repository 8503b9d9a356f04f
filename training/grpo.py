"""GRPO from a frozen version: one `main` that delegates to TRL's GRPOTrainer.

Rewards are the shared scoring (training.rewards): format, image (MIRG-RL's
image-level reward) and IoU on the target image (object-level), weighted by
`reward_weights` (default training.rewards.DEFAULT_REWARD_WEIGHTS). TRL logs
each one under `rewards/<name>_reward/mean|std`. LoRA by default (vision tower
frozen), full-parameter with `--full`. TRL's vLLM options (`use_vllm`,
`vllm_mode`, ...) pass straight through for GPU users.

Difficulty weighting (rl-pool only): hard tasks (low pass rate) are repeated
in the training set; see training.data.repeat_by_difficulty for why sampling
weight, not a reward scale.
"""
from __future__ import annotations

from schemas.errors import UserError
from training.configs import (
    DataArguments, GRPORunConfig, ModelArguments, apply_cpu_threads, as_record, lora_config, model_load_kwargs,
)

CONFIG_TYPES = (DataArguments, GRPORunConfig, ModelArguments)


def context_limit(model, training_args: GRPORunConfig) -> int | None:
    """The most tokens prompt + completion may take: the model's context (vLLM's when set),
    tightened by max_prompt_length + max_completion_length."""
    limit = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    if training_args.use_vllm and training_args.vllm_max_model_length:
        limit = training_args.vllm_max_model_length
    if training_args.max_prompt_length is not None:
        own = training_args.max_prompt_length + training_args.max_completion_length
        limit = own if limit is None else min(limit, own)
    return limit


def main(data_args: DataArguments, training_args: GRPORunConfig, model_args: ModelArguments,
         callbacks: list | None = None) -> dict | None:
    """Train; returns the run record on rank 0 (None on other ranks).

    `callbacks` (transformers TrainerCallback objects) go to the trainer: bench/step_bench.py times
    the steps of this very path with them."""
    from trl import GRPOTrainer

    from training.data import load_grpo_dataset, open_store, open_version
    from training.lineage import RowRecorder, check_output_dir, finish_run, model_record
    from builders.inference.models import load_model_and_processor, trained_profile
    from training.models import freeze_vision_tower
    from training.progress import callbacks_for
    from training.rewards import make_reward_funcs

    if data_args.cot_box != "annotation":  # GRPO scores against the annotation; it renders no answer
        raise UserError("cot_box applies to SFT on cot rows; GRPO rewards always read the annotation's target")
    check_output_dir(training_args.output_dir)
    apply_cpu_threads(training_args)
    store = open_store(data_args.store)
    version = open_version(store, data_args.data)  # before the model loads: bad data fails fast
    model, processor = load_model_and_processor(model_args.model_name_or_path, **model_load_kwargs(model_args))
    alpha = training_args.difficulty_alpha if training_args.difficulty_weighting else None
    dataset, info, profile = load_grpo_dataset(
        store, version, processor, model.config.model_type, profile_name=data_args.profile,
        max_length=context_limit(model, training_args), completion_budget=training_args.max_completion_length,
        on_overflow=data_args.on_overflow, max_rows=data_args.max_rows,
        model_profile=trained_profile(model_args.model_name_or_path), difficulty_alpha=alpha)
    if model_args.freeze_vision_tower:
        freeze_vision_tower(model)

    trainer = GRPOTrainer(model=model, reward_funcs=make_reward_funcs(training_args.reward_funcs, profile),
                          args=training_args, train_dataset=dataset, processing_class=processor,
                          peft_config=lora_config(model_args),
                          callbacks=callbacks_for("GRPO", training_args, callbacks))
    recorder = RowRecorder.attach(trainer)
    train_output = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    return finish_run(trainer, processor, recorder, train_output, {
        "method": "grpo", "data_info": info, "profile": profile,
        "model": model_record(trainer.model, processor, model_args.model_name_or_path, model_args),
        "configs": as_record(data_args, training_args, model_args),
        "extra": {"rewards": dict(zip(training_args.reward_funcs, training_args.reward_weights))},
    })
