"""The demo's teacher: a loopback OpenAI-compatible endpoint standing in for a teacher VLM.

`polyground demo` starts it on 127.0.0.1 and runs the real `build cot` against
it, so MGrounding-R1's cold start (teacher CoT behind the verifier) is the
path a user takes with vLLM or an API: HTTP with keep-alive, `n` samples a
request, seeds, usage counts. It cannot see: it finds the task by the pixels
of the images it is sent and answers from the task's annotations, the way an
imperfect teacher answers:

- its reasoning is the annotation-built text (builders.annotations);
- on `wrong_share` of the samples it names another image, which the verifier
  rejects (`wrong_image`);
- its boxes are loose: each inner edge of the target's box is pushed out by
  0, 50, 100 or 150 thousandths of the image (shares `LOOSENESS`), so every
  box keeps IoU >= 0.59 with the annotation and passes the verifier's 0.5.

Everything is a pure function of (seed, task id, sample index), so a rerun
gives the same answers and `build cot`'s cache holds.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

# (outward push of an inner edge in 0-1 units, share of edges): the mode is loose, a tight edge is rare.
LOOSENESS = ((0.0, 0.2), (0.05, 0.3), (0.10, 0.3), (0.15, 0.2))


def unit(*key) -> float:
    """A deterministic number in [0, 1) from a key."""
    return int(hashlib.sha256(repr(key).encode()).hexdigest()[:13], 16) / 16**13


def pixels_key(data: bytes) -> str:
    """What the teacher recognises an image by: its decoded pixels (the client may re-encode)."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
        return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def loosen(box: list[float], u) -> list[float]:
    """The box with each inner edge (not on the image border) pushed outward; u(i) in [0, 1) picks the push."""
    out = list(box)
    for i, outward in ((0, -1), (1, -1), (2, 1), (3, 1)):
        if 0.0 < out[i] < 1.0:
            r, push = u(i), 0.0
            for push, share in LOOSENESS:
                if r < share:
                    break
                r -= share
            out[i] = min(1.0, max(0.0, out[i] + outward * push))
    return out


class Teacher:
    """Answers chat-completion requests for the tasks of one tasks version."""

    def __init__(self, store, tasks: list[dict], profile, seed: int = 0, wrong_share: float = 0.1):
        from builders.annotations import parse_sections
        from builders.templates import PROMPTS

        self.profile, self.seed, self.wrong_share = profile, seed, wrong_share
        self.sections = parse_sections((PROMPTS / "annotations_v2.txt").read_text())
        self.by_images: dict[tuple, dict] = {}
        for t in tasks:
            key = tuple(pixels_key(store.read_image(i["sha256"])) for i in t["images"])
            self.by_images[key] = t

    def find(self, request: dict) -> dict | None:
        keys = []
        for msg in request.get("messages", []):
            for part in msg.get("content") if isinstance(msg.get("content"), list) else []:
                url = (part.get("image_url") or {}).get("url", "") if part.get("type") == "image_url" else ""
                if url.startswith("data:"):
                    keys.append(pixels_key(base64.b64decode(url.split(",", 1)[1])))
        return self.by_images.get(tuple(keys))

    def answer(self, task: dict, sample: int) -> str:
        from builders.annotations import reasoning_for

        sizes = [(i["width"], i["height"]) for i in task["images"]]
        image = task["target_image"]
        others = [k for k in range(len(sizes)) if k != image and k not in (task.get("equivalent_images") or [])]
        if others and unit(self.seed, task["id"], sample, "wrong") < self.wrong_share:
            image = others[sample % len(others)]
        box = loosen(list(task["target_box"]), lambda i: unit(self.seed, task["id"], sample, "edge", i))
        # A wrong teacher is wrong throughout: its reasoning points at the image it names.
        reasoning = reasoning_for({**task, "target_image": image}, self.sections) or ""
        return self.profile.render(reasoning, image, box, sizes)

    def complete(self, request: dict) -> dict:
        task = self.find(request)
        n, first = max(1, int(request.get("n") or 1)), int(request.get("seed") or 0)
        texts = [self.answer(task, first + i) if task else "I cannot tell which images these are." for i in range(n)]
        choices = [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                   for i, text in enumerate(texts)]
        words = sum(len(t.split()) for t in texts)
        return {"id": f"demo-{first}", "object": "chat.completion", "model": request.get("model", "demo-teacher"),
                "choices": choices, "usage": {"prompt_tokens": 0, "completion_tokens": words, "total_tokens": words}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as vLLM and OpenAI serve

    def log_message(self, *args):  # the demo prints its own lines
        pass

    def do_POST(self):
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            payload = self.server.teacher.complete(json.loads(body))
        except (ValueError, KeyError, TypeError, OSError) as e:  # OSError: PIL cannot read a sent image
            return self._send(400, {"error": {"message": f"bad request: {e}"}})
        self._send(200, payload)

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class TeacherServer:
    """`with TeacherServer(teacher) as url:` serves on a free loopback port for the block's duration."""

    def __init__(self, teacher: Teacher):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.teacher = teacher

    def __enter__(self) -> str:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
