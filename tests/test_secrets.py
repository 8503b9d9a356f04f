"""Credentials: a URL's user:password works (as Basic auth) and no secret leaves the process.

A password and an API key are planted; every path that handles them (a good
build, a URL without a scheme, publish --endpoint, a 401, a 5xx and a 400
from a loopback server that echoes the request's headers, an internal error
with and without POLYGROUND_DEBUG=1, a teacher that echoes the key) is run
through the CLI, and every byte it printed or wrote (store files: rows,
rejects, manifest, card, response cache; output folders) is searched for each
form the tool handled the secrets in: as typed, URL-encoded, the base64 of
`user:password` and the key as sent in `Bearer KEY`.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote

import pytest

from builders import secrets
from openai_server import FakeOpenAIServer, GroundTruthPolicy, Reply
from polyground.cli import main

USER, PASSWORD = "bob", "pw-PLANTED/+:9x"  # needs URL-encoding
KEY = "sk-PLANTED-key-5d1e77"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
FORMS = [PASSWORD, quote(PASSWORD, safe=""), BASIC.split()[1], KEY, "PLANTED"]


def creds_url(server) -> str:
    return server.url.replace("http://", f"http://{USER}:{quote(PASSWORD, safe='')}@")


def leaks(text: str, root: Path) -> list[str]:
    """Each (form, place) where a planted secret shows up: in `text` or any file under `root`."""
    found = [f"{form!r} in output" for form in FORMS if form in text]
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{form!r} in {path.relative_to(root)}" for form in FORMS if form.encode() in data]
    return found


@pytest.fixture
def env(tmp_path, monkeypatch, capsys):
    """A store with a 3-task synthetic version; `run(*argv)` -> (code, stdout + stderr)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("POLYGROUND_DEBUG", raising=False)
    secrets.clear()
    store = tmp_path / "store"

    def run(*argv):
        code = main(["--store", str(store), *map(str, argv)])
        out, err = capsys.readouterr()
        return code, out + err

    code, _ = run("build", "tasks", "--source", "synthetic", "--name", "t", "--n", "3", "--quiet")
    assert code == 0
    from builders.store import Store

    run.store, run.root = Store(store), tmp_path
    yield run
    secrets.clear()


def cot(run, url, *more):
    return run("build", "cot", "--tasks", "t", "--name", "c", "--teacher-url", url, "--teacher-model", "m",
               "--samples", "1", "--max-retries", "0", "--quiet", *more)


def test_url_credentials_are_sent_as_basic_auth_and_never_kept(env):
    tasks = env.store.resolve("t").table().to_pylist()
    with FakeOpenAIServer(GroundTruthPolicy(tasks), keep_requests=True) as s:
        s.auth = BASIC  # anything else is a 401
        code, out = cot(env, creds_url(s))
    assert code == 0, out
    assert s.headers and all(h["authorization"] == BASIC for h in s.headers)
    v = env.store.resolve("c")
    assert v.manifest["counts"]["rows"] == 3
    assert v.manifest["generator"]["base_url"] == s.url  # the URL without credentials
    assert leaks(out, env.root) == []


def test_a_teacher_echoing_the_key_gets_it_stored_nowhere(env):
    tasks = env.store.resolve("t").table().to_pylist()
    truth = GroundTruthPolicy(tasks)

    def echo_key(request, index):
        answer = truth(request, index)
        if index == 0:  # kept: the key inside the reasoning
            return answer.replace("<think>", f"<think>My key is {KEY}. ")
        return Reply(f"I'm sorry, {KEY} may not do this.", refusal=f"refused for {KEY}")  # rejected

    with FakeOpenAIServer(echo_key) as s:
        code, out = cot(env, s.url, "--samples", "2", "--keep-per-task", "2")
    assert code == 0, out
    v = env.store.resolve("c")
    assert v.manifest["counts"]["rows"] == 3 and v.manifest["counts"]["dropped_by_reason"] == {"refusal": 3}
    assert "My key is ***." in v.table().column("reasoning")[0].as_py()
    assert leaks(out, env.root) == []  # rows, rejects, the response cache (sqlite + WAL), the card


def test_a_url_without_scheme_is_one_line_without_the_password(env):
    code, out = cot(env, f"{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:8000/v1")
    assert code == 2 and out.count("\n") == 1 and "is not an http(s) URL" in out
    assert leaks(out, env.root) == []


@pytest.mark.parametrize("flag", ["--policy", "--endpoint"])
def test_a_generation_url_without_scheme_is_one_line_without_the_password(env, flag, tmp_path):
    url = f"{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:8000/v1"
    if flag == "--policy":
        code, out = env("build", "rl-pool", "--tasks", "t", "--name", "r", "--policy", url, "--policy-model", "m",
                        "--profile", "norm1000")
    else:
        code, out = env("eval", "--bench", "t", "--endpoint", url, "--endpoint-model", "m", "--output", tmp_path / "o",
                        "--profile", "norm1000")
    assert code == 2 and out.strip().count("\n") == 0 and "http(s) URL" in out, out
    assert leaks(out, env.root) == []


@pytest.mark.parametrize("endpoint", ["http://{creds}@127.0.0.1:9", "{creds}@127.0.0.1:9"])
def test_publish_endpoint_with_credentials_is_refused_without_the_password(env, monkeypatch, endpoint):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", "hf_PLANTED_token")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the old code then tried to connect
    url = endpoint.format(creds=f"{USER}:{quote(PASSWORD, safe='')}")
    code, out = env("publish", "t", "--repo", "me/x", "--endpoint", url)
    assert code == 2 and out.strip().count("\n") == 0 and "--endpoint" in out, out
    assert leaks(out, env.root) == []


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("case", ["401_url", "401_key", "500_echo", "400_echo", "400_key"])
def test_failing_endpoint_never_shows_or_stores_a_secret(env, monkeypatch, case, debug):
    if debug:
        monkeypatch.setenv("POLYGROUND_DEBUG", "1")
    with FakeOpenAIServer() as s:
        s.echo_headers = True  # every error body quotes Authorization: Basic ... / Bearer ...
        url = s.url if case.endswith("_key") else creds_url(s)  # _key: only `Bearer KEY` is sent
        s.fixed_status = int(case[:3])
        code, out = cot(env, url, "--breaker-after", "1")
    if case.startswith("400"):  # a bad request fails that task only; its reject holds the (scrubbed) body
        assert code == 0, out
        rejects = env.store.resolve("c").rejects().to_pylist()
        assert {r["reason"] for r in rejects} == {"request_failed"} and "***" in rejects[0]["detail"]
    else:
        assert code == 2 and out.strip().startswith("error: endpoint") and out.strip().count("\n") == 0, out
    assert leaks(out, env.root) == []


@pytest.mark.parametrize("debug", [False, True])
def test_an_internal_error_holding_the_url_is_scrubbed_even_in_the_traceback(env, monkeypatch, debug):
    import builders.cot

    if debug:
        monkeypatch.setenv("POLYGROUND_DEBUG", "1")

    def broken(task, samples, cfg, *rest):  # a library error that quotes the URL it was given
        raise RuntimeError(f"cannot handle {cfg.teacher_url} (Authorization: {BASIC}, Bearer {KEY})")

    monkeypatch.setattr(builders.cot, "gate", broken)
    tasks = env.store.resolve("t").table().to_pylist()
    with FakeOpenAIServer(GroundTruthPolicy(tasks)) as s:
        s.auth = BASIC
        code, out = cot(env, creds_url(s))
    assert code == 1 and "RuntimeError" in out and ("Traceback" in out) == debug, out
    assert leaks(out, env.root) == []


def test_redact_url_never_raises_and_drops_every_credential():
    assert secrets.redact_url("https://user:pw@host:8000/v1?key=x#f") == "https://host:8000/v1"
    assert secrets.redact_url("user:pw@host:8000/v1") == "host:8000/v1"
    assert secrets.redact_url("http://u:p/w@d@host:99999/v1") == "http://host:99999/v1"
    assert secrets.redact_url("http://host:abc/v1") == "http://host:abc/v1"


def test_short_keys_are_not_cut_out_of_received_text():
    secrets.clear()
    secrets.register("EMPTY", "a-long-secret-key")
    assert secrets.scrub_received("EMPTY box; a-long-secret-key") == "EMPTY box; ***"
    assert json.dumps(secrets.scrub("EMPTY")) == '"***"'
    secrets.clear()
