"""`polyground model tiny --output DIR [--size test|demo] [--seed N]`: the embedded local model.

A random tiny Qwen2.5-VL with a locally trained tokenizer (Qwen's special
tokens and chat template), saved with `save_pretrained`: the default model of
the demo ("demo", ~3.3M parameters) and the tests ("test", ~0.2M). Nothing is
downloaded. The folder's path is the last line of standard output.
"""
from __future__ import annotations

import sys
from pathlib import Path

from polyground.cli import add_config_option


def add_parsers(sub) -> None:
    p = sub.add_parser("tiny", help="build the tiny random Qwen2.5-VL (offline)",
                       description="build the tiny random Qwen2.5-VL (offline)")
    p.add_argument("--output", type=Path, required=True, help="folder to save the model and processor in")
    p.add_argument("--size", choices=("test", "demo"), default="demo",
                   help="demo: ~3.3M parameters, learns the synthetic task on CPU; test: ~0.2M, for tests")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from builders.inference.models import load_model_and_processor
    from training.models import build_tiny_model

    out = build_tiny_model(args.output, size=args.size, seed=args.seed)
    model, processor = load_model_and_processor(out)  # proves the folder reloads
    params = sum(p.numel() for p in model.parameters())
    print(f"tiny model ({args.size}): {params:,} parameters, vocabulary {len(processor.tokenizer)}", file=sys.stderr)
    print(out)
    return 0
