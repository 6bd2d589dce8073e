"""Datadriven tests of `raft/quorum.py` over `testdata/quorum/*.txt`, plus property tests.

Commands (etcd-raft's quorum/datadriven_test.go has the same two, in its own format):

    committed cfg=(1,2,3) [cfgj=(3,4,5)] idx=(5,_,7,...)
    vote      cfg=(1,2,3) [cfgj=(3,4,5)] votes=(y,n,_,...)
    vote      cfg=(1,2,3) [cfgj=(3,4,5)] msgs=(1y,2n,2y)

`cfg` is the incoming majority and `cfgj` the outgoing one: with `cfgj` (even `cfgj=()`) the
directive tests a `JointConfig`, without it a lone `MajorityConfig`. `idx` and `votes` give one
value per voter, for the voters of both halves together in ascending id order: an acknowledged
index or `_` (nothing acknowledged, which counts as 0); `y`, `n` or `_` (granted, rejected, no
answer yet). `msgs` instead lists vote responses in arrival order (`2n` = node 2 rejected), fed
through `ProgressTracker.record_vote`: a node's first answer sticks, and the answer of a node
that is not a voter is recorded but must not count.

Each majority is printed with its voters sorted by acknowledged index, highest first, and the
quorum position marked, so the committed index can be read off by hand; vote results list who
said yes/no/nothing. The handler also recomputes every result independently (the brute-force
references below, the halves swapped, a majority joined with itself and with the empty
majority) and prints a `MISMATCH` line when they disagree: an accepted file contains none.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumdb.raft.quorum import INFINITE, JointConfig, MajorityConfig, VoteResult
from quorumdb.raft.tracker import ProgressTracker, TrackerConfig
from tests.datadriven import DataDrivenError, Directive, run_file

TESTDATA = Path(__file__).parent / "testdata" / "quorum"
FILES = sorted(TESTDATA.glob("*.txt"))

# -- brute-force references: the definitions, by enumerating every quorum -------------------------


def _quorums(ids: tuple[int, ...]) -> list[tuple[int, ...]]:
    return list(itertools.combinations(ids, len(ids) // 2 + 1))


def ref_committed(ids: tuple[int, ...], acked: Mapping[int, int]) -> int:
    """The largest index that every voter of some quorum has acknowledged."""
    if not ids:
        return INFINITE
    return max(min(acked.get(i, 0) for i in q) for q in _quorums(ids))


def ref_vote(ids: tuple[int, ...], votes: Mapping[int, bool]) -> VoteResult:
    """WON if some quorum all granted; LOST if every quorum holds a rejection; else PENDING."""
    if not ids:
        return VoteResult.WON
    if any(all(votes.get(i) is True for i in q) for q in _quorums(ids)):
        return VoteResult.WON
    if all(any(votes.get(i) is False for i in q) for q in _quorums(ids)):
        return VoteResult.LOST
    return VoteResult.PENDING


def ref_joint_vote(a: VoteResult, b: VoteResult) -> VoteResult:
    """Both halves must win; one lost half loses the whole."""
    if VoteResult.LOST in (a, b):
        return VoteResult.LOST
    if a == b == VoteResult.WON:
        return VoteResult.WON
    return VoteResult.PENDING


# -- the datadriven handler -----------------------------------------------------------------------


def _fmt(index: int) -> str:
    return "INFINITE" if index == INFINITE else str(index)


def _ids(ids: tuple[int, ...]) -> str:
    return "(" + " ".join(map(str, ids)) + ")"


def _per_voter(
    d: Directive, key: str, vals: tuple[str, ...], ids: tuple[int, ...]
) -> tuple[str, ...]:
    if len(vals) != len(ids):
        raise d.fail(f"{key} needs one value per voter {_ids(ids)}, got {len(vals)}")
    return vals


def _describe_commit(label: str, c: MajorityConfig, acked: dict[int, int]) -> list[str]:
    if not c.ids:
        return [f"{label} (): empty, never limits -> {_fmt(c.committed_index(acked.get))}"]
    q = len(c) // 2 + 1
    out = [f"{label} {c!r}, quorum {q} of {len(c)}:"]
    rows = sorted(c.ids, key=lambda i: (-acked.get(i, 0), i))
    for pos, i in enumerate(rows, 1):
        mark = "  <- quorum" if pos == q else ""
        out.append(f"  {i}: {acked.get(i, '_')}{mark}")
    out.append(f"  -> {_fmt(c.committed_index(acked.get))}")
    return out


def _describe_vote(label: str, c: MajorityConfig, votes: Mapping[int, bool]) -> str:
    def who(v: bool | None) -> str:
        return _ids(tuple(i for i in c.ids if votes.get(i) is v))

    head = f"{label} {c!r}"
    if c.ids:
        head += f", quorum {len(c) // 2 + 1} of {len(c)}"
    body = f"yes={who(True)} no={who(False)} missing={who(None)}"
    return f"{head}: {body} -> {c.vote_result(votes).name}"


class QuorumEnv:
    """Runs `committed` and `vote` directives; keeps no state between them."""

    def handle(self, d: Directive) -> str:
        args = {a.key: a.vals for a in d.args}
        if len(args) != len(d.args):
            raise d.fail("repeated argument")
        if d.input:
            raise d.fail("this command takes no input lines")
        cfg = MajorityConfig(self._ints(d, args.pop("cfg", ())))
        joint = "cfgj" in args
        cfgj = MajorityConfig(self._ints(d, args.pop("cfgj", ())))
        voters = JointConfig(cfg, cfgj).ids()
        if d.cmd == "committed":
            out = self._committed(d, args.pop("idx", ()), cfg, cfgj if joint else None, voters)
        elif d.cmd == "vote":
            out = self._vote(d, args, cfg, cfgj if joint else None, voters)
        else:
            raise d.fail("unknown command")
        if args:
            raise d.fail(f"unknown arguments {sorted(args)}")
        return "\n".join(out)

    @staticmethod
    def _ints(d: Directive, vals: tuple[str, ...]) -> list[int]:
        try:
            return [int(v) for v in vals]
        except ValueError:
            raise d.fail(f"not a list of node ids: {vals}") from None

    def _committed(
        self,
        d: Directive,
        vals: tuple[str, ...],
        cfg: MajorityConfig,
        cfgj: MajorityConfig | None,
        voters: tuple[int, ...],
    ) -> list[str]:
        vals = _per_voter(d, "idx", vals, voters)
        if any(v != "_" and not v.isdigit() for v in vals):
            raise d.fail(f"an idx value is an index or _: {vals}")
        acked = {i: int(v) for i, v in zip(voters, vals, strict=True) if v != "_"}
        look = acked.get
        if cfgj is None:
            got = cfg.committed_index(look)
            out = _describe_commit("majority", cfg, acked)
            checks = {
                "brute force": ref_committed(cfg.ids, acked),
                "joined with ()": JointConfig(cfg).committed_index(look),
                "joined with itself": JointConfig(cfg, cfg).committed_index(look),
            }
        else:
            got = JointConfig(cfg, cfgj).committed_index(look)
            out = _describe_commit("incoming", cfg, acked)
            out += _describe_commit("outgoing", cfgj, acked)
            checks = {
                "brute force": min(ref_committed(cfg.ids, acked), ref_committed(cfgj.ids, acked)),
                "halves swapped": JointConfig(cfgj, cfg).committed_index(look),
            }
        out.append(f"committed: {_fmt(got)}")
        return out + [f"MISMATCH {k}: {_fmt(v)}" for k, v in checks.items() if v != got]

    def _vote(
        self,
        d: Directive,
        args: dict[str, tuple[str, ...]],
        cfg: MajorityConfig,
        cfgj: MajorityConfig | None,
        voters: tuple[int, ...],
    ) -> list[str]:
        out: list[str] = []
        if "msgs" in args:
            votes = self._record(d, args.pop("msgs"), JointConfig(cfg, cfgj))
            out.append("recorded: " + " ".join(f"{i}{'y' if v else 'n'}" for i, v in votes.items()))
        else:
            vals = _per_voter(d, "votes", args.pop("votes", ()), voters)
            if any(v not in ("y", "n", "_") for v in vals):
                raise d.fail(f"votes are y, n or _: {vals}")
            votes = {i: v == "y" for i, v in zip(voters, vals, strict=True) if v != "_"}
        checks: dict[str, VoteResult]
        if cfgj is None:
            got = cfg.vote_result(votes)
            out.append(_describe_vote("majority", cfg, votes))
            checks = {
                "brute force": ref_vote(cfg.ids, votes),
                "joined with ()": JointConfig(cfg).vote_result(votes),
                "joined with itself": JointConfig(cfg, cfg).vote_result(votes),
            }
        else:
            got = JointConfig(cfg, cfgj).vote_result(votes)
            out += [_describe_vote("incoming", cfg, votes), _describe_vote("outgoing", cfgj, votes)]
            checks = {
                "brute force": ref_joint_vote(ref_vote(cfg.ids, votes), ref_vote(cfgj.ids, votes)),
                "halves swapped": JointConfig(cfgj, cfg).vote_result(votes),
            }
        out.append(f"result: {got.name}")
        return out + [f"MISMATCH {k}: {v.name}" for k, v in checks.items() if v != got]

    @staticmethod
    def _record(d: Directive, msgs: tuple[str, ...], voters: JointConfig) -> dict[int, bool]:
        tracker = ProgressTracker(max_inflight=16, max_inflight_bytes=0)
        tracker.config = TrackerConfig(voters)
        for m in msgs:
            if len(m) < 2 or m[-1] not in "yn" or not m[:-1].isdigit():
                raise d.fail(f"a vote message is <node><y|n>, not {m!r}")
            tracker.record_vote(int(m[:-1]), m[-1] == "y")
        return dict(sorted(tracker.votes.items()))


# -- tests ----------------------------------------------------------------------------------------


def test_testdata_present() -> None:
    assert len(FILES) >= 4, [f.name for f in FILES]


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_quorum(path: Path, rewrite: bool) -> None:
    text = path.read_text()
    assert text.startswith("#"), f"{path.name} must open with a comment saying what it tests"
    run_file(path, QuorumEnv().handle, rewrite=rewrite)
    assert "MISMATCH" not in path.read_text()


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("tally cfg=(1)\n----\nok\n", "unknown command"),
        ("committed cfg=(1,2) idx=(1)\n----\nok\n", "one value per voter"),
        ("committed cfg=(1) idx=(1) colour=(2)\n----\nok\n", "unknown arguments"),
        ("vote cfg=(1) votes=(maybe)\n----\nok\n", "y, n or _"),
        ("vote cfg=(1) msgs=(y1)\n----\nok\n", "<node><y|n>"),
        ("vote cfg=(1)\n----\nok\n", "one value per voter"),
        ("vote cfg=(1) votes=(y) msgs=(1y)\n----\nok\n", "unknown arguments"),
        ("committed cfg=(1) idx=(x)\n----\nok\n", "index or _"),
        ("committed cfg=(a)\n----\nok\n", "node ids"),
    ],
)
def test_bad_directive_fails_loudly(tmp_path: Path, script: str, message: str) -> None:
    path = tmp_path / "t.txt"
    path.write_text(script)
    with pytest.raises(DataDrivenError, match=message):
        run_file(path, QuorumEnv().handle, rewrite=True)


def test_cross_checks_catch_a_planted_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A joint config taking the larger half's index (not the smaller) shows up as MISMATCH."""

    def planted(self: JointConfig, acked: Callable[[int], int | None]) -> int:
        return max(self.incoming.committed_index(acked), self.outgoing.committed_index(acked))

    monkeypatch.setattr(JointConfig, "committed_index", planted)
    path = tmp_path / "t.txt"
    path.write_text("committed cfg=(1,2,4) cfgj=(1,2,3) idx=(9,7,8,_)\n----\n")
    run_file(path, QuorumEnv().handle, rewrite=True)
    assert "MISMATCH brute force: 7" in path.read_text()


# -- properties: the implementation against the brute-force references ----------------------------

_voters = st.lists(st.integers(1, 9), max_size=7, unique=True).map(tuple)
_acks = st.dictionaries(st.integers(1, 9), st.integers(0, 20))
_votes = st.dictionaries(st.integers(1, 9), st.booleans())
PROPS = settings(max_examples=200, derandomize=True, deadline=None)


def _lookup(acks: Mapping[int, int]) -> Callable[[int], int | None]:
    return acks.get


@PROPS
@given(_voters, _acks)
def test_majority_committed_is_the_ack_at_the_quorum_position(
    ids: tuple[int, ...], acks: dict[int, int]
) -> None:
    got = MajorityConfig(ids).committed_index(_lookup(acks))
    assert got == ref_committed(tuple(sorted(ids)), acks)
    if ids:
        # Equivalently: sort the acks (a missing one is 0) and read the q-th highest.
        srt = sorted((acks.get(i, 0) for i in ids), reverse=True)
        assert got == srt[len(ids) // 2]


@PROPS
@given(_voters, _voters, _acks)
def test_joint_committed_is_the_min_of_both_majorities(
    inc: tuple[int, ...], out: tuple[int, ...], acks: dict[int, int]
) -> None:
    a, b = MajorityConfig(inc), MajorityConfig(out)
    got = JointConfig(a, b).committed_index(_lookup(acks))
    assert got == min(a.committed_index(_lookup(acks)), b.committed_index(_lookup(acks)))
    assert got == min(ref_committed(a.ids, acks), ref_committed(b.ids, acks))
    assert got == JointConfig(b, a).committed_index(_lookup(acks))


@PROPS
@given(_voters, _voters, _votes)
def test_vote_results_match_the_reference(
    inc: tuple[int, ...], out: tuple[int, ...], votes: dict[int, bool]
) -> None:
    a, b = MajorityConfig(inc), MajorityConfig(out)
    assert a.vote_result(votes) == ref_vote(a.ids, votes)
    want = ref_joint_vote(ref_vote(a.ids, votes), ref_vote(b.ids, votes))
    assert JointConfig(a, b).vote_result(votes) == want
    assert JointConfig(b, a).vote_result(votes) == want
