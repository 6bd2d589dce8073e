"""The layering rules of DESIGN.md, enforced on the source (an import-linter contract in test form).

- `raft/`, `check/`, `kafka/protocol/` and the state machines are pure: no asyncio, socket,
  time, random, os, threading (nor their submodules); time and randomness are injected.
- `check/` imports nothing else of quorumdb; `raft/` imports no other quorumdb layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "quorumdb"
FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading", "subprocess", "selectors"}
PURE_PACKAGES = ("raft", "check", "kafka/protocol")
PURE_MODULES = ("sim/state_machine.py",)
# raft/testing is test support: it seeds its own random.Random for reproducible test clusters.
EXEMPT = ("raft/testing/",)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _pure_files() -> list[Path]:
    files = [p for pkg in PURE_PACKAGES for p in sorted((SRC / pkg).rglob("*.py"))]
    files += [SRC / m for m in PURE_MODULES]
    return [f for f in files if not any(str(f.relative_to(SRC)).startswith(e) for e in EXEMPT)]


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_pure_module_has_no_io_imports(path: Path) -> None:
    bad = {n for n in _imports(path) if n.split(".")[0] in FORBIDDEN}
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", sorted((SRC / "check").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_check_imports_nothing_else_of_quorumdb(path: Path) -> None:
    bad = {
        n for n in _imports(path) if n.startswith("quorumdb") and not n.startswith("quorumdb.check")
    }
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", sorted((SRC / "raft").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_raft_imports_no_other_layer(path: Path) -> None:
    allowed = ("quorumdb.raft", "quorumdb.errors")
    bad = {n for n in _imports(path) if n.startswith("quorumdb") and not n.startswith(allowed)}
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os.path\nfrom time import monotonic\n")
    assert {"os.path", "time"} <= _imports(probe)
