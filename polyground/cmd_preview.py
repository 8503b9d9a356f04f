"""`polyground data preview REF --out page.html [--n N] [--page P]`: a self-contained HTML page of N rows.

Images are inlined, boxes drawn over them (target in green, the parsed
prediction of cot and predictions rows in magenta); open the file in any
browser, offline.
"""
from __future__ import annotations

from polyground.cli import add_config_option, open_store


def add_parsers(sub) -> None:
    from builders.publish.preview import IMAGES_PER_ROW  # stdlib-only module: cheap at parser time

    p = sub.add_parser("preview", help="write an HTML page showing N rows with their images and boxes",
                       description=__doc__.splitlines()[0])
    p.add_argument("ref", metavar="REF", help="dataset version: NAME@VERSION, NAME@TAG or NAME")
    p.add_argument("--out", help="HTML file to write (required; may come from --config)")
    p.add_argument("--n", type=int, default=12, help="rows to show, spread evenly over the dataset (default 12)")
    p.add_argument("--page", type=int, help="show the P-th page of N consecutive rows instead (1-based)")
    p.add_argument("--images-per-row", type=int, default=IMAGES_PER_ROW,
                   help=f"images shown per row, the rest counted (default {IMAGES_PER_ROW})")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from builders.publish.preview import write_preview
    from schemas.errors import UserError

    if not args.out:
        raise UserError("data preview needs --out FILE.html, on the command line or in --config")
    rows, images = write_preview(open_store(args), args.ref, args.out, n=args.n, page=args.page,
                                 images_per_row=args.images_per_row)
    print(f"wrote {args.out}: {rows} rows, {images} images")
    return 0
