"""An etcd-style interaction environment for datadriven Raft tests (etcd's rafttest package).

The environment holds nodes (a `RawNode`, its `MemoryStorage` and a tiny state machine: the list
of applied data) and one queue of messages in flight. Commands only do what they say: `campaign`
steps a node, `process-ready` handles one Ready per node following the driver contract of
`raft.ready` (persist, queue messages, apply, advance), `deliver-msgs` steps queued messages into
their recipients. Nothing happens implicitly, so every message shows up in the output.

Output is the canonical text of `raft.describe` (plus `Status`/configuration reprs); an unknown
command or argument raises `DataDrivenError`. Election timeouts are not randomised (the injected
`Rng` always draws 0), so `tick-election` makes a follower campaign.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from quorumdb.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    PlantedBug,
    RaftError,
    RawNode,
    ReadOnlyOption,
    Rng,
    Snapshot,
    SnapshotMetadata,
    StorageAppend,
    StorageApply,
)
from quorumdb.raft.codec import decode_conf_change
from quorumdb.raft.describe import (
    describe_entry,
    describe_hard_state,
    describe_message,
    describe_ready,
    describe_snapshot,
    describe_soft_state,
    describe_storage_append,
    describe_storage_apply,
    message_type_name,
)
from tests.datadriven import Arg, Directive

__all__ = ["InteractionEnv"]

_CC_TYPES = {
    "v": ConfChangeType.ADD_NODE,
    "l": ConfChangeType.ADD_LEARNER_NODE,
    "r": ConfChangeType.REMOVE_NODE,
}
_TRANSITIONS = {
    "auto": ConfChangeTransition.AUTO,
    "implicit": ConfChangeTransition.JOINT_IMPLICIT,
    "explicit": ConfChangeTransition.JOINT_EXPLICIT,
}
_BUGS = {b.value: b for b in PlantedBug}
_STABILIZE_ROUNDS_MAX = 1000


class _EnvStorage(MemoryStorage):
    """`MemoryStorage` whose `snapshot()` is the state machine as of the latest applied index.

    As in etcd's interaction tests, a leader that must send a snapshot sends a fresh one (what
    a real application would produce on demand), so a node added by a conf change receives a
    configuration that includes itself. `initial_state()` still reads the stored snapshot.
    """

    __slots__ = ("override",)

    def __init__(self, conf_state: ConfState) -> None:
        super().__init__(conf_state)
        self.override: Callable[[], Snapshot | None] = lambda: None

    def snapshot_stored(self) -> Snapshot:
        return super().snapshot()

    def snapshot_index(self) -> int:
        return super().snapshot().metadata.index

    def stored_conf_state(self) -> ConfState:
        return super().snapshot().metadata.conf_state

    def snapshot(self) -> Snapshot:
        fresh = self.override()
        stored = super().snapshot()
        if fresh is not None and fresh.metadata.index > stored.metadata.index:
            return fresh
        return stored


@dataclass(slots=True)
class _Node:
    id: int
    config: Config
    storage: _EnvStorage
    raw: RawNode | None  # None while crashed
    # The state machine: the snapshot it started from, then the data of applied entries.
    snapshot_data: bytes = b""
    applied: list[Entry] = field(default_factory=list)
    # (index, configuration) each time a conf change was applied, to snapshot at any index.
    conf_history: list[tuple[int, ConfState]] = field(default_factory=list)
    # Asynchronous storage writes: the work queued for the append and apply "threads".
    appends: list[StorageAppend] = field(default_factory=list)
    applies: list[StorageApply] = field(default_factory=list)

    def applied_index(self) -> int:
        return self.applied[-1].index if self.applied else self.storage.snapshot_index()

    def state_at(self, index: int) -> Snapshot:
        """The state machine (data and configuration) as of applied index `index`."""
        cs = self.storage.stored_conf_state()
        for at, c in self.conf_history:
            if at <= index:
                cs = c
        data = [self.snapshot_data] if self.snapshot_data else []
        data += [e.data for e in self.applied if e.index <= index and e.type == EntryType.NORMAL]
        meta = SnapshotMetadata(conf_state=cs, index=index, term=self.storage.term(index))
        return Snapshot(metadata=meta, data=b",".join(d for d in data if d))


class _Args:
    """The arguments of one directive; every one must be consumed, or the directive fails."""

    def __init__(self, d: Directive) -> None:
        self.d = d
        self.named = {a.key: a for a in d.args if a.vals}
        self.positional = [a.key for a in d.args if not a.vals]
        if len(self.named) != sum(1 for a in d.args if a.vals):
            raise d.fail("repeated argument")
        self.pos_used = 0

    def ids(self) -> list[int]:
        """All remaining positional arguments, as node ids."""
        out = [self._int(p) for p in self.positional[self.pos_used :]]
        self.pos_used = len(self.positional)
        return out

    def pos(self, what: str) -> str:
        if self.pos_used >= len(self.positional):
            raise self.d.fail(f"missing argument: {what}")
        self.pos_used += 1
        return self.positional[self.pos_used - 1]

    def pos_int(self, what: str) -> int:
        return self._int(self.pos(what))

    def rest(self) -> list[str]:
        out = self.positional[self.pos_used :]
        self.pos_used = len(self.positional)
        return out

    def opt(self, key: str) -> Arg | None:
        return self.named.pop(key, None)

    def opt_int(self, key: str, default: int) -> int:
        a = self.opt(key)
        return default if a is None else self._int(self._one(a))

    def opt_bool(self, key: str, default: bool) -> bool:
        a = self.opt(key)
        if a is None:
            return default
        v = self._one(a)
        if v not in ("true", "false"):
            raise self.d.fail(f"{key} must be true or false, not {v!r}")
        return v == "true"

    def opt_ints(self, key: str) -> list[int] | None:
        a = self.opt(key)
        return None if a is None else [self._int(v) for v in a.vals]

    def opt_str(self, key: str) -> str | None:
        a = self.opt(key)
        return None if a is None else self._one(a)

    def done(self) -> None:
        if self.named or self.pos_used < len(self.positional):
            extra = [*self.named, *self.positional[self.pos_used :]]
            raise self.d.fail(f"unknown arguments {extra}")

    def _one(self, a: Arg) -> str:
        if len(a.vals) != 1:
            raise self.d.fail(f"{a.key} takes one value")
        return a.vals[0]

    def _int(self, s: str) -> int:
        try:
            return int(s)
        except ValueError:
            raise self.d.fail(f"expected an integer, got {s!r}") from None


def _indent(lines: list[str], by: str = "  ") -> list[str]:
    return [by + ln for ln in lines]


class InteractionEnv:
    """Nodes, their storage and a message queue, driven one datadriven command at a time."""

    def __init__(self) -> None:
        self.nodes: dict[int, _Node] = {}
        self.queue: list[Message] = []
        self.quiet = False
        self._handlers: dict[str, Callable[[_Args], list[str]]] = {
            "add-nodes": self._add_nodes,
            "campaign": self._campaign,
            "propose": self._propose,
            "propose-conf-change": self._propose_conf_change,
            "tick-election": self._tick_election,
            "tick-heartbeat": self._tick_heartbeat,
            "process-ready": self._process_ready_cmd,
            "process-append-thread": self._process_append_thread_cmd,
            "process-apply-thread": self._process_apply_thread_cmd,
            "deliver-msgs": self._deliver_msgs,
            "stabilize": self._stabilize,
            "raft-log": self._raft_log,
            "raft-state": self._raft_state,
            "status": self._status,
            "read-index": self._read_index,
            "transfer-leadership": self._transfer_leadership,
            "compact": self._compact,
            "crash": self._crash,
            "restart": self._restart,
            "log-level": self._log_level,
            "show-snapshot": self._show_snapshot,
        }

    def handle(self, d: Directive) -> str:
        handler = self._handlers.get(d.cmd)
        if handler is None:
            raise d.fail("unknown command")
        args = _Args(d)
        if d.input and d.cmd != "propose-conf-change":
            raise d.fail("this command takes no input lines")
        out = handler(args)
        args.done()
        if self.quiet:
            # Setup sections: keep only errors, which would mean the setup is not what it says.
            out = [ln for ln in out if ln.lstrip().startswith("error:")]
        return "\n".join(out)

    # -- helpers -------------------------------------------------------------------------------

    def _node(self, args: _Args, node_id: int) -> _Node:
        n = self.nodes.get(node_id)
        if n is None:
            raise args.d.fail(f"no node {node_id}")
        return n

    def _raw(self, args: _Args, node_id: int) -> RawNode:
        raw = self._node(args, node_id).raw
        if raw is None:
            raise args.d.fail(f"node {node_id} is crashed")
        return raw

    def _boot(self, n: _Node) -> None:
        n.raw = RawNode(n.config, n.storage, Rng(lambda _n: 0))

    @staticmethod
    def _state_line(node_id: int, raw: RawNode) -> str:
        st = raw.status()
        soft, hard = describe_soft_state(st.soft_state), describe_hard_state(st.hard_state)
        return f"{node_id}: {soft} {hard}"

    def _step_local(self, node_id: int, raw: RawNode, fn: Callable[[], None]) -> list[str]:
        """Run a node-local input; report an expected error or a change of role/term/vote."""
        before = self._state_line(node_id, raw)
        try:
            fn()
        except RaftError as e:
            return [f"error: {type(e).__name__}: {e}"]
        after = self._state_line(node_id, raw)
        return [after] if after != before else []

    # -- commands ------------------------------------------------------------------------------

    def _add_nodes(self, a: _Args) -> list[str]:
        count = a.pos_int("number of nodes")
        voters = a.opt_ints("voters") or []
        learners = a.opt_ints("learners") or []
        index = a.opt_int("index", 0)
        content = a.opt_str("content") or ""
        read_only = a.opt_str("read-only") or "safe"
        if read_only not in ("safe", "lease"):
            raise a.d.fail(f"read-only must be safe or lease, not {read_only!r}")
        # By default a leader snapshots on demand (as etcd's tests do); with false it sends the
        # snapshot in storage, i.e. the one the last `compact` made.
        on_demand = a.opt_bool("snapshot-on-demand", True)
        bug_names = a.opt("planted-bugs")
        bugs = frozenset(_BUGS[b] for b in bug_names.vals) if bug_names is not None else frozenset()
        kw = {
            "election_ticks": a.opt_int("election", 10),
            "heartbeat_ticks": a.opt_int("heartbeat", 1),
            "pre_vote": a.opt_bool("pre-vote", False),
            "check_quorum": a.opt_bool("check-quorum", False),
            "read_only_option": (
                ReadOnlyOption.LEASE_BASED if read_only == "lease" else ReadOnlyOption.SAFE
            ),
            "lease_drift_ticks": a.opt_int("lease-drift", 2),
            "snapshot_chunk_bytes": a.opt_int("snapshot-chunk-bytes", 1 << 20),
            "max_size_per_msg": a.opt_int("max-size-per-msg", 1 << 20),
            "max_inflight_msgs": a.opt_int("max-inflight", 256),
            "disable_proposal_forwarding": a.opt_bool("disable-proposal-forwarding", False),
            "step_down_on_removal": a.opt_bool("step-down-on-removal", True),
            "async_storage_writes": a.opt_bool("async-storage-writes", False),
        }
        cs = ConfState(voters=tuple(voters), learners=tuple(learners))
        out: list[str] = []
        for node_id in range(len(self.nodes) + 1, len(self.nodes) + 1 + count):
            storage = _EnvStorage(cs)
            if index > 0:
                meta = SnapshotMetadata(conf_state=cs, index=index, term=1)
                storage.apply_snapshot(Snapshot(metadata=meta, data=content.encode()))
            config = Config(id=node_id, applied=index, planted_bugs=bugs, **kw)  # type: ignore[arg-type]
            n = _Node(node_id, config, storage, None, snapshot_data=content.encode())
            if on_demand:
                storage.override = lambda n=n: n.state_at(n.applied_index()) if n.applied else None
            self._boot(n)
            self.nodes[node_id] = n
            assert n.raw is not None
            out.append(f"{self._state_line(node_id, n.raw)} {n.raw.status().config}")
        return out

    def _log_level(self, a: _Args) -> list[str]:
        """`log-level none` hides the output of the commands that follow; `info` shows it."""
        level = a.pos("level")
        if level not in ("none", "info"):
            raise a.d.fail(f"level must be none or info, not {level!r}")
        self.quiet = level == "none"
        return []

    def _campaign(self, a: _Args) -> list[str]:
        node_id = a.pos_int("node id")
        raw = self._raw(a, node_id)
        return self._step_local(node_id, raw, raw.campaign)

    def _propose(self, a: _Args) -> list[str]:
        node_id = a.pos_int("node id")
        data = a.pos("data").encode()
        raw = self._raw(a, node_id)
        return self._step_local(node_id, raw, lambda: raw.propose(data))

    def _propose_conf_change(self, a: _Args) -> list[str]:
        node_id = a.pos_int("node id")
        transition = a.opt_str("transition") or "auto"
        if transition not in _TRANSITIONS:
            raise a.d.fail(f"unknown transition {transition!r}")
        tokens = a.rest() + a.d.input.split()
        changes: list[ConfChangeSingle] = []
        for tok in tokens:
            kind = _CC_TYPES.get(tok[:1])
            if kind is None or not tok[1:].isdigit():
                raise a.d.fail(f"bad conf change {tok!r} (want v<id>, l<id> or r<id>)")
            changes.append(ConfChangeSingle(kind, int(tok[1:])))
        cc = ConfChange(changes=tuple(changes), transition=_TRANSITIONS[transition])
        raw = self._raw(a, node_id)
        return self._step_local(node_id, raw, lambda: raw.propose_conf_change(cc))

    def _tick(self, a: _Args, ticks: Callable[[Config], int]) -> list[str]:
        out: list[str] = []
        for node_id in a.ids():
            n = self._node(a, node_id)
            raw = self._raw(a, node_id)

            def run(raw: RawNode = raw, k: int = ticks(n.config)) -> None:
                for _ in range(k):
                    raw.tick()

            out += self._step_local(node_id, raw, run)
        return out

    def _tick_election(self, a: _Args) -> list[str]:
        return self._tick(a, lambda c: c.election_ticks)

    def _tick_heartbeat(self, a: _Args) -> list[str]:
        return self._tick(a, lambda c: c.heartbeat_ticks)

    def _read_index(self, a: _Args) -> list[str]:
        node_id = a.pos_int("node id")
        ctx = a.pos("context").encode()
        raw = self._raw(a, node_id)
        return self._step_local(node_id, raw, lambda: raw.read_index(ctx))

    def _transfer_leadership(self, a: _Args) -> list[str]:
        src = a.opt_int("from", 0)
        dst = a.opt_int("to", 0)
        if not src or not dst:
            raise a.d.fail("need from= and to=")
        raw = self._raw(a, src)
        return self._step_local(src, raw, lambda: raw.transfer_leader(dst))

    def _process_ready_cmd(self, a: _Args) -> list[str]:
        out: list[str] = []
        for node_id in a.ids():
            self._raw(a, node_id)
            out += self._process_ready(node_id)
        return out

    def _process_ready(self, node_id: int) -> list[str]:
        """Handle one Ready of `node_id` per the driver contract and describe it."""
        n = self.nodes[node_id]
        raw = n.raw
        assert raw is not None
        out = [f"> {node_id} handling Ready"]
        if not raw.has_ready():
            return [*out, "  <empty Ready>"]
        rd = raw.ready()
        out.append(f"  Ready MustSync={str(rd.must_sync).lower()}:")
        out += _indent(describe_ready(rd).split("\n"))
        if n.config.async_storage_writes:
            # Only the messages leave now; the storage work queues for its "thread".
            self.queue.extend(rd.messages)
            if rd.storage_append is not None:
                n.appends.append(rd.storage_append)
            if rd.storage_apply is not None:
                n.applies.append(rd.storage_apply)
            return out
        # Messages that promise nothing may leave at once; persist; then the durable acks.
        self.queue.extend(rd.messages)
        if rd.snapshot is not None:
            n.storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            n.storage.append(rd.entries)
        if rd.hard_state is not None:
            n.storage.set_hard_state(rd.hard_state)
        self.queue.extend(rd.persisted_messages)
        out += self._apply(n, raw, rd.snapshot, rd.committed_entries)
        raw.advance(rd)
        return out

    @staticmethod
    def _apply(n: _Node, raw: RawNode, snap: Snapshot | None, entries: list[Entry]) -> list[str]:
        out: list[str] = []
        if snap is not None:
            n.snapshot_data = snap.data
            n.applied = []
            n.conf_history = [(snap.metadata.index, snap.metadata.conf_state)]
        for e in entries:
            if e.type == EntryType.CONF_CHANGE:
                cs = raw.apply_conf_change(decode_conf_change(e.data))
                n.conf_history.append((e.index, cs))
                out.append(f"  {n.id} switched to configuration {raw.status().config}")
            n.applied.append(e)
        return out

    def _process_append_thread_cmd(self, a: _Args) -> list[str]:
        out: list[str] = []
        for node_id in a.ids():
            self._raw(a, node_id)
            out += self._process_append_thread(node_id)
        return out

    def _process_append_thread(self, node_id: int) -> list[str]:
        """Write every queued StorageAppend of `node_id` in order ("durably"), then release
        its responses: to peers onto the queue, to the node itself stepped at once."""
        n = self.nodes[node_id]
        raw = n.raw
        assert raw is not None
        out = [f"> {node_id} processing append thread"]
        if not n.appends:
            return [*out, "  <no work>"]
        work, n.appends = n.appends, []
        for sa in work:
            out += _indent(describe_storage_append(sa))
            if sa.snapshot is not None:
                n.storage.apply_snapshot(sa.snapshot)
            if sa.entries:
                n.storage.append(sa.entries)
            if sa.hard_state is not None:
                n.storage.set_hard_state(sa.hard_state)
        for sa in work:
            for m in sa.responses:
                if m.to == node_id:
                    out += self._step_response(raw, m)
                else:
                    self.queue.append(m)
        return out

    def _process_apply_thread_cmd(self, a: _Args) -> list[str]:
        out: list[str] = []
        for node_id in a.ids():
            self._raw(a, node_id)
            out += self._process_apply_thread(node_id)
        return out

    def _process_apply_thread(self, node_id: int) -> list[str]:
        """Apply every queued StorageApply of `node_id` in order, stepping its responses."""
        n = self.nodes[node_id]
        raw = n.raw
        assert raw is not None
        out = [f"> {node_id} processing apply thread"]
        if not n.applies:
            return [*out, "  <no work>"]
        work, n.applies = n.applies, []
        for sa in work:
            out += _indent(describe_storage_apply(sa))
            out += self._apply(n, raw, sa.snapshot, sa.entries)
            for m in sa.responses:
                out += self._step_response(raw, m)
        return out

    @staticmethod
    def _step_response(raw: RawNode, m: Message) -> list[str]:
        try:
            raw.step(m)
        except RaftError as e:
            return [f"  error: {type(e).__name__}: {e}"]
        return []

    def _deliver_msgs(self, a: _Args) -> list[str]:
        drop = a.opt_ints("drop") or []
        type_name = a.opt_str("type")
        to = a.ids()
        if not drop and not to:
            raise a.d.fail("need recipients to deliver to, or drop=(ids)")

        def selected(m: Message, ids: list[int]) -> bool:
            return m.to in ids and (type_name is None or message_type_name(m.type) == type_name)

        out: list[str] = []
        dropped = [m for m in self.queue if selected(m, drop)]
        self.queue = [m for m in self.queue if not selected(m, drop)]
        out += [f"dropped: {describe_message(m)}" for m in dropped]
        for node_id in to:
            self._node(a, node_id)
            out += self._deliver(node_id, lambda m, i=node_id: selected(m, [i]))
        return out

    def _deliver(self, node_id: int, pick: Callable[[Message], bool]) -> list[str]:
        batch = [m for m in self.queue if pick(m)]
        if not batch:
            return []
        self.queue = [m for m in self.queue if not pick(m)]
        raw = self.nodes[node_id].raw
        out = [f"> {node_id} receiving messages"]
        for m in batch:
            out.append(f"  {describe_message(m)}")
            if raw is None:
                out.append(f"  dropped: {node_id} is crashed")
                continue
            try:
                raw.step(m)
            except RaftError as e:
                out.append(f"  error: {type(e).__name__}: {e}")
        return out

    def _stabilize(self, a: _Args) -> list[str]:
        ids = a.ids() or sorted(self.nodes)
        for node_id in ids:
            self._node(a, node_id)
        live = [i for i in ids if self.nodes[i].raw is not None]
        out: list[str] = []
        for _ in range(_STABILIZE_ROUNDS_MAX):
            busy = False
            for node_id in live:
                raw = self.nodes[node_id].raw
                assert raw is not None
                if raw.has_ready():
                    out += self._process_ready(node_id)
                    busy = True
            for node_id in live:
                n = self.nodes[node_id]
                if n.appends:
                    out += self._process_append_thread(node_id)
                    busy = True
                if n.applies:
                    out += self._process_apply_thread(node_id)
                    busy = True
            for node_id in ids:
                got = self._deliver(node_id, lambda m, i=node_id: m.to == i)
                busy = busy or bool(got)
                out += got
            if not busy:
                return out
        raise a.d.fail("did not stabilize")

    def _raft_log(self, a: _Args) -> list[str]:
        n = self._node(a, a.pos_int("node id"))
        st = n.storage
        first, last = st.first_index(), st.last_index()
        if last < first:
            return [f"log is empty: first index={first}, last index={last}"]
        return [describe_entry(e) for e in st.entries(first, last + 1, 1 << 62)]

    def _raft_state(self, a: _Args) -> list[str]:
        out: list[str] = []
        for node_id, n in sorted(self.nodes.items()):
            if n.raw is None:
                out.append(f"{node_id}: crashed")
            else:
                out.append(self._state_line(node_id, n.raw))
        return out

    def _status(self, a: _Args) -> list[str]:
        node_id = a.pos_int("node id")
        st = self._raw(a, node_id).status()
        out = [f"{node_id}: {describe_soft_state(st.soft_state)} applied={st.applied}"]
        out.append(f"config {st.config}")
        if st.lead_transferee:
            out.append(f"lead_transferee={st.lead_transferee}")
        out += [f"{i}: {pr}" for i, pr in sorted(st.progress.items())]
        return out

    def _compact(self, a: _Args) -> list[str]:
        node_id = a.pos_int("node id")
        index = a.pos_int("index")
        n = self._node(a, node_id)
        if index > n.applied_index():
            raise a.d.fail(f"cannot snapshot at {index}: applied is {n.applied_index()}")
        want = n.state_at(index)
        snap = n.storage.create_snapshot(index, want.metadata.conf_state, want.data)
        n.storage.compact(index)
        return [describe_snapshot(snap) + f" Data:{snap.data.decode()}"]

    def _show_snapshot(self, a: _Args) -> list[str]:
        """The snapshot in a node's storage, with its data (what its state machine restored)."""
        snap = self._node(a, a.pos_int("node id")).storage.snapshot_stored()
        return [describe_snapshot(snap) + f" Data:{snap.data.decode('utf-8', 'backslashreplace')}"]

    def _crash(self, a: _Args) -> list[str]:
        """Stop a node: what it did not persist is lost, and so are messages in flight to it."""
        for node_id in a.ids():
            self._raw(a, node_id)
            n = self.nodes[node_id]
            n.raw = None
            n.appends, n.applies = [], []  # unwritten storage work is lost with the node
            self.queue = [m for m in self.queue if m.to != node_id]
        return []

    def _restart(self, a: _Args) -> list[str]:
        out: list[str] = []
        for node_id in a.ids():
            n = self._node(a, node_id)
            if n.raw is not None:
                raise a.d.fail(f"node {node_id} is not crashed")
            # Whatever was sent to the node while it was down is lost.
            self.queue = [m for m in self.queue if m.to != node_id]
            # The state machine restarts from the snapshot and re-applies committed entries.
            snap = n.storage.snapshot()
            n.snapshot_data = snap.data
            n.applied = []
            n.conf_history = [(snap.metadata.index, snap.metadata.conf_state)]
            n.config = dataclasses.replace(n.config, applied=snap.metadata.index)
            self._boot(n)
            assert n.raw is not None
            out.append(self._state_line(node_id, n.raw))
        return out
