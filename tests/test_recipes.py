"""Every shipped recipe loads and validates; the demo recipes run end to end for a few steps."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.configs import field_names, parse_config

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TRAINING = sorted(RECIPES.glob("*.yaml"))
ACCELERATE = sorted((RECIPES / "accelerate").glob("*.yaml"))


def config_types(path: Path):
    from training.grpo import CONFIG_TYPES as GRPO
    from training.sft import CONFIG_TYPES as SFT

    assert path.stem.endswith(("_sft", "_grpo")), f"{path.name}: name says model and method, e.g. demo_sft.yaml"
    return SFT if path.stem.endswith("_sft") else GRPO


def test_the_expected_recipes_ship():
    assert {p.name for p in TRAINING} >= {"demo_sft.yaml", "demo_grpo.yaml", "qwen2_5_vl_7b_sft.yaml",
                                          "qwen2_5_vl_7b_grpo.yaml"}
    assert {p.name for p in ACCELERATE} == {"single_gpu.yaml", "zero2.yaml", "zero3.yaml", "fsdp.yaml"}


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.name)
def test_training_recipe_validates(path, tmp_path):
    values = yaml.safe_load(path.read_text())
    types = config_types(path)
    assert not set(values) - field_names(*types)
    data_args, train_args, model_args = parse_config(types, values, ["--output_dir", str(tmp_path)], str(path))
    for key, value in values.items():  # every YAML value reached a dataclass (strings like "1.0e-3" as numbers)
        obj = next(o for o in (data_args, train_args, model_args) if key in field_names(type(o)))
        assert same(getattr(obj, key), value, key), key


def same(got, value, key) -> bool:
    if key == "report_to":  # TrainingArguments turns "none" into []
        return got == ([] if value == "none" else [value] if isinstance(value, str) else value)
    if hasattr(got, "value"):  # enums (lr_scheduler_type, save_strategy)
        got = got.value
    if isinstance(value, list):
        return list(got) == value
    if isinstance(value, (bool, str)) or value is None:
        return got == value
    return float(got) == pytest.approx(float(value))

def test_published_settings_of_the_7b_recipes(tmp_path):
    from training.grpo import CONFIG_TYPES

    values = yaml.safe_load((RECIPES / "qwen2_5_vl_7b_grpo.yaml").read_text())
    _, grpo, model = parse_config(CONFIG_TYPES, values, ["--output_dir", str(tmp_path)])
    assert grpo.num_generations == 8 and model.freeze_vision_tower and model.use_peft
    assert grpo.max_prompt_length == 1024 and grpo.generation_batch_size % grpo.num_generations == 0
    sft = yaml.safe_load((RECIPES / "qwen2_5_vl_7b_sft.yaml").read_text())
    assert sft["use_peft"] is True and sft["freeze_vision_tower"] is True
    demo = yaml.safe_load((RECIPES / "demo_sft.yaml").read_text())  # learnability.md's measured settings
    assert (demo["use_peft"], demo["per_device_train_batch_size"], float(demo["learning_rate"])) == (False, 16, 1e-3)


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_config_validates(path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    config = ClusterConfig.from_yaml_file(str(path))  # raises on unknown top-level keys
    launch_options = {a.dest for a in launch_command_parser()._actions}
    raw = yaml.safe_load(path.read_text())
    nested = {k for section in ("deepspeed_config", "fsdp_config") for k in (raw.get(section) or {})}
    assert nested <= launch_options, f"unknown keys {sorted(nested - launch_options)}"
    expected = {"single_gpu": "NO", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}[path.stem]
    assert config.distributed_type.value == expected
    if path.stem.startswith("zero"):
        assert raw["deepspeed_config"]["zero_stage"] == int(path.stem[-1])


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    from builders.store import Store
    from training_util import cot_version, rl_pool_version, tasks_version

    store = Store(tmp_path_factory.mktemp("recipes") / "store")
    tasks = tasks_version(store, n=4)
    return store, cot_version(store, tasks), rl_pool_version(store, tasks)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "grpo"])
def test_demo_recipe_runs_with_command_line_overrides(method, demo_store, tiny_model, tmp_path, monkeypatch):
    from polyground.cli import main
    from training_util import read_run

    store, cot, rl = demo_store
    monkeypatch.setenv("POLYGROUND_STORE", str(store.root))
    small = {"sft": ["--per_device_train_batch_size", "2", "--max_length", "512"],
             "grpo": ["--per_device_train_batch_size", "8", "--max_completion_length", "8"]}[method]
    data = cot.ref if method == "sft" else rl.ref
    code = main(["train", method, "--config", str(RECIPES / f"demo_{method}.yaml"), "--data", data,
                 "--model", str(tiny_model), "--output", str(tmp_path / "out"), "--max_steps", "2", *small])
    assert code == 0
    config = read_run(tmp_path / "out")["config"]
    assert config["max_steps"] == 2  # the command line beat the recipe's value
    recipe = yaml.safe_load((RECIPES / f"demo_{method}.yaml").read_text())
    assert config["learning_rate"] == pytest.approx(float(recipe["learning_rate"]))  # the rest came from the recipe
