"""Row values are data: printed to a terminal they are shown, not obeyed; in a card, text, not HTML."""
from __future__ import annotations

import pytest
from store_util import tasks_table, write_version

from builders.store import Store
from polyground.cli import main, terminal_safe
from schemas import rows

CLEAR, TITLE = "\x1b[2J\x1b[H", "\x1b]0;pwned\x07"  # clear-screen, set the window title
BIDI = "\u202e"  # right-to-left override: makes text read backwards
HTML = ['<img src=x onerror="alert(1)">', "<script>alert(document.cookie)</script>"]


def hostile_table(store, n: int = 4, **over):
    table = tasks_table(store, n)
    recs = table.to_pylist()
    for i, r in enumerate(recs):
        r["id"] = f"{CLEAR}row{i}{TITLE}"
        r["task_type"] = f"diff{TITLE}{BIDI}" if i % 2 else HTML[0]
        r["source"] = HTML[1]
        r.update(over)
    return rows.to_table(recs, "tasks")


@pytest.fixture
def cli(tmp_path, capsys):
    root = tmp_path / "store"

    def run(*argv):
        code = main(["--store", str(root), *map(str, argv)])
        out, err = capsys.readouterr()
        return code, out + err

    run.store = Store(root)
    return run


def raw_controls(text: str) -> list[str]:
    return sorted({repr(c) for c in text if not c.isprintable() and c != "\n"})


def test_data_show_and_diff_escape_control_characters(cli, capsys):
    a = write_version(cli.store, "h", table=hostile_table(cli.store))
    b = write_version(cli.store, "h", table=hostile_table(cli.store, question="changed"), config={"k": 2})
    assert raw_controls("".join(capsys.readouterr())) == []  # writing the card's plots printed nothing raw
    for argv in (("data", "show", a.ref), ("data", "diff", a.ref, b.ref), ("data", "ls")):
        code, out = cli(*argv)
        assert code == 0 and raw_controls(out) == [], (argv, out)
    _, shown = cli("data", "show", a.ref)
    assert "diff\\x1b]0;pwned\\x07\\u202e" in shown  # visible, so the user sees what the rows hold
    _, diffed = cli("data", "diff", a.ref, b.ref)
    assert "\\x1b[2J\\x1b[Hrow0" in diffed


def test_terminal_safe_keeps_newlines_and_printable_text():
    assert terminal_safe("a\nb é 漢") == "a\nb é 漢"
    assert terminal_safe("a\tb\rc\x00\x7f\x9b") == "a\\x09b\\x0dc\\x00\\x7f\\x9b"


def test_card_cells_escape_html_and_markdown(cli):
    v = write_version(cli.store, "h", table=hostile_table(cli.store),
                      extra={"note": "[click](javascript:alert(1))", "why": ["`</code><script>x</script>"]})
    card = (v.path / "README.md").read_text()
    for bad in ("<img", "<script", "[click](javascript"):
        assert bad not in card, bad
    assert "&lt;img src=x onerror=\"alert(1)\"&gt;" in card  # shown as text
    assert "&lt;script&gt;alert(document.cookie)&lt;/script&gt;" in card


def test_a_dollar_sign_in_a_row_value_is_not_mathtext_in_the_plots(cli, capsys):
    v = write_version(cli.store, "h", table=hostile_table(cli.store, task_type="$\\foo{$"))
    assert "data card failed" not in capsys.readouterr().err  # was: ValueError, a plain card without plots
    assert (v.path / "plots" / "task_mix.png").is_file() and "Task mix" in (v.path / "README.md").read_text()


def test_card_markdown_renders_no_html_from_rows(cli):
    """Rendered as the Hub renders Markdown (HTML allowed): no element comes from a row."""
    markdown_it = pytest.importorskip("markdown_it")  # a dependency of rich, here through datasets/typer
    v = write_version(cli.store, "h", table=hostile_table(cli.store),
                      extra={"why": ["`</code><script>x</script>"]})
    html = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(
        (v.path / "README.md").read_text())
    assert "<table>" in html  # the tables did render
    assert "<script" not in html and "<img src=x" not in html
