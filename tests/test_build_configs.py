"""Build configs made like the training ones: each command's flags are its config's fields, their
defaults are written once (in the dataclass), and an unknown option or a bad value is one line."""
from __future__ import annotations

import dataclasses

import pytest

from builders.cot import CotConfig
from builders.negatives import NegativesConfig
from builders.options import from_options
from builders.rlpool import RLPoolConfig
from builders.tasks import TasksConfig
from polyground.cli import _leaf_parser, build_parser, config_from_args, main
from schemas.errors import UserError
from sources_util import FIXTURES
from training.evaluation.config import EvalConfig

# (command words, its config, the flags a shared helper declares for some of its fields)
COMMANDS = [
    (["build", "rl-pool"], RLPoolConfig, set()),
    (["build", "cot"], CotConfig, {"concurrency", "timeout", "teacher_api_key_env",
                                   "image_min_pixels", "image_max_pixels"}),
    (["build", "tasks"], TasksConfig, set()),
    (["build", "bench"], TasksConfig, set()),
    (["build", "negatives"], NegativesConfig, set()),
    (["eval"], EvalConfig, set()),
]
IDS = [" ".join(c[0]) for c in COMMANDS]


def actions(words):
    """dest -> argparse action of the command's own parser (the real CLI's)."""
    leaf = _leaf_parser(build_parser(), words)
    return {a.dest: a for a in leaf._actions}


def other(cls, f):
    """A different valid default for field `f` (None for a switch: it is off by default, always)."""
    from builders.options import flag_type

    kind = flag_type(cls, f.name)
    if f.metadata.get("choices"):
        return next(c for c in f.metadata["choices"] if c != f.default)
    if kind is bool:
        return None
    if f.default is None:
        return {int: 7, float: 0.5, str: "x"}[kind]
    return f.default + 3 if kind is int else f.default + 0.25 if kind is float else f"{f.default}x"


@pytest.mark.parametrize("words,cls,shared", COMMANDS, ids=IDS)
def test_the_flags_are_the_config_fields_with_their_help_and_defaults(words, cls, shared):
    got = actions(words)
    for f in dataclasses.fields(cls):
        a = got.get(f.name)
        assert a is not None and a.option_strings == ["--" + f.name.replace("_", "-")], f.name
        assert a.default == f.default, f.name
        if f.name not in shared:
            assert a.help.startswith(f.metadata["help"]), f.name
            assert a.choices == f.metadata.get("choices"), f.name


@pytest.mark.parametrize("words,cls,shared", COMMANDS, ids=IDS)
def test_defaults_are_written_once_in_the_dataclass(words, cls, shared, monkeypatch):
    """Change a field's default and the flag's follows: the CLI holds no default of its own."""
    changed = {}
    for f in dataclasses.fields(cls):
        if f.name not in shared and other(cls, f) is not None:
            monkeypatch.setattr(f, "default", other(cls, f))
            changed[f.name] = f.default
    got = actions(words)
    assert {name: got[name].default for name in changed} == changed
    switches = [f for f in dataclasses.fields(cls) if other(cls, f) is None]
    assert changed or switches
    # A shared flag's default must be the field's, and a switch is off: else no parser is built.
    for f, value in [*[(f, other(cls, f)) for f in dataclasses.fields(cls) if f.name in shared][:1],
                     *[(f, True) for f in switches][:1]]:
        with monkeypatch.context() as m:
            m.setattr(f, "default", value)
            with pytest.raises(TypeError, match=f"{cls.__name__}.{f.name}: "):
                build_parser()


@pytest.mark.parametrize("words,cls,shared", COMMANDS, ids=IDS)
def test_an_unknown_option_is_one_line(words, cls, shared, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("bogus: 1\n")
    code = main(["--store", str(tmp_path / "s"), *words, "--config", str(cfg)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err == f"error: config {cfg}: unknown option(s) bogus\n"
    with pytest.raises(UserError, match=rf"^{words[-1]}: unknown option\(s\) bogus, kk$"):
        from_options(cls, {"kk": 4, "bogus": 1}, words[-1])


# (config, values, what the one-line error says): the checks live in __post_init__
BAD = [
    (RLPoolConfig, {"min_iou": 2.0}, "min_iou"),
    (CotConfig, {"mode": "annotations", "samples": 0}, "--samples, --keep-per-task"),
    (CotConfig, {"mode": "teacher"}, "--mode teacher needs --teacher-url and --teacher-model"),
    (TasksConfig, {"max_images_per_row": 0}, "--max-images-per-row must be a positive integer, got 0"),
    (EvalConfig, {"limit": 0}, "--max-tokens, --batch-size and --limit must be >= 1"),
    (EvalConfig, {"temperature": -1.0}, "--temperature must be >= 0, got -1.0"),
]


@pytest.mark.parametrize("cls,values,message", BAD, ids=[f"{b[0].__name__}-{next(iter(b[1]))}" for b in BAD])
def test_a_bad_value_is_one_line_from_post_init(cls, values, message):
    with pytest.raises(UserError) as e:
        cls(**values)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_config_from_args_reads_one_value_per_field():
    import argparse

    from polyground.cli import add_config_flags

    p = argparse.ArgumentParser()
    add_config_flags(p, RLPoolConfig)
    assert config_from_args(RLPoolConfig, p.parse_args([])) == RLPoolConfig()
    with pytest.raises(AttributeError):  # a parser without the config's flags is a programming error
        config_from_args(EvalConfig, p.parse_args([]))


@pytest.mark.parametrize("argv,message", [
    (["--source", "mig-bench", "--path", str(FIXTURES / "mig-bench"), "--n", "3"],
     "--source mig-bench takes no option n (its options: none)"),
    (["--source", "synthetic", "--subsets", "Counting"],
     "--source synthetic takes no option subsets (its options: n, seed, family, image_size, grid)"),
    (["--source", "blink", "--path", str(FIXTURES / "blink"), "--family", "mixed"],
     "--source blink takes no option family (its options: subsets, split)"),
])
def test_a_reader_option_its_source_does_not_take_is_one_line(argv, message, tmp_path, capsys):
    code = main(["--store", str(tmp_path / "s"), "build", "tasks", *argv, "--name", "t", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err == f"error: {message}\n"


def test_readers_name_their_options():
    """No reader swallows options (`**_ignored`): each names what it takes."""
    import inspect

    from builders.sources import READERS, load_reader

    for source in READERS:
        kinds = {p.kind for p in inspect.signature(load_reader(source)).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, source
