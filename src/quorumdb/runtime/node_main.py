"""One node process: logging, the event loop (uvloop when available), signals, clean exit.

A node that cannot start (corrupt WAL, port in use, bad config) prints one line naming the
cause (the file and offset, for corruption) and exits non-zero; SIGTERM and SIGINT stop it
gracefully (the WAL is closed after the last batch).
"""

from __future__ import annotations

import asyncio
import cProfile
import logging
import os
import signal
import sys
from pathlib import Path

from quorumdb.errors import QuorumError
from quorumdb.host.config import NodeConfig
from quorumdb.host.kafka_backend import KafkaBackend
from quorumdb.host.node_host import NodeHost
from quorumdb.host.wal_log import WalNodeLog
from quorumdb.kafka.broker import Broker, BrokerSettings
from quorumdb.runtime.kafka_server import KafkaServer

__all__ = ["run_node"]

log = logging.getLogger("quorumdb.node")


def _setup_logging(node_id: int) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s level=%(levelname)s node={node_id} logger=%(name)s %(message)s",
        stream=sys.stderr,
    )


async def _serve(config: NodeConfig) -> None:
    node_log = WalNodeLog.open(config.data_dir)
    host = NodeHost(config, node_log)
    kafka: KafkaServer | None = None
    if config.me.kafka is not None:
        settings = BrokerSettings(
            num_partitions=config.num_partitions,
            default_replication_factor=config.default_replication_factor,
            auto_create_topics_enable=config.auto_create_topics_enable,
        )
        kafka = KafkaServer(Broker(KafkaBackend(host), settings), config.me.kafka)
    await host.start()
    if kafka is not None:
        await kafka.start()
        log.info("kafka listener on %s:%d", *kafka.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    if kafka is not None:
        await kafka.stop()
    await host.stop()


def run_node(config: NodeConfig) -> int:
    """Run until signalled; return the process exit status."""
    _setup_logging(config.node_id)
    try:
        import uvloop
    except ImportError:
        uvloop = None  # type: ignore[assignment]
    # QUORUMDB_PROFILE_DIR=dir: profile the event loop thread (cProfile), written to
    # dir/node-<id>.prof at a clean exit (SIGTERM); for benchmarks (`bench/kafka_bench.py`).
    profile_dir = os.environ.get("QUORUMDB_PROFILE_DIR")
    profiler = cProfile.Profile() if profile_dir else None
    try:
        if profiler is not None:
            profiler.enable()
        if uvloop is not None:
            uvloop.run(_serve(config))
        else:
            asyncio.run(_serve(config))
    except QuorumError as exc:
        sys.stderr.write(f"quorumdb: error: node {config.node_id} cannot run: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"quorumdb: error: node {config.node_id}: {exc}\n")
        return 1
    finally:
        if profiler is not None and profile_dir:
            profiler.disable()
            Path(profile_dir).mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(str(Path(profile_dir) / f"node-{config.node_id}.prof"))
    return 0
