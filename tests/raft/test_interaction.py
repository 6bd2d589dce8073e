"""Datadriven interaction tests: every `testdata/*.txt` file is one scripted scenario.

Each file opens with a comment saying what it tests and which rule of the Raft paper (or thesis)
it covers. Regenerate expectations with `pytest tests/raft/test_interaction.py --rewrite`, then
read the diff: every line is Raft behaviour someone must be able to justify.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.datadriven import DataDrivenError, run_file
from tests.raft.interaction_env import InteractionEnv

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def test_testdata_present() -> None:
    assert len(FILES) >= 12, [f.name for f in FILES]


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_interaction(path: Path, rewrite: bool) -> None:
    text = path.read_text()
    assert text.startswith("#"), f"{path.name} must open with a comment saying what it tests"
    env = InteractionEnv()
    run_file(path, env.handle, rewrite=rewrite)


def _run_text(tmp_path: Path, text: str, *, rewrite: bool = False) -> str:
    path = tmp_path / "t.txt"
    path.write_text(text)
    run_file(path, InteractionEnv().handle, rewrite=rewrite)
    return path.read_text()


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("frobnicate 1\n----\nok\n", "unknown command"),
        ("add-nodes 1 voters=(1) colour=blue\n----\nok\n", "unknown arguments"),
        ("add-nodes 1 voters=(1)\n----\nok\n\ncampaign 1 2\n----\nok\n", "unknown arguments"),
        ("add-nodes 1 pre-vote=maybe\n----\nok\n", "true or false"),
        ("campaign 7\n----\nok\n", "no node 7"),
        ("add-nodes 1\n", "without '----'"),
    ],
)
def test_bad_directive_fails_loudly(tmp_path: Path, script: str, message: str) -> None:
    with pytest.raises(DataDrivenError, match=message):
        _run_text(tmp_path, script, rewrite=True)


def test_wrong_expectation_fails_and_rewrite_fixes_it(tmp_path: Path) -> None:
    script = "# c\n\nadd-nodes 1 voters=(1)\n----\nwrong\n\ncampaign 1\n----\n\nraft-state\n----\n"
    with pytest.raises(AssertionError, match="add-nodes output differs"):
        _run_text(tmp_path, script)
    rewritten = _run_text(tmp_path, script, rewrite=True)
    assert rewritten == (
        "# c\n\n"
        "add-nodes 1 voters=(1)\n----\n"
        "1: Lead:0 State:FOLLOWER Term:0 Vote:0 Commit:0 voters=(1)\n\n"
        "campaign 1\n----\n"
        "1: Lead:1 State:LEADER Term:1 Vote:1 Commit:0\n\n"
        "raft-state\n----\n"
        "1: Lead:1 State:LEADER Term:1 Vote:1 Commit:0\n"
    )
    _run_text(tmp_path, rewritten)  # the rewritten file passes as is
