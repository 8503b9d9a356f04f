"""`--config FILE.yaml`: read the file safely and check its values by the flags' own types.

One loader for every command: a value is checked against the argparse action
of the option it names, as the flag's text would be. A switch
(`--quiet`) takes `true`/`false` only (`"no"` would be a non-empty string,
i.e. on); `--n` an integer; `--min-iou` a number; `--teacher-url` a string;
`--mode` one of its choices; a list option (`refs`, `--metric`) a list. A
string is converted as on the command line (`n: "4"`, `min_iou: 1e-3`, which
YAML reads as a string). A value given here satisfies a required option or
argument. Every problem is one line naming the key and the expected type.

The file is bounded: at most 1 MiB of UTF-8, and YAML anchors/aliases are
refused, so a "billion laughs" document cannot expand before it is checked.
Trainers (`train sft|grpo`) take the mapping as is and check it against their
config dataclasses (training/configs.py).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from schemas.errors import UserError

MAX_BYTES = 1 << 20
# Destinations that are not option values (help, the sub-command word, --config itself).
NOT_OPTIONS = {"help", "config", "help_config"}


class _Refused(yaml.YAMLError):
    pass


class NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases: a config has no use for them, and an
    alias tree ("billion laughs") expands to gigabytes from a few hundred bytes."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            mark = event.start_mark
            raise _Refused(f"YAML anchors and aliases (&name, *name) are not allowed (line {mark.line + 1})")
        return super().compose_node(parent, index)


def load_config(path) -> dict:
    """The option mapping of a config file; a one-line UserError for anything else."""
    try:
        data = Path(path).read_bytes() if Path(path).stat().st_size <= MAX_BYTES else None
    except OSError as e:
        raise UserError(f"cannot read config {path}: {e.strerror}") from None
    if data is None:
        raise UserError(f"config {path} is larger than {MAX_BYTES // (1 << 20)} MiB; a config is a short mapping")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"config {path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    try:
        values = yaml.load(text, Loader=NoAliasLoader)
    except _Refused as e:
        raise UserError(f"config {path}: {e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise UserError(f"config {path} nests too deep to be a config") from None
    values = values or {}
    if not isinstance(values, dict):
        raise UserError(f"config {path} must be a mapping of option: value")
    bad = [k for k in values if not isinstance(k, str)]
    if bad:
        raise UserError(f"config {path}: option names must be strings, got {_shown(bad[0])}")
    return values


def _shown(value) -> str:
    """A value and its YAML type, short, for an error message."""
    kind = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{text[:40] + '...' if len(text) > 40 else text} ({kind})"


def _expected(action) -> str:
    if action.choices is not None:
        return "one of " + ", ".join(map(str, action.choices))
    return {int: "an integer", float: "a number", Path: "a path (a string)"}.get(action.type, "a string")


def _element(action, key: str, value, where: str):
    """One value converted like the flag's text would be, or a UserError."""
    kind = action.type
    if isinstance(value, str) and callable(kind):
        try:
            value = kind(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            raise UserError(f"{where}: {key} must be {_expected(action)}, got {_shown(value)}") from None
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok:
            raise UserError(f"{where}: {key} must be an integer, got {_shown(value)}")
    elif kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UserError(f"{where}: {key} must be a number, got {_shown(value)}")
        value = float(value)
    elif not isinstance(value, str):
        raise UserError(f"{where}: {key} must be {_expected(action)}, got {_shown(value)}"
                        + ("; quote it" if isinstance(value, (int, float)) and action.choices is None else ""))
    if action.choices is not None and value not in action.choices:
        raise UserError(f"{where}: {key} must be {_expected(action)}, got {_shown(value)}")
    return value


def check_value(action, key: str, value, where: str):
    """`value` for `action`'s destination, checked and converted."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UserError(f"{where}: {key} must be true or false, got {_shown(value)}")
        return value
    if action.nargs == 0:  # other constant-storing actions: nothing a file could give
        raise UserError(f"{where}: {key} cannot be set in a config file")
    if action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        if action.nargs == "+" and not items:
            raise UserError(f"{where}: {key} must be a non-empty list")
        return [_element(action, key, v, where) for v in items]
    return _element(action, key, value, where)


def apply_values(leaf: argparse.ArgumentParser, values: dict, where: str) -> None:
    """Check `values` against the leaf parser's actions and make them its defaults;
    an option or argument given here is no longer required on the command line."""
    actions = {a.dest: a for a in leaf._actions
               if a.dest not in NOT_OPTIONS and a.dest is not argparse.SUPPRESS
               and not isinstance(a, argparse._SubParsersAction)}
    unknown = sorted(k for k in values if k.replace("-", "_") not in actions)
    if unknown:
        raise UserError(f"{where}: unknown option(s) {', '.join(unknown)}")
    defaults = {}
    for key, value in values.items():
        if value is None:  # `key:` with nothing: as if absent
            continue
        action = actions[key.replace("-", "_")]
        defaults[action.dest] = check_value(action, key, value, where)
        action.required = False
        if not action.option_strings:  # a positional: optional now, the file's value its default
            action.nargs = "*" if action.nargs in ("+", "*") else "?"
            action.default = defaults[action.dest]
    leaf.set_defaults(**defaults)
