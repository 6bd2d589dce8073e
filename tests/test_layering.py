"""The layering rules of DESIGN.md, enforced on the source (an import-linter contract in test form).

- `raft/`, `check/`, `kafka/protocol/`, `host/` and the state machines are pure: no asyncio,
  socket, time, random, os, threading (nor their submodules); time and randomness are
  injected (`host.env.Env`).
- The package graph: every edge between top-level packages is listed in `ALLOWED`; any
  other import between them fails (relative imports and `from quorumdb import x` included).
  `check/` imports nothing else of quorumdb; `raft/` only the errors module; `host/` only
  `raft/`, `storage/` and the errors module (the KV store plugs into it, `kv.node_kv`).
- The drivers compose the same node: `runtime/` and `sim/` build it through
  `kv.node_kv.NodeKV`, never a `NodeHost` of their own making.
- Outside `raft/`, the core is used through `RawNode`'s methods: no `raw.raft.*` reach-ins.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "quorumdb"
FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading", "subprocess", "selectors"}
PURE_PACKAGES = ("raft", "check", "kafka/protocol", "host")
PURE_MODULES = (
    "kv/state_machine.py",
    "kv/commands.py",
    "kv/node_kv.py",
    "kafka/partition.py",
    "kafka/catch_up.py",
    "kafka/leadership.py",
    "kafka/group_coordinator.py",
)
# raft/testing is test support: it seeds its own random.Random for reproducible test clusters.
EXEMPT = ("raft/testing/",)


def _imports(path: Path, root: Path = SRC) -> set[str]:
    """Absolute names of the modules `path` imports (`root` is the `quorumdb` package it
    lies in, to resolve relative imports); `from quorumdb import kv` yields `quorumdb.kv`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                module = node.module or ""
            else:
                package = ["quorumdb", *path.relative_to(root).parts[:-1]]
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
            if module == "quorumdb":
                # A subpackage or module; a name of the package itself (`__version__`,
                # `Client`) is an edge to its `__init__`.
                for alias in node.names:
                    sub = alias.name
                    private_or_class = sub.startswith("_") or sub[:1].isupper()
                    names.add(f"quorumdb.{'__init__' if private_or_class else sub}")
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
# Services (kv, kafka) plug into the host (`host.state_machine`); the drivers (runtime, sim)
# compose host and services; the CLI sits on top.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "raft": {"errors"},
    "check": set(),
    "storage": {"raft", "errors"},
    "host": {"raft", "storage", "errors"},
    "aio": {"host"},
    "kv": {"host", "raft", "errors", "aio"},
    "kafka": {"host", "kv", "raft", "storage", "errors", "aio"},
    "runtime": {"host", "kv", "kafka", "raft", "storage", "errors", "aio"},
    "sim": {"host", "kv", "kafka", "raft", "storage", "check", "errors"},
    "cli": {
        "host",
        "kv",
        "kafka",
        "raft",
        "storage",
        "errors",
        "runtime",
        "sim",
        "check",
        "nemesis",
        "__init__",
    },
    # Runs on real processes: it starts them as the CLI does and checks with check/.
    "nemesis": {"cli", "kv", "check", "errors", "runtime"},
    "__init__": {"kv"},
}


def _package(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _edges(root: Path) -> dict[str, set[str]]:
    """Package -> the other packages it imports, over the `quorumdb` tree at `root`."""
    out: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        pkg = _package(path, root)
        for name in _imports(path, root):
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


def test_every_form_of_import_in_a_package_tree_is_caught(tmp_path: Path) -> None:
    files = {
        "host/node_host.py": "from quorumdb.kv import x\n",
        "host/group.py": "from ..kafka.partition import PartitionStateMachine\n",
        "host/pending.py": "from . import env\nfrom .env import Env\n",  # its own: fine
        "raft/core.py": "from quorumdb import storage\n",
        "storage/wal.py": "from quorumdb.raft import Entry\n",  # allowed
        "check/history.py": "def f() -> None:\n    import quorumdb.sim.loop\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _violations(_edges(tmp_path)) == [
        "check -> sim",
        "host -> kafka",
        "host -> kv",
        "raft -> storage",
    ]


def test_a_kv_import_added_to_the_real_host_fails(tmp_path: Path) -> None:
    """The graph check on a copy of the real tree: clean, until the host imports the KV store."""
    tree = tmp_path / "quorumdb"
    shutil.copytree(SRC, tree, ignore=shutil.ignore_patterns("__pycache__"))
    assert _violations(_edges(tree)) == []
    node_host = tree / "host" / "node_host.py"
    node_host.write_text(
        node_host.read_text() + "\nfrom quorumdb.kv.state_machine import KVStateMachine\n"
    )
    assert _violations(_edges(tree)) == ["host -> kv"]


# The drivers' composition root: where the node is built (the KV store builds its host).
_COMPOSITION = "kv/node_kv.py"


def _calls_of(path: Path, name: str) -> int:
    tree = ast.parse(path.read_text(), filename=str(path))
    return sum(
        1
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == name)
            or (isinstance(node.func, ast.Attribute) and node.func.attr == name)
        )
    )


def test_both_drivers_build_the_node_the_same_way() -> None:
    """`runtime.node` and `sim.host_node` build a `NodeKV` (which builds the host, with the
    KV store plugged in), so the simulator runs the node users run; nothing outside the
    composition root builds a `NodeHost` of its own."""
    assert _calls_of(SRC / "runtime" / "node.py", "NodeKV") == 1
    assert _calls_of(SRC / "sim" / "host_node.py", "NodeKV") == 1
    builders = [
        str(p.relative_to(SRC))
        for p in sorted(SRC.rglob("*.py"))
        if _calls_of(p, "NodeHost") and str(p.relative_to(SRC)) != _COMPOSITION
    ]
    assert builders == []


def _raft_reach_ins(path: Path) -> list[str]:
    """`raw.raft` / `x.raw.raft` attribute chains in `path`: reaching past `RawNode`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "raft":
            v = node.value
            if (isinstance(v, ast.Name) and v.id == "raw") or (
                isinstance(v, ast.Attribute) and v.attr == "raw"
            ):
                out.append(f"{path.name}:{node.lineno}")
    return out


def _outside_raft() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if p.relative_to(SRC).parts[0] != "raft"]


@pytest.mark.parametrize("path", _outside_raft(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_reach_into_the_raft_core_outside_raft(path: Path) -> None:
    assert _raft_reach_ins(path) == [], "use (or add) a RawNode method instead"


def test_the_reach_in_check_sees_one(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("a = g.raw.raft.term\nb = raw.raft.raft_log\nc = raw.term\nd = member.raft\n")
    assert _raft_reach_ins(probe) == ["probe.py:1", "probe.py:2"]
