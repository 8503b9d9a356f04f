"""Load image-text-to-text models with their processors.

`load_model_and_processor(name_or_path)` is the one loader every part of
polyground uses (training, merge, local generation, eval). It takes a local
folder, a Hub id (offline in tests) or a LoRA adapter folder (merged on load).

Qwen2.5-VL without torchvision (../shared/docs/stack.md): the stock processor
insists on a video processor whose class needs torchvision, and
`AutoProcessor` then silently returns only the tokenizer. Where torchvision is
absent we build `ImageOnlyQwen2_5_VLProcessor`, whose `__init__` takes no
video processor, around the PIL image processor. It saves under the stock
class name (plus a video processor config) so the folder still loads with the
stock processor and vLLM on a GPU machine. `processor_kind(processor)` says
which one was used; `run.json` records it.
"""
from __future__ import annotations

import json
from pathlib import Path

from schemas.errors import UserError

QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl")
RUN_FILE = "run.json"  # what made a polyground-trained model (training.lineage writes it)


def trained_profile(name_or_path: str | Path) -> str | None:
    """The answer profile a polyground-trained model (or adapter) learned, from its run.json;
    None without one (a model answers in the format it was trained on, whatever its family's default)."""
    try:
        return (json.loads((Path(name_or_path) / RUN_FILE).read_text()).get("profile") or {}).get("name")
    except (OSError, ValueError, AttributeError):
        return None


def torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return is_torchvision_available()


def image_only_processor_class(model_type: str):
    """A processor subclass without the video processor, for the given Qwen family."""
    if model_type == "qwen2_vl":
        from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor as Base
    else:
        from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor as Base

    class ImageOnlyProcessor(Base):
        # ProcessorMixin reads its parts from this signature: no video_processor here.
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        def save_pretrained(self, save_directory, **kwargs):
            out = super().save_pretrained(save_directory, **kwargs)
            _restore_stock_names(Path(save_directory), Base.__name__, self.image_processor)
            return out

    ImageOnlyProcessor.__name__ = ImageOnlyProcessor.__qualname__ = f"ImageOnly{Base.__name__}"
    return ImageOnlyProcessor


def _restore_stock_names(folder: Path, stock: str, image_processor) -> None:
    """Name the stock processor in the saved files and add a video processor config:
    a machine with torchvision (and vLLM) then loads the folder with the stock class."""
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text())
            data["processor_class"] = stock
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    video = {k: v for k, v in image_processor.to_dict().items() if k != "image_processor_type"}
    video["video_processor_type"] = "Qwen2VLVideoProcessor"
    (folder / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2, sort_keys=True) + "\n")


def processor_kind(processor) -> str:
    """The processor class actually used (recorded in run.json)."""
    return type(processor).__name__


def _check_local_folder(name_or_path: str) -> None:
    path = Path(name_or_path)
    if not path.is_dir():
        # "org/name" may be a Hub id, but "/x", "./x", "../x" and "~/x" can only be folders
        if path.exists():
            raise UserError(f"{name_or_path}: a file, not a model folder")
        if str(name_or_path).startswith(("/", "./", "../", "~")):
            raise UserError(f"{name_or_path}: no such model folder")
        return
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        raise UserError(f"{path}: not a model folder (no config.json or adapter_config.json)")
    has_tokenizer = any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json"))
    has_images = any((path / f).is_file() for f in ("processor_config.json", "preprocessor_config.json"))
    if not (has_tokenizer and has_images):
        missing = "tokenizer" if not has_tokenizer else "image processor"
        raise UserError(f"{path}: model folder without a processor (no {missing} files); "
                        "save one there with processor.save_pretrained(DIR)")


def load_processor(name_or_path: str, model_type: str | None = None):
    """The model's processor: stock where it works, the image-only Qwen one where torchvision is absent."""
    from transformers import AutoConfig, AutoProcessor, ProcessorMixin

    if model_type is None:
        model_type = AutoConfig.from_pretrained(name_or_path).model_type
    if model_type in QWEN_FAMILIES and not torchvision_available():
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
        from transformers import AutoTokenizer

        cls = image_only_processor_class(model_type)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(name_or_path)
        return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)
    processor = AutoProcessor.from_pretrained(name_or_path)
    if not isinstance(processor, ProcessorMixin):
        raise UserError(f"{name_or_path}: AutoProcessor found only a tokenizer; an image-text model needs "
                        "a processor with an image processor")
    return processor


def set_pixel_bounds(processor, min_pixels: int | None, max_pixels: int | None) -> None:
    """Bound the resized image area (Qwen-VL processors): fewer pixels, fewer visual tokens.

    Saved with the processor, so generation and eval resize exactly as training did."""
    if min_pixels is None and max_pixels is None:
        return
    image_processor = getattr(processor, "image_processor", None)
    size = dict(getattr(image_processor, "size", None) or {})
    if "longest_edge" not in size:
        raise UserError(f"{type(processor).__name__}: image_min_pixels/image_max_pixels apply to Qwen-VL "
                        "processors only")
    size["shortest_edge"] = min_pixels or size["shortest_edge"]
    size["longest_edge"] = max_pixels or size["longest_edge"]
    if not 0 < size["shortest_edge"] <= size["longest_edge"]:
        raise UserError("need 0 < image_min_pixels <= image_max_pixels, "
                        f"got {size['shortest_edge']}, {size['longest_edge']}")
    image_processor.size = size


def load_model_and_processor(name_or_path: str | Path, dtype: str | None = None, merge_adapter: bool = True,
                             min_pixels: int | None = None, max_pixels: int | None = None, **model_kwargs):
    """(model, processor) from a model folder, a Hub id or a LoRA adapter folder.

    An adapter folder (adapter_config.json, as `train sft` writes) loads its base
    model, applies the adapter and, by default, merges it for fast generation.
    `min_pixels`/`max_pixels` override the processor's resize bounds; `model_kwargs`
    (attn_implementation, revision, quantization_config, ...) go to `from_pretrained`.
    """
    from transformers import AutoModelForImageTextToText

    _check_local_folder(name_or_path)
    path = Path(name_or_path)
    if (path / "adapter_config.json").is_file():
        model, processor = _load_adapter(path, dtype, merge_adapter, model_kwargs)
        set_pixel_bounds(processor, min_pixels, max_pixels)
        return model, processor
    if path.is_dir():  # absolute, so adapters trained from it name their base unambiguously
        name_or_path = str(path.resolve())
    try:
        model = AutoModelForImageTextToText.from_pretrained(str(name_or_path), dtype=dtype or "float32",
                                                            **model_kwargs)
    except OSError as e:
        raise UserError(f"cannot load model {name_or_path}: {str(e).splitlines()[0]}") from None
    except ValueError as e:  # an architecture that is not image-text-to-text
        raise UserError(f"{name_or_path}: not an image-text-to-text model ({str(e).splitlines()[0]})") from None
    processor = load_processor(str(name_or_path), model.config.model_type)
    set_pixel_bounds(processor, min_pixels, max_pixels)
    return model, processor


def _load_adapter(path: Path, dtype: str | None, merge: bool, model_kwargs: dict):
    from peft import PeftModel

    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{path}: adapter_config.json names no base model")
    model, _ = load_model_and_processor(base, dtype=dtype, **model_kwargs)
    model = PeftModel.from_pretrained(model, str(path))
    if merge:
        model = model.merge_and_unload()
    processor = load_processor(str(path), model.config.model_type)
    return model, processor
