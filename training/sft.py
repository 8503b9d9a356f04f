"""Supervised fine-tuning from a frozen version: one `main` that delegates to TRL's SFTTrainer.

Rows are prompt/completion (training.data), so the loss covers the answer
only. LoRA (PEFT) on the language model by default, vision tower frozen;
`use_peft: false` (`--full`) trains every unfrozen parameter, which is what a
from-scratch tiny model needs (../shared/docs/learnability.md).

Output folder: the adapter (or the full model), the processor, and run.json
(training.lineage), written last.
"""
from __future__ import annotations

from training.configs import (
    DataArguments, ModelArguments, SFTRunConfig, apply_cpu_threads, as_record, lora_config, model_load_kwargs,
)

CONFIG_TYPES = (DataArguments, SFTRunConfig, ModelArguments)


def main(data_args: DataArguments, training_args: SFTRunConfig, model_args: ModelArguments,
         callbacks: list | None = None) -> dict | None:
    """Train; returns the run record on rank 0 (None on other ranks).

    `callbacks` (transformers TrainerCallback objects) go to the trainer: bench/step_bench.py times
    the steps of this very path with them."""
    from trl import SFTTrainer

    from training.data import load_sft_dataset, open_store, open_version
    from training.lineage import RowRecorder, check_output_dir, finish_run, model_record
    from builders.inference.models import load_model_and_processor, trained_profile
    from training.models import freeze_vision_tower
    from training.progress import callbacks_for

    check_output_dir(training_args.output_dir)
    apply_cpu_threads(training_args)
    store = open_store(data_args.store)
    version = open_version(store, data_args.data)  # before the model loads: bad data fails fast
    model, processor = load_model_and_processor(model_args.model_name_or_path, **model_load_kwargs(model_args))
    dataset, info, profile = load_sft_dataset(
        store, version, processor, model.config.model_type, profile_name=data_args.profile,
        max_length=training_args.max_length, on_overflow=data_args.on_overflow, max_rows=data_args.max_rows,
        model_profile=trained_profile(model_args.model_name_or_path), cot_box=data_args.cot_box)
    if model_args.freeze_vision_tower:
        freeze_vision_tower(model)  # with LoRA the base is frozen anyway; this matters for full SFT

    trainer = SFTTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=processor,
                         peft_config=lora_config(model_args),
                         callbacks=callbacks_for("SFT", training_args, callbacks))
    recorder = RowRecorder.attach(trainer)
    train_output = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    return finish_run(trainer, processor, recorder, train_output, {
        "method": "sft", "data_info": info, "profile": profile,
        "model": model_record(trainer.model, processor, model_args.model_name_or_path, model_args),
        "configs": as_record(data_args, training_args, model_args),
    })
