"""`quorumdb sim ...`: run the deterministic simulator for one seed or sweep many."""

from __future__ import annotations

import click

__all__ = ["sim"]


@click.group()
def sim() -> None:
    """Deterministic simulation of a Raft cluster under faults."""
