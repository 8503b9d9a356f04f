"""`polyground merge --adapter DIR --output DIR`: fold a LoRA adapter into its base model.

The output is a full model with its processor, loadable by transformers and
servable by vLLM (which applies LoRA to the language model only), plus a
run.json that points back at the adapter's run.
"""
from __future__ import annotations

from pathlib import Path

from polyground.cli import add_config_option


def add_parsers(sub) -> None:
    p = sub.add_parser("merge", help="merge a LoRA adapter into its base model",
                       description="merge a LoRA adapter into its base model (merge_and_unload)")
    p.add_argument("--adapter", type=Path, required=True, help="adapter folder written by `train sft|grpo`")
    p.add_argument("--output", type=Path, required=True, help="folder for the merged model")
    p.add_argument("--dtype", default=None, help="save in this dtype (float32, bfloat16, float16); default: as loaded")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from training.merge import merge_adapter

    out = merge_adapter(args.adapter, args.output, dtype=args.dtype)
    print(out)
    return 0
