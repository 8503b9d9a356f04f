"""The `polyground` console script: a thin argparse dispatcher.

Each command group lives in a `cmd_*.py` module exposing `add_parsers(sub)`;
handlers import heavy libraries (torch, transformers) lazily so that
`polyground data ls` stays fast. Errors are one line on stderr and a non-zero
exit: a `UserError` (argparse's own errors included) is printed as is, anything
else as an internal error (set POLYGROUND_DEBUG=1 for the traceback). Every
error line and traceback is scrubbed of the secrets the run holds
(builders/secrets.py) and has its control characters escaped.

`--config FILE.yaml` (polyground/config.py) gives option values by their
flag's name; they are checked by the flag's own type, and may stand in for
required options. Flags given on the command line win.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from schemas.errors import UserError, printable


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: a UserError naming the command, no usage block.
    Sub-command parsers are made of the same class (add_subparsers' default)."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def terminal_safe(text) -> str:
    """`text` as printed to a terminal: control characters escaped, newlines kept."""
    return printable(text)


SUMMARY = ("polyground: build versioned multi-image grounding datasets (tasks, CoT, RL pools), train on them "
           "with TRL (SFT, GRPO) and evaluate models on benchmark splits. Start with `polyground demo`.")

# (group, module): a module with group None adds top-level commands; otherwise
# it adds sub-commands under the group (`polyground build cot`, ...).
GROUPS = {"build": "build a new dataset version", "train": "train from a frozen version",
          "data": "inspect, check, compare, name, export versions", "model": "local model helpers"}
COMMAND_MODULES = [
    (None, "polyground.cmd_demo"),
    ("build", "polyground.cmd_build_tasks"),
    ("build", "polyground.cmd_build_cot"),
    ("build", "polyground.cmd_build_rlpool"),
    ("build", "polyground.cmd_build_negatives"),
    ("train", "polyground.cmd_train"),
    (None, "polyground.cmd_merge"),
    (None, "polyground.cmd_eval"),
    ("data", "polyground.cmd_data"),
    ("data", "polyground.cmd_preview"),
    (None, "polyground.cmd_publish"),
    ("model", "polyground.cmd_model"),
]


def store_root(args) -> Path:
    """--store, else $POLYGROUND_STORE, else ./polyground-store."""
    return Path(args.store or os.environ.get("POLYGROUND_STORE") or "polyground-store")


def open_store(args):
    from builders.store import Store

    return Store(store_root(args))


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = Parser(prog="polyground", description=SUMMARY)
    parser.add_argument("--store", help="store folder (default: $POLYGROUND_STORE or ./polyground-store)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups = {}
    for group, name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # a command module not written yet
                continue
            raise
        if group is None:
            module.add_parsers(sub)
            continue
        if group not in groups:
            gp = sub.add_parser(group, help=GROUPS[group])
            groups[group] = gp.add_subparsers(dest=f"{group}_command", metavar="COMMAND")
        module.add_parsers(groups[group])
    return parser


def add_config_option(p: argparse.ArgumentParser, passthrough: bool = False) -> None:
    """Every command takes --config FILE.yaml. With passthrough, unknown flags
    land in `args.extra` and the YAML in `args._config_values` (trainers check
    them against their config dataclasses)."""
    p.add_argument("--config", help="YAML file of option values; flags given on the command line win")
    p._polyground_passthrough = passthrough


def add_pixel_budget_options(p: argparse.ArgumentParser, default: str) -> None:
    """--image-min-pixels / --image-max-pixels: the same names and meaning as training's
    image_min_pixels / image_max_pixels (schemas.boxes.PixelBudget)."""
    p.add_argument("--image-min-pixels", type=int,
                   help=f"smallest area, in pixels, an image is resized to before the model sees it (default: {default})")
    p.add_argument("--image-max-pixels", type=int,
                   help="largest such area; images are sent resized to this budget's smart_resize frame, and a "
                        f"qwen2_5_vl answer is read in that frame (default: {default})")


def add_endpoint_options(p: argparse.ArgumentParser, api_key_flag: str = "--api-key-env") -> None:
    """--concurrency, --timeout and the API-key variable of every command that talks to an
    OpenAI-compatible endpoint (builders.inference.backends.ENDPOINT_DEFAULTS). A config dataclass
    that holds them (builders.cot.CotConfig) gets its flags from here: add_config_flags
    leaves a field whose flag is declared already, once its default is the same."""
    from builders.inference.backends import ENDPOINT_DEFAULTS as d

    p.add_argument("--concurrency", type=int, default=d["concurrency"],
                   help=f"endpoint: requests in flight (default {d['concurrency']})")
    p.add_argument("--timeout", type=float, default=d["timeout"],
                   help=f"endpoint: seconds per request, in total (default {d['timeout']:g})")
    p.add_argument(api_key_flag, default=d["api_key_env"],
                   help=f"endpoint: variable holding the API key (default {d['api_key_env']})")


def add_config_flags(p: argparse.ArgumentParser, cls) -> None:
    """One --flag per field of a build config dataclass (builders.options), named after the
    field: its type, help, default and choices, each written once, in the dataclass. A bool
    field is a switch (off by default). A field whose flag a shared helper declared already
    (add_endpoint_options, add_pixel_budget_options) keeps that flag, which must have the
    field's default: the default is still written once."""
    import dataclasses

    from builders.options import flag_type

    for f in dataclasses.fields(cls):
        flag, kind = "--" + f.name.replace("_", "-"), flag_type(cls, f.name)
        declared = p._option_string_actions.get(flag)
        if declared is not None:
            if declared.dest != f.name or declared.default != f.default:
                raise TypeError(f"{cls.__name__}.{f.name}: {flag} is declared already with another "
                                f"destination or default ({declared.dest}={declared.default!r})")
            continue
        if kind is bool:
            if f.default is not False:
                raise TypeError(f"{cls.__name__}.{f.name}: a switch is off by default; name the field for its on state")
            p.add_argument(flag, action="store_true", help=f.metadata["help"])
            continue
        shown = "" if f.default is None else f" (default {f.default})"
        p.add_argument(flag, type=kind, default=f.default, choices=f.metadata.get("choices"),
                       help=f"{f.metadata['help']}{shown}")


def config_from_args(cls, args):
    """The build config of `cls` from parsed arguments: one value per field, its flag's.

    No option can be unknown here (the parser knows only the fields' flags, and a
    --config key is checked against the parser: polyground/config.py); what is left
    to check is the values, in the config's __post_init__."""
    import dataclasses

    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _leaf_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """Follow the sub-command words in argv down to the parser that handles them."""
    current = parser
    words = iter(argv)
    for word in words:
        if word.startswith("-"):
            action = current._option_string_actions.get(word)
            if action is not None and action.nargs is None and action.const is None:
                next(words, None)  # the option's value (e.g. `--store DIR`) is not a command word
            continue
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        current = subs[0].choices[word]
    return current


def _apply_config(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Load --config YAML into the leaf parser's defaults (polyground/config.py checks it)."""
    if "--config" not in argv and not any(a.startswith("--config=") for a in argv):
        return
    from polyground.config import apply_values, load_config

    path = None
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif a.startswith("--config="):
            path = a.split("=", 1)[1]
    if path is None:
        raise UserError("--config needs a file")
    values = load_config(path)
    leaf = _leaf_parser(parser, argv)
    if getattr(leaf, "_polyground_passthrough", False):
        leaf.set_defaults(_config_values=values)  # trainers validate against their dataclasses
        return
    apply_values(leaf, values, f"config {path}")


def run(argv: list[str]) -> int:
    parser = build_parser()
    _apply_config(parser, argv)
    leaf = _leaf_parser(parser, argv)
    if getattr(leaf, "_polyground_passthrough", False):
        args, extra = parser.parse_known_args(argv)
        args.extra = extra
    else:
        args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        if leaf is parser:  # bare `polyground`: the overview
            parser.print_help(sys.stderr)
            return 2
        subs = [a for a in leaf._actions if isinstance(a, argparse._SubParsersAction)]
        leaf.error(f"choose a command: {', '.join(subs[0].choices)}" if subs else "nothing to do")
    return args.func(args) or 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        code = run(argv)
    except UserError as e:
        print(_shown(f"error: {e}"), file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written is visible in the store; rerun to resume", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as e:  # a traceback shown to a user is a bug: one line, and a way to see more
        if os.environ.get("POLYGROUND_DEBUG"):
            import traceback

            print(_shown(traceback.format_exc().rstrip("\n")), file=sys.stderr)
        else:
            print(_shown(f"internal error: {type(e).__name__}: {e} (set POLYGROUND_DEBUG=1 for the traceback)"),
                  file=sys.stderr)
        code = 1
    return code


def _shown(text: str) -> str:
    """An error line (or traceback) as printed: without secrets, control characters escaped."""
    from builders.secrets import scrub

    return terminal_safe(scrub(text))


if __name__ == "__main__":
    sys.exit(main())
