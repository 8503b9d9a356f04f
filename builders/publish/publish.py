"""Publish a frozen version to the Hugging Face Hub: export, one commit, one tag.

    publish(store, "cot@3f2a...", "me/mig-cot")         -> PublishResult

1. `builders.publish.export.export_version` writes the folder that goes up: Parquet
   shards with the images embedded, the card (README.md, whose YAML `configs`
   point at the shards), its plots and `manifest.json`. The card's
   `data_files` patterns are checked against the shards before anything is
   sent, so the folder is what `datasets.load_dataset(folder)` reads.
2. `create_repo(exist_ok=True)`, then ONE commit of the whole folder; remote
   files that are not in the folder are deleted in that same commit, so the
   tagged tree holds exactly this version (no shard of an older one).
3. `create_tag` on that commit; the tag defaults to the version id. Then
   `datasets.load_dataset(repo, revision=tag)` returns exactly this version.

With `dry_run` nothing is sent: the folder is written (to `out`) and listed.
The token comes from HF_TOKEN or the saved login (`huggingface_hub.get_token`);
it is handed to HfApi in memory only and scrubbed from every error message.
The endpoint must be a plain http(s) URL: `user:password@` in it is refused
(httpx would send them as Basic auth in place of the token).
"""
from __future__ import annotations

import contextlib
import fnmatch
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from builders import secrets
from builders.publish.cards import CARD
from schemas.errors import UserError


@dataclass
class PublishResult:
    repo_id: str
    tag: str
    ref: str  # the store version, name@id
    files: list[tuple[str, int]]  # (path in the repo, bytes), sorted
    folder: Path | None = None  # where the folder was written (kept only with --out)
    commit: str | None = None  # None for a dry run
    url: str | None = None
    notes: list[str] = field(default_factory=list)


def card_data_files(folder: Path) -> list[str]:
    """The `data_files` path patterns of the card's YAML header."""
    import yaml

    text = (folder / CARD).read_text()
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        raise UserError(f"{CARD} in {folder} has no YAML header; the Hub could not find the data files")
    header = yaml.safe_load(text[4:text.index("\n---", 4)]) or {}
    patterns = []
    for config in header.get("configs") or []:
        for entry in config.get("data_files") or []:
            paths = entry.get("path") if isinstance(entry, dict) else entry
            patterns += [paths] if isinstance(paths, str) else list(paths or [])
    return patterns


def check_folder(folder: Path) -> list[tuple[str, int]]:
    """List the folder; fail if the card's patterns and the Parquet shards disagree
    (a shard no config reads, or a pattern that reads nothing)."""
    files = sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    names = [f for f, _ in files]
    if CARD not in names:
        raise UserError(f"the export of this version has no {CARD}")
    patterns = card_data_files(folder)
    shards = [f for f in names if f.endswith(".parquet")]
    unread = [s for s in shards if not any(fnmatch.fnmatch(s, p) for p in patterns)]
    empty = [p for p in patterns if not any(fnmatch.fnmatch(s, p) for s in shards)]
    if not shards or unread or empty:
        raise UserError(f"the card's data_files {patterns} do not match the exported shards {shards}; "
                        "rebuild the version so its card matches the export layout")
    return files


def export_folder(store, version, folder: Path) -> list[tuple[str, int]]:
    """Export `version` into an empty `folder` and check it; return (path, size) pairs."""
    from builders.publish.export import export_version

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"--out {folder} exists and is not an empty folder; choose a new one")
    folder.mkdir(parents=True, exist_ok=True)
    export_version(store, version, folder, marker=False)  # the export marker is not part of the dataset
    return check_folder(folder)


def hub_endpoint(endpoint: str, what: str) -> str:
    """The Hub endpoint URL, checked: http(s), a valid port, no credentials."""
    _, auth = secrets.split_credentials(secrets.check_url(endpoint, what))  # registers any for scrub
    if auth:
        raise UserError(f"{what} {secrets.redact_url(endpoint)!r} carries user:password; the Hub "
                        "authenticates with the token (HF_TOKEN), so give the URL without them")
    return endpoint.rstrip("/")


def hub_token() -> str:
    """HF_TOKEN, else the token saved by `hf auth login`; never stored by us."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a write token is needed)")
    secrets.register(token)
    return token


def _root_cause(e: BaseException) -> BaseException:
    """huggingface_hub wraps failed LFS uploads in RuntimeError; the cause says why."""
    while isinstance(e, RuntimeError) and e.__cause__ is not None:
        e = e.__cause__
    return e


def _message(e: BaseException, repo_id: str, endpoint: str) -> str | None:
    """One line for a Hub failure, or None when it is not one we know."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    if isinstance(e, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set: unset it to publish (publishing needs the network)"
    if isinstance(e, RepositoryNotFoundError):
        return f"dataset repo {repo_id} not found on {endpoint}, or the token cannot see it"
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code
        if status == 401:
            return f"{endpoint} rejected the token (401): check HF_TOKEN or run `hf auth login`"
        if status == 403:
            return f"the token has no write access to {repo_id} (403): use a write token or another namespace"
        detail = (e.server_message or str(e)).strip().splitlines()[0]
        return f"the Hub answered {status} for {repo_id}: {detail}"
    if isinstance(e, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return f"cannot reach the Hub at {endpoint}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


@contextlib.contextmanager
def hub_errors(repo_id: str, endpoint: str, token: str | None):
    """Turn Hub and network failures into one-line UserErrors that never show the token."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - every failure becomes one line, with a known cause or not
        cause = _root_cause(e)
        text = _message(cause, repo_id, endpoint) or f"publishing to {repo_id} failed: {type(cause).__name__}: {cause}"
        text = text.splitlines()[0] if text else text
        if token:
            text = text.replace(token, secrets.MASK)
        raise UserError(secrets.scrub(text)) from None


def upload(folder: Path, repo_id: str, tag: str, version, *, private: bool, endpoint: str | None,
           token: str) -> tuple[str | None, str, list[str]]:
    """Create the repo, commit the folder once, tag the commit. Returns (commit, url, notes);
    commit is None when the tag already marks this very version (nothing sent)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    repo_url = api.create_repo(repo_id, repo_type="dataset", private=True if private else None, exist_ok=True)
    tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type="dataset").tags}
    if tag in tags:
        if tag == version.id:  # the id hashes the content: that tag already holds this version
            return None, str(repo_url), [f"tag {tag} already exists (commit {tags[tag][:12]}): already published"]
        raise UserError(f"tag {tag!r} already exists in {repo_id} (commit {tags[tag][:12]}); pass another --tag")
    commit = api.upload_folder(
        folder_path=folder, repo_id=repo_id, repo_type="dataset", delete_patterns="*",
        commit_message=f"polyground: {version.ref} ({version.kind})",
        commit_description=f"Dataset version {version.ref}, code {version.manifest.get('code_version', '?')}.",
    )
    api.create_tag(repo_id, tag=tag, revision=commit.oid, repo_type="dataset",
                   tag_message=f"polyground {version.ref}")
    return commit.oid, str(repo_url), []


def publish(store, ref: str, repo_id: str, *, tag: str | None = None, private: bool = False,
            dry_run: bool = False, out: Path | None = None, endpoint: str | None = None) -> PublishResult:
    """Export `ref` and push it as one commit + tag (or, with dry_run, only write the folder)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except ValueError as e:
        raise UserError(f"--repo {repo_id!r}: {str(e).splitlines()[0]}") from None
    version = store.resolve(ref)
    tag = tag or version.id
    endpoint = hub_endpoint(endpoint, "--endpoint") if endpoint else hub_endpoint(constants.ENDPOINT, "HF_ENDPOINT")
    token = None if dry_run else hub_token()  # before the export: fail fast without a token
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="polyground-publish-"))
    try:
        files = export_folder(store, version, folder)
        result = PublishResult(repo_id, tag, version.ref, files, folder if out else None)
        if dry_run:
            return result
        with hub_errors(repo_id, endpoint, token):
            result.commit, result.url, result.notes = upload(
                folder, repo_id, tag, version, private=private, endpoint=endpoint, token=token)
        return result
    finally:
        if not out:
            shutil.rmtree(folder, ignore_errors=True)
