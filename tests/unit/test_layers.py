"""The layers point one way: commands -> runners -> pipelines -> transforms -> schemas.

Walks every import statement (module level and inside functions) of the package folders
with :mod:`ast` and checks that ``transforms/``, ``schemas/`` and ``pipelines/`` import
nothing from the commands (``msewatch/*.py``, ``msewatch/commands/local``) or ``runners/``, and
that ``runners/`` imports nothing from the commands (docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("schemas", "transforms", "pipelines", "runners")  # the folders below the commands
COMMANDS = {p.stem for p in (REPO / "msewatch").iterdir() if p.suffix == ".py" or p.is_dir()}
COMMANDS -= {"__init__", "__main__", "__pycache__"}
FORBIDDEN = {
    "schemas": {"commands", "runners", "pipelines", "transforms"},
    "transforms": {"commands", "runners", "pipelines"},
    "pipelines": {"commands", "runners"},
    "runners": {"commands"},
}


def layer_of(module: str) -> str | None:
    """``msewatch.runners.launch`` -> ``runners``; ``msewatch.cli`` -> ``commands``;
    ``msewatch`` itself (its ``__version__``) and other packages -> None."""
    parts = module.split(".")
    if parts[0] != "msewatch" or len(parts) == 1:
        return None
    if parts[1] in LAYERS:
        return parts[1]
    return "commands" if parts[1] in COMMANDS else None


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every import in ``path``: ``import msewatch.cli`` names
    ``msewatch.cli``, and so does ``from msewatch import cli``; ``from msewatch import
    __version__`` names ``msewatch.__version__`` (no layer)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def violations(folder: str) -> list[str]:
    found = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for line, module in imported_modules(path):
            layer = layer_of(module)
            if layer in FORBIDDEN[folder]:
                found.append(f"{path.relative_to(REPO)}:{line} imports {module} ({layer})")
    return found


@pytest.mark.parametrize("folder", list(FORBIDDEN))
def test_a_layer_imports_nothing_from_the_layers_above_it(folder):
    assert violations(folder) == []


def test_the_walk_finds_an_upward_import(tmp_path, monkeypatch):
    # the check itself can fail: a runners module that imports the summary command
    (tmp_path / "runners").mkdir()
    (tmp_path / "msewatch").mkdir()
    (tmp_path / "runners" / "bad.py").write_text(
        "def f():\n    from msewatch.commands import summary\n    import msewatch.cli\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["REPO"]), "REPO", tmp_path)
    assert violations("runners") == [
        "runners/bad.py:2 imports msewatch.commands.summary (commands)",
        "runners/bad.py:3 imports msewatch.cli (commands)",
    ]
