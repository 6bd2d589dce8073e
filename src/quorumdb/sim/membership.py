"""Membership changes as a fault: add a node to every group, later remove it again.

The steps are those of `quorumdb cluster add-node` / `remove-node` (`kv.node_service`): a new
node starts with an empty disk and a config that names the members and itself; its member
record is written to the controller; then every group's leader proposes adding it, one simple
change at a time, re-proposed until it applies (a proposal may be refused while another change
is pending, dropped, or lost with a leader). Removal moves leadership away from the node,
removes it from every group, deletes its record, and stops it for good (its id is retired:
a removed node never comes back with the same id, so its old votes can never count twice).

The steps go through the hosts' request API (`submit_write`, `submit_action`), on whatever node
leads the group at the moment, and keep retrying through partitions and crashes; the run checks
after the heal that a change under way completed (`busy` is False).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Protocol

from quorumdb.host.node_host import CONTROLLER_GROUP
from quorumdb.kv.commands import Command, CommandKind
from quorumdb.kv.node_kv import member_key, node_kv
from quorumdb.raft import ConfChange, ConfChangeSingle, ConfChangeType, RawNode
from quorumdb.sim.host_node import HostNode
from quorumdb.sim.loop import EventLoop

__all__ = ["Membership", "MembershipHost"]

_RETRY_US = 100_000


class MembershipHost(Protocol):
    loop: EventLoop
    nodes: dict[int, HostNode]

    def new_node(self, node_id: int) -> HostNode: ...

    def leader_of(self, gid: int) -> HostNode | None: ...

    def group_ids(self) -> list[int]: ...


class Membership:
    """One membership change at a time; `step()` starts the next one (add, then remove)."""

    def __init__(self, sim: MembershipHost, first_id: int) -> None:
        self.sim = sim
        self.next_id = first_id
        self.added: set[int] = set()  # added and not (yet) removed
        self.busy = False
        self.changes = 0  # completed adds and removes

    def step(self) -> None:
        if self.busy:
            return
        self.busy = True
        if self.added:
            self._remove(min(self.added))
        else:
            node_id = self.next_id
            self.next_id += 1
            self._add(node_id)

    def _trace(self, line: str) -> None:
        self.sim.loop.trace(f"membership {line}")

    def _later(self, fn: Callable[[], None]) -> None:
        self.sim.loop.after(_RETRY_US, fn)

    # -- add -------------------------------------------------------------------------------

    def _add(self, node_id: int) -> None:
        self._trace(f"add n{node_id}")
        node = self.sim.new_node(node_id)
        node.start()
        record = json.dumps({"raft": f"sim:{node_id}", "http": f"sim:{10_000 + node_id}"})
        cmd = Command(kind=CommandKind.PUT, key=member_key(node_id), value=record.encode())
        self._write(cmd, lambda: self._change(ConfChangeType.ADD_NODE, node_id, self._added))

    def _added(self, node_id: int) -> None:
        self.added.add(node_id)
        self._done(f"added n{node_id}")

    # -- remove -------------------------------------------------------------------------------

    def _remove(self, node_id: int) -> None:
        self._trace(f"remove n{node_id}")
        cmd = Command(kind=CommandKind.DELETE, key=member_key(node_id))

        def removed_everywhere(node_id: int) -> None:
            self._write(cmd, lambda: self._retire(node_id))

        self._change(ConfChangeType.REMOVE_NODE, node_id, removed_everywhere)

    def _retire(self, node_id: int) -> None:
        node = self.sim.nodes[node_id]
        node.retired = True
        node.crash(tear=False)
        self.added.discard(node_id)
        self._done(f"removed n{node_id}")

    def _done(self, what: str) -> None:
        self.busy = False
        self.changes += 1
        self._trace(what)

    # -- steps -------------------------------------------------------------------------------

    def _write(self, cmd: Command, then: Callable[[], None]) -> None:
        """Write `cmd` to the controller through its leader; retry until it is answered OK."""
        lead = self.sim.leader_of(CONTROLLER_GROUP)
        if lead is None or lead.host is None:
            self._later(lambda: self._write(cmd, then))
            return
        host = lead.host
        p = node_kv(host).submit_write(host.groups[CONTROLLER_GROUP], cmd)

        def answered(_: object) -> None:
            if p.exception() is None:
                then()
            else:
                self._later(lambda: self._write(cmd, then))

        p.add_done_callback(answered)

    def _change(
        self, kind: ConfChangeType, node_id: int, then: Callable[[int], None], at: int = 0
    ) -> None:
        """Apply `kind` of `node_id` to the groups from position `at` on, one at a time."""
        gids = self.sim.group_ids()
        if at >= len(gids):
            then(node_id)
            return
        gid = gids[at]
        lead = self.sim.leader_of(gid)
        again = functools.partial(self._change, kind, node_id, then, at)
        if lead is None or lead.host is None:
            self._later(again)
            return
        g = lead.host.groups[gid]
        want_in = kind == ConfChangeType.ADD_NODE
        voters = g.conf_state.voters
        if (node_id in voters) == want_in:
            self._change(kind, node_id, then, at + 1)
            return
        others = [i for i in voters if i != node_id]
        if not want_in and lead.id == node_id and others:
            # Move leadership away first, as `remove-node` does.
            act = functools.partial(RawNode.transfer_leader, transferee=min(others))
        else:
            cc = ConfChange(changes=(ConfChangeSingle(type=kind, node_id=node_id),))
            act = functools.partial(RawNode.propose_conf_change, cc=cc)
        lead.host.submit_action(g, act)
        self._later(again)
