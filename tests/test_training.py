"""Training from frozen versions: data adapters, pre-flight, rewards, SFT, merge, GRPO, lineage.

Tiny "test" model, CPU, a handful of steps each; every run goes through the
real store (versions built with builders.sources.ingest) and the real CLI entry point.
"""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from schemas.errors import UserError
from schemas.profiles import get_profile
from training import data as tdata
from builders.inference.models import load_model_and_processor
from training.rewards import format_reward, image_reward, iou_reward, make_reward_funcs
from training_util import cot_version, read_run, rl_pool_version, tasks_version

SHORT = get_profile("short")
STEPS = ["--max_steps", "3", "--per_device_train_batch_size", "2", "--learning_rate", "1e-2", "--max_length", "512"]


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    from builders.store import Store

    store = Store(tmp_path_factory.mktemp("train") / "store")
    tasks = tasks_version(store, n=8, seed=0)
    return {"store": store, "tasks": tasks, "cot": cot_version(store, tasks),
            "rl": rl_pool_version(store, tasks, pass_rates=[0.0, 1.0]),
            "bench": tasks_version(store, name="bench", n=4, seed=99, kind="bench")}


@pytest.fixture(scope="module")
def processor(tiny_model):
    return load_model_and_processor(tiny_model)[1]


@pytest.fixture
def cli():
    """The real CLI entry point, in process, on a given store (the global --store form)."""
    from polyground.cli import main

    def run(store, *argv):
        return main(["--store", str(store.root), *argv])

    return run


# ---- rewards: literal completion -> expected reward --------------------------------------
ROW = dict(target_image=1, equivalent_images=[], target_box=[0.0, 0.0, 0.5, 0.5], image_sizes=[[56, 56], [56, 56]])
CASES = [  # completion, format, image, iou
    ("<think>ok</think><answer>image 2: (0,0),(500,500)</answer>", 1.0, 1.0, 1.0),
    ("<think></think><answer>image 2: (0,0),(500,1000)</answer>", 1.0, 1.0, 0.5),
    ("<think></think><answer>image 1: (0,0),(500,500)</answer>", 1.0, 0.0, 0.0),  # right box, wrong image
    ("<answer>image 2: (0,0),(500,500)</answer>", 0.0, 0.0, 0.0),  # no think block
    ("image 2: (0,0),(500,500)", 0.0, 0.0, 0.0),
    ("<think></think><answer>image 2: (0,0),(500,500)", 0.0, 0.0, 0.0),  # truncated
    ("", 0.0, 0.0, 0.0),
]


@pytest.mark.parametrize("text,fmt,img,iou", CASES)
def test_rewards_exact(text, fmt, img, iou):
    cols = {k: [v] for k, v in ROW.items()}
    completions = [[{"role": "assistant", "content": text}]]
    assert format_reward(completions, profile=SHORT, **cols) == [fmt]
    assert image_reward(completions, profile=SHORT, **cols) == [img]
    assert iou_reward(completions, profile=SHORT, **cols) == [pytest.approx(iou)]


def test_rewards_equivalent_image_and_unverifiable_rows():
    text = [[{"role": "assistant", "content": "<think></think><answer>image 1: (0,0),(500,500)</answer>"}]] * 2
    cols = {"target_image": [1, 1], "equivalent_images": [[0], []], "target_box": [[0, 0, 0.5, 0.5], None],
            "image_sizes": [[[56, 56], [56, 56]]] * 2}
    assert image_reward(text, profile=SHORT, **cols) == [1.0, None]
    assert iou_reward(text, profile=SHORT, **cols) == [1.0, None]
    assert format_reward(text, profile=SHORT, **cols) == [1.0, 1.0]  # the format is always checkable


def test_reward_funcs_keep_their_names_for_trl_logs():
    from trl.trainer.utils import get_callable_name

    funcs = make_reward_funcs(["format", "image", "iou"], SHORT)
    assert [get_callable_name(f) for f in funcs] == ["format_reward", "image_reward", "iou_reward"]


# ---- data adapters ------------------------------------------------------------------------
def test_sft_rows_are_prompt_completion_with_store_images(versions, processor):
    ds, info, profile = tdata.load_sft_dataset(versions["store"], versions["cot"].ref, processor, "qwen2_5_vl",
                                               max_length=512)
    row = ds[0]
    cot_row = versions["cot"].table().to_pylist()[0]
    assert profile.name == "short"  # the cot rows' own profile wins over the model family's
    content = row["prompt"][0]["content"]
    assert [c["type"] for c in content] == ["image", "image", "text"]
    assert content[2]["text"] == cot_row["question"] + SHORT.prompt_suffix(2)
    assert row["completion"] == [{"role": "assistant", "content": [{"type": "text", "text": cot_row["completion"]}]}]
    assert [im.size for im in row["images"]] == [(84, 56), (56, 84)]  # training_util.padded: (width, height)
    manifest = (versions["cot"].path / "manifest.json").read_bytes()
    assert info.manifest_sha256 == hashlib.sha256(manifest).hexdigest()
    assert (info.rows_in, info.rows_kept, info.dropped) == (8, 8, {})


def test_tasks_version_sft_renders_the_target(versions, processor):
    ds, _, _ = tdata.load_sft_dataset(versions["store"], versions["tasks"].ref, processor, "qwen2_5_vl",
                                      profile_name="short", max_length=512)
    task = versions["tasks"].table().to_pylist()[0]
    expected = f"<think></think><answer>image {task['target_image'] + 1}: "
    assert ds[0]["completion"][0]["content"][0]["text"].startswith(expected)


def test_explicit_profile_must_match_the_cot_rows(versions, processor):
    with pytest.raises(UserError, match="written in profile 'short'"):
        tdata.load_sft_dataset(versions["store"], versions["cot"].ref, processor, "qwen2_5_vl", profile_name="norm1000")


def test_preflight_counts_exactly_what_the_collator_builds(versions, processor):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    ds, info, _ = tdata.load_sft_dataset(versions["store"], versions["cot"].ref, processor, "qwen2_5_vl",
                                         max_length=512)
    batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)([dict(r) for r in ds])
    assert int(batch["attention_mask"].sum(1).max()) == info.max_tokens
    assert info.max_visual_tokens == 12  # 84x56 and 56x84: 3x2 and 2x3 merged tokens


def test_preflight_refuses_or_drops_rows_that_would_be_cut(versions, processor):
    store, ref = versions["store"], versions["cot"].ref
    with pytest.raises(UserError, match=r"8 of 8 rows would be cut at 60 tokens .*--on_overflow drop"):
        tdata.load_sft_dataset(store, ref, processor, "qwen2_5_vl", max_length=60)

    def long_answer(r):  # one row with a long reasoning: only it exceeds the limit
        if r["id"].endswith("-3#0"):  # the target is rendered from the reasoning (training.data.cot_target)
            r["reasoning"] = "x " * 300 + r["reasoning"]
            r["completion"] = r["completion"].replace("<think>", "<think>" + "x " * 300)
        return r

    cot = cot_version(store, versions["tasks"], name="cot-long", edit=long_answer)
    ds, info, _ = tdata.load_sft_dataset(store, cot.ref, processor, "qwen2_5_vl", max_length=512, on_overflow="drop")
    assert info.dropped == {"too_long": 1} and info.dropped_examples["too_long"] == ["syn-locate_red-0-3#0"]
    assert len(ds) == 7 and "syn-locate_red-0-3#0" not in ds["id"]


def test_image_markers_in_question_and_choice_rows_are_dropped_by_name(versions, processor):
    store = versions["store"]

    def damage(r):
        if r["id"].endswith("-0#0"):
            r["question"] = "<image>\n" + r["question"]
        return r

    cot = cot_version(store, versions["tasks"], name="cot-marker", edit=damage)
    _, info, _ = tdata.load_sft_dataset(store, cot.ref, processor, "qwen2_5_vl", max_length=512)
    assert info.dropped == {"placeholder_in_text": 1}
    record, why = tdata.grpo_record({**versions["tasks"].table().to_pylist()[1], "target_box": None,
                                     "choices": ["a", "b"], "answer": "A"}, store, SHORT)
    assert (record, why) == (None, "no_box_target")


def test_placeholders_are_counted_against_images(processor):
    rows = [{"id": f"r{n}", "prompt": tdata.build_prompt_messages("Locate the red object.", n, SHORT),
             "completion": tdata.completion_messages("<think></think><answer>image 1: (0,0),(500,500)</answer>"),
             "images": ["a", "b"]} for n in (2, 1)]  # r1 renders one image slot for two images
    sizes = [[[56, 56], [56, 56]]] * 2
    info = tdata.DataInfo("x@1", "x", "1", "cot", "", "short", "2")
    kept = tdata.preflight(rows, processor, sizes, 512, 0, "drop", info)
    assert [r["id"] for r in kept] == ["r2"] and info.dropped == {"placeholder_mismatch": 1}
    with pytest.raises(UserError, match=r"1 of 2 rows render 1 image slots for 2 images \(first: r1\)"):
        tdata.preflight(rows, processor, sizes, 512, 0, "refuse", info)


def test_grpo_rows_carry_targets_and_difficulty_repeats_hard_tasks(versions, processor):
    ds, info, _ = tdata.load_grpo_dataset(versions["store"], versions["rl"].ref, processor, "qwen2_5_vl",
                                          profile_name="short", max_length=4096, completion_budget=16,
                                          difficulty_alpha=1.0)
    task = versions["tasks"].table().to_pylist()[0]
    assert ds[0]["target_box"] == pytest.approx(task["target_box"])
    assert ds[0]["image_sizes"] == [[84, 56], [56, 84]]
    # pass rates alternate 0.0 / 1.0: the four hard tasks appear twice.
    assert (len(ds), info.repeated_by_difficulty) == (12, 4)
    with pytest.raises(UserError, match="difficulty weighting needs an rl-pool"):
        tdata.load_grpo_dataset(versions["store"], versions["tasks"].ref, processor, "qwen2_5_vl",
                                profile_name="short", difficulty_alpha=1.0)


# ---- bad input: one clear line each ------------------------------------------------------
def test_missing_version_is_refused(versions, processor):
    with pytest.raises(UserError, match="no dataset named 'nope'"):
        tdata.load_sft_dataset(versions["store"], "nope@123", processor, "qwen2_5_vl")


def test_changed_version_is_refused(versions, processor, tmp_path):
    import shutil

    from builders.store import Store

    copy = Store(tmp_path / "store")
    shutil.copytree(versions["store"].root, copy.root)
    data_file = copy.resolve(versions["cot"].ref).path / "data.arrow"
    data_file.write_bytes(data_file.read_bytes()[:-8] + b"tampered")
    with pytest.raises(UserError, match=r"failed verification: data.arrow: content changed") as e:
        tdata.load_sft_dataset(copy, versions["cot"].ref, processor, "qwen2_5_vl")
    assert "\n" not in str(e.value)


def test_bench_split_is_refused_by_the_cli(versions, tiny_model, tmp_path, capsys, cli):
    code = cli(versions["store"], "train", "sft", "--data", versions["bench"].ref, "--model", str(tiny_model),
               "--output", str(tmp_path / "o"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 0  # refused before the model loads
    assert "is a benchmark split; it is never used for training" in err


def test_unknown_yaml_key_is_refused(versions, tiny_model, tmp_path, capsys, cli):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: 1.0e-3\nlearnig_rate: 2\n")
    code = cli(versions["store"], "train", "sft", "--config", str(recipe), "--data", versions["cot"].ref,
               "--model", str(tiny_model), "--output", str(tmp_path / "o"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"error: config {recipe}: unknown option(s) learnig_rate (see --help-config)"
    code = cli(versions["store"], "train", "sft", "--data", "x", "--model", "m", "--output", "o", "--bogus", "1")
    assert code == 2 and "unknown option(s) --bogus 1" in capsys.readouterr().err


# ---- training runs -------------------------------------------------------------------------
def _lora_weights(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_one_batch_loss_covers_only_answer_tokens(versions, tiny_model, processor):
    from trl import SFTTrainer

    from training.configs import SFTRunConfig

    ds, _, _ = tdata.load_sft_dataset(versions["store"], versions["cot"].ref, processor, "qwen2_5_vl", max_length=512)
    model, _ = load_model_and_processor(tiny_model)
    trainer = SFTTrainer(model=model, args=SFTRunConfig(output_dir="unused", max_length=512), train_dataset=ds,
                         processing_class=processor)
    batch = trainer.data_collator([dict(ds[i]) for i in range(2)])
    for labels, row in zip(batch["labels"], [ds[0], ds[1]]):
        answer = processor.tokenizer.decode(labels[labels != -100])
        assert answer == row["completion"][0]["content"][0]["text"] + "<|im_end|>\n"


@pytest.fixture(scope="module")
def sft_run(versions, tiny_model, tmp_path_factory):
    """A LoRA SFT run through the CLI: (output folder, stdout)."""
    import contextlib
    import io

    from polyground.cli import main

    out = tmp_path_factory.mktemp("sft") / "lora"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["train", "sft", "--data", versions["cot"].ref, "--model", str(tiny_model), "--output", str(out),
                     "--store", str(versions["store"].root), *STEPS])
    assert code == 0
    return out, stdout.getvalue()


def test_sft_lora_changes_the_adapter_and_writes_lineage(sft_run, versions, tiny_model):
    from safetensors.torch import load_file

    from schemas.scoring import SCORING_VERSION

    out, stdout = sft_run
    assert stdout.strip().splitlines()[-1] == str(out)
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [t for n, t in weights.items() if "lora_B" in n]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # B starts at exactly zero
    assert not any("visual" in n for n in weights)  # the vision tower got no adapter
    run = read_run(out)
    cot = versions["cot"]
    assert run["method"] == "sft"
    assert (run["data"]["ref"], run["data"]["version"], run["data"]["kind"]) == (cot.ref, cot.id, "cot")
    assert run["data"]["manifest_sha256"] == hashlib.sha256((cot.path / "manifest.json").read_bytes()).hexdigest()
    assert run["profile"] == {"name": "short", "version": SHORT.version} and run["scoring_version"] == SCORING_VERSION
    assert run["model"]["name_or_path"] == str(tiny_model.resolve()) and run["model"]["use_peft"] is True
    assert run["model"]["processor_class"].endswith("Qwen2_5_VLProcessor")
    assert run["config"]["max_steps"] == 3 and run["config"]["learning_rate"] == 0.01
    assert run["metrics"]["global_step"] == 3 and isinstance(run["metrics"]["final_loss"], float)
    assert run["rows_seen"]["counts"] == [6]  # 3 steps x batch 2, prefetched batches left out
    assert set(run["rows_seen"]["per_rank"][0]) <= set(cot.table()["id"].to_pylist())
    assert run["code_version"].startswith("0.1.0+") and run["libraries"]["trl"]
    assert (out / "processor_config.json").is_file()


def test_help_config_lists_every_field(capsys):
    from polyground.cli import main

    assert main(["train", "grpo", "--help-config"]) == 0
    out = capsys.readouterr().out
    for flag in ("--difficulty_weighting", "--reward_funcs", "--use_vllm", "--freeze_vision_tower", "--on_overflow"):
        assert flag in out


def test_output_with_a_finished_run_is_refused(sft_run, versions, tiny_model, cli, capsys):
    out, _ = sft_run
    code = cli(versions["store"], "train", "sft", "--data", versions["cot"].ref, "--model", str(tiny_model),
               "--output", str(out))
    assert code == 2 and "already holds a finished run" in capsys.readouterr().err


@pytest.fixture(scope="module")
def merged(sft_run, tmp_path_factory):
    from polyground.cli import main

    out = tmp_path_factory.mktemp("merged") / "model"
    assert main(["merge", "--adapter", str(sft_run[0]), "--output", str(out)]) == 0
    return out


def test_merged_model_reloads_and_generates_from_two_images(merged, sft_run, versions):
    from PIL import Image

    model, processor = load_model_and_processor(merged)
    adapted, _ = load_model_and_processor(sft_run[0], merge_adapter=False)  # base + unmerged adapter
    messages = tdata.build_prompt_messages("Locate the red object.", 2, SHORT)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (56, 56), (220, 40, 40)), Image.new("RGB", (56, 56), (232, 232, 232))]
    inputs = processor(text=[text], images=images, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, adapted(**inputs).logits, atol=1e-4, rtol=1e-4)
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 6
    run = read_run(merged)
    assert run["method"] == "merge" and run["data"]["ref"] == versions["cot"].ref
    assert run["adapter_run"]["method"] == "sft"


def test_merge_refuses_a_folder_that_is_not_an_adapter(tiny_model, tmp_path, capsys):
    from polyground.cli import main

    assert main(["merge", "--adapter", str(tiny_model), "--output", str(tmp_path / "m")]) == 2
    assert "not a LoRA adapter folder" in capsys.readouterr().err


def test_grpo_runs_with_the_shared_rewards_and_logs_each_component(merged, versions, tmp_path, cli):
    out = tmp_path / "grpo"
    code = cli(versions["store"], "train", "grpo", "--data", versions["rl"].ref, "--model", str(merged),
               "--output", str(out), "--max_steps", "2", "--num_generations", "4", "--per_device_train_batch_size", "4",
               "--max_completion_length", "8", "--difficulty_weighting", "--reward_weights", "0.2", "0.3", "1.0")
    assert code == 0
    run = read_run(out)
    logged = [e for e in run["log_history"] if "reward" in e]
    assert len(logged) == 2
    for name in ("format_reward", "image_reward", "iou_reward"):
        assert all(f"rewards/{name}/mean" in e and f"rewards/{name}/std" in e for e in logged)
    assert run["rewards"] == {"format": 0.2, "image": 0.3, "iou": 1.0}
    assert run["data"]["repeated_by_difficulty"] == 4 and run["data"]["profile"] == "short"
    assert run["model"]["parent_run"]["method"] == "merge"  # lineage through the merge
    assert (out / "adapter_model.safetensors").is_file()


def _weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@pytest.mark.parametrize("freeze", [True, False])
def test_full_sft_trains_every_unfrozen_parameter(versions, tiny_model, tmp_path, cli, freeze):
    out = tmp_path / "full"
    code = cli(versions["store"], "train", "sft", "--data", versions["cot"].ref, "--model", str(tiny_model),
               "--output", str(out), "--full", "--freeze_vision_tower", str(freeze).lower(), *STEPS)
    assert code == 0
    before, after = _weights(tiny_model), _weights(out)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert any("visual" not in n for n in changed)  # the language model trained
    assert any("visual" in n for n in changed) is (not freeze)
    assert read_run(out)["model"]["use_peft"] is False
