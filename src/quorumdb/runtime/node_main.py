"""One node process: logging, the event loop (uvloop when available), signals, clean exit.

A node that cannot start (corrupt WAL, port in use, bad config) prints one line naming the
cause (the file and offset, for corruption) and exits 1; SIGTERM and SIGINT stop it
gracefully (the WAL is closed after the last batch).

A node is fail-stop: when its driver (or tick) loop fails, the traceback is logged once, the
listeners and the host are stopped, and the process prints
`quorumdb: error: node N stopped: <ExceptionType>: <message>` and exits `EXIT_FAILED` (70,
EX_SOFTWARE), so that clients, peers and supervisors see it gone rather than a listener that
answers while nothing is replicated. A stop that does not finish within `_STOP_S_MAX` (a WAL
write stuck in the disk) exits at once, without closing the WAL (as a crash would).

Environment (read once at start):
- `QUORUMDB_INJECT_DRIVER_FAILURE=<seconds>`: for tests, make a driver round raise
  `InjectedFailureError` that long after the node started serving.
- `QUORUMDB_PROFILE_DIR=<dir>`: profile the event loop thread (see `run_node`).
- `QUORUMDB_FAULT_CONTROL=<dir>`: TEST ONLY, clock and disk faults from `<dir>/n<id>.json`
  (`runtime.fault_control`); the node then runs on a skewable clock and a faulty file system.
"""

from __future__ import annotations

import asyncio
import cProfile
import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from quorumdb.errors import QuorumError, UserError
from quorumdb.host.config import NodeConfig
from quorumdb.host.wal_log import WalNodeLog
from quorumdb.kafka.backend import KafkaBackend
from quorumdb.kafka.broker import Broker, BrokerSettings
from quorumdb.runtime.fault_control import FaultControl, fault_control_from_env
from quorumdb.runtime.faulty_fs import FaultyFileSystem
from quorumdb.runtime.kafka_server import KafkaServer
from quorumdb.runtime.node import Node
from quorumdb.runtime.skewed_clock import SkewedClock
from quorumdb.storage.fs import FileSystem, OsFileSystem

__all__ = ["EXIT_FAILED", "run_node"]

log = logging.getLogger("quorumdb.node")

EXIT_FAILED = 70  # the node ran, then failed (sysexits.h EX_SOFTWARE); 1: it could not start
_STOP_S_MAX = 10.0
_INJECT_ENV = "QUORUMDB_INJECT_DRIVER_FAILURE"


def _setup_logging(node_id: int) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s level=%(levelname)s node={node_id} logger=%(name)s %(message)s",
        stream=sys.stderr,
    )


def _injected_failure_s() -> float | None:
    raw = os.environ.get(_INJECT_ENV)
    if raw is None:
        return None
    try:
        delay_s = float(raw)
        if not delay_s >= 0:
            raise ValueError(raw)
    except ValueError:
        raise UserError(f"{_INJECT_ENV} must be a number of seconds >= 0, not {raw!r}") from None
    return delay_s


def _stopped_line(node_id: int, failure: BaseException) -> str:
    reason = f"{type(failure).__name__}: {failure}".replace("\n", " ")
    return f"quorumdb: error: node {node_id} stopped: {reason}\n"


def _exit_now(node_id: int, failure: BaseException | None) -> NoReturn:
    """Exit without the interpreter's shutdown, which would wait for a stuck WAL thread."""
    log.error("stopping took over %.0f s; exiting without closing the WAL", _STOP_S_MAX)
    logging.shutdown()
    if failure is not None:
        sys.stderr.write(_stopped_line(node_id, failure))
    else:
        sys.stderr.write(f"quorumdb: error: node {node_id} did not stop in {_STOP_S_MAX:.0f} s\n")
    sys.stderr.flush()
    os._exit(EXIT_FAILED)


async def _serve(config: NodeConfig) -> BaseException | None:
    """Serve until signalled (returns None) or until the host fails (returns the error)."""
    inject_s = _injected_failure_s()
    control = fault_control_from_env(config.node_id)
    clock: SkewedClock | None = None
    fs: FileSystem | None = None
    if control is not None:
        # Before the log is opened: recovery writes and syncs too.
        clock, fs = _faulty_parts(control)
    try:
        return await _serve_on(config, inject_s, clock, fs)
    finally:
        if control is not None:
            control.close()


def _faulty_parts(control: FaultControl) -> tuple[SkewedClock, FileSystem]:
    """TEST ONLY: the clock and file system that take `control`'s faults."""
    clock = SkewedClock()
    control.on_change.append(lambda f: clock.set(f.offset_ms, f.drift_ppm))
    control.start()
    return clock, FaultyFileSystem(OsFileSystem(), control)


async def _serve_on(
    config: NodeConfig, inject_s: float | None, clock: SkewedClock | None, fs: FileSystem | None
) -> BaseException | None:
    node_log = WalNodeLog.open(config.data_dir, fs)
    node = Node(config, node_log, clock)
    kafka: KafkaServer | None = None
    if config.me.kafka is not None:
        settings = BrokerSettings(
            num_partitions=config.num_partitions,
            default_replication_factor=config.default_replication_factor,
            auto_create_topics_enable=config.auto_create_topics_enable,
        )
        backend = KafkaBackend(node.host, node.service, fs=fs)
        kafka = KafkaServer(Broker(backend, settings), config.me.kafka)
    await node.start()
    if kafka is not None:
        await kafka.start()
        log.info("kafka listener on %s:%d", *kafka.listen)
    if inject_s is not None:
        log.warning("%s=%g: the driver will fail on purpose", _INJECT_ENV, inject_s)
        node.host.fail_driver_after(inject_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    signalled = loop.create_task(stop.wait())
    failed = loop.create_task(node.wait_failed())
    await asyncio.wait((signalled, failed), return_when=asyncio.FIRST_COMPLETED)
    failure = failed.result() if failed.done() else None
    signalled.cancel()
    failed.cancel()
    log.info("stopping")
    try:
        async with asyncio.timeout(_STOP_S_MAX):
            if kafka is not None:
                await kafka.stop()
            await node.stop()
    except TimeoutError:
        _exit_now(config.node_id, failure)
    return failure


def run_node(config: NodeConfig) -> int:
    """Run until signalled or failed; return the process exit status (0, 1 or EXIT_FAILED)."""
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
            failure = uvloop.run(_serve(config))
        else:
            failure = asyncio.run(_serve(config))
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
    if failure is not None:
        sys.stderr.write(_stopped_line(config.node_id, failure))
        return EXIT_FAILED
    return 0
