"""--config files: values checked by their flag's type, required options from the file,
a bounded loader (no aliases, UTF-8, 1 MiB), and argparse errors as one line."""
from __future__ import annotations

import time

import pytest

from polyground.cli import main

TASKS = ["build", "tasks", "--source", "synthetic", "--name", "t"]
COT = ["build", "cot", "--tasks", "t", "--name", "c", "--teacher-model", "m"]


@pytest.fixture
def cli(tmp_path, capsys):
    """run(config_text_or_bytes, *argv) -> (code, stdout, stderr); None: no --config."""

    def run(config, *argv):
        extra = []
        if config is not None:
            path = tmp_path / "c.yaml"
            path.write_bytes(config if isinstance(config, bytes) else config.encode())
            extra = ["--config", str(path)]
        code = main(["--store", str(tmp_path / "s"), *argv, *extra])
        out, err = capsys.readouterr()
        return code, out, err

    return run


# (config, command, what the one error line must say)
BAD = [
    ('no_contamination: "false"', TASKS, "no_contamination must be true or false, got 'false' (a string)"),
    ('quiet: "no"', TASKS, "quiet must be true or false, got 'no' (a string)"),
    ("quiet: 1", TASKS, "quiet must be true or false, got 1 (an integer)"),
    ("seed: {a: 1}", TASKS, "seed must be an integer, got {'a': 1} (a mapping)"),
    ("seed: true", TASKS, "seed must be an integer, got True (true/false)"),
    ("n: [1, 2]", TASKS, "n must be an integer, got [1, 2] (a list)"),
    ("n: 2.5", TASKS, "n must be an integer, got 2.5 (a number)"),
    ('n: "many"', TASKS, "n must be an integer, got 'many' (a string)"),
    ("min_iou: [0.5]", COT, "min_iou must be a number, got [0.5] (a list)"),
    ("teacher_url: 12", COT, "teacher_url must be a string, got 12 (an integer); quote it"),
    ("mode: teach", COT, "mode must be one of teacher, annotations, got 'teach' (a string)"),
    ("teacher_url: http://127.0.0.1:99999/v1", COT, "--teacher-url 'http://127.0.0.1:99999/v1' has a bad port"),
    ("teacher_url: http://127.0.0.1:abc/v1", COT, "--teacher-url 'http://127.0.0.1:abc/v1' has a bad port"),
    ("teacher_url: 127.0.0.1:8000/v1", COT, "is not an http(s) URL"),
    (b"name: \xff\xfe\n", TASKS, "is not UTF-8 text (byte 0xff at offset 6)"),
    ("- a\n- b\n", TASKS, "must be a mapping of option: value"),
    ("1: x", TASKS, "option names must be strings, got 1 (an integer)"),
    ("bogus: 1", TASKS, "unknown option(s) bogus"),
    ("n: &a 3\nseed: *a", TASKS, "YAML anchors and aliases (&name, *name) are not allowed (line 1)"),
    ("n: !!python/object:os.system x", TASKS, "is not valid YAML"),
    ("refs: {a: 1}", ["data", "merge", "--name", "m"], "refs must be a string, got {'a': 1} (a mapping)"),
]


@pytest.mark.parametrize("config,argv,message", BAD, ids=[str(b[0])[:30] for b in BAD])
def test_a_bad_config_value_is_one_line_naming_the_key(cli, config, argv, message):
    code, out, err = cli(config, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    assert message in err, err


def test_required_options_and_arguments_may_come_from_the_config(cli):
    code, out, err = cli("source: synthetic\nname: x\nn: 3\nquiet: true\n", "build", "tasks")
    assert code == 0, err
    ref = out.strip().splitlines()[-1]
    assert ref.startswith("x@")
    code, out, err = cli(f"ref: {ref}\n", "data", "show")
    assert code == 0 and out.startswith(ref), err
    code, out, err = cli(f"refs: [{ref}]\nname: y\n", "data", "merge")
    assert code == 0 and out.strip().startswith("y@"), err


def test_strings_are_converted_as_the_flag_would_be_and_flags_win(cli):
    code, out, err = cli('n: "3"\nseed: "4"\nsource: synthetic\nname: x\n', "build", "tasks", "--n", "2", "--quiet")
    assert code == 0, err
    code, out, _ = cli(None, "data", "show", "x", "--json")
    assert '"n": 2' in out and '"seed": 4' in out


def test_a_false_switch_in_the_config_is_off(cli):
    code, _, err = cli("no_contamination: false\nquiet: false\n", *TASKS, "--n", "2")
    assert code == 0 and "kept 2 rows" in err


def test_billion_laughs_is_refused_at_once(cli):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f'{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},'
              f'*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]' for i in range(8)]
    lines.append("family: *i")  # a known key: 9**9 strings once expanded
    t0 = time.monotonic()
    code, _, err = cli("\n".join(lines) + "\n", *TASKS)
    assert code == 2 and "anchors and aliases" in err and time.monotonic() - t0 < 5


def test_a_config_over_one_mebibyte_is_refused(cli):
    code, _, err = cli("family: " + "x" * (1 << 20) + "\n", *TASKS)
    assert code == 2 and "larger than 1 MiB" in err


@pytest.mark.parametrize("argv,message", [
    (TASKS[:4], "polyground build tasks: the following arguments are required: --name"),
    (TASKS + ["--n", "abc"], "argument --n: invalid int value: 'abc'"),
    (["build"], "polyground build: choose a command: tasks, bench, cot, rl-pool"),
    (["data", "show"], "the following arguments are required: ref"),
    (["nosuch"], "argument COMMAND: invalid choice: 'nosuch'"),
    (["build", "cot", "--tasks", "t", "--name", "c", "--mode", "x"], "argument --mode: invalid choice: 'x'"),
])
def test_argparse_errors_are_one_line(cli, argv, message):
    code, out, err = cli(None, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and "usage:" not in err, err
    assert err.startswith("error: ") and message in err, err
