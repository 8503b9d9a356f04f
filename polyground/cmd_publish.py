"""`polyground publish REF --repo ID [--tag T] [--private] [--dry-run --out DIR] [--endpoint URL]`.

Exports the version (Parquet with embedded images, card, plots, manifest) and
pushes it to a Hub dataset repo as one commit plus a tag, so that
`datasets.load_dataset(ID, revision=TAG)` returns exactly this version. The
file list with sizes goes to standard output; the last line names the result.
"""
from __future__ import annotations

from polyground.cli import add_config_option, open_store


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def add_parsers(sub) -> None:
    p = sub.add_parser("publish", help="push a version to the Hugging Face Hub with its card, then tag it",
                       description=__doc__.splitlines()[0])
    p.add_argument("ref", metavar="REF", help="dataset version: NAME@VERSION, NAME@TAG or NAME")
    # not argparse-required: a --config file may give it (checked in run)
    p.add_argument("--repo", help="Hub dataset repo id, e.g. me/mig-cot (required)")
    p.add_argument("--tag", help="tag to create on the commit (default: the version id)")
    p.add_argument("--private", action="store_true", help="create the repo private (ignored if it exists)")
    p.add_argument("--dry-run", action="store_true", help="write and list the folder, send nothing")
    p.add_argument("--out", help="write the exported folder here (kept); with --dry-run, what would be sent")
    p.add_argument("--endpoint", help="Hub endpoint URL (default: $HF_ENDPOINT or https://huggingface.co)")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from builders.publish.publish import publish
    from schemas.errors import UserError

    if not args.repo:
        raise UserError("publish needs --repo ID (e.g. --repo me/mig-cot), on the command line or in --config")
    result = publish(open_store(args), args.ref, args.repo, tag=args.tag, private=args.private,
                     dry_run=args.dry_run, out=args.out, endpoint=args.endpoint)
    total = sum(size for _, size in result.files)
    verb = "would send" if args.dry_run else "sent" if result.commit else "nothing sent; the repo already holds"
    print(f"{verb} {len(result.files)} files, {human_size(total)}:")
    for path, size in result.files:
        print(f"  {human_size(size):>10}  {path}")
    for note in result.notes:
        print(note)
    if result.folder:
        print(f"folder: {result.folder} (load it with datasets.load_dataset({str(result.folder)!r}))")
    if args.dry_run:
        print(f"dry run: {result.ref} -> {result.repo_id} at tag {result.tag} (nothing sent)")
    else:
        commit = f" (commit {result.commit[:12]})" if result.commit else ""
        print(f"published {result.ref} to {result.url} at tag {result.tag}{commit}: "
              f"datasets.load_dataset({result.repo_id!r}, revision={result.tag!r})")
    return 0
