"""Swarm options and the sweep's plumbing: seed/fault/bug parsing, replay commands, artifacts.

`swarm_options` must be a pure function of its arguments and must not switch on the knobs of
a fault kind the caller did not allow; the parsers must take what the CLI documents and
refuse the rest with a message naming the bad item; a printed replay command must parse back
(through the real `sim run` command line) to the same fault and bug sets.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumdb.cli.sim_cmd import run_cmd
from quorumdb.raft import PlantedBug
from quorumdb.sim.options import ALL_FAULTS, FaultKind, SimOptions, swarm_options
from quorumdb.sim.simulator import SimResult
from quorumdb.sim.sweep import (
    parse_bugs,
    parse_faults,
    parse_seeds,
    replay_command,
    write_failure,
)

SEEDS = range(120)
DEFAULTS = SimOptions(seed=0)

# -- swarm_options ---------------------------------------------------------------------------


def test_swarm_options_is_a_function_of_the_seed() -> None:
    for seed in SEEDS:
        assert swarm_options(seed) == swarm_options(seed)
    mixes = {swarm_options(seed).faults for seed in SEEDS}
    assert len(mixes) > 50, "different seeds draw different fault mixes"


def test_swarm_options_enables_only_allowed_faults_and_each_of_them_sometimes() -> None:
    seen: set[FaultKind] = set()
    for seed in SEEDS:
        opts = swarm_options(seed)
        assert opts.seed == seed
        assert opts.nodes in (3, 5)
        seen |= opts.faults
    assert seen == ALL_FAULTS
    allowed = frozenset({FaultKind.LOSS, FaultKind.CRASH})
    for seed in SEEDS:
        assert swarm_options(seed, allowed=allowed).faults <= allowed


def _knobs_follow_faults(opts: SimOptions) -> None:
    """Every fault knob is on exactly when its fault kind is enabled."""
    on = opts.faults
    assert (opts.loss > 0) == (FaultKind.LOSS in on)
    assert (opts.duplicate > 0) == (FaultKind.DUPLICATE in on)
    assert (not opts.fifo_links) == (FaultKind.REORDER in on)
    assert (opts.drift_max > 0) == (FaultKind.CLOCK in on)
    if FaultKind.CLOCK not in on:
        assert opts.clock_offset_max_us == 0
    if FaultKind.CRASH not in on:
        assert opts.crash_in_sync == 0
        assert opts.crash_after_commit == 0
    assert (opts.snapshot_entries <= 100) == (FaultKind.SNAPSHOT in on)
    assert (opts.disk.slow > 0) == (FaultKind.DISK in on)


@pytest.mark.parametrize("kind", list(FaultKind), ids=lambda k: k.value)
def test_a_disallowed_fault_never_has_its_knobs_turned_on(kind: FaultKind) -> None:
    allowed = ALL_FAULTS - {kind}
    for seed in SEEDS:
        opts = swarm_options(seed, allowed=allowed)
        assert kind not in opts.faults
        _knobs_follow_faults(opts)


def test_no_allowed_faults_means_a_quiet_network_and_disk() -> None:
    for seed in SEEDS:
        opts = swarm_options(seed, allowed=frozenset())
        assert opts.faults == frozenset()
        _knobs_follow_faults(opts)
        assert opts.fifo_links
        assert opts.loss == opts.duplicate == 0.0


def test_every_fault_kinds_knobs_follow_it_under_the_full_swarm() -> None:
    for seed in SEEDS:
        _knobs_follow_faults(swarm_options(seed))


def test_the_lease_bug_forces_lease_reads_and_changes_nothing_else() -> None:
    bug = frozenset({PlantedBug.LEASE_WITHOUT_QUORUM})
    plain_modes = set()
    for seed in SEEDS:
        plain = swarm_options(seed)
        planted = swarm_options(seed, planted_bugs=bug)
        plain_modes.add(plain.lease_reads)
        assert planted.lease_reads
        assert planted.planted_bugs == bug
        assert replace(planted, lease_reads=plain.lease_reads, planted_bugs=frozenset()) == plain
    assert plain_modes == {False, True}


def test_other_planted_bugs_keep_the_drawn_read_mode() -> None:
    bug = frozenset({PlantedBug.STALE_LOCAL_READS})
    for seed in SEEDS:
        planted = swarm_options(seed, planted_bugs=bug)
        assert planted.planted_bugs == bug
        assert replace(planted, planted_bugs=frozenset()) == swarm_options(seed)


# -- parse_seeds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "seeds"),
    [
        ("7", [7]),
        ("0", [0]),
        ("1-5", [1, 2, 3, 4, 5]),
        ("3-3", [3]),
        ("1-5,9,20-22", [1, 2, 3, 4, 5, 9, 20, 21, 22]),
        ("9,3-5,1-4", [1, 2, 3, 4, 5, 9]),
        (" 1 - 3 , 8 ", [1, 2, 3, 8]),
    ],
)
def test_parse_seeds_accepts_numbers_ranges_and_lists(spec: str, seeds: list[int]) -> None:
    assert parse_seeds(spec) == seeds


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("5-1", "bad seed range '5-1' (need 0 <= N <= M)"),
        ("x", "bad seed range 'x' (expected N or N-M)"),
        ("1-", "bad seed range '1-' (expected N or N-M)"),
        ("-3", "bad seed range '-3' (expected N or N-M)"),
        ("1-2-3", "bad seed range '1-2-3' (expected N or N-M)"),
        ("1-x", "bad seed range '1-x' (expected N or N-M)"),
        ("", "empty item in seed list ''"),
        ("1,,2", "empty item in seed list '1,,2'"),
        ("1,", "empty item in seed list '1,'"),
        (" , ", "empty item in seed list ' , '"),
        ("0-10000000", "too many seeds in '0-10000000' (at most 10000000)"),
    ],
)
def test_parse_seeds_refuses_bad_input_naming_it(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_seeds(spec)
    assert str(err.value) == message


# -- parse_faults and parse_bugs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "faults"),
    [
        (None, ALL_FAULTS),
        ("all", ALL_FAULTS),
        (" all ", ALL_FAULTS),
        ("none", frozenset()),
        ("loss", frozenset({FaultKind.LOSS})),
        (" loss , crash ", frozenset({FaultKind.LOSS, FaultKind.CRASH})),
        ("crash,crash", frozenset({FaultKind.CRASH})),
        (",".join(f.value for f in FaultKind), ALL_FAULTS),
    ],
)
def test_parse_faults_accepts_kinds_all_and_none(
    spec: str | None, faults: frozenset[FaultKind]
) -> None:
    assert parse_faults(spec) == faults


KNOWN_FAULTS = (
    "known: clock, clog, corrupt, crash, disk, duplicate, loss, membership, partition, pause, "
    "reorder, snapshot, transfer"
)


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        ("bogus", "bogus"),
        ("loss,bogus", "bogus"),
        ("loss,,crash", ""),
        ("", ""),
        ("all,loss", "all"),
        ("LOSS", "LOSS"),
    ],
)
def test_parse_faults_refuses_unknown_names_listing_the_known_ones(spec: str, bad: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_faults(spec)
    assert str(err.value) == f"unknown fault {bad!r} ({KNOWN_FAULTS})"


def test_parse_bugs_accepts_known_names() -> None:
    assert parse_bugs(()) == frozenset()
    assert parse_bugs(("stale-local-reads",)) == {PlantedBug.STALE_LOCAL_READS}
    every = tuple(b.value for b in PlantedBug)
    assert parse_bugs(every + every) == frozenset(PlantedBug)


@pytest.mark.parametrize("names", [("nope",), ("stale-local-reads", "nope"), ("",)])
def test_parse_bugs_refuses_unknown_names_listing_the_known_ones(names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError) as err:
        parse_bugs(names)
    message = str(err.value)
    assert message.startswith(f"unknown planted bug {names[-1]!r} (known: ")
    for bug in PlantedBug:
        assert bug.value in message


# -- replay_command --------------------------------------------------------------------------


def _parse_replay(command: str) -> tuple[int, frozenset[FaultKind], frozenset[PlantedBug]]:
    """Parse a printed replay command with the real `sim run` option parser."""
    argv = shlex.split(command)
    assert argv[:3] == ["quorumdb", "sim", "run"]
    with run_cmd.make_context("run", argv[3:]) as ctx:
        params = ctx.params
    return params["seed"], parse_faults(params["faults"]), parse_bugs(params["bugs"])


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    st.integers(0, 10**9),
    st.frozensets(st.sampled_from(FaultKind)),
    st.frozensets(st.sampled_from(PlantedBug)),
)
def test_replay_command_parses_back_to_the_same_run(
    seed: int, faults: frozenset[FaultKind], bugs: frozenset[PlantedBug]
) -> None:
    assert _parse_replay(replay_command(seed, faults, bugs)) == (seed, faults, bugs)


@pytest.mark.parametrize(
    ("faults", "bugs", "command"),
    [
        (ALL_FAULTS, frozenset(), "quorumdb sim run --seed 4"),
        (frozenset(), frozenset(), "quorumdb sim run --seed 4 --faults none"),
        (
            frozenset({FaultKind.LOSS, FaultKind.CLOCK}),
            frozenset({PlantedBug.STALE_LOCAL_READS, PlantedBug.ACK_BEFORE_SYNC}),
            "quorumdb sim run --seed 4 --faults clock,loss "
            "--bug ack-before-sync --bug stale-local-reads",
        ),
    ],
    ids=["all-faults", "no-faults", "some-of-each"],
)
def test_replay_command_is_short_and_sorted(
    faults: frozenset[FaultKind], bugs: frozenset[PlantedBug], command: str
) -> None:
    assert replay_command(4, faults, bugs) == command


# -- write_failure ---------------------------------------------------------------------------


def _failed_result(seed: int, trace_lines: list[str] | None) -> SimResult:
    return SimResult(
        seed=seed,
        options=SimOptions(seed=seed),
        violations=["t=5us stale read", "t=9us another"],
        caught_by=["linearizability", "liveness"],
        trace_digest="0123456789abcdef0123456789abcdef",
        history=[
            {"process": 1, "type": "invoke", "f": "write", "key": "k0", "value": 1, "time": 3},
            {"process": 1, "type": "ok", "f": "write", "key": "k0", "value": 1, "time": 5},
        ],
        trace_lines=trace_lines,
    )


def test_write_failure_writes_trace_history_and_violations(tmp_path: Path) -> None:
    result = _failed_result(17, ["         0 options x", "         5 n1 start"])
    replay = "quorumdb sim run --seed 17 --bug stale-local-reads"
    folder = write_failure(result, tmp_path / "out", replay)
    assert folder == tmp_path / "out" / "seed-17"
    assert sorted(p.name for p in folder.iterdir()) == [
        "history.json",
        "trace.txt",
        "violations.txt",
    ]
    assert (folder / "trace.txt").read_text().splitlines() == result.trace_lines
    history = json.loads((folder / "history.json").read_text())
    assert isinstance(history, list)
    assert history == result.history
    violations = (folder / "violations.txt").read_text().splitlines()
    assert f"replay: {replay}" in violations
    assert "seed: 17" in violations
    assert f"trace digest: {result.trace_digest}" in violations
    assert "caught by: linearizability, liveness" in violations
    assert violations[-2:] == result.violations


def test_write_failure_overwrites_an_earlier_folder_and_copes_without_a_trace(
    tmp_path: Path,
) -> None:
    write_failure(_failed_result(3, ["old line"]), tmp_path, "old")
    folder = write_failure(_failed_result(3, None), tmp_path, "quorumdb sim run --seed 3")
    assert (folder / "trace.txt").read_text() == "\n"
    assert "replay: quorumdb sim run --seed 3" in (folder / "violations.txt").read_text()
