"""The `quorumdb` command line: one click group, one module per command family."""

__all__: list[str] = []
