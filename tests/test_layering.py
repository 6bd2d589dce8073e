"""The layering rules of DESIGN.md, enforced on the source (an import-linter contract in test form).

- `raft/`, `check/`, `kafka/protocol/`, `host/` and the state machines are pure: no asyncio,
  socket, time, random, os, threading (nor their submodules); time and randomness are
  injected (`host.env.Env`).
- The package graph: every edge between top-level packages is listed in `ALLOWED`; any
  other import between them fails. `check/` imports nothing else of quorumdb; `raft/` only
  the errors module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "quorumdb"
FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading", "subprocess", "selectors"}
PURE_PACKAGES = ("raft", "check", "kafka/protocol", "host")
PURE_MODULES = (
    "sim/state_machine.py",
    "kv/state_machine.py",
    "kv/commands.py",
    "kafka/partition.py",
    "kafka/catch_up.py",
    "kafka/leadership.py",
    "kafka/group_coordinator.py",
)
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


# Who may import whom, between top-level packages (and top-level modules) of quorumdb.
# Services (kv, kafka) plug into the host; the drivers (runtime, sim) compose host and
# services; the CLI sits on top. Still to go (issue 10): host -> kv, for the KV state
# machine of the controller and the shards, which the host should be given instead.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "raft": {"errors"},
    "check": set(),
    "storage": {"raft", "errors"},
    "host": {"raft", "storage", "errors", "kv"},
    "aio": {"host"},
    "kv": {"host", "raft", "errors", "aio"},
    "kafka": {"host", "kv", "raft", "storage", "errors", "aio"},
    "runtime": {"host", "kv", "kafka", "raft", "storage", "errors", "aio"},
    "sim": {"host", "kv", "kafka", "raft", "storage", "check", "errors"},
    "cli": {"host", "kv", "kafka", "raft", "storage", "errors", "runtime", "sim", "check"},
    "__init__": {"kv"},
}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _edges(root: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        pkg = _package(path) if root == SRC else path.stem
        for name in _imports(path):
            if name.startswith("quorumdb."):
                target = name.split(".")[1]
                if target != pkg:
                    out.setdefault(pkg, set()).add(target)
    return out


def _violations(edges: dict[str, set[str]]) -> list[str]:
    return [
        f"{pkg} -> {target}"
        for pkg, targets in sorted(edges.items())
        for target in sorted(targets)
        if target not in ALLOWED.get(pkg, set())
    ]


def test_every_import_between_packages_is_an_allowed_edge() -> None:
    assert set(_edges(SRC)) <= set(ALLOWED), "a new package: list its allowed edges"
    assert _violations(_edges(SRC)) == []


def test_the_simulator_runs_the_host() -> None:
    """The simulator drives the real NodeHost rather than a copy of its own."""
    assert "host" in _edges(SRC)["sim"]


def test_an_upward_or_sideways_import_is_caught(tmp_path: Path) -> None:
    (tmp_path / "host.py").write_text("from quorumdb.runtime.node import Node\n")
    (tmp_path / "raft.py").write_text("import quorumdb.kv.commands\n")
    (tmp_path / "storage.py").write_text("from quorumdb.raft import Entry\n")
    assert _violations(_edges(tmp_path)) == ["host -> runtime", "raft -> kv"]
