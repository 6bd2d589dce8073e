"""Datadriven tests of `raft/confchange.py` over `testdata/confchange/*.txt`.

Commands (those of etcd-raft's confchange/datadriven_test.go, in our own output format):

    simple                      one input line of changes, applied by `Changer.simple`
    enter-joint [autoleave=true]  one input line of changes, applied by `Changer.enter_joint`
    leave-joint                 no input, `Changer.leave_joint`

A change is `v<id>` (make a voter), `l<id>` (make a learner) or `r<id>` (remove); the input line
may be empty. Each file starts from an empty tracker. A successful change is installed and
printed: the configuration, then one line per tracked node with its progress. A rejected change
prints `error: ...` and the tracker stays as it was.

The last index given to the `Changer` starts at 0 and grows by one after every directive (as in
etcd's test), and a new node's progress starts at `next = max(last index, 1)`: so `next` tells in
which directive a progress was created, which shows whether a promotion or demotion kept it.

The handler also checks, printing a `MISMATCH` line if not (an accepted file has none), that
the `Changer` never touched the tracker it was given (it works on a copy), and that `restore`
rebuilds the same configuration and members from the new configuration's `ConfState` (as a node
restarting or receiving a snapshot does).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumdb.raft.confchange import Changer, ProgressMap, _Draft, restore
from quorumdb.raft.errors import ConfigError
from quorumdb.raft.messages import ConfChangeSingle, ConfChangeType
from quorumdb.raft.tracker import ProgressTracker, TrackerConfig
from tests.datadriven import DataDrivenError, Directive, run_file

TESTDATA = Path(__file__).parent / "testdata" / "confchange"
FILES = sorted(TESTDATA.glob("*.txt"))

_TYPES = {
    "v": ConfChangeType.ADD_NODE,
    "l": ConfChangeType.ADD_LEARNER_NODE,
    "r": ConfChangeType.REMOVE_NODE,
}


def _tracker() -> ProgressTracker:
    return ProgressTracker(max_inflight=16, max_inflight_bytes=0)


def _describe(cfg: TrackerConfig, prs: ProgressMap) -> list[str]:
    return [repr(cfg), *(f"{i}: {prs[i]!r}" for i in sorted(prs))]


class ConfChangeEnv:
    """One tracker, changed directive by directive."""

    def __init__(self) -> None:
        self.tracker = _tracker()
        self.last_index = 0

    def handle(self, d: Directive) -> str:
        try:
            return "\n".join(self._handle(d))
        finally:
            self.last_index += 1

    def _handle(self, d: Directive) -> list[str]:
        args = {a.key: a.vals for a in d.args}
        autoleave = args.pop("autoleave", ("false",))
        if args or (d.cmd != "enter-joint" and len(d.args) > 0):
            raise d.fail(f"unknown arguments {[a.key for a in d.args]}")
        if autoleave not in (("true",), ("false",)):
            raise d.fail(f"autoleave must be true or false, not {autoleave}")
        ccs = self._parse_changes(d)
        changer = Changer(self.tracker, self.last_index)
        before = _describe(self.tracker.config, self.tracker.progress)
        if d.cmd == "leave-joint" and ccs:
            raise d.fail("leave-joint takes no changes")
        try:
            if d.cmd == "simple":
                result = changer.simple(ccs)
            elif d.cmd == "enter-joint":
                result = changer.enter_joint(autoleave == ("true",), ccs)
            elif d.cmd == "leave-joint":
                result = changer.leave_joint()
            else:
                raise d.fail("unknown command")
        except ConfigError as e:
            out = [f"error: {e}"]
        else:
            out = _describe(*result) + self._check_restore(*result)
        if _describe(self.tracker.config, self.tracker.progress) != before:
            out.append("MISMATCH: the Changer modified the tracker it was given")
        if not out[0].startswith("error:"):
            self.tracker.config, self.tracker.progress = result
        return out

    @staticmethod
    def _parse_changes(d: Directive) -> tuple[ConfChangeSingle, ...]:
        if "\n" in d.input:
            raise d.fail("changes go on one input line")
        ccs: list[ConfChangeSingle] = []
        for tok in d.input.split():
            kind, num = tok[:1], tok[1:]
            if kind not in _TYPES or not num.isdigit():
                raise d.fail(f"a change is v<id>, l<id> or r<id>, not {tok!r}")
            ccs.append(ConfChangeSingle(_TYPES[kind], int(num)))
        return tuple(ccs)

    def _check_restore(self, cfg: TrackerConfig, prs: ProgressMap) -> list[str]:
        t = _tracker()
        try:
            restore(t, self.last_index, cfg.conf_state())
        except ConfigError as e:
            return [f"MISMATCH: restore failed: {e}"]
        out = []
        if repr(t.config) != repr(cfg):
            out.append(f"MISMATCH: restore gave {t.config!r}")
        want = {i: pr.is_learner for i, pr in prs.items()}
        got = {i: pr.is_learner for i, pr in t.progress.items()}
        if got != want:
            out.append(f"MISMATCH: restore tracks {sorted(got.items())}")
        return out


def test_testdata_present() -> None:
    assert len(FILES) >= 5, [f.name for f in FILES]


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_confchange(path: Path, rewrite: bool) -> None:
    text = path.read_text()
    assert text.startswith("#"), f"{path.name} must open with a comment saying what it tests"
    run_file(path, ConfChangeEnv().handle, rewrite=rewrite)
    assert "MISMATCH" not in path.read_text()


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("promote\nv1\n----\nok\n", "unknown command"),
        ("simple\nx1\n----\nok\n", "not 'x1'"),
        ("simple\nv\n----\nok\n", "not 'v'"),
        ("simple colour=blue\nv1\n----\nok\n", "unknown arguments"),
        ("enter-joint autoleave=maybe\nv1\n----\nok\n", "true or false"),
        ("simple\nv1\n----\nok\n\nleave-joint\nr1\n----\nok\n", "takes no changes"),
    ],
)
def test_bad_directive_fails_loudly(tmp_path: Path, script: str, message: str) -> None:
    path = tmp_path / "t.txt"
    path.write_text(script)
    with pytest.raises(DataDrivenError, match=message):
        run_file(path, ConfChangeEnv().handle, rewrite=True)


def test_cross_checks_catch_a_planted_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Changer editing the tracker's own Progress objects (no copy) shows up as MISMATCH."""

    def no_copy(self: Changer) -> _Draft:
        return _Draft(self.tracker.config, dict(self.tracker.progress))

    monkeypatch.setattr(Changer, "_check_and_copy", no_copy)
    path = tmp_path / "t.txt"
    path.write_text("simple\nv1\n----\n\nenter-joint\nl1 v2\n----\n\nleave-joint\n----\n")
    run_file(path, ConfChangeEnv().handle, rewrite=True)
    assert "MISMATCH: the Changer modified the tracker" in path.read_text()
