"""The tiny local model and the loader: offline build, reload, processor choice, clear refusals."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from PIL import Image

from schemas.errors import UserError
from builders.inference.models import load_model_and_processor, processor_kind, torchvision_available
from training.models import QWEN_SPECIAL_TOKENS, build_tiny_model, freeze_vision_tower, vision_tower


@pytest.fixture(scope="module")
def loaded(tiny_model):
    return load_model_and_processor(tiny_model)


def test_tiny_model_is_tiny_and_reloads(loaded):
    model, processor = loaded
    params = sum(p.numel() for p in model.parameters())
    assert 150_000 < params < 260_000
    assert model.config.model_type == "qwen2_5_vl"
    expected = "Qwen2_5_VLProcessor" if torchvision_available() else "ImageOnlyQwen2_5_VLProcessor"
    assert processor_kind(processor) == expected


def test_tokenizer_has_qwen_special_tokens_and_template(loaded):
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    _, processor = loaded
    tok = processor.tokenizer
    vocab = tok.get_vocab()
    assert all(t in vocab for t in QWEN_SPECIAL_TOKENS)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert processor.chat_template == qwen2_5_vl_chat_template
    # Digits and the answer tags survive a round trip through the byte-level BPE.
    text = "<think>x</think><answer>image 2: (0,500),(500,1000)</answer>"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_a_56px_image_costs_four_visual_tokens(loaded):
    from training.data import visual_tokens

    _, processor = loaded
    assert visual_tokens(processor, 56, 56) == 4
    assert visual_tokens(processor, 112, 112) == 16  # the max_pixels cap (28*28*16)


def test_visual_tokens_follow_new_pixel_bounds(tiny_model):
    from training.data import visual_tokens
    from builders.inference.models import set_pixel_bounds

    _, processor = load_model_and_processor(tiny_model)
    assert visual_tokens(processor, 112, 112) == 16
    set_pixel_bounds(processor, 616 * 616, 401408)  # images now resized up to 616 px: 22 x 22 tokens
    assert visual_tokens(processor, 112, 112) == 484


def test_saved_files_name_the_stock_processor(tiny_model):
    config = json.loads((tiny_model / "processor_config.json").read_text())
    assert config["processor_class"] == "Qwen2_5_VLProcessor"
    assert json.loads((tiny_model / "tokenizer_config.json").read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    video = json.loads((tiny_model / "video_preprocessor_config.json").read_text())
    assert video["video_processor_type"] == "Qwen2VLVideoProcessor"


def test_same_seed_same_model(tmp_path, tiny_model):
    again = build_tiny_model(tmp_path / "again", size="test", seed=0)
    other = build_tiny_model(tmp_path / "other", size="test", seed=1)

    def digest(d):
        return hashlib.sha256((d / "model.safetensors").read_bytes() + (d / "tokenizer.json").read_bytes()).hexdigest()

    assert digest(again) == digest(tiny_model)
    assert digest(other) != digest(tiny_model)


def test_generates_from_two_images(loaded):
    from training.data import build_prompt_messages
    from schemas.profiles import get_profile

    model, processor = loaded
    messages = build_prompt_messages("Locate the red object.", 2, get_profile("short"))
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (56, 56), (220, 40, 40)), Image.new("RGB", (56, 56), (40, 160, 60))]
    inputs = processor(text=[text], images=images, return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 4]]
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5


def test_freeze_vision_tower_freezes_only_the_vision_encoder(tiny_model):
    model, _ = load_model_and_processor(tiny_model)
    frozen = freeze_vision_tower(model)
    visual = {id(p) for p in vision_tower(model).parameters()}
    assert frozen == sum(p.numel() for p in vision_tower(model).parameters()) > 0
    assert all(not p.requires_grad for p in model.parameters() if id(p) in visual)
    assert all(p.requires_grad for p in model.parameters() if id(p) not in visual)


def test_folder_without_processor_is_one_clear_line(tmp_path, tiny_model):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(tiny_model / f, bare / f)
    with pytest.raises(UserError, match=r"model folder without a processor \(no tokenizer files\)") as e:
        load_model_and_processor(bare)
    assert "\n" not in str(e.value)


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not a model folder"):
        load_model_and_processor(tmp_path)


def test_a_missing_folder_or_a_file_is_named_not_looked_up_on_the_hub(tmp_path):
    with pytest.raises(UserError, match="missing: no such model folder"):
        load_model_and_processor(str(tmp_path / "missing"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="weights.bin: a file, not a model folder"):
        load_model_and_processor(str(tmp_path / "weights.bin"))


def test_model_tiny_command(tmp_path, capsys):
    from polyground.cli import main

    assert main(["model", "tiny", "--output", str(tmp_path / "m"), "--size", "test"]) == 0
    out = capsys.readouterr()
    assert out.out.strip().splitlines()[-1] == str(tmp_path / "m")
    assert "parameters" in out.err
    assert (tmp_path / "m" / "model.safetensors").is_file()
