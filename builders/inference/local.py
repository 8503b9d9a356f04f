"""Local generation with a transformers image-text-to-text model: batched, seeded, CPU or CUDA.

The local backend of builders.inference.backends (rl-pool, eval) runs it.

    gen = load_generator("runs/merged", device=None)       # cuda when available, else cpu
    gen.generate(texts, images, k=8, sampling={"temperature": 1.0, "max_tokens": 256}, seed=0)
      -> list[list[str]]: k completions per prompt, special tokens skipped

Each prompt is ONE user turn: one image slot per image (in order), then the
text, rendered with the processor's chat template and a generation prompt;
`images[i]` are the prompt's image files (store paths) or PIL images.
Prompts are left-padded so that every sequence's new tokens start at the same
column. Sampling is fully set by `sampling` (temperature, top_p, top_k,
max_tokens), not by the model's generation_config.json: Qwen2.5-VL ships
top_k=1 / top_p=0.001 there, which would turn "sampling" into greedy
decoding. Temperature 0 is greedy (one sequence, repeated k times).
Randomness comes from `torch.manual_seed(seed)` inside a forked RNG state, so
the same batch and seed give the same completions and the caller's RNG is
untouched.
"""
from __future__ import annotations

from pathlib import Path

from schemas.errors import UserError


def pick_device(device: str | None = None) -> str:
    """`device` as given, else cuda when available, else cpu."""
    import torch

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {device}: CUDA is not available on this machine")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _open_images(images) -> list:
    from PIL import Image

    out = []
    for im in images:
        if isinstance(im, (str, Path)):
            with Image.open(im) as f:
                out.append(f.convert("RGB"))
        else:
            out.append(im.convert("RGB"))
    return out


class LocalGenerator:
    """A loaded model + processor on one device."""

    def __init__(self, model, processor, device: str):
        self.model, self.processor, self.device = model.to(device).eval(), processor, device
        tok = getattr(processor, "tokenizer", processor)
        tok.padding_side = "left"  # new tokens must start at the same column for every row
        self.tokenizer = tok
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token

    def _inputs(self, texts: list[str], images: list[list]):
        from builders.inference.student import IMAGE_SLOT, user_message

        messages = [user_message(t, [dict(IMAGE_SLOT) for _ in ims]) for t, ims in zip(texts, images)]
        rendered = [self.processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
        flat = _open_images([im for ims in images for im in ims])
        inputs = self.processor(text=rendered, images=flat or None, return_tensors="pt", padding=True)
        return inputs.to(self.device)

    def _config(self, k: int, sampling: dict):
        from transformers import GenerationConfig

        temperature = float(sampling.get("temperature", 1.0))
        base = self.model.generation_config
        eos = base.eos_token_id if base.eos_token_id is not None else self.tokenizer.eos_token_id
        common = dict(max_new_tokens=int(sampling.get("max_tokens", 256)), eos_token_id=eos,
                      pad_token_id=self.tokenizer.pad_token_id, bos_token_id=base.bos_token_id)
        if temperature <= 0:
            return GenerationConfig(do_sample=False, num_return_sequences=1, **common), 1
        return GenerationConfig(do_sample=True, temperature=temperature, top_p=float(sampling.get("top_p", 1.0)),
                                top_k=int(sampling.get("top_k", 0)), num_return_sequences=k, **common), k

    def generate(self, texts: list[str], images: list[list], k: int, sampling: dict, seed: int) -> list[list[str]]:
        """k completions for each (text, images) prompt; one `model.generate` call for the batch."""
        import torch

        if not texts:
            return []
        inputs = self._inputs(texts, images)
        config, per_prompt = self._config(k, sampling)
        devices = [torch.device(self.device)] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(**inputs, generation_config=config)
        new = out[:, inputs["input_ids"].shape[1]:]
        decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        grouped = [decoded[i * per_prompt : (i + 1) * per_prompt] for i in range(len(texts))]
        return [g * k if per_prompt == 1 else g for g in grouped]


def load_generator(path: str | Path, device: str | None = None, dtype: str | None = None,
                   min_pixels: int | None = None, max_pixels: int | None = None) -> LocalGenerator:
    """Load `path` (a model folder, a Hub id or a LoRA adapter, merged) for generation.

    dtype: float32 on CPU; bfloat16 on CUDA where supported, else float16. min/max_pixels
    override the processor's resize bounds (the stage's pixel budget; None keeps the folder's)."""
    import torch

    from builders.inference.models import load_model_and_processor

    device = pick_device(device)
    if dtype is None and device.startswith("cuda"):
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    model, processor = load_model_and_processor(path, dtype=dtype, min_pixels=min_pixels, max_pixels=max_pixels)
    return LocalGenerator(model, processor, device)
