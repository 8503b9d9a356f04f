"""The one exception type whose message is shown to users as is, and `printable`,
which makes user-given text (row values in messages, reports, plot labels) inert."""


class UserError(Exception):
    """A problem the user can fix; the CLI prints `error: <message>` and exits 2."""


def printable(text, keep_newlines: bool = True) -> str:
    """`text` with control and other unprintable characters (ESC sequences, bidi overrides)
    shown as Python-style escapes, so that a row value printed to a terminal is seen, not obeyed."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or (keep_newlines and c == "\n") else _escape(c) for c in text)


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"
