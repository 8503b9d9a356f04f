"""EndpointClient and ResponseCache against the real loopback server (tests/openai_server.py)."""
from __future__ import annotations

import asyncio
import base64
import socket
import time

import pytest

from builders.inference.cache import ResponseCache, request_key
from builders.inference.endpoint import (EndpointClient, EndpointDown, EndpointError, Request, RequestFailed,
                                         image_part, redact_url, retry_after)
from openai_server import TRANSPORT_FAULTS, FakeOpenAIServer, Faults

SECRET = "sk-test-PLANTED-secret-7f3a9"


def messages(i: int = 0, image: bytes = b"img") -> list[dict]:
    return [{"role": "user", "content": [image_part(image), {"type": "text", "text": f"question {i}"}]}]


def client(server, tmp_path=None, **kw) -> EndpointClient:
    cache = ResponseCache(tmp_path / "c.sqlite") if tmp_path else None
    kw = {"timeout": 2.0, "backoff": 0.01, "concurrency": 4, **kw}
    return EndpointClient(server.url, "m", cache=cache, **kw)


def run(c: EndpointClient, reqs):
    return c.generate_many(reqs)


def test_samples_text_finish_reason_usage():
    with FakeOpenAIServer() as s:
        (out,) = run(client(s), [Request(messages(), n=3, sampling={"seed": 0})])
    assert [x.index for x in out] == [0, 1, 2]
    assert [x.text.split("</think>")[0] for x in out] == ["<think>sample 0", "<think>sample 1", "<think>sample 2"]
    assert all(x.finish_reason == "stop" for x in out)
    assert s.stats["requests"] == 1  # n=3 in one request
    assert sum(x.prompt_tokens for x in out) == 64 + 2 and sum(x.completion_tokens for x in out) > 0


def test_sample_offset_picks_later_samples():
    with FakeOpenAIServer() as s:
        c = client(s)
        out = asyncio.run(c.generate(messages(), n=2, sampling={"seed": 10}, sample_offset=3))
    assert [x.index for x in out] == [3, 4]
    assert out[0].text.startswith("<think>sample 13")  # the request's seed is seed + first index


def test_server_that_ignores_n_gets_one_request_per_sample():
    with FakeOpenAIServer(supports_n=False) as s:
        (out,) = run(client(s), [Request(messages(), n=3, sampling={"seed": 0})])
    assert [x.text[:15] for x in out] == ["<think>sample 0", "<think>sample 1", "<think>sample 2"]
    assert s.stats["requests"] == 3


@pytest.mark.parametrize("fault", TRANSPORT_FAULTS)
def test_each_transport_fault_is_retried(fault):
    with FakeOpenAIServer(faults=Faults(stall_s=0.8)) as s:
        s.script = [fault, fault]
        c = client(s, timeout=0.4)
        (out,) = run(c, [Request(messages())])
    assert out[0].text.startswith("<think>sample 0")
    assert c.stats["retries"] == 2 and c.stats["requests"] == 3 and s.stats["ok"] == 1


def test_retry_after_is_honoured():
    with FakeOpenAIServer(faults=Faults(retry_after=0.6)) as s:
        s.script = ["rate_limit"]
        c = client(s, backoff=0.001)
        t0 = time.monotonic()
        run(c, [Request(messages())])
        waited = time.monotonic() - t0
    assert waited >= 0.6 and c.stats["fault:rate_limited"] == 1


def test_retry_after_parsing():
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a past date
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None


def test_failed_request_does_not_stop_the_others():
    with FakeOpenAIServer() as s:
        s.script = ["server_error", "server_error"]
        c = client(s, concurrency=1, max_retries=1)
        first, second = run(c, [Request(messages(0)), Request(messages(1))])
    assert isinstance(first, RequestFailed) and "http_500" in first.detail
    assert second[0].text.startswith("<think>")
    assert c.stats["failed"] == 1


def test_breaker_stops_a_run_against_a_failing_endpoint(tmp_path):
    with FakeOpenAIServer(faults=Faults(server_error=1.0)) as s:
        c = client(s, tmp_path, breaker_after=5, max_retries=10)
        with pytest.raises(EndpointDown, match="looks down: 5 failed attempts in a row"):
            run(c, [Request(messages(i)) for i in range(20)])
    assert s.stats["requests"] < 20


def test_breaker_on_a_dead_port():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    c = EndpointClient(f"http://127.0.0.1:{port}/v1", "m", backoff=0.01, breaker_after=4)
    with pytest.raises(EndpointDown, match="connection"):
        c.generate_many([Request(messages(i)) for i in range(3)])


@pytest.mark.parametrize("status,match", [(401, "refused the credentials"), (404, "has no model 'm'")])
def test_auth_and_missing_model_stop_at_once_without_the_key(monkeypatch, status, match):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeOpenAIServer() as s:
        s.fixed_status = status
        with pytest.raises(EndpointError, match=match) as err:
            run(client(s), [Request(messages(i)) for i in range(5)])
    assert SECRET not in str(err.value) and s.stats["requests"] <= 4


def test_bad_request_fails_that_request_only():
    with FakeOpenAIServer() as s:
        s.fixed_status = 400
        (out,) = run(client(s), [Request(messages())])
    assert isinstance(out, RequestFailed) and out.detail.startswith("HTTP 400")
    assert s.stats["requests"] == 1  # never retried


@pytest.mark.parametrize("fault,finish", [("length", "length"), ("refusal", "stop"), ("empty", "stop")])
def test_content_faults_are_returned_not_retried(fault, finish):
    with FakeOpenAIServer(faults=Faults(**{fault: 1.0})) as s:
        (out,) = run(client(s), [Request(messages())])
    assert out[0].finish_reason == finish and s.stats["requests"] == 1
    assert (out[0].refusal is not None) == (fault == "refusal")
    assert (out[0].text == "") == (fault == "empty")


def test_cache_answers_a_rerun_without_any_request(tmp_path):
    reqs = [Request(messages(i), n=2, sampling={"temperature": 1.0, "seed": 0}) for i in range(6)]
    with FakeOpenAIServer() as s:
        first = run(client(s, tmp_path), reqs)
        sent = s.stats["requests"]
        again = run(client(s, tmp_path), reqs)
        assert s.stats["requests"] == sent == 6
        more = run(client(s, tmp_path), [Request(r.messages, n=3, sampling=r.sampling) for r in reqs])
        assert s.stats["requests"] == 12  # only the third sample of each task was asked for
    assert [[x.text for x in r] for r in again] == [[x.text for x in r] for r in first]
    assert all(x.cached for r in again for x in r) and not any(x.cached for r in first for x in r)
    assert [x.index for x in more[0]] == [0, 1, 2] and [x.cached for x in more[0]] == [True, True, False]


def test_cache_key_by_image_content_model_and_sampling():
    ref = [{"role": "user", "content": [{"type": "image_ref", "sha256": __import__("hashlib").sha256(b"A").hexdigest()},
                                         {"type": "text", "text": "q"}]}]
    inline = [{"role": "user", "content": [image_part(b"A"), {"type": "text", "text": "q"}]}]
    key = request_key("m", inline, {"temperature": 1})
    assert request_key("m", ref, {"temperature": 1}) == key  # lazy and inline images key alike
    assert request_key("m", [{"role": "user", "content": [image_part(b"B"), inline[0]["content"][1]]}],
                       {"temperature": 1}) != key
    assert request_key("m2", inline, {"temperature": 1}) != key
    assert request_key("m", inline, {"temperature": 0.5}) != key


def test_image_ref_parts_are_sent_as_data_urls():
    import hashlib

    data = b"\x89PNG fake bytes"
    h = hashlib.sha256(data).hexdigest()
    with FakeOpenAIServer(keep_requests=True) as s:
        c = client(s, image_loader={h: data}.__getitem__)
        run(c, [Request([{"role": "user", "content": [{"type": "image_ref", "sha256": h}]}])])
    url = s.requests[0]["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == data


def test_key_never_reaches_cache_or_describe(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", SECRET)
    with FakeOpenAIServer() as s:
        c = client(s, tmp_path, api_key_env="MY_KEY")
        run(c, [Request(messages(i)) for i in range(3)])
    c.cache.close()
    assert all(SECRET.encode() not in p.read_bytes() for p in tmp_path.iterdir())
    assert SECRET not in repr(c.describe())


def test_redact_url():
    assert redact_url("https://user:pw@host:8000/v1") == "https://host:8000/v1"
    assert redact_url("http://127.0.0.1/v1?key=x") == "http://127.0.0.1/v1"


@pytest.mark.parametrize("url", ["notaurl", "127.0.0.1:8000/v1", "ftp://host/v1", "http:///v1"])
def test_a_url_that_is_not_http_is_refused_before_any_request(url):
    from schemas.errors import UserError

    with pytest.raises(UserError, match="is not an http\\(s\\) URL"):
        EndpointClient(url, "m")
