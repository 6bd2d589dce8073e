"""The KV store on one node: what the node's own Raft groups replicate, and writes with sessions.

`NodeKV` is how the KV store plugs into the (service-agnostic) `NodeHost`, and the one
composition both drivers use (`runtime.node` over asyncio, `sim.host_node` in the
simulator), so the simulator runs the node users run. It builds the host and is its
`host.state_machine.NodeStateMachines`: every shard (groups 1..S) replicates a
`KVStateMachine`, and the controller (group 0) a `ControllerKV`, whose keys are the
cluster's metadata: member records under `member/` (which it reports to the host, which
dials the members) and the Kafka topics (which the Kafka backend observes through
`controller_observers`).

Writes: `submit_write` encodes a command and proposes it through the host; a command that
comes without a client session (the node's own writes, clients without ids) borrows one of
the node's own for as long as it is in flight (`kv.sessions.SessionPool`), so that its
retries apply at most once.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from quorumdb.host.config import NodeConfig
from quorumdb.host.env import Env
from quorumdb.host.group import Group
from quorumdb.host.node_host import NodeHost
from quorumdb.host.pending import Pending
from quorumdb.host.persistence import NodeLog
from quorumdb.host.state_machine import MemberRecordObserver
from quorumdb.kv.commands import Command, CommandKind, Outcome, Result, encode_command
from quorumdb.kv.hlc import HLC
from quorumdb.kv.mvcc import VersionStore
from quorumdb.kv.sessions import SessionPool
from quorumdb.kv.state_machine import KVStateMachine
from quorumdb.kv.transactions import TxnCoordinator
from quorumdb.kv.txn_engine import Checks
from quorumdb.kv.txn_records import TxnRecord
from quorumdb.raft import PlantedBug

__all__ = [
    "MEMBER_PREFIX",
    "ControllerKV",
    "ControllerObserver",
    "NodeKV",
    "kv_state",
    "member_key",
    "node_kv",
]

MEMBER_PREFIX = b"member/"
_MEMBER_END = b"member0"
_MEMBERS_MAX = 10_000

ControllerObserver = Callable[[Command, Result], None]
"""Called with every command the controller applies and its result."""


def member_key(node_id: int) -> bytes:
    """The controller key of `node_id`'s member record."""
    return MEMBER_PREFIX + str(node_id).encode()


class ControllerKV(KVStateMachine):
    """The controller group's KV state (`host.state_machine.ControllerStateMachine`)."""

    __slots__ = ("_observers", "_on_member_record")

    def __init__(
        self, on_member_record: MemberRecordObserver, observers: list[ControllerObserver]
    ) -> None:
        super().__init__(self._observe)
        self._on_member_record = on_member_record
        self._observers = observers

    def _observe(self, cmd: Command, result: Result) -> None:
        for observer in self._observers:
            observer(cmd, result)
        if not cmd.key.startswith(MEMBER_PREFIX):
            return
        node_id = int(cmd.key[len(MEMBER_PREFIX) :])
        if cmd.kind == CommandKind.DELETE:
            # Founding members have no record to delete (they come from the config files).
            self._on_member_record(node_id, None)
        elif result.outcome == Outcome.OK:
            self._on_member_record(node_id, cmd.value)

    def member_records(self) -> dict[int, bytes]:
        """Every member record in the current state, by node id (in key order)."""
        return {
            int(key[len(MEMBER_PREFIX) :]): value
            for key, value, _ in self.scan(MEMBER_PREFIX, _MEMBER_END, _MEMBERS_MAX)
        }


class NodeKV:
    """The KV layer of one node over its `NodeHost` (`host`), which it builds."""

    def __init__(
        self,
        config: NodeConfig,
        node_log: NodeLog,
        env: Env,
        *,
        planted_bugs: frozenset[PlantedBug] = frozenset(),
    ) -> None:
        """Open (recover) the node's groups over `node_log` in `env`. `planted_bugs`: see
        `NodeHost`."""
        # Sessions for writes that come without one (the node's own, clients without ids).
        self.sessions = SessionPool(env.rng)
        # Called for every command the controller applies (the Kafka backend's topics).
        self.controller_observers: list[ControllerObserver] = []
        # The planted bug: shards apply a retried command again (no session check).
        self._dedupe = PlantedBug.SESSION_CHECK_DROPPED not in planted_bugs
        self._checks = Checks(
            writes=PlantedBug.TXN_WRITE_CHECK_SKIPPED not in planted_bugs,
            reads=PlantedBug.TXN_READ_CHECK_SKIPPED not in planted_bugs,
        )
        # The node's hybrid logical clock: single writes and transactions are stamped by it,
        # and it moves past every timestamp its shards apply.
        self.hlc = HLC(env.clock.wall_ms)
        self.host = NodeHost(config, node_log, env, self, planted_bugs=planted_bugs)
        self.transactions = TxnCoordinator(
            self,
            self.hlc,
            allow_read_uncommitted=config.unsafe_read_uncommitted,
            max_clock_offset_ms=config.max_clock_offset_ms,
            commit_before_record=PlantedBug.TXN_COMMIT_BEFORE_RECORD in planted_bugs,
        )

    # -- host.state_machine.NodeStateMachines ------------------------------------------------

    def open_controller(self, on_member_record: MemberRecordObserver) -> ControllerKV:
        return ControllerKV(on_member_record, self.controller_observers)

    def open_shard(self, group_id: int) -> KVStateMachine:
        return KVStateMachine(dedupe=self._dedupe, on_ts=self.hlc.update, checks=self._checks)

    def store_of(self, g: Group) -> VersionStore:
        """Shard `g`'s versions and intents on this node (replaced when a snapshot is
        installed: look it up again after waiting)."""
        return kv_state(g).store

    def records_of(self, g: Group) -> dict[int, TxnRecord]:
        """The transaction records shard `g` holds on this node."""
        return kv_state(g).records

    # -- requests ------------------------------------------------------------------------------

    def submit_write(self, g: Group, cmd: Command) -> Pending[Result]:
        """Propose `cmd` on KV group `g` (`NodeHost.submit_write`: a follower forwards it to
        the leader; the answer is the command's result once it applies here). A command
        without a client session borrows one of the node's own until answered."""
        release: Callable[[], None] | None = None
        if cmd.client == 0:
            client, seq, release = self.sessions.acquire()
            cmd = msgspec.structs.replace(cmd, client=client, seq=seq)
        fut: Pending[Result] = self.host.submit_write(g, (cmd.client, cmd.seq), encode_command(cmd))
        if release is not None:
            done = release
            fut.add_done_callback(lambda _: done())
        return fut


def node_kv(host: NodeHost) -> NodeKV:
    """The KV layer a host was built by."""
    kv = host.state_machines
    assert isinstance(kv, NodeKV), f"node {host.config.node_id} has no KV store"
    return kv


def kv_state(g: Group) -> KVStateMachine:
    """The KV state of the controller or a shard group."""
    sm = g.sm
    assert isinstance(sm, KVStateMachine), f"group {g.group_id} is not a KV group"
    return sm
