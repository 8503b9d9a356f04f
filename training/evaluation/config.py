"""The options of an eval run (`polyground eval`): sampling, the local model, --limit, MIG-Bench scoring."""
from __future__ import annotations

from dataclasses import dataclass

from builders.options import option
from schemas.errors import UserError
from schemas.official import DEFAULT_PROMPT, MIG_PROMPTS, SCORERS


@dataclass
class EvalConfig:
    """Options of `polyground eval`; each field is its flag (polyground.cli.add_config_flags).
    The model, endpoint and file to score, the split and the output are its other arguments."""

    max_tokens: int = option(512, "new tokens per answer")
    temperature: float = option(0.0, "sampling temperature (0: greedy)")
    seed: int = option(0, "sampling seed (used when temperature > 0)")
    batch_size: int = option(8, "local model: tasks per generate call")
    device: str | None = option(None, "local model: cpu, cuda, cuda:1 (default: cuda when available)")
    limit: int | None = option(None, "only the first N tasks of the split (a quick look)")
    # How MIG-Bench rows are prompted and officially scored (schemas.official).
    official_scorer: str = option("migician", "official MIG-Bench script to reproduce: migician (thunlp/Migician, "
                                              "MIG_data.json) or univg-r1 (AMAP-ML/UniVG-R1, revised_MIG_bench.json; "
                                              "0-1000 boxes only)", choices=list(SCORERS))
    migician_y_rescale: bool = option(False, "apply migician_eval's y stretch (y1*1.05, y2*1.10, capped at 0.999) "
                                             "before the official IoU, as the published Migician numbers do")
    prompt_template: str | None = option(None, f"prompt of MIG-Bench rows: an official one (default {DEFAULT_PROMPT}: "
                                               "question + Migician's Qwen2-VL format suffix) or polyground (the "
                                               "profile's); with --predictions, the one the completions were made "
                                               "with (recorded, not checked)", choices=[*MIG_PROMPTS, "polyground"])

    def __post_init__(self):
        if self.max_tokens < 1 or self.batch_size < 1 or (self.limit is not None and self.limit < 1):
            raise UserError("eval: --max-tokens, --batch-size and --limit must be >= 1")
        if self.temperature < 0:
            raise UserError(f"eval: --temperature must be >= 0, got {self.temperature}")
