"""`quorumdb test` on real node processes: a short register run under kill -9 and pauses
ends valid, with its run directory written and every node healed and stopped; bad options
are one error line and exit 2."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
from pathlib import Path

import pytest

from quorumdb.nemesis.run import RunOptions, run_test
from quorumdb.nemesis.schedule import Nemesis, plan
from tests.e2e.harness import QUORUMDB, run_cli
from tests.nemesis.sockets import processes_using


def test_a_register_run_under_kills_and_pauses_is_linearizable(tmp_path: Path) -> None:
    out = tmp_path / "run"
    opts = RunOptions(out=out, nemesis=(Nemesis.KILL, Nemesis.PAUSE), time_s=10.0, rate=60, seed=3)
    result = run_test(opts)
    assert result.valid, result.summary
    assert result.ops["ok"] > 100, result.ops
    assert len(result.faults) >= 2, result.faults
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["valid"] is True and verdict["faults"] == len(result.faults)
    assert verdict["checker"] == "linearizable" and verdict["anomalies"] == []
    history = json.loads((out / "history.json").read_text())
    assert sum(1 for e in history if e["type"] == "ok") == result.ops["ok"]
    faults = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    assert [f["kind"] for f in faults] == [f["kind"] for f in result.faults]
    for name in ("report.html", "throughput.png", "latency.png", "timeline.html"):
        assert (out / name).stat().st_size > 0, f"the run's report: {name}"
    assert not processes_using(out / "cluster"), "nodes left running after the run"


def test_the_schedule_is_a_function_of_the_seed() -> None:
    kinds = [Nemesis.KILL, Nemesis.PAUSE]
    a = plan(7, kinds, [1, 2, 3], 60.0)
    assert a == plan(7, kinds, [1, 2, 3], 60.0)
    assert a != plan(8, kinds, [1, 2, 3], 60.0)
    assert all(f.at_s + f.duration_s <= 59.0 for f in a)
    assert all(x.at_s + x.duration_s < y.at_s for x, y in itertools.pairwise(a)), (
        "one fault at a time"
    )
    assert plan(7, [], [1, 2, 3], 60.0) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workload", "chaos"], "unknown workload"),
        (["--nemesis", "kill,flood"], "unknown nemesis"),
        (["--nodes", "2"], "--nodes"),
        (["--nodes", "12"], "--nodes"),
        (["--nodes", "3", "--faulty", "4"], "more faulty nodes than exist"),
        (["--net", "carrier-pigeon"], "--net"),
        (["--time", "forever"], "--time"),
        (["--time", "1s"], "5..3600"),
        (["--rate", "0"], "--rate"),
        (["--bug", "no-such-bug"], "unknown --bug in no-such-bug"),
        (["--dir", "/proc/no/such/run"], "cannot use /proc/no/such/run as the run dir"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = run_cli("test", *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_ctrl_c_mid_run_heals_and_stops_everything(tmp_path: Path, signum: int) -> None:
    """SIGINT (Ctrl-C) or SIGTERM (`timeout`, `kill`) while a node is paused or killed: the
    run heals, stops the cluster, exits."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [QUORUMDB, "test", "--nemesis", "kill,pause", "--time", "60s", "--rate", "20",
         "--seed", "5", "--dir", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # bounded: the run prints a line per fault and ends by itself
        lines.append(line)
        if " for " in line and ("pause" in line or "kill" in line):
            break  # a fault is in effect now
    proc.send_signal(signum)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, "".join(lines) + rest
    assert "Traceback" not in rest, rest
    assert not processes_using(out / "cluster"), "nodes left running after Ctrl-C"
    assert not (out / "cluster" / "cluster.json").exists(), "the cluster state was not cleared"


def test_a_run_refuses_a_run_dir_that_is_not_empty(tmp_path: Path) -> None:
    """An old run's cluster data would mix its registers into the new history."""
    (tmp_path / "old-history.json").write_text("[]")
    proc = run_cli("test", "--time", "5s", "--dir", str(tmp_path))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "is not empty" in proc.stderr and "Traceback" not in proc.stderr
