"""`quorumdb check elle`, run as people run it: the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.check.elle_ops import history, pair

QUORUMDB = Path(sys.executable).parent / "quorumdb"
if not QUORUMDB.exists():
    QUORUMDB = Path(shutil.which("quorumdb") or "quorumdb")

# Elle's README demo (G1c), and a serial history with nothing wrong.
G1C = history("ax1ry1", "ax2ay1", "rx12")
GOOD = history("ax1", "rx1ay1", "rx1ry1")
# Elle's G-single example (list_append_test.clj, checker-test "G-single").
G_SINGLE = history("ax1ay1", "ax2ry", "rx12")


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QUORUMDB), "check", "elle", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


def _write(tmp_path: Path, events: list[dict[str, object]], name: str = "h.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return str(path)


def test_a_valid_history_exits_0_with_a_summary(tmp_path: Path) -> None:
    done = _run("--model", "list-append", _write(tmp_path, GOOD))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "valid: list-append history at serializable, 3 transactions (3 ok, 0 failed, "
        "0 indeterminate), no forbidden anomaly"
    ]
    assert done.stderr == ""


def test_a_forbidden_anomaly_exits_1_and_prints_the_cycle(tmp_path: Path) -> None:
    done = _run("--model", "list-append", _write(tmp_path, G1C))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].endswith("forbidden: G1c")
    assert "G1c: T1 -ww(x)-> T2 -wr(y)-> T1" in lines
    assert '  T1 = process 0, ok, events #1..2: [["append", "x", 1], ["r", "y", [1]]]' in lines
    assert '  - T2 appended 2 after T1 appended 1 to "x"' in lines
    assert done.stderr == ""


def test_the_level_decides_the_exit_status(tmp_path: Path) -> None:
    path = _write(tmp_path, G_SINGLE)
    for level, status in [
        ("read-uncommitted", 0),
        ("read-committed", 0),
        ("snapshot", 1),
        ("snapshot-isolation", 1),
        ("serializable", 1),
        ("strict-serializable", 1),
    ]:
        done = _run("--model", "list-append", "--isolation", level, path)
        assert done.returncode == status, (level, done.stdout)
    allowed = _run("--model", "list-append", "--isolation", "read-committed", path)
    assert "also found (allowed): G-single" in allowed.stdout
    assert "G-single (allowed at this level): T1 -ww(x)-> T2 -rw(y)-> T1" in allowed.stdout


def test_json_format(tmp_path: Path) -> None:
    done = _run("--model", "list-append", "--format", "json", _write(tmp_path, G_SINGLE))
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["valid"] is False
    assert data["isolation"] == "serializable"
    assert data["forbidden_kinds"] == ["G-single"]
    (anomaly,) = data["anomalies"]
    assert anomaly["explanation"] == "T1 -ww(x)-> T2 -rw(y)-> T1"
    assert [step["kind"] for step in anomaly["cycle"]] == ["ww", "rw"]


def test_a_json_array_and_stdin_are_read(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text(json.dumps(GOOD), encoding="utf-8")
    assert _run("--model", "list-append", str(path)).returncode == 0
    stdin = "".join(json.dumps(e) + "\n" for e in G1C)
    assert _run("--model", "list-append", "-", stdin=stdin).returncode == 1


def test_a_register_history(tmp_path: Path) -> None:
    events = history("wx1ry1", "wy1rx1", model="rw-register")
    done = _run("--model", "rw-register", "--isolation", "read-committed", _write(tmp_path, events))
    assert done.returncode == 1
    assert "G1c: T1 -wr(x)-> T2 -wr(y)-> T1" in done.stdout
    assert _run("--model", "rw-register", "--isolation", "read-uncommitted",
                _write(tmp_path, events)).returncode == 0  # fmt: skip


BAD_INPUTS = {
    "missing file": (None, "cannot read"),
    "bad JSON": (b'{"process": 1, "type":\n', "event 1 (line 1): bad JSON"),
    "completion without invoke": (
        b'{"process": 3, "type": "ok", "value": []}\n',
        "event 1: ok completion for process 3, which has no outstanding invoke",
    ),
    "two invokes outstanding": (
        (json.dumps(pair(1, [["append", "x", 1]])[0]) + "\n"
         + json.dumps(pair(1, [["append", "x", 2]])[0]) + "\n").encode(),
        "event 2: process 1 invoked a transaction while",
    ),
    "unknown micro-op": (
        b'{"process": 1, "type": "invoke", "value": [["w", "x", 1]]}\n',
        'event 1: micro-op 1: unknown micro-op "w" for model list-append',
    ),
    "wrong shape": (
        b'{"process": 1, "type": "invoke", "value": [["append", "x"]]}\n',
        "event 1: micro-op 1 must be a list [f, key, value]",
    ),
    "not UTF-8": (b"\xff\xfe\x00", "not UTF-8"),
}  # fmt: skip


@pytest.mark.parametrize(("contents", "fragment"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_exits_2_with_exactly_one_error_line(
    tmp_path: Path, contents: bytes | None, fragment: str
) -> None:
    path = tmp_path / "history.json"
    if contents is not None:
        path.write_bytes(contents)
    done = _run("--model", "list-append", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("quorumdb: error: ")
    assert fragment in line


def test_a_missing_model_or_unknown_level_is_a_usage_error(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    for args in (["--isolation", "serializable", path], ["--model", "list-append",
                 "--isolation", "linearizable", path]):  # fmt: skip
        done = _run(*args)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert len(done.stderr.splitlines()) == 1


def test_help_documents_the_exit_statuses() -> None:
    done = _run("--help")
    assert done.returncode == 0
    for line in ("0  no anomaly the level forbids", "1  anomalies the level forbids",
                 "2  bad input"):  # fmt: skip
        assert line in done.stdout
