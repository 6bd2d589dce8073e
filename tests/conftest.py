"""Shared pytest configuration."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="regenerate the expected output of datadriven tests (review the diff like code)",
    )


@pytest.fixture
def rewrite(request: pytest.FixtureRequest) -> bool:
    """True when pytest runs with --rewrite."""
    return bool(request.config.getoption("--rewrite"))
