"""Network faults between node processes, in one of two modes, behind one interface.

- `proxy` (any user): a fault-injecting TCP proxy on loopback for every ordered pair of
  nodes; node i's config names the proxy as peer j's Raft address (`Layout.views`).
- `netns` (root, with iproute2 and nftables): each node in its own network namespace, veth
  pairs to a bridge; faults are nft rules and qdiscs inside the namespaces.

Both own the PARTITION kind and every variant of it (see `schedule.VARIANTS`). Client
traffic (HTTP, Kafka) is not cut: as in Jepsen, the faults are between the nodes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol

from quorumdb.cli.local_cluster import Layout
from quorumdb.errors import UserError
from quorumdb.nemesis.schedule import Fault, Nemesis

__all__ = ["NET_MODES", "NetworkFaults", "open_network", "resolve_mode"]

NET_MODES = ("auto", "proxy", "netns")


class NetworkFaults(Protocol):
    kinds: frozenset[Nemesis]

    def layout(self) -> Layout:
        """Where the nodes listen and how each reaches its peers (before the cluster starts)."""
        ...

    def start(self, fault: Fault, targets: tuple[int, ...]) -> None: ...

    def stop(self, fault: Fault, targets: tuple[int, ...]) -> None: ...

    def heal(self) -> None: ...

    def close(self) -> None: ...


def resolve_mode(mode: str) -> str:
    """`auto` is netns as root with `ip`, `tc` and `nft` at hand, else proxy; netns without
    them is a one-line error."""
    tools = ("ip", "tc", "nft")
    can_netns = os.geteuid() == 0 and all(shutil.which(t) for t in tools)
    if mode == "auto":
        return "netns" if can_netns else "proxy"
    if mode == "netns" and not can_netns:
        raise UserError(
            "--net netns needs root, iproute2 and nftables (ip, tc, nft); use --net proxy"
        )
    if mode not in NET_MODES:
        raise UserError(f"unknown --net {mode!r} (known: {', '.join(NET_MODES)})")
    return mode


def open_network(
    mode: str, workdir: Path, nodes: int, base_port: int, *, seed: int = 0
) -> NetworkFaults:
    """Build the run's network (proxies started, or namespaces and bridge created); `seed`
    draws the proxies' losses and delays, so a run replays from its seed."""
    if mode == "proxy":
        from quorumdb.nemesis.proxy import ProxyNetwork

        return ProxyNetwork(workdir, nodes, base_port, seed=seed)
    from quorumdb.nemesis.netns import NamespaceNetwork

    return NamespaceNetwork(workdir, nodes, base_port)
