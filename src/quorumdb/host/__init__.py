"""NodeHost: many Raft groups in one process, sharing one tick, one WAL and one network;
sans-IO (see `host.env`), driven by `runtime.node` over asyncio and by `sim.host_node`.
Services plug in as replicated state machines (`host.state_machine`); the host imports
only `raft/`, `storage/` and the errors module."""

__all__: list[str] = []
