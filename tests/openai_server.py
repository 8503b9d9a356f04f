"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benches.

It speaks `POST /v1/chat/completions` over real HTTP/1.1 (keep-alive, one
daemon thread per connection, so 64+ concurrent clients are served at once)
and `GET /v1/models`. Requests carry `image_url` content parts (base64 data
URLs); responses carry `choices` (with `finish_reason`) and `usage`, and honour
`n` (unless `supports_n=False`, like servers that ignore it).

What each choice says comes from a pluggable policy:

    policy(request_json: dict, sample_index: int) -> str | Reply

`sample_index` is `request["seed"] + choice index` (0-based when no seed is
sent), so a client that derives the seed from its sample offset gets the same
answer for the same sample on every run. `GroundTruthPolicy` knows the tasks
(it finds the task by the content hashes of the images in the request, then by
the question text) and answers right with a set success rate, per task if
wanted: rejection-sampling tests script per-task pass rates with it.

Faults are injected at set rates (`Faults`):
- transport faults, drawn per HTTP attempt from a seeded RNG (a client should
  retry them): 429 with Retry-After, 500, a stall past the client's timeout,
  a body cut short of its Content-Length, a 200 whose body is not JSON;
- content faults, drawn from a hash of (request, sample index), so the same
  sample always gets the same fault and a rerun is reproducible: a wrong
  answer, a refusal, a completion cut at `finish_reason: "length"`, an empty one.

For exact tests, `server.script` is a list of transport faults served to the
next requests in order (before any random draw), and `server.fixed_status`
(e.g. 401, 404, 400) answers every request with that status. Credentials:
`server.auth` (an `Authorization` value) answers 401 to any request without
it; `server.echo_headers` puts the request's headers in every error body, as
some proxies do (tests prove the client never shows or stores what comes back).

Counters: `server.stats` (requests by outcome, `samples` answered whole) and
`server.served` ((request content, sample index) -> times answered whole):
how tests prove that a rerun asks nothing twice. `wait_idle()` after killing a
client lets requests in flight finish first. Alone, for benches:
`python tests/openai_server.py --latency 0.05` prints its URL and serves.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REFUSAL_TEXT = "I'm sorry, but I can't help with that request."
TRANSPORT_FAULTS = ("rate_limit", "server_error", "stall", "truncated_body", "invalid_json")
CONTENT_FAULTS = ("wrong_answer", "refusal", "length", "empty")


@dataclass
class Reply:
    """One choice: its text and why generation stopped."""
    text: str
    finish_reason: str = "stop"
    refusal: str | None = None


@dataclass
class Faults:
    """Fault rates (0-1). Transport faults are per HTTP attempt, content faults per sample."""
    rate_limit: float = 0.0
    server_error: float = 0.0
    stall: float = 0.0
    truncated_body: float = 0.0
    invalid_json: float = 0.0
    wrong_answer: float = 0.0
    refusal: float = 0.0
    length: float = 0.0
    empty: float = 0.0
    retry_after: float = 0.05  # seconds, sent as `Retry-After` on a 429
    error_retry_after: float | None = None  # if set, also sent on a 500 (a load balancer with no backend does)
    stall_s: float = 2.0  # how long a stall sleeps before answering (into a closed socket)

    @classmethod
    def spread(cls, total: float, transport_share: float = 0.5, **kw) -> "Faults":
        """`total` split evenly: `transport_share` of it over the transport kinds, the rest over content."""
        per_t = total * transport_share / len(TRANSPORT_FAULTS)
        per_c = total * (1 - transport_share) / len(CONTENT_FAULTS)
        rates = {k: per_t for k in TRANSPORT_FAULTS} | {k: per_c for k in CONTENT_FAULTS}
        return cls(**(rates | kw))


def image_hashes(request: dict) -> list[str]:
    """sha256 of each data-URL image of the request, in order (the store's image hash)."""
    out = []
    for msg in request.get("messages", []):
        content = msg.get("content")
        for part in content if isinstance(content, list) else []:
            url = (part.get("image_url") or {}).get("url", "") if part.get("type") == "image_url" else ""
            if url.startswith("data:"):
                out.append(hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest())
    return out


def request_text(request: dict) -> str:
    """All text of the request's messages, joined."""
    parts = []
    for msg in request.get("messages", []):
        content = msg.get("content")
        parts += [content] if isinstance(content, str) else [p.get("text", "") for p in content or []
                                                              if p.get("type") == "text"]
    return "\n".join(parts)


def _sent_keys(task: dict, store, budgets) -> set[tuple]:
    """The image-hash tuples a request for `task` can carry: as stored, and as sent in each budget."""
    keys = {tuple(i["sha256"] for i in task["images"])}
    if store is None:
        return keys
    from builders.inference.backends import image_ref
    from builders.sources.images import fit
    from schemas.boxes import SERVED_QWEN2_5_VL

    for budget in budgets or [SERVED_QWEN2_5_VL]:
        sent = []
        for image in task["images"]:
            part = image_ref(image, budget)
            data = store.image_path(image["sha256"]).read_bytes()
            sent.append(hashlib.sha256(fit(data, *part["size"]) if "size" in part else data).hexdigest())
        keys.add(tuple(sent))
    return keys


def _unit(*key) -> float:
    """A deterministic number in [0, 1) from a key."""
    return int(hashlib.sha256(repr(key).encode()).hexdigest()[:13], 16) / 16**13


def _default_render(reasoning, image_index, box, image_sizes) -> str:
    from schemas.profiles import get_profile

    return get_profile("norm1000").render(reasoning, image_index, box, image_sizes)


class GroundTruthPolicy:
    """Answers from the tasks' ground truth, right with probability `success`.

    tasks: task records (the `tasks` row contract: id, images[{sha256,width,height}],
    question, target_image, equivalent_images, target_box). render: the teacher's
    answer format, `profile.render(reasoning, image_index, box, image_sizes)`
    (default: the norm1000 profile). success: a rate for every task, a dict
    task id -> rate, or a callable task -> rate. A wrong answer names another
    image when there is one, else a box that misses.

    polyground sends images resized into the stage's pixel budget, so their
    bytes are not the store's: with `store` (a builders.store.Store) the tasks
    are also found by the hashes of their images as sent under each of
    `budgets` (default: the served Qwen2.5-VL bounds, the CLI's default).
    """

    def __init__(self, tasks, render=None, success=1.0, seed: int = 0, store=None, budgets=None):
        self.render, self.success, self.seed = render or _default_render, success, seed
        self.by_images: dict[tuple, list[dict]] = {}
        for t in tasks:
            for key in _sent_keys(t, store, budgets):
                self.by_images.setdefault(key, []).append(t)

    def find(self, request: dict) -> dict | None:
        candidates = self.by_images.get(tuple(image_hashes(request)), [])
        if len(candidates) > 1:
            text = request_text(request)
            candidates = [t for t in candidates if t["question"] in text] or candidates
        return candidates[0] if candidates else None

    def rate(self, task: dict) -> float:
        if isinstance(self.success, dict):
            return self.success.get(task["id"], 1.0)
        return self.success(task) if callable(self.success) else self.success

    def __call__(self, request: dict, sample_index: int) -> str:
        task = self.find(request)
        if task is None:
            return "<think>I cannot tell which task this is.</think><answer>unknown</answer>"
        right = _unit(self.seed, task["id"], sample_index) < self.rate(task)
        return self.answer(task, sample_index, right)

    def answer(self, task: dict, sample_index: int, right: bool = True) -> str:
        sizes = [(i["width"], i["height"]) for i in task["images"]]
        target, box = task["target_image"], list(task["target_box"])
        others = [k for k in range(len(sizes)) if k != target and k not in (task.get("equivalent_images") or [])]
        if not right and others and _unit(self.seed, task["id"], sample_index, "how") < 0.5:
            target = others[sample_index % len(others)]
        elif not right:  # a box in the opposite corner: IoU 0
            box = [0.9, 0.9, 1.0, 1.0] if box[0] + box[2] < 1.0 else [0.0, 0.0, 0.1, 0.1]
        reasoning = f"I compare the {len(sizes)} images. The target appears in image {target + 1}."
        return self.render(reasoning, target, box, sizes)

    def wrong(self, request: dict, sample_index: int) -> str:
        task = self.find(request)
        return self(request, sample_index) if task is None else self.answer(task, sample_index, right=False)


class ServedQwenPolicy:
    """Answers as a served Qwen2.5-VL does: in pixels of ITS OWN resize of what it received.

    It decodes every image of the request, resizes it with its own smart_resize
    (default: the Hub preprocessor bounds of Qwen2.5-VL-7B-Instruct, min 3136,
    max 12845056, factor 28), and answers `{"image": k, "bbox_2d": [x1, y1, x2, y2]}`
    (1-based image) in pixels of that resized image. It knows nothing of how the
    client resized or what the store holds: a client that reads the answer in any
    other frame scores right answers at the wrong scale.

    tasks: task rows, found by their question (unique in the tests that use this).
    right(task, sample_index) -> bool: a wrong answer names another image, with the
    box that is right on the target image (so only the image is wrong).
    """

    def __init__(self, tasks, right=lambda task, sample_index: True, min_pixels: int = 3136,
                 max_pixels: int = 12845056):
        self.tasks, self.right = list(tasks), right
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.seen_sizes: list[list[tuple[int, int]]] = []  # what it received, per request

    def find(self, request: dict) -> dict:
        text = request_text(request)
        found = [t for t in self.tasks if t["question"] in text]
        if not found:
            raise LookupError("no task asks this question")
        return max(found, key=lambda t: len(t["question"]))

    def received_sizes(self, request: dict) -> list[tuple[int, int]]:
        import io

        from PIL import Image

        sizes = []
        for msg in request.get("messages", []):
            for part in msg.get("content") if isinstance(msg.get("content"), list) else []:
                if part.get("type") == "image_url":
                    data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                    with Image.open(io.BytesIO(data)) as im:
                        sizes.append(im.size)
        return sizes

    def __call__(self, request: dict, sample_index: int) -> str:
        from schemas.boxes import smart_resize

        task = self.find(request)
        sizes = self.received_sizes(request)
        self.seen_sizes.append(sizes)
        k = task["target_image"]
        if not self.right(task, sample_index):
            k = (k + 1) % len(sizes)
        h, w = smart_resize(sizes[k][1], sizes[k][0], 28, self.min_pixels, self.max_pixels)
        x1, y1, x2, y2 = task["target_box"]
        box = [round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h)]
        answer = json.dumps({"image": k + 1, "bbox_2d": box})
        return f"<think>The object is in image {k + 1}.</think><answer>{answer}</answer>"


def echo_policy(request: dict, sample_index: int) -> str:
    """A policy that needs no tasks: echoes the sample index (for transport tests)."""
    return f"<think>sample {sample_index}</think><answer>{len(image_hashes(request))} images</answer>"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections like they do with vLLM
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add 40 ms

    def log_message(self, *args):  # quiet: tests read counters, not logs
        return

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "loopback"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        srv: FakeOpenAIServer = self.server.owner
        srv.count("active")
        try:
            self._post(srv)
        finally:
            srv.count("active", -1)

    def _post(self, srv: "FakeOpenAIServer"):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        srv.count("requests")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        try:
            request = json.loads(body)
        except ValueError:
            return self._send(400, {"error": {"message": "request body is not JSON"}})
        if srv.keep_requests:
            with srv._lock:
                srv.requests.append(request)
                srv.headers.append({k.lower(): v for k, v in self.headers.items()})
        if srv.auth is not None and self.headers.get("Authorization") != srv.auth:
            return self._send(401, self._error("invalid credentials", srv))
        if srv.fixed_status:
            return self._send(srv.fixed_status, self._error(f"status {srv.fixed_status} (scripted)", srv))
        if srv.latency:
            time.sleep(srv.latency)
        fault = srv.draw_transport_fault()
        if fault:
            srv.count(fault)
            return self._fault(fault, srv)
        payload, keys = srv.complete(request)
        self._send(200, payload)
        srv.count("ok")
        srv.mark_served(keys)

    def _fault(self, fault: str, srv: "FakeOpenAIServer"):
        if fault == "rate_limit":
            wait = {"Retry-After": f"{srv.faults.retry_after:g}"}
            return self._send(429, {"error": {"message": "rate limited"}}, wait)
        if fault == "server_error":
            wait = {} if srv.faults.error_retry_after is None else {"Retry-After": f"{srv.faults.error_retry_after:g}"}
            return self._send(500, self._error("internal error", srv), wait)
        if fault == "stall":
            time.sleep(srv.faults.stall_s)  # the client has given up by now
            return self._send(503, {"error": {"message": "stalled"}})
        if fault == "invalid_json":
            return self._raw(200, b'{"id": "chatcmpl-x", "choices": [{"index": 0, "mess')
        # truncated_body: promise more bytes than are sent, then hang up
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "4096")
        self.end_headers()
        self.wfile.write(b'{"id": "chatcmpl-x", "choices": [')
        self.close_connection = True

    def _error(self, message: str, srv: "FakeOpenAIServer") -> dict:
        if srv.echo_headers:
            message += f"; request headers: {json.dumps(dict(self.headers.items()))}"
        return {"error": {"message": message}}

    def _send(self, status: int, payload: dict, headers: dict | None = None):
        self._raw(status, json.dumps(payload).encode(), headers)

    def _raw(self, status: int, data: bytes, headers: dict | None = None):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # a burst of 64+ new connections must not be refused
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return  # a client that gave up (breaker open, timeout) hung up: not a server fault
        super().handle_error(request, client_address)


class FakeOpenAIServer:
    """The loopback server. Use as a context manager or call start()/stop().

    url: the base URL for clients (`http://127.0.0.1:PORT/v1`).
    policy: `(request_json, sample_index) -> str | Reply`; faults: `Faults`;
    latency: seconds slept per request before answering; seed: fault RNG seed;
    keep_requests: keep every request body in `requests` (tests read the prompts).
    """

    def __init__(self, policy=None, faults: Faults | None = None, latency: float = 0.0,
                 seed: int = 0, supports_n: bool = True, port: int = 0, keep_requests: bool = False):
        self.policy, self.faults, self.latency = policy or echo_policy, faults or Faults(), latency
        self.seed, self.supports_n = seed, supports_n
        self.keep_requests = keep_requests  # tests that read what was sent; off for benches
        self.stats: Counter = Counter()
        self.served: Counter = Counter()  # (content key, sample index) -> times answered whole
        self.script: list[str] = []  # transport faults for the next requests, in order
        self.fixed_status: int | None = None
        self.auth: str | None = None  # the Authorization value required of every request
        self.echo_headers = False  # error bodies quote the request's headers
        self.headers: list[dict] = []  # with keep_requests: each request's headers, names lower-case
        self.requests: list[dict] = []  # every parsed request body, in arrival order
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "FakeOpenAIServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def count(self, name: str, k: int = 1) -> None:
        with self._lock:
            self.stats[name] += k

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no request is being handled (e.g. after killing a client mid-request)."""
        deadline = time.monotonic() + timeout
        while self.stats["active"] > 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    def mark_served(self, keys) -> None:
        with self._lock:
            self.served.update(keys)
            self.stats["samples"] += len(keys)

    def draw_transport_fault(self) -> str | None:
        with self._lock:
            if self.script:
                return self.script.pop(0)
            u = self._rng.random()
        for name in TRANSPORT_FAULTS:
            u -= getattr(self.faults, name)
            if u < 0:
                return name
        return None

    def content_fault(self, content_key: str, sample_index: int) -> str | None:
        u = _unit(self.seed, content_key, sample_index)
        for name in CONTENT_FAULTS:
            u -= getattr(self.faults, name)
            if u < 0:
                return name
        return None

    def complete(self, request: dict) -> tuple[dict, list]:
        """The response payload for a request, and the (content key, sample index) pairs it answers."""
        content = json.dumps([request.get("model"), request.get("messages")], sort_keys=True)
        content_key = hashlib.sha256(content.encode()).hexdigest()
        n = max(1, int(request.get("n") or 1)) if self.supports_n else 1
        base = int(request.get("seed") or 0)
        choices, keys, completion_tokens = [], [], 0
        for i in range(n):
            reply = self.reply(request, content_key, base + i)
            completion_tokens += len(reply.text.split()) + 1
            choices.append({"index": i, "finish_reason": reply.finish_reason, "logprobs": None,
                            "message": {"role": "assistant", "content": reply.text, "refusal": reply.refusal}})
            keys.append((content_key, base + i))
        prompt_tokens = len(request_text(request).split()) + 64 * len(image_hashes(request))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        payload = {"id": f"chatcmpl-{content_key[:12]}", "object": "chat.completion", "created": int(time.time()),
                   "model": request.get("model", "fake"), "choices": choices, "usage": usage}
        return payload, keys

    def reply(self, request: dict, content_key: str, sample_index: int) -> Reply:
        fault = self.content_fault(content_key, sample_index)
        if fault:
            self.count(fault)
        if fault == "refusal":
            return Reply(REFUSAL_TEXT, "stop", REFUSAL_TEXT)
        if fault == "empty":
            return Reply("", "stop")
        if fault == "wrong_answer":
            wrong = getattr(self.policy, "wrong", None)
            text = wrong(request, sample_index) if wrong else "<think>A guess.</think><answer>none</answer>"
            return Reply(text) if isinstance(text, str) else text
        out = self.policy(request, sample_index)
        reply = Reply(out) if isinstance(out, str) else out
        if fault == "length":  # cut mid-answer, as a max_tokens limit would
            return Reply(reply.text[: max(1, len(reply.text) // 2)], "length")
        return reply


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Loopback OpenAI-compatible server (echo policy).")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    p.add_argument("--faults", type=float, default=0.0, help="total fault rate, spread over every kind")
    args = p.parse_args(argv)
    server = FakeOpenAIServer(latency=args.latency, faults=Faults.spread(args.faults), port=args.port).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
