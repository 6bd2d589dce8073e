"""The workloads `quorumdb test` knows, by name, and how each is built for a live cluster.

`--keys` means registers for `register`, accounts for `bank` and keys for `list-append`
(at least two each); `kafka` uses one topic of `--keys` partitions (at least one).
`--rate` is operations (sends, transactions) per second over all clients.
"""

from __future__ import annotations

from quorumdb.cli.local_cluster import LocalCluster
from quorumdb.nemesis.bank_workload import BankWorkload
from quorumdb.nemesis.kafka_workload import KafkaWorkload
from quorumdb.nemesis.list_append_workload import ListAppendWorkload
from quorumdb.nemesis.register import RegisterWorkload
from quorumdb.nemesis.workload import Workload

__all__ = ["WORKLOADS", "make_workload"]

WORKLOADS = ("register", "kafka", "bank", "list-append")


def make_workload(
    name: str, cluster: LocalCluster, *, clients: int, keys: int, rate: float, seed: int
) -> Workload:
    urls = cluster.http_urls
    if name == "register":
        return RegisterWorkload(urls, clients=clients, keys=keys, rate=rate, seed=seed)
    if name == "bank":
        return BankWorkload(urls, clients=clients, accounts=keys, rate=rate, seed=seed)
    if name == "list-append":
        return ListAppendWorkload(urls, clients=clients, keys=keys, rate=rate, seed=seed)
    if name == "kafka":
        servers = [
            f"{m.kafka[0]}:{m.kafka[1]}" for _, m in sorted(cluster.nodes.items()) if m.kafka
        ]
        return KafkaWorkload(servers, clients=clients, partitions=keys, rate=rate, seed=seed)
    raise ValueError(f"unknown workload {name!r}")
