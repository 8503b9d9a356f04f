"""`polyground train sft|grpo --data REF --model M --output DIR [--config YAML] [--FIELD VALUE ...]`.

Any field of the run's config dataclasses (training.configs: DataArguments,
the TRL trainer config, ModelArguments) can be set in the YAML recipe or on
the command line (`--max_steps 4`); the command line wins. `--help-config`
lists them all. The output folder's path is the last line of standard output.
"""
from __future__ import annotations

import sys

from polyground.cli import add_config_option
from schemas.errors import UserError

METHODS = {
    "sft": "supervised fine-tuning (LoRA by default, --full for every parameter) on a cot or tasks version",
    "grpo": "GRPO with the format / image / IoU rewards on a tasks or rl-pool version",
}


def add_parsers(sub) -> None:
    for method, what in METHODS.items():
        p = sub.add_parser(method, help=what, description=what, allow_abbrev=False,
                           epilog="Any trainer config field is also accepted as --FIELD VALUE (see --help-config).")
        p.add_argument("--data", help="dataset reference NAME[@VERSION|@TAG]")
        p.add_argument("--model", help="model folder, Hub id, or a LoRA adapter folder (merged on load)")
        p.add_argument("--output", help="output folder (adapter or model, processor, run.json)")
        p.add_argument("--full", action="store_true", help="full-parameter training instead of LoRA (use_peft false)")
        p.add_argument("--help-config", action="store_true", help="list every config field and exit")
        add_config_option(p, passthrough=True)
        p.set_defaults(func=lambda args, method=method: run(args, method))


def config_types(method: str) -> tuple:
    if method == "sft":
        from training.sft import CONFIG_TYPES
    else:
        from training.grpo import CONFIG_TYPES
    return CONFIG_TYPES


def collect_values(args) -> dict:
    """YAML values overridden by the named flags (the `--FIELD` extras override both, later)."""
    values = dict(getattr(args, "_config_values", None) or {})
    named = {"data": args.data, "model_name_or_path": args.model, "output_dir": args.output, "store": args.store}
    values.update({k: str(v) for k, v in named.items() if v is not None})
    if args.full:
        values["use_peft"] = False
    return values


def run(args, method: str) -> int:
    from training.configs import config_help, parse_config

    types = config_types(method)
    if args.help_config:
        print(config_help(types))
        return 0
    source = f"config {args.config}" if args.config else "command line"
    extra = getattr(args, "extra", None) or []  # absent when the dispatcher parsed strictly
    data_args, training_args, model_args = parse_config(types, collect_values(args), extra, source)
    if not data_args.data:
        raise UserError("--data is required (a dataset reference NAME[@VERSION|@TAG])")
    if not model_args.model_name_or_path:
        raise UserError("--model is required (a model folder or Hub id)")
    if method == "sft":
        from training.sft import main
    else:
        from training.grpo import main
    record = main(data_args, training_args, model_args)
    if record is not None:  # rank 0
        m = record["metrics"]
        print(f"{method}: {m['global_step']} steps in {m.get('train_runtime', 0):.1f}s, "
              f"final loss {m.get('final_loss')}; data {record['data']['ref']}", file=sys.stderr)
        print(training_args.output_dir)
    return 0
