"""`quorumdb demo`: the main job of the README's first command."""

from __future__ import annotations

import click

__all__ = ["demo"]


@click.command()
def demo() -> None:
    """Run the demo."""
