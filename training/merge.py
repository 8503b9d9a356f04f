"""Merge a LoRA adapter into its base model: a plain model folder for transformers and vLLM.

vLLM applies LoRA to the language model only, and rejection sampling wants
the fastest plain model, so the SFT adapter is folded in (`merge_and_unload`)
before `build rl-pool`. The merged folder's run.json carries the adapter's
run (data, model, config) so lineage survives the merge.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from schemas.errors import UserError
from builders.store import code_version
from training.lineage import RUN_FILE, model_fingerprint, write_run


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, dtype: str | None = None) -> Path:
    """Load base + adapter, merge, save model + processor + run.json into `output_dir`."""
    from builders.inference.models import load_model_and_processor

    adapter, out = Path(adapter_dir), Path(output_dir)
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json); "
                        "a full-parameter run is already a plain model")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty; merge into a new folder")
    model, processor = load_model_and_processor(adapter, dtype=dtype, merge_adapter=True)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_run(out, merge_record(adapter, model))
    return out


def merge_record(adapter: Path, model) -> dict:
    parent = {}
    if (adapter / RUN_FILE).is_file():
        parent = json.loads((adapter / RUN_FILE).read_text())
        parent.pop("log_history", None)
        parent.pop("rows_seen", None)
    return {
        "method": "merge",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "data": parent.get("data"),
        "model": {"adapter": model_fingerprint(str(adapter)), "base": parent.get("model"),
                  "model_type": model.config.model_type,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "profile": parent.get("profile"),
        "adapter_run": parent or None,
    }
