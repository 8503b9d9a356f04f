"""Read and check one image reference: bytes + size, or a named reason why not.

A reference is a Path (relative to the source root, or absolute inside it) or
the bytes themselves. Everything a source points at is untrusted: paths may
try to leave the source folder, name a URL, or hold a truncated file or a
decompression bomb. Failures raise `ImageRejected(reason, detail)` with the
reasons of docs/internals.md (`invalid_path` for a name the OS refuses: a NUL
byte, a name too long, a symlink loop); nothing else escapes. `sha256_file` is the file
hash the store uses for images and version files.

One EXIF rule: an image whose EXIF orientation says it is displayed rotated or
mirrored is stored upright (`upright`: orientation applied, re-encoded without
EXIF), so its stored width/height, every box normalised on it, the export's
`datasets.Image` (which would rotate it on decode), training, generation and
eval all see the same pixels. `fit` resizes an image to the exact size a model
is sent (builders.inference.backends: the pixel budget's smart_resize frame).
"""
from __future__ import annotations

import errno
import hashlib
import io
import re
import struct
import warnings
from pathlib import Path

EXIF_ORIENTATION = 0x0112
SWAPS_SIDES = (5, 6, 7, 8)  # orientations that turn the image a quarter: width and height swap
MAX_PIXELS = 64_000_000  # a decompression-bomb bound far above any real grounding image
URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")  # also `http:/x`, what Path makes of `http://x`


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class ImageRejected(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _path_error(text: str, e: Exception) -> ImageRejected:
    """A path the OS refuses (NUL byte, a name too long, a symlink loop, not encodable) as a named reason."""
    shown = text if len(text) <= 120 else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"
    if isinstance(e, UnicodeError):
        why = "not encodable as a file name"
    elif isinstance(e, ValueError):
        why = "contains a NUL byte" if "null" in str(e) else str(e)
    elif isinstance(e, RuntimeError) or getattr(e, "errno", None) == errno.ELOOP:
        why = "a symlink loop"
    else:
        why = getattr(e, "strerror", None) or str(e)
    return ImageRejected("invalid_path", f"{shown!r}: {why}")


def resolve_path(ref: Path | str, root: Path | None) -> Path:
    """The file a path reference names, refusing URLs and escapes from `root`."""
    text = str(ref)
    if URL_RE.match(text):
        raise ImageRejected("url_not_allowed", f"{text}: download images first and point at the files")
    try:
        if root is None:
            return Path(ref).resolve()
        root = Path(root).resolve()
        path = (root / ref).resolve()  # follows symlinks, so a link out of root is caught too
    except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: Python 3.11's symlink loop
        raise _path_error(text, e) from None
    if not path.is_relative_to(root):
        raise ImageRejected("path_escapes_root", f"{text} resolves outside {root}")
    return path


def read_path(ref: Path | str, root: Path | None) -> bytes:
    path = resolve_path(ref, root)
    try:
        if not path.is_file():
            raise ImageRejected("missing_image", f"{ref}: no such file")
        return path.read_bytes()
    except ImageRejected:
        raise
    except (ValueError, RuntimeError) as e:
        raise _path_error(str(ref), e) from None
    except OSError as e:
        if e.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            raise _path_error(str(ref), e) from None
        raise ImageRejected("missing_image", f"{ref}: {e.strerror}") from None


def header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG or GIF header; PIL refuses 0-pixel images
    as unidentifiable, and we want to name that case."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:4] == b"GIF8" and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    return None


def _detail(e: Exception) -> str:
    if type(e).__name__ == "UnidentifiedImageError":
        return "not a recognised image format"
    # PIL messages may hold object addresses; rejects must be reproducible
    return re.sub(r" at 0x[0-9a-f]+", "", f"{type(e).__name__}: {e}")


def check_image(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of fully decodable image bytes, else ImageRejected."""
    from PIL import Image

    size = header_size(data)
    if not data or (size and 0 in size):
        raise ImageRejected("zero_size_image", f"{size[0]}x{size[1]} pixels" if data else "the file is empty")
    try:
        with warnings.catch_warnings():  # PIL warns on big headers; we reject them by name below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        with im:
            width, height = im.size  # header only: check the bound before decoding
            if width * height > max_pixels:
                raise ImageRejected("image_too_large", f"{width}x{height} exceeds {max_pixels} pixels")
            if width == 0 or height == 0:
                raise ImageRejected("zero_size_image", f"{width}x{height}")
            im.verify()  # checksums and structure
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # verify() misses truncated pixel data in some formats
    except ImageRejected:
        raise
    except Image.DecompressionBombError as e:
        raise ImageRejected("image_too_large", str(e)) from None
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise ImageRejected("undecodable_image", _detail(e)) from None
    return width, height


def orientation(im) -> int:
    """The EXIF orientation tag of an open image (1, upright, when there is none or it is bad)."""
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block is no orientation; the pixels decoded fine
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def displayed_size(im) -> tuple[int, int]:
    """(width, height) of an open image as shown, its EXIF orientation applied."""
    w, h = im.size
    return (h, w) if orientation(im) in SWAPS_SIDES else (w, h)


def _encode(im, like: str | None) -> bytes:
    """PNG (lossless), or JPEG at quality 95 for a JPEG source (a photo as PNG is 5-10x larger)."""
    buf = io.BytesIO()
    if like == "JPEG":
        im.convert("RGB").save(buf, format="JPEG", quality=95)
    else:
        im.save(buf, format="PNG")
    return buf.getvalue()


def upright(data: bytes) -> tuple[bytes, int, int]:
    """(bytes, width, height) as displayed: an image with an EXIF rotation or mirror is
    transposed and re-encoded without EXIF; any other comes back unchanged."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        if orientation(im) == 1:
            return data, *im.size
        fmt = im.format
        out = ImageOps.exif_transpose(im)
        if out.mode not in ("RGB", "RGBA", "L", "LA", "P", "I;16", "I"):
            out = out.convert("RGB")
        return _encode(out, fmt), *out.size


def fit(data: bytes, width: int, height: int) -> bytes:
    """The image resized to exactly width x height (bicubic, as the Qwen-VL processor), or
    unchanged when it already has that size."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.size == (width, height):
            return data
        fmt = im.format
        im = im.convert("RGB") if im.mode not in ("RGB", "L") else im
        return _encode(im.resize((width, height), Image.Resampling.BICUBIC), fmt)


def load_image_bytes(ref: Path | str | bytes, root: Path | None = None) -> tuple[bytes, int, int]:
    """(bytes, width, height) for a reference, upright (see `upright`), or ImageRejected
    with a named reason."""
    data = bytes(ref) if isinstance(ref, (bytes, bytearray, memoryview)) else read_path(ref, root)
    check_image(data)
    try:
        return upright(data)
    except Exception as e:  # decoded fine above; a transpose failure is still the image's fault
        raise ImageRejected("undecodable_image", _detail(e)) from None
