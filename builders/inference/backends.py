"""Generation backends for rollouts (build rl-pool) and evaluation: one interface.

    backend.generate(tasks, k, sampling, seed) -> list[list[str]]

`tasks` are task rows (the tasks / bench row contract, as dicts); the answer is
k completions per task, in order. A task whose request failed after the
client's retries gets an empty list and its reason in `backend.failures`
(the caller rejects it; nothing is invented). `sampling` is
{"temperature", "max_tokens", "top_p"}; temperature 0 is greedy.

- `EndpointBackend`: any OpenAI-compatible server (vLLM serving the merged
  policy) through builders.inference.endpoint.EndpointClient: images in order as base64
  data URLs, `n=k` samples per request, seed = `seed + sample index`.
- `LocalBackend`: a transformers model through builders.inference.local (imported
  lazily: builders never import torch at module import), batched and seeded.

Both go through the store's response cache, scoped by the POLICY IDENTITY
(`policy_identity`): the folder's model digest (builders.inference.identity, the one
model identity, which run.json records too), or the endpoint URL and served
model name. A rerun after a crash asks nothing twice, and a retrained
policy in the same folder never reuses its predecessor's samples.

The prompt is the student's, built once in builders.inference.student (images first,
then the question and the profile's format instructions; training uses the
same builder); a multiple-choice task gets its
lettered choices instead of a box format, and a BLINK or MMIU task the text
its benchmark's official evaluation sends (`official_prompt` of its reader;
`mc_template_id` names which).
"""
from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

from builders.inference.cache import CachedSample, ResponseCache, request_key
from builders.inference.identity import model_digest
from schemas.errors import UserError

MC_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
# How every command that talks to an endpoint talks to it, unless told otherwise
# (polyground.cli.add_endpoint_options declares the flags, `build cot` shares them).
ENDPOINT_DEFAULTS = {"concurrency": 16, "timeout": 120.0, "api_key_env": "OPENAI_API_KEY"}


def is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def policy_identity(path_or_url: str, model_name: str | None = None) -> str:
    """`local:<folder name>:sha256:<12 hex>`, `endpoint:<model>@<url>` or `hub:<id>`."""
    from builders.inference.endpoint import redact_url

    if is_url(path_or_url):
        if not model_name:
            raise UserError(f"{redact_url(path_or_url)} is an endpoint: name the served model (--policy-model NAME)")
        return f"endpoint:{model_name}@{redact_url(path_or_url).rstrip('/')}"
    folder = Path(path_or_url)
    if folder.is_dir():
        return f"local:{folder.resolve().name}:sha256:{model_digest(folder)[:12]}"
    if "@" in path_or_url or "://" in path_or_url:  # no Hub id holds these: a mistyped URL, maybe with a password
        raise UserError(f"{redact_url(path_or_url)!r} is neither a model folder nor an http(s) URL "
                        "(for example http://127.0.0.1:8000/v1)")
    if folder.exists() or path_or_url.startswith((".", "/")):
        raise UserError(f"{path_or_url}: not a model folder")
    return f"hub:{path_or_url}"


class ScopedCache:
    """A ResponseCache view whose keys also hold a scope (the policy identity)."""

    def __init__(self, cache: ResponseCache, scope: str):
        self.cache, self.scope = cache, scope

    def _key(self, req_key: str) -> str:
        return hashlib.sha256(f"{self.scope}\0{req_key}".encode()).hexdigest()

    def get(self, req_key: str, indices: list[int]) -> dict[int, CachedSample]:
        return self.cache.get(self._key(req_key), indices)

    def put(self, req_key: str, model: str, samples: list[CachedSample]) -> None:
        self.cache.put(self._key(req_key), model, samples)


def open_cache(store) -> ResponseCache:
    return ResponseCache(store.root / "cache" / "responses.sqlite")


MC_TEMPLATE_ID = "mc:lettered-choices"  # multiple-choice sources without an official prompt of their own


def _official_mc(task: dict):
    # Multiple-choice benchmarks rendered as their official evaluation renders them: the
    # source's reader module says how (`official_prompt(task)`, `TEMPLATE_ID`).
    from builders.sources import official_prompt_module

    return official_prompt_module(task.get("source"))


def prompt_text(task: dict, profile) -> str:
    """The user turn's text: the question and the answer format (or the lettered choices)."""
    if task.get("rendered_prompt") is not None:  # a benchmark's official prompt (training.evaluation.run)
        return task["rendered_prompt"]
    if task.get("choices") is None:
        from builders.inference.student import student_prompt

        return student_prompt(task, profile)
    official = _official_mc(task)
    if official is not None:  # BLINK, MMIU: byte for byte what their own eval sends
        return official.official_prompt(task)
    from builders.sources.blink import lists_options

    question = task["question"]
    if not lists_options(question, task["choices"]):  # some sources already list the options
        question += "".join(f"\n({chr(65 + i)}) {c}" for i, c in enumerate(task["choices"]))
    return question + MC_SUFFIX


def mc_template_id(task: dict) -> str:
    """Which multiple-choice prompt `prompt_text` renders for a task (for a predictions version)."""
    official = _official_mc(task)
    return official.TEMPLATE_ID if official is not None else MC_TEMPLATE_ID


def user_turn(task: dict, profile, budget=None) -> list[dict]:
    """One user message: an `image_ref` part per image in order (sized by `budget`), then the text."""
    from builders.inference.student import user_message

    return user_message(prompt_text(task, profile), [image_ref(i, budget) for i in task["images"]])


def image_ref(image: dict, budget=None) -> dict:
    """An image ({"sha256", "width", "height"}) by content hash: the client reads and encodes it
    only when a request goes out (a cached sample reads no image), and the cache keys it by the
    hash. With a pixel budget it is sent resized to the budget's frame, the frame the answer
    is then read in (schemas.boxes.PixelBudget): a served Qwen2.5-VL whose bounds contain that
    size leaves it as it is, and answers in pixels of exactly that image."""
    part = {"type": "image_ref", "sha256": image["sha256"]}
    if budget is not None:
        size = budget.resized(image["width"], image["height"])
        if size != (image["width"], image["height"]):
            part["size"] = list(size)
    return part


class Backend:
    """Common state: the store, the answer profile, the policy identity and counters."""

    kind = "?"

    def __init__(self, store, profile, identity: str, model_name: str, budget=None):
        self.store, self.profile, self.identity, self.model_name = store, profile, identity, model_name
        self.budget = budget  # schemas.boxes.PixelBudget the images are resized into, or None
        self.stats: Counter = Counter()
        self.failures: dict[str, str] = {}

    def describe(self) -> dict:
        """What a manifest records about the policy (no secrets)."""
        return {"kind": self.kind, "identity": self.identity, "model": self.model_name, "profile": self.profile.name,
                "profile_version": self.profile.version,
                "image_pixels": self.budget.record() if self.budget is not None else None}

    def usage(self) -> dict:
        keys = ("requests", "retries", "samples", "cache_hits", "failed", "prompt_tokens", "completion_tokens")
        return {k: int(self.stats[k]) for k in keys if self.stats.get(k)}

    def generate(self, tasks: list[dict], k: int, sampling: dict, seed: int) -> list[list[str]]:
        raise NotImplementedError


class EndpointBackend(Backend):
    """An OpenAI-compatible endpoint: one request per task asking for n=k samples."""

    kind = "endpoint"

    def __init__(self, store, profile, base_url: str, model: str, cache: ResponseCache | None = None,
                 concurrency: int = 16, timeout: float = 120.0, max_retries: int = 6,
                 api_key_env: str = "OPENAI_API_KEY", supports_n: bool = True, budget=None):
        from builders.inference.endpoint import EndpointClient

        identity = policy_identity(base_url, model)
        super().__init__(store, profile, identity, model, budget)
        scoped = ScopedCache(cache, identity) if cache is not None else None
        self.client = EndpointClient(base_url, model, api_key_env=api_key_env, timeout=timeout,
                                     max_retries=max_retries, concurrency=concurrency, cache=scoped,
                                     supports_n=supports_n, image_loader=store.read_image)
        self.stats = self.client.stats  # one set of counters

    def generate(self, tasks: list[dict], k: int, sampling: dict, seed: int) -> list[list[str]]:
        from builders.inference.endpoint import Request, RequestFailed

        params = {**sampling, "seed": seed}
        # A generator of image_ref prompts: images are read and encoded only when a request
        # goes out, so memory holds `concurrency` encoded prompts, not the whole chunk's.
        requests = (Request(user_turn(t, self.profile, self.budget), n=k, sampling=params) for t in tasks)
        out = []
        for task, result in zip(tasks, self.client.generate_many(requests)):
            if isinstance(result, RequestFailed):
                self.failures[task["id"]] = result.detail
                out.append([])
            else:
                out.append([s.text for s in result])
        return out


class LocalBackend(Backend):
    """A local transformers model (builders.inference.local); `batch_size` tasks per generate call."""

    kind = "local"

    def __init__(self, store, profile, model_path: str, cache: ResponseCache | None = None,
                 batch_size: int = 8, device: str | None = None, dtype: str | None = None, budget=None,
                 set_bounds: bool = False):
        # `budget`: the frame the profile reads; `set_bounds`: the processor is set to it (else it
        # keeps the folder's own bounds, which resolve_frame made the budget).
        super().__init__(store, profile, policy_identity(str(model_path)), str(model_path), budget)
        self.set_bounds = set_bounds and budget is not None
        self.cache = ScopedCache(cache, self.identity) if cache is not None else None
        self.batch_size, self.device, self.dtype = batch_size, device, dtype
        self._generator = None

    @property
    def generator(self):
        if self._generator is None:
            from builders.inference.local import load_generator

            b = self.budget if self.set_bounds else None
            self._generator = load_generator(self.model_name, device=self.device, dtype=self.dtype,
                                             min_pixels=b.min_pixels if b else None,
                                             max_pixels=b.max_pixels if b else None)
        return self._generator

    def generate(self, tasks: list[dict], k: int, sampling: dict, seed: int) -> list[list[str]]:
        params = {**sampling, "seed": seed}
        # The budget is in the key: the same model fed other pixels is another request.
        keys = [request_key(self.identity, user_turn(t, self.profile, self.budget), params) for t in tasks]
        got: list[list[str] | None] = [None] * len(tasks)
        for i, rk in enumerate(keys):
            cached = self.cache.get(rk, list(range(k))) if self.cache else {}
            if len(cached) == k:
                got[i] = [cached[j].text for j in range(k)]
                self.stats["cache_hits"] += k
        todo = [i for i, g in enumerate(got) if g is None]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            # The batch's seed depends on what it holds: the same uncached tasks give the same samples.
            batch_seed = int(hashlib.sha256(f"{seed}:{','.join(keys[i] for i in batch)}".encode()).hexdigest()[:8], 16)
            texts = self.generator.generate([prompt_text(tasks[i], self.profile) for i in batch],
                                            [self._images(tasks[i]) for i in batch], k, sampling, batch_seed)
            for i, samples in zip(batch, texts):
                got[i] = samples
                if self.cache:  # written at once: a crash loses at most the batch in flight
                    self.cache.put(keys[i], self.identity,
                                   [CachedSample(j, s, None, None, 0, 0) for j, s in enumerate(samples)])
            self.stats["samples"] += k * len(batch)
            self.stats["requests"] += 1
        return got

    def _images(self, task: dict) -> list[Path]:
        return [self.store.checked_image_path(i["sha256"]) for i in task["images"]]  # the model reads checked bytes


def _image_processor_config(folder: Path) -> dict:
    """The saved image processor settings: transformers 5 nests them in processor_config.json,
    older versions write preprocessor_config.json."""
    for name, key in (("processor_config.json", "image_processor"), ("preprocessor_config.json", None)):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        data = data.get(key) if key else data
        if isinstance(data, dict) and data:
            return data
    return {}


def _model_type(folder: Path) -> str:
    """config.json's model_type; for a LoRA adapter folder, its base model's."""
    for name, key in (("config.json", "model_type"), ("adapter_config.json", "base_model_name_or_path")):
        try:
            value = json.loads((folder / name).read_text()).get(key) or ""
        except (OSError, ValueError):
            continue
        if key == "model_type":
            return value
        return _model_type(Path(value)) if Path(value).is_dir() else value
    return ""


def _folder_budget(folder: Path):
    """The resize bounds a Qwen-VL model folder's saved processor uses, else None."""
    from schemas.boxes import PixelBudget

    pre = _image_processor_config(folder)
    size = pre.get("size") or {}
    lo, hi = pre.get("min_pixels") or size.get("shortest_edge"), pre.get("max_pixels") or size.get("longest_edge")
    return PixelBudget(int(lo), int(hi)) if isinstance(lo, int) and isinstance(hi, int) else None


def pixel_budget(min_pixels: int | None, max_pixels: int | None, default=None):
    """The PixelBudget of `--image-min-pixels/--image-max-pixels`, each falling back to `default`
    (else a stock served Qwen2.5-VL's bounds); a one-line error when they do not make one."""
    from schemas.boxes import SERVED_QWEN2_5_VL, PixelBudget

    base = default or SERVED_QWEN2_5_VL
    lo = base.min_pixels if min_pixels is None else min_pixels
    hi = base.max_pixels if max_pixels is None else max_pixels
    try:
        return PixelBudget(lo, hi)
    except ValueError:
        raise UserError(f"--image-min-pixels {lo} / --image-max-pixels {hi}: need 0 < min <= max") from None


def resolve_frame(policy: str, policy_model: str | None, name: str | None,
                  min_pixels: int | None = None, max_pixels: int | None = None):
    """(answer profile, pixel budget, budget given?) of a policy, never guessed.

    Profile: --profile, else for a model folder the profile it was trained on (run.json) or
    its config's model family, for an endpoint the family its served name names; a policy of
    no known family is refused (a wrong guess scores right answers at the wrong scale).
    Budget: the --image-*-pixels given, else a folder's own processor bounds, else a stock
    served Qwen2.5-VL's; for qwen2_5_vl it is also the answer's frame."""
    from builders.inference.models import trained_profile
    from schemas.profiles import family_profile, profile_with_budget

    folder = Path(policy)
    local = not is_url(policy) and folder.is_dir()
    chosen = name
    if chosen is None and local:
        chosen = trained_profile(folder) or family_profile(_model_type(folder) or folder.name)
    elif chosen is None:
        chosen = family_profile(policy_model or policy)
    if chosen is None:
        what = f"the model folder {policy} (no run.json, model_type {_model_type(folder) or '?'})" if local \
            else f"the served model name {policy_model or policy!r}"
        raise UserError(f"{what} names no model family whose answer format is known; pass --profile "
                        "(qwen2_5_vl, qwen2_vl, norm1000, short)")
    budget = pixel_budget(min_pixels, max_pixels, _folder_budget(folder) if local else None)
    given = min_pixels is not None or max_pixels is not None
    return profile_with_budget(chosen, budget), budget, given


def make_backend(store, policy: str, policy_model: str | None, profile,
                 concurrency: int = ENDPOINT_DEFAULTS["concurrency"], batch_size: int = 8, device: str | None = None,
                 api_key_env: str = ENDPOINT_DEFAULTS["api_key_env"], timeout: float = ENDPOINT_DEFAULTS["timeout"],
                 use_cache: bool = True, budget=None, budget_given: bool = True) -> Backend:
    """An EndpointBackend for a URL, else a LocalBackend, both over the store's response cache.

    `budget` (resolve_frame) sizes what an endpoint is sent; a local model's processor is set
    to it when `budget_given`, else it keeps the folder's own bounds (which the budget equals)."""
    cache = open_cache(store) if use_cache else None
    if is_url(policy):
        if not policy_model:
            raise UserError("an endpoint policy needs the served model's name (--policy-model / --endpoint-model)")
        return EndpointBackend(store, profile, policy, policy_model, cache=cache, concurrency=concurrency,
                               timeout=timeout, api_key_env=api_key_env, budget=budget)
    backend = LocalBackend(store, profile, policy, cache=cache, batch_size=batch_size, device=device,
                           budget=budget, set_bounds=budget_given)
    print(f"generation: local model {policy} (identity {backend.identity})", file=sys.stderr)
    return backend
