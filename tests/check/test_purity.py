"""check/ stays a pure library: no other quorumdb layer, no I/O, clock, randomness or threads.

That is what lets the same checker judge the simulator, real-process runs and foreign
histories (DESIGN.md, "Layers"). Enforced on the source, so a stray import fails here, not in
review.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import quorumdb.check

CHECK_DIR = Path(quorumdb.check.__file__).parent
FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading", "subprocess", "pathlib"}


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: use absolute imports"
            names.append(node.module or "")
    return names


MODULES = sorted(CHECK_DIR.rglob("*.py"))


def test_subpackages_are_covered() -> None:
    """The Elle checker lives in a subpackage; the rule holds there too."""
    assert CHECK_DIR / "elle" / "cycles.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CHECK_DIR)))
def test_check_modules_import_nothing_impure(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {name}"
        if top == "quorumdb":
            assert name.startswith("quorumdb.check"), f"{path.name} imports {name}"


def test_importing_check_loads_no_other_quorumdb_layer() -> None:
    code = (
        "import sys, quorumdb.check\n"
        "print(sorted(m for m in sys.modules if m.startswith('quorumdb.')"
        " and not m.startswith('quorumdb.check')))\n"
        "print(sorted(m for m in ('asyncio', 'socket', 'threading', 'random')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["[]", "[]"]
