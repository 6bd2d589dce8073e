"""The asyncio runtime: TCP transport between nodes and the event-loop driver of the core."""

__all__: list[str] = []
