"""`quorumdb check linearizable`, run as people run it: the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

QUORUMDB = Path(sys.executable).parent / "quorumdb"
if not QUORUMDB.exists():
    QUORUMDB = Path(shutil.which("quorumdb") or "quorumdb")


def _event(process: int, type_: str, f: str, value: object, key: str = "x") -> str:
    return json.dumps({"process": process, "type": type_, "f": f, "key": key, "value": value})


GOOD = [
    _event(1, "invoke", "write", 1),
    _event(1, "ok", "write", 1),
    _event(2, "invoke", "read", None),
    _event(2, "ok", "read", 1),
]
STALE = [*GOOD[:3], _event(2, "ok", "read", None)]


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QUORUMDB), "check", "linearizable", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


def _write(tmp_path: Path, lines: list[str], name: str = "history.jsonl") -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_a_linearizable_history_exits_0_with_a_one_line_summary(tmp_path: Path) -> None:
    done = _run(_write(tmp_path, GOOD))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["linearizable: 2 operations on 1 key, 2 states explored"]
    assert done.stderr == ""


def test_a_json_array_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text("[" + ",\n".join(GOOD) + "]", encoding="utf-8")
    assert _run(str(path)).returncode == 0


def test_a_stale_read_exits_1_and_prints_the_counterexample(tmp_path: Path) -> None:
    done = _run(_write(tmp_path, STALE))
    assert done.returncode == 1
    out = done.stdout
    assert out.startswith('not linearizable: 2 operations on 1 key; failing keys: "x"\n')
    assert "process 2's read returning null" in out
    assert "<- cannot be placed" in out
    assert done.stderr == ""


def test_text_output_shows_at_most_five_counterexamples(tmp_path: Path) -> None:
    lines = []
    for k in range(7):
        key = f"k{k}"
        lines += [
            _event(1, "invoke", "write", 1, key),
            _event(1, "ok", "write", 1, key),
            _event(2, "invoke", "read", None, key),
            _event(2, "ok", "read", None, key),
        ]
    done = _run(_write(tmp_path, lines))
    assert done.returncode == 1
    assert done.stdout.count("<- cannot be placed") == 5
    assert "... and 2 more failing keys (--format json lists them all)" in done.stdout
    data = json.loads(_run("--format", "json", _write(tmp_path, lines)).stdout)
    assert sum(1 for key in data["keys"] if key["counterexample"]) == 7


def test_json_format(tmp_path: Path) -> None:
    done = _run("--format", "json", _write(tmp_path, STALE))
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["verdict"] == "not linearizable"
    assert data["counterexample"]["key"] == "x"
    assert data["counterexample"]["operation"]["output"] is None


def test_stdin_is_read_for_a_dash() -> None:
    done = _run("-", stdin="\n".join(GOOD))
    assert done.returncode == 0, done.stderr


def test_an_exhausted_budget_exits_3(tmp_path: Path) -> None:
    lines = [_event(p, "invoke", "write", p) for p in range(12)]
    for value in [*range(12), 0]:
        lines += [_event(99, "invoke", "read", None), _event(99, "ok", "read", value)]
    lines += [_event(p, "ok", "write", p) for p in range(12)]
    done = _run("--max-states", "100", _write(tmp_path, lines))
    assert done.returncode == 3
    assert done.stdout.startswith("unknown: ")


BAD_INPUTS = {
    "missing file": (None, "cannot read"),
    "bad JSON": (b'{"process": 1, "type":\n', "event 1 (line 1): bad JSON"),
    "missing field": (b'{"process": 1, "type": "invoke", "f": "read"}\n', "'key'"),
    "completion without invoke": (_event(1, "ok", "read", 1).encode(), "no outstanding invoke"),
    "not UTF-8": (b"\xff\xfe\x00", "not UTF-8"),
}


@pytest.mark.parametrize(("contents", "fragment"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_exits_2_with_exactly_one_error_line(
    tmp_path: Path, contents: bytes | None, fragment: str
) -> None:
    path = tmp_path / "history.json"
    if contents is not None:
        path.write_bytes(contents)
    done = _run(str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("quorumdb: error: ")
    assert fragment in line


def test_a_directory_is_bad_input(tmp_path: Path) -> None:
    done = _run(str(tmp_path))
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_help_documents_the_exit_statuses() -> None:
    done = _run("--help")
    assert done.returncode == 0
    for line in ("0  linearizable", "1  not linearizable", "2  bad input", "3  unknown"):
        assert line in done.stdout
