"""run.json: what made a checkpoint, written LAST so that its presence means "finished".

A run record names the dataset (reference, version id, manifest hash, rows
kept and dropped by reason), the model it started from (and that model's own
run.json, when it was trained here), every config value, the code and library
versions, the answer profile and scoring version, the rows each rank trained
on, and the final metrics. Months later it says exactly which data, teacher,
prompt and reward made the checkpoint.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

from builders.inference.identity import model_digest  # the one model identity
from builders.inference.models import RUN_FILE
from builders.store import code_version  # the one code version of the project


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def library_versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def model_fingerprint(name_or_path: str) -> dict:
    """Identity of the starting model: for a folder, its model digest (builders.inference.identity, the digest a
    policy identity `local:<name>:sha256:<12 hex>` begins with), plus its own run.json's lineage when it
    was trained by polyground."""
    path = Path(name_or_path)
    if not path.is_dir():
        return {"name_or_path": name_or_path, "local": False}
    out = {"name_or_path": str(path.resolve()), "local": True, "fingerprint": model_digest(path)}
    parent = path / RUN_FILE
    if parent.is_file():
        run = json.loads(parent.read_text())
        out["parent_run"] = {k: run.get(k) for k in ("method", "data", "model", "created", "code_version")}
    return out


def model_record(model, processor, name_or_path: str, model_args) -> dict:
    from builders.inference.models import processor_kind

    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {**model_fingerprint(name_or_path), "model_type": model.config.model_type,
            "processor_class": processor_kind(processor), "parameters": params, "trainable_parameters": trainable,
            "use_peft": bool(model_args.use_peft), "freeze_vision_tower": bool(model_args.freeze_vision_tower)}


class RowRecorder:
    """Wraps a trainer's data collator and keeps the row ids of every batch it builds."""

    def __init__(self, collator):
        self.collator = collator
        self.batches: list[list[str]] = []

    def __call__(self, examples):
        self.batches.append([e.get("id") for e in examples])
        return self.collator(examples)

    @classmethod
    def attach(cls, trainer) -> "RowRecorder | None":
        if trainer.args.dataloader_num_workers:  # the collator then runs in worker processes
            return None
        trainer.data_collator = cls(trainer.data_collator)
        return trainer.data_collator

    def rows(self, max_batches: int | None = None) -> list[str]:
        """Ids in order; `max_batches` drops batches prefetched but never trained on."""
        batches = self.batches if max_batches is None else self.batches[:max_batches]
        return [i for b in batches for i in b]


def gather_rows(trainer, recorder: RowRecorder | None, max_batches: int | None) -> dict | None:
    """Per-rank row ids (collective: every rank must call it)."""
    if recorder is None:
        return None
    from accelerate.utils import gather_object

    per_rank = gather_object([recorder.rows(max_batches)])
    return {"per_rank": per_rank, "counts": [len(r) for r in per_rank]}


def run_record(method: str, data_info, model: dict, configs: dict, profile, train_output, log_history: list,
               rows_seen: dict | None, world_size: int, extra: dict | None = None) -> dict:
    from schemas.scoring import SCORING_VERSION

    return {
        "method": method,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": data_info.to_record(),
        "model": model,
        "profile": {"name": profile.name, "version": profile.version},
        "scoring_version": SCORING_VERSION,
        "code_version": code_version(),
        "git_commit": git_commit(),
        "libraries": library_versions(),
        "world_size": world_size,
        "config": configs,
        "metrics": {**train_output.metrics, "global_step": train_output.global_step,
                    "final_loss": _final(log_history, "loss")},
        "rows_seen": rows_seen,
        "log_history": log_history,
        **(extra or {}),
    }


def _final(log_history: list, key: str):
    values = [e[key] for e in log_history if key in e]
    return values[-1] if values else None


def write_run(output_dir: str | Path, record: dict) -> Path:
    """Atomic write (temp + rename): a run.json is always whole."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, out / RUN_FILE)
    return out / RUN_FILE


def check_output_dir(output_dir: str | None) -> None:
    """Refuse to train into a folder that already holds a finished run."""
    if not output_dir:
        from schemas.errors import UserError

        raise UserError("--output is required (the folder for the model and run.json)")
    if (Path(output_dir) / RUN_FILE).is_file():
        from schemas.errors import UserError

        raise UserError(f"{output_dir} already holds a finished run (run.json); choose another --output")


def finish_run(trainer, processor, recorder, train_output, record_args: dict) -> dict | None:
    """Save the model and processor, gather the rows each rank saw, write run.json on rank 0.

    Every rank must call it (saving and gathering are collective); returns the record on rank 0."""
    out = trainer.args.output_dir
    trainer.save_model(out)
    # SFT: one collated batch per micro-step; later batches were only prefetched.
    # GRPO batches are generation batches, all of which were used.
    micro_steps = train_output.global_step * trainer.args.gradient_accumulation_steps
    rows_seen = gather_rows(trainer, recorder, micro_steps if record_args["method"] == "sft" else None)
    record = None
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(out)
        record = run_record(train_output=train_output, log_history=trainer.state.log_history, rows_seen=rows_seen,
                            world_size=trainer.accelerator.num_processes, **record_args)
        write_run(out, record)
    # Tear the process group down on every rank before Python exits: left to the
    # interpreter's shutdown, gloo's threads can die mid-teardown and abort a rank
    # (SIGABRT, "terminate called without an active exception") after a good run.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return record
