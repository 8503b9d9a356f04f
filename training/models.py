"""The tiny local Qwen2.5-VL (tests, benches, the demo) and the vision-tower freeze.

Loading a model folder with its processor is `builders.inference.models` (local
generation needs it too, and builders sit below training).
"""
from __future__ import annotations

from pathlib import Path

from builders.inference.models import image_only_processor_class
from schemas.errors import UserError

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
# Small images stay cheap: 56x56 px -> a 4x4 patch grid (patch 14) -> 2x2 = 4 merged tokens.
TINY_MIN_PIXELS, TINY_MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 16
TINY_SIZES = {
    # ~190K parameters (stack.md): tests and benches.
    "test": dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, mrope=[2, 3, 3], theta=10000.0,
                 v_depth=2, v_hidden=32, v_heads=2, v_ffn=64),
    # ~3.3M parameters (learnability.md): the demo, which must learn in minutes on CPU.
    # M-RoPE gives time, height and width the high, middle and low rotary frequencies, and an
    # image's tokens share one time index. With Qwen's [8, 12, 12] and theta 1e4, one cell step
    # turns height by at most 0.1 rad and width by at most 0.003: the cell stayed at chance on
    # seeds 0 and 2. [2, 15, 15] at theta 100 turns height by 0.75 rad but width by only 0.087:
    # with a loose teacher's boxes seeds 1 and 2 found the row, not the column, in 900 steps.
    # [0, 2, 30] gives height 1.0 and width 0.75 rad, and SFT learned both by step ~350 on
    # seeds 0, 1 and 2 ([2, 4, 26], width 0.42: seeds 1 and 2, not 0; docs/learning.md,
    # 2026-12-02). No time pairs are lost: within an image the time id is constant, and the
    # offset between images is in the height and width ids too. Text positions are unaffected:
    # a text token's three ids are equal, so only image tokens see the split.
    "demo": dict(hidden=256, layers=4, heads=4, kv_heads=2, ffn=512, mrope=[0, 2, 30], theta=100.0,
                 v_depth=2, v_hidden=128, v_heads=4, v_ffn=256),
}


def vision_tower(model):
    """The vision encoder module (Qwen: `visual`), wherever the wrapper keeps it."""
    for holder in (model, getattr(model, "model", None)):
        for name in ("visual", "vision_tower", "vision_model"):
            module = getattr(holder, name, None) if holder is not None else None
            if module is not None:
                return module
    return None


def freeze_vision_tower(model) -> int:
    """Stop gradients into the vision encoder (and its merger); returns the frozen parameter count."""
    tower = vision_tower(model)
    if tower is None:
        return 0
    frozen = 0
    for p in tower.parameters():
        p.requires_grad_(False)
        frozen += p.numel()
    return frozen


def tiny_corpus(extra: list[str] | None = None) -> list[str]:
    """Text the tiny tokenizer is trained on: digits, the answer formats, the synthetic questions."""
    numbers = " ".join(str(n) for n in range(0, 1001, 50)) + " 0123456789 " + " ".join(str(n) for n in range(100))
    answers = [
        "<think>The red object is in the second image, top left.</think><answer>image 2: (0,0),(500,500)</answer>",
        "<answer>image 1: (500,500),(1000,1000)</answer>",
        "<answer>It's in the first image. <|box_start|>(0,500),(500,1000)<|box_end|></answer>",
        '<answer>{"image": 2, "bbox_2d": [0, 28, 28, 56], "label": "red object"}</answer>',
        '<answer>{"image": 1, "bbox_2d": [0, 500, 500, 1000]}</answer>',
        "Answer as <think>...</think><answer>image K: (x1,y1),(x2,y2)</answer> with 0-1000 coordinates.",
    ]
    colours, shapes = ["red", "green", "blue", "yellow"], ["object", "circle", "square", "triangle"]
    questions = [f"Locate the {c} {s}." for c in colours for s in shapes]
    questions += ["Which image shows it? Find it in the image.", "first second third fourth fifth image"]
    # The demo family's annotation-built reasoning, read from its template, so that its words are
    # single tokens: a shorter completion and one token per decision.
    from builders.annotations import TEMPLATE_ID, parse_sections
    from builders.templates import load_template
    from schemas.profiles import ordinal

    red = parse_sections(load_template(TEMPLATE_ID).text)["locate_red"]
    places = ["top left", "top right", "bottom left", "bottom right", "top", "bottom", "left", "right", "centre"]
    questions += [red.format(pos=p, kth=ordinal(n - 1), k=n) for p in places for n in (1, 2)]
    chat = ["system user assistant", "You are a helpful assistant.", "Picture 1: Picture 2:"]
    return [numbers, *answers, *questions, *chat, *(extra or [])]


def _train_tokenizer(corpus: list[str], vocab_size: int, chat_template: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=QWEN_SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # Repetition weights the merges toward the task's own strings.
    tok.train_from_iterator(corpus * 8, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   extra_special_tokens=QWEN_SPECIAL_TOKENS[1:], chat_template=chat_template)


def _tiny_config(tokenizer, size: str):
    from transformers import Qwen2_5_VLConfig

    s = TINY_SIZES[size]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text = dict(vocab_size=len(tokenizer), hidden_size=s["hidden"], intermediate_size=s["ffn"],
                num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                max_position_embeddings=4096, bos_token_id=None, eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"],
                # M-RoPE sections (time, height, width) must sum to head_dim / 2.
                rope_parameters={"rope_type": "default", "rope_theta": s["theta"], "mrope_section": s["mrope"]})
    vision = dict(depth=s["v_depth"], hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"],
                  num_heads=s["v_heads"], out_hidden_size=s["hidden"], patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, window_size=56, fullatt_block_indexes=[s["v_depth"] - 1])
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                            video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                            vision_end_token_id=ids["<|vision_end|>"])


def build_tiny_model(out_dir: str | Path, size: str = "test", corpus: list[str] | None = None, seed: int = 0) -> Path:
    """Save a random tiny Qwen2.5-VL with a locally trained tokenizer into `out_dir`.

    Nothing is downloaded: the tokenizer is a byte-level BPE trained on
    `tiny_corpus(corpus)`, with Qwen's special tokens and chat template (so
    TRL recognises the template). The same size, corpus and seed give the same
    weights and vocabulary.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    if size not in TINY_SIZES:
        raise UserError(f"tiny model size {size!r}: choose one of {', '.join(TINY_SIZES)}")
    out = Path(out_dir)
    tokenizer = _train_tokenizer(tiny_corpus(corpus), vocab_size=512, chat_template=qwen2_5_vl_chat_template)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    processor = image_only_processor_class("qwen2_5_vl")(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=qwen2_5_vl_chat_template)
    config = _tiny_config(tokenizer, size)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=config.text_config.eos_token_id,
                                               pad_token_id=config.text_config.pad_token_id)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
