"""NodeHost: many Raft groups in one process, sharing one tick, one WAL and one network;
sans-IO (see `host.env`), driven by `runtime.node` over asyncio and by `sim.host_node`."""

__all__: list[str] = []
