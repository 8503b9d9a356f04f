"""Secrets the tool holds in memory, and scrubbing them out of any text it shows or stores.

The secrets are the API key of an endpoint (sent as `Authorization: Bearer KEY`),
the user:password of an endpoint URL (sent as `Authorization: Basic
base64(user:password)`), and the Hub token. Whoever reads one registers it
here (`register`, `split_credentials`); `scrub(text)` then replaces every form
the tool itself sent or was given (as is, URL-encoded, the base64 of
`user:password`) with `***`. The CLI passes every error line and traceback
through `scrub`; builders pass received text through `scrub_received` before
it is cached or stored (a teacher may echo the key in its completion).

URLs: `redact_url` drops the user:password, query and fragment of a URL,
scheme or not, and never raises (a bad port must not turn a message into a
crash); `check_url` turns a URL into one-line errors naming what is wrong.
"""
from __future__ import annotations

import base64
import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from schemas.errors import UserError

MASK = "***"
# Received text is data: a short key such as vLLM's conventional "EMPTY" must not
# be cut out of completions. Messages are scrubbed of every form of 4+ characters.
MIN_MESSAGE, MIN_RECEIVED = 4, 8

_secrets: set[str] = set()
# [scheme://]userinfo@ at the start of a URL-like string, up to its last "@": a password
# typed with a raw "/" or "@" in it must not survive redaction either.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?(.*)@")


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret), quote(secret, safe="@:")}


def register(*secrets: str | None) -> None:
    """Remember secrets (and their URL-encoded forms) for `scrub`."""
    for s in secrets:
        if s:
            _secrets.update(f for f in _forms(s) if f)


def clear() -> None:
    """Forget every registered secret (tests)."""
    _secrets.clear()


def _scrub(text, min_len: int) -> str:
    text = str(text)
    for s in sorted(_secrets, key=len, reverse=True):  # longest first: a key inside a longer form
        if len(s) >= min_len and s in text:
            text = text.replace(s, MASK)
    return text


def scrub(text) -> str:
    """`text` with every registered secret masked (for messages, logs, tracebacks)."""
    return _scrub(text, MIN_MESSAGE)


def scrub_received(text: str | None) -> str | None:
    """Text received from an endpoint, masked before it is cached or stored."""
    return None if text is None else _scrub(text, MIN_RECEIVED)


def redact_url(url) -> str:
    """The URL without user:password, query or fragment; safe for manifests and messages."""
    url = re.split(r"[?#]", str(url), maxsplit=1)[0]
    m = _USERINFO.match(url)
    return (m.group(1) or "") + url[m.end():] if m else url


def check_url(url, what: str) -> str:
    """`url` if it is an http(s) URL with a host and a valid port; else a one-line UserError."""
    if not isinstance(url, str):
        raise UserError(f"{what} must be an http(s) URL (a string), got {type(url).__name__}")
    shown = redact_url(url)
    example = "(for example http://127.0.0.1:8000/v1)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UserError(f"{what} {shown!r} has a bad port: use a number from 1 to 65535 {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{what} {shown!r} is not an http(s) URL {example}")
    if port == 0:
        raise UserError(f"{what} {shown!r} has a bad port: use a number from 1 to 65535 {example}")
    return url


def split_credentials(url: str) -> tuple[str, str | None]:
    """(the URL without user:password, the `Authorization` value those credentials make, or None).

    The credentials are registered for `scrub` in every form the tool handles them:
    as typed (URL-encoded), decoded, and as the base64 of `user:password`.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    userinfo = parts.netloc.rsplit("@", 1)[0]
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    # With no password the user part is the secret (a token given as https://TOKEN@host).
    register(password or user, userinfo, unquote(userinfo), token)
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), f"Basic {token}"
