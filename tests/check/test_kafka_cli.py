"""`quorumdb check kafka`, run as people run it: the installed console script."""

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


def _send(process: int, value: str, offset: int) -> list[str]:
    target = {"topic": "t", "partition": 0, "value": value}
    return [
        json.dumps({"process": process, "type": "invoke", "f": "send", "value": target}),
        json.dumps(
            {"process": process, "type": "ok", "f": "send", "value": {**target, "offset": offset}}
        ),
    ]


def _poll(process: int, records: list[tuple[int, str]]) -> list[str]:
    value = [{"topic": "t", "partition": 0, "offset": o, "value": v} for o, v in records]
    return [
        json.dumps({"process": process, "type": "invoke", "f": "poll"}),
        json.dumps({"process": process, "type": "ok", "f": "poll", "value": value}),
    ]


GOOD = [*_send(1, "a", 0), *_send(1, "b", 1), *_poll(2, [(0, "a"), (1, "b")])]
# "a" acknowledged at 0, but the consumer that read straight across offset 0 saw "z" there;
# "b" read at two offsets.
BAD = [*_send(1, "a", 0), *_send(1, "b", 1), *_poll(2, [(0, "z"), (1, "b"), (2, "b")])]


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QUORUMDB), "check", "kafka", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


def _write(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_a_clean_history_exits_0_with_a_summary(tmp_path: Path) -> None:
    done = _run(_write(tmp_path, GOOD))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("delivery ok: 2 sends (2 acked) and 2 records read")
    assert done.stderr == ""


def test_anomalies_exit_1_with_a_table_per_partition(tmp_path: Path) -> None:
    done = _run(_write(tmp_path, BAD))
    assert done.returncode == 1
    assert done.stdout.startswith("delivery anomalies: ")
    assert "partition t/0" in done.stdout
    for kind in ("lost", "duplicate", "inconsistent"):
        assert kind in done.stdout


def test_json_format_counts_each_kind(tmp_path: Path) -> None:
    done = _run("--format", "json", _write(tmp_path, BAD))
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["ok"] is False
    (part,) = data["partitions"]
    assert (part["topic"], part["partition"]) == ("t", 0)
    assert part["counts"]["duplicate"] == 1
    assert part["counts"]["lost"] == 1


def test_stdin_is_read_for_a_dash() -> None:
    assert _run("-", stdin="\n".join(GOOD)).returncode == 0


@pytest.mark.parametrize(
    ("contents", "fragment"),
    [
        (b'{"process": 1, "type":\n', "bad JSON"),
        (b'{"process": 1, "type": "ok", "f": "poll", "value": []}\n', "no outstanding invoke"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
    ids=["bad JSON", "completion without invoke", "not UTF-8"],
)
def test_bad_input_exits_2_with_one_error_line(
    tmp_path: Path, contents: bytes, fragment: str
) -> None:
    path = tmp_path / "history.json"
    path.write_bytes(contents)
    done = _run(str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    (line, *_hint) = done.stderr.splitlines()
    assert line.startswith("quorumdb: error: ")
    assert fragment in line


def test_help_documents_the_exit_statuses() -> None:
    done = _run("--help")
    assert done.returncode == 0
    for line in ("0  no failure", "1  delivery anomalies", "2  bad input"):
        assert line in done.stdout
