"""Elle's own published examples, checked against Elle's published verdicts.

Sources, all in the jepsen-io/elle repository: ``README.markdown`` (the demo),
``histories/paper-example.edn`` (the history of the VLDB 2020 paper's example, Kingsbury &
Alvaro, "Elle: Inferring Isolation Anomalies from Experimental Observations"),
``test/elle/list_append_test.clj`` and ``test/elle/rw_register_test.clj`` (each test names
the ``deftest`` and ``testing`` block it encodes). Elle's levels map onto ours as its
``consistency-model`` namespace defines them; where Elle was asked for a level we do not
have (repeatable read, strong session SI) the test says which of ours stands in.
"""

from __future__ import annotations

from quorumdb.check.elle import (
    EdgeKind,
    ElleResult,
    Kind,
    check_elle,
    elle_history_from_events,
)
from quorumdb.check.elle.list_append import infer_list_append
from tests.check.elle_ops import history, pair, txn


def _check(events: list[dict[str, object]], level: str, model: str = "list-append") -> ElleResult:
    return check_elle(events, model=model, isolation=level)


def _kinds(result: ElleResult) -> set[str]:
    return {a.kind.value for a in result.anomalies}


def _only(result: ElleResult, kind: Kind) -> str:
    (anomaly,) = [a for a in result.anomalies if a.kind is kind]
    return anomaly.explanation


# --- README.markdown ------------------------------------------------------------------------


def test_readme_demo_is_g1c() -> None:
    """README "Demo": T1 appends 1 to x and reads y = [1]; T2 appends 2 to x and 1 to y; T3
    reads x = [1 2]. Elle: G1c, "T1 < T2, because T2 observed T1's append of 1 to key :y.
    However, T2 < T1, because T1 appended 2 after T2 appended 1 to :x" (Elle's T1 is the
    transaction appending 2; cycles here start at the earliest transaction)."""
    events = history("ax1ry1", "ax2ay1", "rx12")
    result = _check(events, "serializable")
    assert _kinds(result) == {"G1c"}
    (anomaly,) = result.anomalies
    assert anomaly.explanation == "T1 -ww(x)-> T2 -wr(y)-> T1"
    assert anomaly.ops[1].mops == (("append", "x", 2), ("append", "y", 1))
    assert [s.explanation for s in anomaly.cycle] == [
        'T2 appended 2 after T1 appended 1 to "x"',
        'T1 observed T2\'s append of 1 to "y"',
    ]
    assert not result.valid
    assert _check(events, "read-uncommitted").valid  # G1c is allowed there
    assert not _check(events, "read-committed").valid


# --- histories/paper-example.edn ------------------------------------------------------------

PAPER = [
    [["append", 253, 1], ["append", 253, 3], ["append", 253, 4], ["append", 255, 2],
     ["append", 255, 3], ["append", 255, 4], ["append", 255, 5], ["append", 256, 1],
     ["append", 256, 2]],
    [["append", 255, 8], ["r", 253, [1, 3, 4]]],
    [["append", 256, 4], ["r", 255, [2, 3, 4, 5, 8]], ["r", 256, [1, 2, 4]],
     ["r", 253, [1, 3, 4]]],
    [["append", 250, 10], ["r", 253, [1, 3, 4]], ["r", 255, [2, 3, 4, 5]], ["append", 256, 3]],
]  # fmt: skip


def test_paper_example_is_g_single() -> None:
    """histories/paper-example.edn, the paper's example history (integer keys). By Elle's
    list-append rules: T3 observed T2's append of 8 to 255 (wr); T4's append of 3 to 256 was
    never read, so it came after T3's 4, the last element read (ww, Elle's
    previously-appended-element); T4 read 255 = [2 3 4 5] and missed T2's 8 (rw). One rw
    edge: G-single, which read committed allows and snapshot isolation forbids."""
    events = [e for n, value in enumerate(PAPER) for e in pair(n, value)]
    result = _check(events, "serializable")
    assert _kinds(result) == {"G-single"}
    assert _only(result, Kind.G_SINGLE) == "T1 -wr(255)-> T2 -ww(256)-> T3 -rw(255)-> T1"
    (anomaly,) = result.anomalies
    assert [t.id for t in anomaly.ops] == [1, 2, 3]
    assert _check(events, "read-committed").valid
    assert not _check(events, "snapshot-isolation").valid


# --- test/elle/list_append_test.clj, deftest checker-test -----------------------------------


def test_checker_g0() -> None:
    """checker-test "G0": ax1ay1, ax2ay2, rx12ry21: a pure write cycle; not read-uncommitted."""
    result = _check(history("ax1ay1", "ax2ay2", "rx12ry21"), "read-uncommitted")
    assert _kinds(result) == {"G0"}
    assert _only(result, Kind.G0) == "T1 -ww(x)-> T2 -ww(y)-> T1"
    assert not result.valid


def test_checker_g1a() -> None:
    """checker-test "G1a": a failed ax1, then rx1: read-uncommitted allows it, read-committed
    does not."""
    events = history(("fail", "ax1"), "rx1")
    assert _check(events, "read-uncommitted").valid
    result = _check(events, "read-committed")
    assert _kinds(result) == {"G1a"}
    assert not result.valid


def test_checker_g1b_is_also_g_single() -> None:
    """checker-test "G1b": ax1ax2, then rx1. Elle at strict-serializable: G1b and G-single
    ("rx1 observes ax1 but does not observe ax2")."""
    result = _check(history("ax1ax2", "rx1"), "strict-serializable")
    assert _kinds(result) == {"G1b", "G-single"}
    assert _only(result, Kind.G_SINGLE) == "T1 -wr(x)-> T2 -rw(x)-> T1"


def test_checker_g1c() -> None:
    """checker-test "G1c": ax1ry1, ax2ay1, rx12ry1: G1c; Elle's cycle is [t2 t1 t2]."""
    result = _check(history("ax1ry1", "ax2ay1", "rx12ry1"), "read-committed")
    assert _kinds(result) == {"G1c"}
    assert not result.valid
    assert _check(history("ax1ry1", "ax2ay1", "rx12ry1"), "read-uncommitted").valid


def test_checker_g_single() -> None:
    """checker-test "G-single": ax1ay1, ax2ry, rx12: G-single; G0 and G1 checkers miss it."""
    events = history("ax1ay1", "ax2ry", "rx12")
    assert _check(events, "read-committed").valid
    result = _check(events, "snapshot-isolation")
    assert _kinds(result) == {"G-single"}
    assert _only(result, Kind.G_SINGLE) == "T1 -ww(x)-> T2 -rw(y)-> T1"
    assert result.anomalies[0].ops[1].mops == (("append", "x", 2), ("r", "y", None))


def test_checker_g2() -> None:
    """checker-test "G2": ax1ry, ay1rx: G2-item; read committed (and SI) allow it,
    serializable does not."""
    events = history("ax1ry", "ay1rx")
    assert _check(events, "read-committed").valid
    assert _check(events, "snapshot-isolation").valid
    result = _check(events, "serializable")
    assert _kinds(result) == {"G2-item"}
    assert not result.valid


def _strong(reader_process: int) -> list[dict[str, object]]:
    return [
        *pair(0, txn("ax1")),
        *pair(1, txn("ax2")),
        *pair(reader_process, txn("rx1")),
        *pair(3, txn("rx12")),
    ]


def test_checker_strong_si_violation() -> None:
    """checker-test "Strong SI violation": rx1 runs after ax2 completed, yet misses it.
    Serializable: valid; strict-serializable: G-single-realtime."""
    events = _strong(reader_process=2)
    assert _check(events, "serializable").valid
    result = _check(events, "strict-serializable")
    assert _kinds(result) == {"G-single-realtime"}
    assert _only(result, Kind.G_SINGLE_REALTIME) == "T1 -realtime-> T2 -rw(x)-> T1"


def test_checker_strong_session_si_violation() -> None:
    """checker-test "Strong Session SI violation": the same, the read on ax2's process. Elle:
    serializable valid; G-single-process when process order counts (strict here)."""
    events = _strong(reader_process=1)
    assert _check(events, "serializable").valid
    result = _check(events, "strict-serializable")
    assert _kinds(result) == {"G-single-process"}
    assert _only(result, Kind.G_SINGLE_PROCESS) == "T1 -process-> T2 -rw(x)-> T1"


def test_checker_g_nonadjacent_process() -> None:
    """checker-test "G-nonadjacent-process" (elle issue 17): t0 reads x empty and z = [1]; p1
    appends 1 to x then reads z empty; t3 appends 1 to z. Serializable: valid; with process
    order: G-nonadjacent-process (Elle asked strong session SI)."""
    events = [
        *pair(0, [["r", "x", None], ["r", "z", [1]]]),
        *pair(1, txn("ax1")),
        *pair(1, [["r", "z", None]]),
        *pair(2, txn("az1")),
    ]
    assert _check(events, "serializable").valid
    result = _check(events, "strict-serializable")
    assert "G-nonadjacent-process" in _kinds(result)
    assert not result.valid


def test_checker_contradictory_read_orders() -> None:
    """checker-test "contradictory read orders": ax1ry1, ax2, ax3ay1, rx13, rx123: G1c and
    incompatible-order; Elle's G1c cycle is t3 -wr(y)-> t1 -ww(x)-> t2 -ww(x)-> t3."""
    result = _check(history("ax1ry1", "ax2", "ax3ay1", "rx13", "rx123"), "read-committed")
    assert _kinds(result) == {"G1c", "incompatible-order"}
    assert _only(result, Kind.G1C) == "T1 -ww(x)-> T2 -ww(x)-> T3 -wr(y)-> T1"
    assert _only(result, Kind.INCOMPATIBLE_ORDER).startswith(
        'T1 read "x" = [1, 3] and T2 read [1, 2, 3]'
    )


def test_checker_duplicated_elements() -> None:
    """checker-test "duplicated elements": ax1ry1, ax2ay1, rx121 at read-committed: G1c and
    duplicate-elements. Elle's comment: it also "looks like" G-single (x = [1 2 1] reads as
    if 1 came last), which Elle hides by asking for read-committed: we report it, allowed."""
    result = _check(history("ax1ry1", "ax2ay1", "rx121"), "read-committed")
    assert {a.kind.value for a in result.forbidden} == {"G1c", "duplicate-elements"}
    assert _kinds(result) == {"G1c", "duplicate-elements", "G-single"}


def test_checker_internal_consistency_violation() -> None:
    """checker-test "internal consistency violation": ax1ax2ax4, ax3rx1234: internal
    (expected [... 3]); "There's a G0 here too" (Elle asked for internal alone), and the read
    of T1's 4 closes a G1c as well."""
    result = _check(history("ax1ax2ax4", "ax3rx1234"), "serializable")
    assert _kinds(result) == {"internal", "G0", "G1c"}
    assert "[..., 3]" in _only(result, Kind.INTERNAL)


# --- test/elle/list_append_test.clj, other deftests -----------------------------------------


def test_unobserved_write() -> None:
    """deftest unobserved-write-test: ax1ay1, ax2ay2, ax3ay3 all concurrent, then rx12 and
    ry2. Appends never read still come after the last observed element: G-single
    (ry -rw-> w1 -ww-> w2 -wr-> ry) and G0 (w1 -ww(x)-> w2 -ww(y)-> w1)."""
    invokes, completions = [], []
    for n, spec in enumerate(["ax1ay1", "ax2ay2", "ax3ay3", "rx12", "ry2"]):
        invoke, done = pair(n, txn(spec))
        invokes.append(invoke)
        completions.append(done)
    result = _check(invokes + completions, "serializable")
    assert _kinds(result) == {"G0", "G-single"}
    assert _only(result, Kind.G_SINGLE) == "T1 -ww(x)-> T2 -wr(y)-> T3 -rw(y)-> T1"


def test_repeatable_read() -> None:
    """deftest repeatable-read-test: rxay1, ryax1: G2-item; read committed allows it."""
    events = history("rxay1", "ryax1")
    assert _check(events, "read-committed").valid
    assert _kinds(_check(events, "serializable")) == {"G2-item"}


def test_g_nonadjacent() -> None:
    """deftest G-nonadjacent-test: ax1, rx1ry, ay1, ry1rx: G-nonadjacent (not snapshot
    isolation). Then rx5ay1, ryaz2, rzat3, rt3au4, ruax5, which Elle must not call
    G-nonadjacent: valid at snapshot isolation (its edges, wr t5 -> t1, rw t2 -> t1,
    rw t3 -> t2, wr t3 -> t4 and rw t5 -> t4, close no cycle at all)."""
    result = _check(history("ax1", "rx1ry", "ay1", "ry1rx"), "snapshot-isolation")
    assert _kinds(result) == {"G-nonadjacent"}
    assert not result.valid
    adjacent = history("rx5ay1", "ryaz2", "rzat3", "rt3au4", "ruax5")
    assert _check(adjacent, "snapshot-isolation").valid
    assert _check(adjacent, "serializable").anomalies == ()
    # Run one after another, though, t1 read t5's append before t5 began: real time objects.
    assert "G1c-realtime" in _kinds(_check(adjacent, "strict-serializable"))


def test_lost_update() -> None:
    """deftest lost-update-test: ax0, rx0ax1, rx0ax2: lost-update and G2-item; and "one
    txn, double write" (rxax1ax2, rx12) is valid."""
    result = _check(history("ax0", "rx0ax1", "rx0ax2"), "serializable")
    assert _kinds(result) == {"lost-update", "G2-item"}
    assert not _check(history("ax0", "rx0ax1", "rx0ax2"), "snapshot-isolation").valid
    assert _check(history("rxax1ax2", "rx12"), "strict-serializable").valid


def test_wr_process() -> None:
    """deftest wr-process-test (elle issue 21): p1 reads x = [1] and appends 1 to y; p2
    reads y = [1], then appends 1 to x: G1c-process."""
    events = [
        *pair(1, [["r", "x", [1]], ["append", "y", 1]]),
        *pair(2, [["r", "y", [1]]]),
        *pair(2, [["append", "x", 1]]),
    ]
    assert _check(events, "serializable").valid
    result = _check(events, "strict-serializable")
    assert _kinds(result) == {"G1c-process"}


def test_rr_g_single_item() -> None:
    """deftest rr-g-single-item-test: ax1ay1, rx1ry: G-single."""
    assert _kinds(_check(history("ax1ay1", "rx1ry"), "serializable")) == {"G-single"}


def test_rr_g_nonadjacent_item() -> None:
    """deftest rr-g-nonadjacent-item-test: ax1at1, rx1ry, ay1az2, rz2rt: G-nonadjacent."""
    result = _check(history("ax1at1", "rx1ry", "ay1az2", "rz2rt"), "snapshot-isolation")
    assert _kinds(result) == {"G-nonadjacent"}


def test_future_read() -> None:
    """deftest future-read-test: a transaction reads x = [1] and then appends 1 to x: a
    future read (internal here), forbidden at read-committed by Elle (it implies G1c); ours
    count it as internal, which snapshot isolation forbids."""
    events = pair(0, [["r", "x", [1]], ["append", "x", 1]])
    result = _check(events, "snapshot-isolation")
    assert _kinds(result) == {"internal"}
    assert "future read" in _only(result, Kind.INTERNAL)


def test_info_reads_are_not_used() -> None:
    """deftest graph-test "info reads": an info [ax2 ry], an ok [ax1 ay1], an ok [rx12 ry1].
    Elle's edges: t1 -> t3, t2 -> t3 and t2 -> t1; the info transaction's read of y = nil is
    not an observation, so no t1 -rw-> t2."""
    events = [*pair(0, txn("ax2ry"), "info"), *pair(1, txn("ax1ay1")), *pair(2, txn("rx12ry1"))]
    graph = infer_list_append(elle_history_from_events(events, "list-append")).graph
    edges = {(a, b): graph.kinds(a, b) for a in range(3) for b in graph.succ[a]}
    assert edges == {(0, 2): EdgeKind.WR, (1, 2): EdgeKind.WR, (1, 0): EdgeKind.WW}


def test_appends_without_reads() -> None:
    """deftest graph-test "single appends without reads" and "multiple appends without
    reads": rx, ax1 gives rx -> ax1; rx, ax1, ax2 gives rx -> ax1 and rx -> ax2."""
    for specs, expected in ((("rx", "ax1"), {(0, 1)}), (("rx", "ax1", "ax2"), {(0, 1), (0, 2)})):
        history_ = elle_history_from_events(history(*specs), "list-append")
        graph = infer_list_append(history_).graph
        edges = {(a, b) for a in range(len(specs)) for b in graph.succ[a]}
        assert edges == expected
        assert all(graph.kinds(a, b) is EdgeKind.RW for a, b in edges)


# --- test/elle/rw_register_test.clj ---------------------------------------------------------


def _rw(*specs: str | tuple[str, str]) -> list[dict[str, object]]:
    return history(*specs, model="rw-register")


def test_register_g1a() -> None:
    """checker-test "G1a": rx1, then a failed wx1."""
    result = _check(_rw("rx1", ("fail", "wx1")), "read-committed", "rw-register")
    assert _kinds(result) == {"G1a"}


def test_register_g1b() -> None:
    """checker-test "G1b": wx1wx2, then rx1: G1b, and no wr edge (the read dep isn't
    external), so no cycle."""
    result = _check(_rw("wx1wx2", "rx1"), "read-committed", "rw-register")
    assert _kinds(result) == {"G1b"}
    assert result.edge_count == 0


def test_register_g1c() -> None:
    """checker-test "G1c": wx1ry1, wy1rx1: G1c; read-uncommitted allows it."""
    events = _rw("wx1ry1", "wy1rx1")
    assert _check(events, "read-uncommitted", "rw-register").valid
    result = _check(events, "read-committed", "rw-register")
    assert _kinds(result) == {"G1c"}
    assert _only(result, Kind.G1C) == "T1 -wr(x)-> T2 -wr(y)-> T1"


def test_register_initial_state() -> None:
    """checker-test "initial state": t1 reads x = nil and y = 1, around t2 writing y = 1 and
    x = 2: nil precedes every version, so G-single at serializable."""
    t1_invoke, t1_ok = pair(0, [["r", "x", None], ["r", "y", 1]])
    events = [t1_invoke, *pair(1, txn("wy1wx2", model="rw-register")), t1_ok]
    result = _check(events, "serializable", "rw-register")
    assert _kinds(result) == {"G-single"}
    assert _only(result, Kind.G_SINGLE) == "T1 -rw(x)-> T2 -wr(y)-> T1"


def test_register_wfr() -> None:
    """checker-test "wfr": ry1wx1wy2 then rx1ry1. With writes-follow-reads, 1 < 2 on y and
    the read of y = 1 misses the write of 2: G-single. (Nobody wrote y = 1 in Elle's
    example; we report that read as a garbage read as well.)"""
    result = _check(_rw("ry1wx1wy2", "rx1ry1"), "serializable", "rw-register")
    assert _kinds(result) == {"G-single", "garbage-read"}
    assert _only(result, Kind.G_SINGLE) == "T1 -wr(x)-> T2 -rw(y)-> T1"


def test_register_internal() -> None:
    """checker-test "internal": rx1rx2 (and internal-cases-test "stale": rx1wx2rx1)."""
    result = _check(_rw("rx1rx2"), "snapshot-isolation", "rw-register")
    assert "internal" in _kinds(result)
    stale = _check(_rw("wx1", "rx1wx2rx1"), "snapshot-isolation", "rw-register")
    assert _kinds(stale) == {"internal"}
    assert "T1 wrote 2 there before" in _only(stale, Kind.INTERNAL)


def test_register_lost_update() -> None:
    """deftest lost-update-test: rx0wx1 and rx0wx2 on two processes: lost-update. With
    writes-follow-reads on, both writes follow 0 and each misses the other: G2-item too.
    (Elle's example never writes x = 0; here a first transaction does.)"""
    result = _check(_rw("wx0", "rx0wx1", "rx0wx2"), "serializable", "rw-register")
    assert _kinds(result) == {"lost-update", "G2-item"}


def test_register_chain_on_one_register() -> None:
    """wr-graph-test "chain on one register": [rx0 wx1], [rx1 wx0]: each read the other's
    write, a wr cycle. Reads followed by writes also order 0 < 1 < 0: cyclic versions."""
    result = _check(_rw("rx0wx1", "rx1wx0"), "read-committed", "rw-register")
    assert _kinds(result) == {"G1c", "cyclic-versions"}


def test_register_write_skew() -> None:
    """wr-graph-test "write skew" ([rx0 ry0 wx1], [rx0 ry0 wy1]), with a first transaction
    writing the zeros: a G2-item that snapshot isolation allows and serializability does
    not."""
    events = _rw("wx0wy0", "rx0ry0wx1", "rx0ry0wy1")
    assert _check(events, "snapshot-isolation", "rw-register").valid
    result = _check(events, "serializable", "rw-register")
    assert _kinds(result) == {"G2-item"}
