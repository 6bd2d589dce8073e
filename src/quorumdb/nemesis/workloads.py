"""The workloads `quorumdb test` knows, by name, and how each is built for a live cluster."""

from __future__ import annotations

from quorumdb.cli.local_cluster import LocalCluster
from quorumdb.nemesis.register import RegisterWorkload
from quorumdb.nemesis.workload import Workload

__all__ = ["WORKLOADS", "make_workload"]

WORKLOADS = ("register",)


def make_workload(
    name: str, cluster: LocalCluster, *, clients: int, keys: int, rate: float, seed: int
) -> Workload:
    urls = cluster.http_urls
    if name == "register":
        return RegisterWorkload(urls, clients=clients, keys=keys, rate=rate, seed=seed)
    raise ValueError(f"unknown workload {name!r}")
