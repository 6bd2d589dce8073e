"""The linearizable key-value service: a replicated state machine per shard, and its API."""

__all__: list[str] = []
