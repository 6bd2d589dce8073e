"""Datadriven interaction tests: every `testdata/*.txt` file is one scripted scenario.

Each file opens with a comment saying what it tests and which rule of the Raft paper (or thesis)
it covers. Regenerate expectations with `pytest tests/raft/test_interaction.py --rewrite`, then
read the diff: every line is Raft behaviour someone must be able to justify.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.datadriven import run_file
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
