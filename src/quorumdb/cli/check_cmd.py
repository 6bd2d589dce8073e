"""`quorumdb check ...`: run a checker from check/ over a recorded history file."""

from __future__ import annotations

import click

__all__ = ["check"]


@click.group()
def check() -> None:
    """Check recorded histories (linearizability, ...)."""
