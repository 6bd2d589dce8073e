"""NodeHost: many Raft groups in one process, sharing one tick, one WAL and one transport."""

__all__: list[str] = []
