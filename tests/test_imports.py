"""Imports flow one way: schemas <- builders <- training <- polyground (the CLI).

Every module of the four packages is parsed with `ast` (module-level imports, imports inside
functions, and importlib / __import__ calls with a literal name); an import of a package above
the importer's own is an upstream edge, reported as file:line.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("schemas", "builders", "training", "polyground")  # each may import only those before it
_IMPORT_CALLS = {"import_module", "find_spec", "__import__"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of `from ..x import y` inside `module` (a package's __init__ counts as its package)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")[: -node.level]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """(module name, line) for every import in the file, at any depth."""
    rel = path.relative_to(root).with_suffix("")
    module = ".".join(rel.parts)
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((_resolve(module, node), node.lineno))
        elif isinstance(node, ast.Call) and _dotted(node.func).rsplit(".", 1)[-1] in _IMPORT_CALLS:
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append((arg.value, node.lineno))
    return out


def upstream_edges(root: Path = ROOT) -> list[str]:
    found = []
    for rank, layer in enumerate(LAYERS):
        above = set(LAYERS[rank + 1 :])
        for path in sorted((root / layer).rglob("*.py")):
            for name, line in imported_names(path, root):
                top = name.split(".")[0]
                if top in above:
                    found.append(f"{path.relative_to(root)}:{line}: {layer} imports {name}")
    return found


def test_imports_flow_one_way():
    edges = upstream_edges()
    assert not edges, "upstream imports (schemas <- builders <- training <- polyground):\n" + "\n".join(edges)


def test_every_import_form_is_seen(tmp_path):
    # The checker itself: each form of import names its line, so an upstream edge cannot hide in one.
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "x.py").write_text(
        "import os\n"
        "from builders import store\n"
        "def f():\n"
        "    import training.models\n"
        "    import importlib\n"
        "    importlib.import_module('polyground.cli')\n"
        "    importlib.util.find_spec('builders.cards')\n"
        "from . import boxes\n")
    for layer in LAYERS[1:]:
        (tmp_path / layer).mkdir()
    assert upstream_edges(tmp_path) == [
        "schemas/x.py:2: schemas imports builders",
        "schemas/x.py:4: schemas imports training.models",
        "schemas/x.py:6: schemas imports polyground.cli",
        "schemas/x.py:7: schemas imports builders.cards",
    ]
