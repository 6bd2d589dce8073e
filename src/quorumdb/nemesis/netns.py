"""Network faults with one Linux network namespace per node (root; iproute2 and nftables).

What a run builds: a bridge in the root namespace with the address 10.X.Y.254/24, so the
test process (which stays in the root namespace) reaches every node, and client traffic is
never cut; per node a namespace with `lo` up and a veth pair whose inner end, `eth0`, has
10.X.Y.i/24 and a default route via the bridge, and whose outer end is a port of the bridge.
Node i listens on 10.X.Y.i with the port numbers of the default layout and is started with
`ip netns exec NAME`, which execs: the pid the run records is the node's own, so kill -9 and
SIGSTOP hit the node, and a node restarted after kill -9 comes back in its namespace.

Faults are nftables tables inside the namespaces, one table per fault and namespace, so
`stop` deletes exactly that fault's rules and `heal` flushes each namespace's ruleset. What
each variant becomes (each fault's line in `applied.jsonl` says what was really done):

- isolate (and isolate-leader), majority-minority, bridge: every packet between the nodes
  of a cut pair is dropped, both ways (each side drops what it sends to, and receives from,
  the other).
- one-way a->b: the transport dials one TCP connection per peer and sends frames only from
  dialler to listener, so "a's messages to b" are a's connection to b's Raft port: a drops
  what it sends there (SYNs and data). b's connection to a, and a's ACKs on it, are left
  alone. A packet-level one-way cut would kill both connections (TCP needs its ACKs).
- loss: each packet between n and its peers, either way, is dropped with probability
  `amount` (nft `numgen random`); n's clients are not affected.
- delay, reorder: `tc netem` on n's `eth0` egress when the kernel has sch_netem (probed once
  per run); it applies to everything n sends, answers to clients included. Some kernels have
  no netem, and no qdisc there can hold a packet for a fixed time. Then delay is a tbf
  throttle on n's egress: a rate at which one full-size packet takes `amount` ms, a queue of
  at most 4 x `amount` ms. This is a slow link, not a fixed delay: sparse small packets (a
  heartbeat now and then) pass at once, bursts queue and overflow is dropped. Reorder is the
  same throttle plus 5% loss on n's peer traffic: a retransmitted segment then arrives after
  later ones, the only reordering a TCP receiver ever shows, as a stall.

Names: everything a run creates is named `qdb-<pid>-<seq>...` (the creating process's pid
and a counter, in hex: an interface name has at most 15 characters), so parallel runs never
collide; constructing a network first removes the leftovers of runs whose process is gone
(killed before it could close). A node process still running inside a leftover namespace is
left to `quorumdb down`; without its name it is cut off from everything, and harmless.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import itertools
import json
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from quorumdb.cli.local_cluster import Layout, alive, default_layout
from quorumdb.errors import UserError
from quorumdb.nemesis.schedule import Fault, Nemesis

__all__ = ["NamespaceNetwork", "NodeRules", "cut_pairs", "fault_rules", "sweep_leftovers"]

_NAME = re.compile(r"^qdb-([0-9a-f]{1,6})-([0-9a-f]{1,2})(br|v\d|-n\d)$")
_BRIDGE_HOST = 254
_REORDER_LOSS = 0.05
_MTU_BITS = 1514 * 8

_seq = itertools.count()
_live: set[str] = set()  # tags of this process's networks not yet closed
_live_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class NodeRules:
    """What one fault does inside one node's namespace: nft rules for the packets it sends
    and receives, and the root qdisc of its `eth0` (tc arguments after `root`), if any."""

    output: tuple[str, ...] = ()
    input: tuple[str, ...] = ()
    qdisc: tuple[str, ...] = ()

    def nft_table(self, table: str) -> str:
        """The nft script that adds this fault's table (empty if it has no rules)."""
        if not self.output and not self.input:
            return ""
        lines = [f"table inet {table} {{"]
        for chain, hook, rules in (("sent", "output", self.output), ("got", "input", self.input)):
            lines.append(f"  chain {chain} {{ type filter hook {hook} priority 0; policy accept;")
            lines.extend(f"    {rule}" for rule in rules)
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"


def cut_pairs(variant: str, targets: tuple[int, ...], nodes: list[int]) -> set[frozenset[int]]:
    """The pairs of nodes a cutting variant separates (both ways)."""
    if variant in ("isolate", "isolate-leader"):
        return {frozenset((t, n)) for t in targets for n in nodes if n != t}
    if variant == "majority-minority":
        rest = [n for n in nodes if n not in targets]
        return {frozenset((t, n)) for t in targets for n in rest}
    if variant == "bridge":
        (b,) = targets
        others = sorted(n for n in nodes if n != b)
        half = len(others) // 2
        return {frozenset((x, y)) for x in others[:half] for y in others[half:]}
    raise ValueError(f"{variant!r} does not cut")


def _set(addrs: list[str]) -> str:
    return "{ " + ", ".join(addrs) + " }"


def _loss_rule(direction: str, peers: list[str], fraction: float) -> str:
    return f"ip {direction} {_set(peers)} numgen random mod 10000 < {round(fraction * 10_000)} drop"


def fault_rules(
    variant: str,
    targets: tuple[int, ...],
    amount: float,
    raft: dict[int, tuple[str, int]],
    *,
    netem: bool,
) -> tuple[dict[int, NodeRules], str]:
    """What `variant` on `targets` does in each namespace (`raft`: each node's Raft address),
    and one line saying it (for `applied.jsonl`). Pure: `NamespaceNetwork` applies it."""
    nodes = sorted(raft)
    addr = {i: host for i, (host, _) in raft.items()}
    if variant in ("isolate", "isolate-leader", "majority-minority", "bridge"):
        peers: dict[int, list[str]] = {}
        for pair in sorted(cut_pairs(variant, targets, nodes), key=sorted):
            x, y = sorted(pair)
            peers.setdefault(x, []).append(addr[y])
            peers.setdefault(y, []).append(addr[x])
        rules = {
            n: NodeRules(output=(f"ip daddr {_set(p)} drop",), input=(f"ip saddr {_set(p)} drop",))
            for n, p in sorted(peers.items())
        }
        cuts = sorted(tuple(sorted(p)) for p in cut_pairs(variant, targets, nodes))
        return rules, "nft drop both ways between " + ", ".join(f"{x}-{y}" for x, y in cuts)
    if variant == "one-way":
        a, b = targets
        host, port = raft[b]
        rule = f"ip daddr {host} tcp dport {port} drop"
        return {a: NodeRules(output=(rule,))}, f"nft drop in {a}'s namespace: {rule}"
    (n,) = targets
    others = [addr[p] for p in nodes if p != n]
    if variant == "loss":
        lossy = NodeRules(
            output=(_loss_rule("daddr", others, amount),),
            input=(_loss_rule("saddr", others, amount),),
        )
        return {n: lossy}, f"nft drop {amount:.0%} of {n}'s peer traffic both ways (numgen)"
    if variant not in ("delay", "reorder"):
        raise ValueError(f"unknown partition variant {variant!r}")
    ms = max(1, round(amount))
    if netem:
        qdisc: tuple[str, ...] = ("netem", "delay", f"{ms}ms")
        if variant == "reorder":
            qdisc += ("reorder", "25%", "50%")
        return {n: NodeRules(qdisc=qdisc)}, f"tc qdisc on {n}'s eth0: {' '.join(qdisc)}"
    rate = max(8_000, round(_MTU_BITS * 1000 / ms))
    qdisc = ("tbf", "rate", f"{rate}bit", "burst", "2048", "latency", f"{4 * ms}ms")
    note = f"no netem: a tbf throttle on {n}'s eth0 ({' '.join(qdisc)})"
    if variant == "delay":
        return {n: NodeRules(qdisc=qdisc)}, note
    slow = NodeRules(
        output=(_loss_rule("daddr", others, _REORDER_LOSS),),
        input=(_loss_rule("saddr", others, _REORDER_LOSS),),
        qdisc=qdisc,
    )
    return {n: slow}, f"{note} and nft drop {_REORDER_LOSS:.0%} of its peer traffic"


def _cmd(args: list[str], *, ns: str | None = None, stdin: str = "", check: bool = True) -> str:
    """Run one command (inside namespace `ns` if given); a failure is one line naming it."""
    argv = ["ip", "netns", "exec", ns, *args] if ns else args
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        if not check:
            return ""
        raise UserError(f"netns: {' '.join(argv)}: {exc}", exit_status=1) from None
    if check and proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise UserError(f"netns: {' '.join(argv)}: {why[0]}", exit_status=1)
    return proc.stdout


def _ours_and_dead(name: str) -> bool:
    """Whether `name` is a leftover: made by a process now gone, or by this process under
    a tag it no longer uses (its pid was reused)."""
    match = _NAME.match(name)
    if match is None:
        return False
    pid = int(match.group(1), 16)
    if pid == os.getpid():
        with _live_lock:
            return f"qdb-{match.group(1)}-{match.group(2)}" not in _live
    return not alive(pid)


def sweep_leftovers() -> list[str]:
    """Delete the namespaces, veths and bridges of runs whose process is gone; return them."""
    gone = []
    for line in _cmd(["ip", "netns", "list"], check=False).splitlines():
        name = line.split(" ", 1)[0]
        if _ours_and_dead(name):
            _cmd(["ip", "netns", "delete", name], check=False)
            gone.append(name)
    for line in _cmd(["ip", "-o", "link", "show"], check=False).splitlines():
        parts = line.split(": ", 2)
        name = parts[1].split("@", 1)[0] if len(parts) > 1 else ""
        if _ours_and_dead(name):
            _cmd(["ip", "link", "delete", name], check=False)
            gone.append(name)
    return gone


@contextlib.contextmanager
def _setup_lock() -> Iterator[None]:
    """Runs in parallel pick their /24 one at a time (the check and the claim are apart)."""
    with (Path(tempfile.gettempdir()) / "quorumdb-netns.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    for line in _cmd(["ip", "-o", "-4", "addr", "show"]).splitlines():
        for word in line.split():
            if "/" in word and word[0].isdigit():
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.IPv4Network(word, strict=False))
    for line in _cmd(["ip", "-4", "route", "show", "table", "all"]).splitlines():
        for word in line.split()[:2]:  # "10.1.0.0/16 via ..." or "blackhole 10.2.0.0/16"
            if word[:1].isdigit():
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.IPv4Network(word, strict=False))
    return used


def _free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 (x in 200..254) no address or route on this machine overlaps."""
    used = _used_networks()
    candidates = 55 * 256
    for k in range(candidates):
        index = (seed + k) % candidates
        net = ipaddress.IPv4Network(f"10.{200 + index // 256}.{index % 256}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise UserError("netns: no free 10.200-254.x.0/24 subnet for the run", exit_status=1)


@dataclass(slots=True)
class _Applied:
    rules: dict[int, NodeRules]
    table: str
    note: str


@dataclass(slots=True)
class _Names:
    tag: str
    nodes: int
    bridge: str = field(init=False)

    def __post_init__(self) -> None:
        self.bridge = f"{self.tag}br"

    def ns(self, i: int) -> str:
        return f"{self.tag}-n{i}"

    def veth(self, i: int) -> str:
        return f"{self.tag}v{i}"


class NamespaceNetwork:
    """`network.NetworkFaults` with a namespace per node; see the module docstring."""

    kinds = frozenset({Nemesis.PARTITION})

    def __init__(self, workdir: Path, nodes: int, base_port: int) -> None:
        if not 1 <= nodes <= 9:
            raise UserError(f"netns: 1..9 nodes, not {nodes}")
        sweep_leftovers()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._applied: dict[tuple[Fault, tuple[int, ...]], _Applied] = {}
        self._tables = itertools.count(1)
        with _live_lock:
            tag = next(
                t
                for t in (f"qdb-{os.getpid():x}-{next(_seq) % 256:x}" for _ in range(257))
                if t not in _live
            )
            _live.add(tag)
        self.names = _Names(tag, nodes)
        self._closed = False
        try:
            with _setup_lock():
                self.subnet = _free_subnet(os.getpid() * 31 + int(tag.rsplit("-", 1)[1], 16))
                self._build(base_port)
            self.netem = self._probe_netem()
        except BaseException:
            self.close()
            raise
        self._record({"setup": self.describe(), "netem": self.netem})

    def address(self, i: int) -> str:
        return str(self.subnet.network_address + i)

    def _build(self, base_port: int) -> None:
        n = self.names
        bridge_addr = self.address(_BRIDGE_HOST)
        _cmd(["ip", "link", "add", n.bridge, "type", "bridge"])
        _cmd(["ip", "addr", "add", f"{bridge_addr}/24", "dev", n.bridge])
        _cmd(["ip", "link", "set", n.bridge, "up"])
        self.members = default_layout(n.nodes, base_port).members
        for i, m in sorted(self.members.items()):
            ns, addr = n.ns(i), self.address(i)
            _cmd(["ip", "netns", "add", ns])
            _cmd(["ip", "-n", ns, "link", "set", "lo", "up"])
            _cmd(["ip", "link", "add", n.veth(i), "type", "veth", "peer", "name", "eth0",
                  "netns", ns])  # fmt: skip
            _cmd(["ip", "link", "set", n.veth(i), "master", n.bridge, "up"])
            _cmd(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0"])
            _cmd(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _cmd(["ip", "-n", ns, "route", "add", "default", "via", bridge_addr])
            self.members[i] = dataclasses.replace(
                m,
                raft=(addr, m.raft[1]),
                http=(addr, m.http[1]),
                kafka=(addr, m.kafka[1]) if m.kafka else None,
            )

    def _probe_netem(self) -> bool:
        """Whether this kernel has sch_netem (tried on the loopback of node 1's namespace)."""
        ns = self.names.ns(1)
        add = ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
        try:
            _cmd(add, ns=ns)
        except UserError:
            return False
        _cmd(["tc", "qdisc", "del", "dev", "lo", "root"], ns=ns, check=False)
        return True

    def describe(self) -> str:
        return f"bridge {self.names.bridge} {self.address(_BRIDGE_HOST)}/24; " + ", ".join(
            f"n{i} {self.names.ns(i)} {self.address(i)}" for i in self.members
        )

    def layout(self) -> Layout:
        launch = {i: ["ip", "netns", "exec", self.names.ns(i)] for i in self.members}
        return Layout(members=dict(self.members), launch=launch)

    def start(self, fault: Fault, targets: tuple[int, ...]) -> None:
        if fault.kind != Nemesis.PARTITION:
            raise ValueError(f"netns does not inject {fault.kind.value} faults")
        raft = {i: m.raft for i, m in self.members.items()}
        rules, note = fault_rules(fault.variant, targets, fault.amount, raft, netem=self.netem)
        applied = _Applied(rules, f"qdbf{next(self._tables)}", note)
        with self._lock:
            self._applied[(fault, targets)] = applied
        for node, r in sorted(rules.items()):
            ns = self.names.ns(node)
            if script := r.nft_table(applied.table):
                _cmd(["nft", "-f", "-"], ns=ns, stdin=script)
            if r.qdisc:
                _cmd(["tc", "qdisc", "replace", "dev", "eth0", "root", *r.qdisc], ns=ns)
        self._record(
            {"variant": fault.variant, "nodes": list(targets), "amount": fault.amount,
             "at_s": fault.at_s, "applied": note}
        )  # fmt: skip

    def stop(self, fault: Fault, targets: tuple[int, ...]) -> None:
        with self._lock:
            applied = self._applied.pop((fault, targets), None)
        if applied is None:
            return
        for node, r in sorted(applied.rules.items()):
            ns = self.names.ns(node)
            if r.output or r.input:
                _cmd(["nft", "delete", "table", "inet", applied.table], ns=ns)
            if r.qdisc:
                _cmd(["tc", "qdisc", "del", "dev", "eth0", "root"], ns=ns)

    def heal(self) -> None:
        """Flush every namespace's ruleset and root qdisc (errors ignored: a namespace that
        was never built, or a qdisc that is already gone, is healed too)."""
        with self._lock:
            self._applied.clear()
        for i in range(1, self.names.nodes + 1):
            ns = self.names.ns(i)
            _cmd(["nft", "flush", "ruleset"], ns=ns, check=False)
            _cmd(["tc", "qdisc", "del", "dev", "eth0", "root"], ns=ns, check=False)

    def close(self) -> None:
        """Heal, then delete the namespaces, veths and bridge. Safe to call twice, and again
        after an interrupted call (every step is idempotent)."""
        if self._closed:
            return
        n = self.names
        try:
            self.heal()
        finally:
            for i in range(1, n.nodes + 1):
                # Deleting the outer veth deletes the pair even if a process keeps the
                # namespace alive; deleting the namespace's name then frees it.
                _cmd(["ip", "link", "delete", n.veth(i)], check=False)
                _cmd(["ip", "netns", "delete", n.ns(i)], check=False)
            _cmd(["ip", "link", "delete", n.bridge], check=False)
            with _live_lock:
                _live.discard(n.tag)
            self._closed = True

    def _record(self, entry: dict[str, object]) -> None:
        with (self.workdir / "applied.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")
