"""Async client for any OpenAI-compatible chat endpoint (vLLM, SGLang, OpenAI).

Reused by `build cot` (teacher) and `build rl-pool` (policy). The interface:

    from builders.inference.endpoint import EndpointClient, Request, Sample, RequestFailed
    from builders.inference.cache import ResponseCache

    client = EndpointClient(base_url, model, api_key_env="OPENAI_API_KEY",
                            timeout=60, max_retries=6, concurrency=16,
                            cache=ResponseCache(store_root / "cache" / "responses.sqlite"))
    # async, one request: samples sample_offset .. sample_offset+n-1 (then `await client.aclose()`)
    samples = await client.generate(messages, n=8, sampling={"temperature": 1.0, "max_tokens": 512,
                                    "seed": 0}, sample_offset=0)
    # many requests at bounded concurrency, one `list[Sample] | RequestFailed` each, in order:
    results = client.generate_many([Request(messages, n=8, sampling=...)])       # sync
    results = await client.generate_all(requests_iterable, progress=callback)    # async
    # both raise EndpointError (a UserError) when the endpoint is down, refuses the key or lacks the model
    client.stats    # Counter: requests, retries, cache_hits, samples, failed, fault:<kind>, tokens

A `Sample` is (index, text, finish_reason, refusal, prompt_tokens,
completion_tokens, cached). A sample cut short (`finish_reason == "length"`),
empty or refused is returned as is: whether that is a reject is the caller's
call, never a retry. `messages` are OpenAI chat messages; images go in as
`image_url` parts with base64 data URLs (`image_part(bytes)` builds one), or
lazily as `{"type": "image_ref", "sha256": h}` parts when the client has an
`image_loader(sha256) -> bytes` (e.g. `lambda h: store.image_path(h).read_bytes()`):
those are read and encoded only when a request is actually sent, so a rerun
served from the cache reads no image. Both forms give the same cache key.
An `image_ref` may carry `"size": [width, height]`: the image is then sent
resized to exactly that size (builders.sources.images.fit; on a worker thread, so
decoding a large photo does not stall the event loop), and keyed with it.

Behaviour:
- Retries are ours (the SDK's max_retries is 0) so each is counted and a
  Retry-After (or retry-after-ms) header is honoured: 429, 408, 409, 5xx,
  timeouts, connection errors and bodies that do not parse are retried with
  exponential backoff and jitter, up to `max_retries`; then that request fails
  (`RequestFailed`) and the others go on. Other 4xx fail the request at once;
  401/403/404 stop the run (a wrong key or model fails every request alike).
- `timeout` is a total per-request deadline (the SDK's own is per read).
- Circuit breaker: `breaker_after` consecutive failed attempts stop the run with
  `EndpointDown`; every response received so far is already in the cache.
- `n` samples per request (`supports_n=False` sends one request per sample);
  if a server returns fewer choices, the rest are asked for again.
  With a `seed` in `sampling`, each request sends `seed + first sample index`,
  so a sample asked again (after a crash) is the same request.
- Every received response is written to the cache before anything else can
  run, so a crash loses nothing that arrived and a rerun asks nothing twice.
- The API key is read from `api_key_env` and is never logged, stored, or put
  in an error message. A URL may carry `user:password@`: the client sends
  them as `Authorization: Basic ...` (in place of the key's Bearer header:
  a request carries one Authorization) to the URL without them. Every form
  of the key and the password is scrubbed (builders/secrets.py) from error
  messages, and from the received text before it is cached or returned
  (a server may echo the key back); manifests get the URL without credentials.
"""
from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from builders import secrets
from builders.inference.cache import CachedSample, ResponseCache, request_key
from builders.secrets import redact_url  # noqa: F401 - re-exported: callers import it from here
from schemas.errors import UserError


@dataclass
class Sample:
    index: int
    text: str
    finish_reason: str | None
    refusal: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


@dataclass
class Request:
    messages: list[dict]
    n: int = 1
    sampling: dict = field(default_factory=dict)
    sample_offset: int = 0


class RequestFailed(Exception):
    """One request gave up (retries spent, or a 4xx); the run goes on without it."""

    def __init__(self, detail: str, attempts: int):
        super().__init__(detail)
        self.detail, self.attempts = detail, attempts


class EndpointError(UserError):
    """The endpoint cannot serve this run (down, wrong key, unknown model): stop."""


class EndpointDown(EndpointError):
    """The circuit breaker opened: too many failed attempts in a row."""


class _Transient(Exception):
    def __init__(self, kind: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.kind, self.detail, self.retry_after = kind, detail, retry_after


_JSON = {"Content-Type": "application/json"}


def _httpx_response():
    import httpx2

    return httpx2.Response


def sniff_mime(data: bytes) -> str:
    """The image MIME type from its first bytes (PNG unless it is JPEG, WebP or GIF)."""
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/gif" if data.startswith(b"GIF8") else "image/png"


def image_part(data: bytes, mime: str | None = None) -> dict:
    """An `image_url` content part holding the image inline as a base64 data URL."""
    mime = mime or sniff_mime(data)
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def retry_after(headers) -> float | None:
    """Seconds asked for by `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _root_cause(e: BaseException) -> BaseException:
    while e.__cause__ is not None:
        e = e.__cause__
    return e


def _parse_body(text: str) -> tuple[list[dict], dict]:
    """The choices (sorted by index) and usage of a chat-completion body; raises ValueError."""
    body = json.loads(text)
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices or not all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices):
        raise ValueError("no choices in the response")
    return sorted(choices, key=lambda c: c.get("index", 0)), body.get("usage") or {}


class EndpointClient:
    """See the module docstring."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 6, concurrency: int = 16, cache: ResponseCache | None = None,
                 breaker_after: int = 20, backoff: float = 0.5, backoff_max: float = 30.0, supports_n: bool = True,
                 image_loader=None):
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise UserError("concurrency must be >= 1, max_retries >= 0 and timeout > 0")
        secrets.check_url(base_url, "endpoint URL")
        # The SDK gets the URL without credentials (aiohttp refuses them next to an
        # Authorization header); they go out as this request header instead.
        self._url, self._auth = secrets.split_credentials(base_url)
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.timeout, self.max_retries, self.concurrency = timeout, max_retries, concurrency
        self.cache, self.breaker_after, self.supports_n = cache, breaker_after, supports_n
        self.backoff, self.backoff_max, self.image_loader = backoff, backoff_max, image_loader
        self.stats: Counter = Counter()
        self._secret = os.environ.get(api_key_env) or ""
        secrets.register(self._secret)
        self._headers = {**_JSON, **({"Authorization": self._auth} if self._auth else {})}
        self._consecutive, self._down, self._rng = 0, None, random.Random()
        self._loop, self._api, self._slots = None, None, None

    def describe(self) -> dict:
        """What to record about the generator (no secrets)."""
        return {"kind": "openai-compatible", "base_url": redact_url(self.base_url), "model": self.model,
                "api_key_env": self.api_key_env, "timeout": self.timeout, "max_retries": self.max_retries}

    def _scrub(self, text: str) -> str:
        text = str(text).replace(self.base_url, redact_url(self.base_url))
        return secrets.scrub(text.replace(self._secret, secrets.MASK) if self._secret else text)

    def _start(self) -> None:
        """Per-loop state, made lazily in the running loop: one SDK client and the slot semaphore.

        The SDK's aiohttp transport (the `openai[aiohttp]` extra): against the loopback
        server, under the same load, it spent 1.75-1.82 ms of CPU per request where the
        default httpx transport spent 2.23-2.44 ms, and that CPU bounds a high-concurrency build.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop, self._api = loop, None
        self._slots = asyncio.Semaphore(self.concurrency)

    def _client(self):
        if self._api is None:
            import httpx2
            import openai

            limits = httpx2.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
            try:
                http = openai.DefaultAioHttpClient(limits=limits)
            except RuntimeError:  # openai installed without its aiohttp extra: the SDK's default transport
                http = openai.DefaultAsyncHttpxClient(limits=limits)
            self._api = openai.AsyncOpenAI(base_url=self._url, api_key=self._secret or "EMPTY",
                                           max_retries=0, timeout=self.timeout, http_client=http)
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.close()
        self._api, self._loop = None, None

    async def generate(self, messages: list[dict], n: int = 1, sampling: dict | None = None,
                       sample_offset: int = 0) -> list[Sample]:
        """Samples `sample_offset .. sample_offset+n-1` for one prompt, from the cache or the endpoint."""
        sampling = dict(sampling or {})
        rk = request_key(self.model, messages, sampling)
        want = list(range(sample_offset, sample_offset + n))
        got = {}
        if self.cache is not None:
            got = {i: Sample(**{**vars(c), "text": secrets.scrub_received(c.text)}, cached=True)
                   for i, c in self.cache.get(rk, want).items()}  # a cache from before scrubbing, too
            self.stats["cache_hits"] += len(got)
        while missing := [i for i in want if i not in got]:
            run = [missing[0]]
            while self.supports_n and len(run) < len(missing) and missing[len(run)] == run[-1] + 1:
                run.append(missing[len(run)])
            choices, usage = await self._call(messages, len(run), sampling, run[0])
            # No await from here to the cache write: a cancellation cannot lose this response.
            fresh = self._samples(choices[: len(run)], usage, run)
            if self.cache is not None:
                self.cache.put(rk, self.model, [CachedSample(**{k: v for k, v in vars(s).items() if k != "cached"})
                                                for s in fresh])
            got.update((s.index, s) for s in fresh)
        return [got[i] for i in want]

    def _samples(self, choices: list[dict], usage: dict, indices: list[int]) -> list[Sample]:
        """One Sample per choice; the request's usage split so that the samples' sums equal it."""
        k = len(choices)
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        out = []
        for j, (choice, index) in enumerate(zip(choices, indices)):
            msg = choice["message"]
            # Scrubbed before anything keeps it: a server that echoes the key must not get it stored.
            out.append(Sample(index=index, text=secrets.scrub_received(msg.get("content") or ""),
                              finish_reason=choice.get("finish_reason"),
                              refusal=secrets.scrub_received(msg.get("refusal")), prompt_tokens=prompt if j == 0 else 0,
                              completion_tokens=completion // k + (completion % k if j == 0 else 0)))
        self.stats["samples"] += len(out)
        self.stats["prompt_tokens"] += prompt
        self.stats["completion_tokens"] += completion
        return out

    def _image(self, part: dict) -> dict:
        data = self.image_loader(part["sha256"])
        if part.get("size"):
            from builders.sources.images import fit

            data = fit(data, *part["size"])
        return image_part(data)

    def _expand(self, messages: list[dict]) -> list[dict]:
        """`image_ref` parts replaced by data-URL parts, read through `image_loader`."""
        out = []
        for msg in messages:
            content = msg.get("content")
            if isinstance(content, list) and any(p.get("type") == "image_ref" for p in content):
                if self.image_loader is None:
                    raise ValueError("image_ref parts need an EndpointClient(image_loader=...)")
                content = [self._image(p) if p.get("type") == "image_ref" else p for p in content]
                msg = {**msg, "content": content}
            out.append(msg)
        return out

    async def _call(self, messages, n, sampling, offset) -> tuple[list[dict], dict]:
        """One request with retries, backoff and the circuit breaker."""
        sized = any(isinstance(m.get("content"), list) and any(p.get("size") for p in m["content"]) for m in messages)
        # Resizing decodes the image: off the event loop, or 64 requests in flight wait on one photo.
        messages = await asyncio.to_thread(self._expand, messages) if sized else self._expand(messages)
        last = None
        for attempt in range(self.max_retries + 1):
            if self._down:
                raise self._down
            try:
                result = await self._post(messages, n, sampling, offset)
            except _Transient as t:
                last = t
                self.stats[f"fault:{t.kind}"] += 1
                self._consecutive += 1
                if self._consecutive >= self.breaker_after and not self._down:
                    self._down = EndpointDown(
                        f"endpoint {redact_url(self.base_url)} looks down: {self._consecutive} failed attempts in a "
                        f"row (last: {t.kind}: {t.detail}); the {self.stats['samples']} samples received are cached, "
                        f"rerun the same command to resume")
                if self._down:
                    raise self._down
                if attempt < self.max_retries:
                    self.stats["retries"] += 1
                    await asyncio.sleep(self._delay(attempt, t.retry_after))
                continue
            self._consecutive = 0
            return result
        self.stats["failed"] += 1
        raise RequestFailed(f"{last.kind}: {last.detail} (after {self.max_retries + 1} attempts)", self.max_retries + 1)

    def _delay(self, attempt: int, asked: float | None) -> float:
        if asked is not None:  # the server said when: honour it (capped at 10 minutes)
            return min(asked, 600.0)
        return min(self.backoff_max, self.backoff * 2**attempt) * self._rng.uniform(0.5, 1.5)

    async def _post(self, messages, n, sampling, offset) -> tuple[list[dict], dict]:
        """One HTTP attempt; transport trouble becomes _Transient, a bad request RequestFailed."""
        import openai

        self._start()
        body = {**sampling, "model": self.model, "messages": messages}
        if "seed" in body:
            body["seed"] = int(body["seed"]) + offset
        if n > 1:
            body["n"] = n
        payload = json.dumps(body, ensure_ascii=False).encode()
        self.stats["requests"] += 1
        try:
            async with self._slots, asyncio.timeout(self.timeout):  # bounded concurrency, total deadline
                # The SDK's low-level post with a pre-encoded body: the typed `chat.completions.create`
                # walks every message part through a type transform and deep-copies the body
                # (~1 ms a request, the bench's bottleneck); the wire format is the same.
                raw = await self._client().post("/chat/completions", cast_to=_httpx_response(), content=payload,
                                                options={"timeout": self.timeout, "headers": self._headers})
                text = raw.text
        except (TimeoutError, openai.APITimeoutError) as e:
            root = _root_cause(e)
            if isinstance(root, OSError) and not isinstance(root, TimeoutError):
                # the aiohttp transport reports a refused connection as a connect timeout
                raise _Transient("connection", self._scrub(root)) from None
            raise _Transient("timeout", f"no answer within {self.timeout:g} s") from None
        except openai.APIConnectionError as e:
            raise _Transient("connection", self._scrub(e.__cause__ or e)) from None
        except openai.APIStatusError as e:
            raise self._status_error(e) from None
        try:
            return _parse_body(text)
        except (ValueError, TypeError, AttributeError) as e:
            raise _Transient("unparsable_body", self._scrub(e)[:200]) from None

    def _status_error(self, e) -> Exception:
        code = e.status_code
        message = self._scrub(getattr(e, "message", "") or str(e))[:200]
        if code in (408, 409, 429) or code >= 500:
            kind = "rate_limited" if code == 429 else f"http_{code}"
            return _Transient(kind, f"HTTP {code}", retry_after(e.response.headers))
        where = redact_url(self.base_url)
        if code in (401, 403):
            what = "the user:password in the URL" if self._auth else f"${self.api_key_env}"
            self._down = EndpointError(f"endpoint {where} refused the credentials (HTTP {code}); check {what}")
            return self._down
        if code == 404:
            self._down = EndpointError(f"endpoint {where} has no model {self.model!r} or no chat/completions "
                                       f"route (HTTP 404)")
            return self._down
        self.stats["failed_4xx"] += 1
        return RequestFailed(f"HTTP {code}: {message}", 1)

    async def generate_all(self, requests, progress=None) -> list:
        """Every request at bounded concurrency: one `list[Sample] | RequestFailed` per request, in order.

        `requests` may be any iterable (a generator builds each Request only when a
        worker takes it, which bounds memory). progress(done) is called after each
        request. An EndpointError cancels what is in flight (received responses are
        cached) and is raised.
        """
        self._start()
        results: dict[int, object] = {}
        queue = enumerate(requests)  # shared by the workers; next() never awaits

        async def worker():
            for i, r in queue:
                try:
                    results[i] = await self.generate(r.messages, r.n, r.sampling, r.sample_offset)
                except RequestFailed as e:
                    results[i] = e
                if progress:
                    progress(len(results))

        workers = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            await self.aclose()
        return [results[i] for i in range(len(results))]

    def generate_many(self, requests: list[Request], progress=None) -> list:
        """Sync wrapper of `generate_all` (runs its own event loop)."""
        return asyncio.run(self.generate_all(requests, progress))
