"""`quorumdb sim run|sweep`, run as people run it: the installed console script.

Exit status is the contract (0 all passed, 1 a violation was found, 2 bad arguments); a failing
sweep prints a replay command that reproduces the run and writes its artifacts; bad input is
one `quorumdb: error:` line on stderr, never a traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quorumdb.sim.options import swarm_options
from quorumdb.sim.simulator import run

QUORUMDB = Path(sys.executable).parent / "quorumdb"
if not QUORUMDB.exists():
    QUORUMDB = Path(shutil.which("quorumdb") or "quorumdb")

# Output goes to a pipe, so rich lays it out for a console of COLUMNS characters; pin it so
# the tests do not depend on the terminal pytest runs in.
_ENV = {**os.environ, "COLUMNS": "80"}
_DIGEST = re.compile(r"trace digest\W+([0-9a-f]{32})\b")


def _quorumdb(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QUORUMDB), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_ENV,
        cwd=cwd,
    )


def _row(stdout: str, name: str) -> str:
    match = re.search(rf"{name}\W+([\d,]+)", stdout)
    assert match is not None, f"no {name!r} row in:\n{stdout}"
    return match.group(1)


def test_sim_run_prints_the_trace_digest_of_the_seed(tmp_path: Path) -> None:
    done = _quorumdb("sim", "run", "--seed", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "seed 3: OK" in done.stdout
    digests = _DIGEST.findall(done.stdout)
    assert digests == [run(swarm_options(3)).trace_digest]
    assert not list(tmp_path.iterdir()), "a passing run writes no artifacts"


def test_sim_run_twice_prints_the_same_digest(tmp_path: Path) -> None:
    first = _quorumdb("sim", "run", "--seed", "3", cwd=tmp_path)
    second = _quorumdb("sim", "run", "--seed", "3", cwd=tmp_path)
    assert first.returncode == second.returncode == 0
    assert _DIGEST.findall(first.stdout) == _DIGEST.findall(second.stdout)
    assert len(_DIGEST.findall(first.stdout)) == 1


def test_sim_sweep_of_passing_seeds_exits_0_with_the_summary_table(tmp_path: Path) -> None:
    done = _quorumdb("sim", "sweep", "--seeds", "1-4", "--jobs", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "simulation sweep" in done.stdout
    assert _row(done.stdout, "seeds run") == "4"
    assert _row(done.stdout, "passed") == "4"
    assert _row(done.stdout, "failed") == "0"
    assert int(_row(done.stdout, "entries committed").replace(",", "")) > 0
    assert "replay:" not in done.stdout
    assert not list(tmp_path.iterdir()), "a passing sweep writes no artifacts"


def _replays(stdout: str) -> list[tuple[str, str]]:
    """(seed, whole replay command) of every `replay:` line, each read within one line."""
    return re.findall(
        r"replay: (quorumdb sim run --seed (\d+)[^\n]*?)(?:   artifacts:|$)", stdout, re.M
    )


def test_a_sweep_that_finds_a_planted_bug_exits_1_with_replay_and_artifacts(
    tmp_path: Path,
) -> None:
    out = tmp_path / "failures"
    done = _quorumdb(
        "sim", "sweep", "--seeds", "1-30", "--bug", "stale-local-reads",
        "--stop-on-failure", "--jobs", "1", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    replays = _replays(done.stdout)
    assert len(replays) == 1, done.stdout
    command, seed = replays[0]
    assert command == f"quorumdb sim run --seed {seed} --bug stale-local-reads"
    assert _row(done.stdout, "failed") == "1"
    folder = out / f"seed-{seed}"
    assert f"replay: {command}   artifacts: {folder}" in done.stdout
    assert sorted(p.name for p in folder.iterdir()) == [
        "history.json",
        "trace.txt",
        "violations.txt",
    ]
    assert f"replay: {command}" in (folder / "violations.txt").read_text().splitlines()
    # The replay command reproduces the failure.
    replay = _quorumdb(*command.split()[1:], "--out", str(tmp_path / "replay"))
    assert replay.returncode == 1
    assert (tmp_path / "replay" / f"seed-{seed}" / "trace.txt").read_text() == (
        folder / "trace.txt"
    ).read_text()


def test_a_long_replay_command_is_printed_on_one_line(tmp_path: Path) -> None:
    # Found writing these tests: rich wrapped the replay line at the console width (80 when
    # output goes to a pipe or a CI log), splitting the command so it could not be copied.
    faults = "clog,crash,duplicate,loss,partition,reorder"
    bugs = ["--bug", "ack-before-sync", "--bug", "stale-local-reads"]
    done = _quorumdb(
        "sim", "sweep", "--seeds", "1-8", "--faults", faults, *bugs,
        "--stop-on-failure", "--jobs", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    [(command, seed)] = _replays(done.stdout)
    assert command == f"quorumdb sim run --seed {seed} --faults {faults} {' '.join(bugs)}"
    ran = _quorumdb(*command.split()[1:], "--out", str(tmp_path))
    assert ran.returncode == 1
    assert f"replay:    {command}" in ran.stdout.splitlines()
    assert f"artifacts: {tmp_path / f'seed-{seed}'}" in ran.stdout.splitlines()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sim", "sweep", "--seeds", "5-1"], "bad seed range '5-1'"),
        (["sim", "sweep", "--seeds", "1-2", "--faults", "bogus"], "unknown fault 'bogus'"),
        (["sim", "run", "--seed", "1", "--bug", "nope"], "unknown planted bug 'nope'"),
        (["sim", "run"], "Missing option '--seed'"),
        (["sim", "sweep", "--seeds", "1-2", "--jobs", "0"], "Invalid value for '--jobs'"),
    ],
    ids=["reversed-seeds", "unknown-fault", "unknown-bug", "missing-seed", "zero-jobs"],
)
def test_bad_input_exits_2_with_one_error_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = _quorumdb(*args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("quorumdb: error: ")
    assert message in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert not list(tmp_path.iterdir()), "nothing ran"
