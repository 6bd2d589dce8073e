"""The network-namespace nemesis (`nemesis.netns`): a fault's rules per variant (anywhere), and
as root with ip and nft: the run's namespaces, veths and bridge all go on close, a cut cuts
and heals, one-way is one way, nodes run inside their namespace with their own pid, dead
runs' leftovers are swept, Ctrl-C mid-partition leaves nothing behind, a register run under
partitions and kill -9 ends valid, and the same run with stale local reads planted does not."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quorumdb.nemesis.netns import NamespaceNetwork, cut_pairs, fault_rules, sweep_leftovers
from quorumdb.nemesis.run import RunOptions, run_test
from quorumdb.nemesis.schedule import Fault, Nemesis, plan
from tests.nemesis.sockets import processes_using


def _why_not_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [t for t in ("ip", "nft", "tc") if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)} (iproute2, nftables: scripts/_system_tools.sh)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"ip netns does not work here: {probe.stderr.strip()}"
    return None


_WHY_NOT = _why_not_netns()
needs_netns = pytest.mark.skipif(_WHY_NOT is not None, reason=f"netns nemesis: {_WHY_NOT}")


def _raft(n: int) -> dict[int, tuple[str, int]]:
    """Nodes 1..n's Raft addresses."""
    return {i: (f"10.9.9.{i}", 7100 + i) for i in range(1, n + 1)}


# --- the rules, anywhere ---------------------------------------------------------------------


def test_cutting_variants_separate_the_right_pairs() -> None:
    nodes = [1, 2, 3, 4, 5]
    pairs = {frozenset(p) for p in [(2, 1), (2, 3), (2, 4), (2, 5)]}
    assert cut_pairs("isolate", (2,), nodes) == pairs
    assert cut_pairs("isolate-leader", (2,), nodes) == pairs
    assert cut_pairs("majority-minority", (1, 5), nodes) == {
        frozenset((x, y)) for x in (1, 5) for y in (2, 3, 4)
    }
    # bridge 3: halves {1, 2} and {4, 5}; 3 still talks to everyone.
    assert cut_pairs("bridge", (3,), nodes) == {frozenset((x, y)) for x in (1, 2) for y in (4, 5)}


def test_a_cut_drops_both_ways_on_both_sides() -> None:
    rules, note = fault_rules("isolate", (1,), 0.0, _raft(3), netem=False)
    assert sorted(rules) == [1, 2, 3]
    assert rules[1].output == ("ip daddr { 10.9.9.2, 10.9.9.3 } drop",)
    assert rules[1].input == ("ip saddr { 10.9.9.2, 10.9.9.3 } drop",)
    assert rules[2].output == ("ip daddr { 10.9.9.1 } drop",)
    assert note == "nft drop both ways between 1-2, 1-3"


def test_one_way_drops_only_the_senders_connection_to_the_receivers_raft_port() -> None:
    rules, _ = fault_rules("one-way", (3, 1), 0.0, _raft(3), netem=False)
    assert list(rules) == [3]
    assert rules[3].output == ("ip daddr 10.9.9.1 tcp dport 7101 drop",)
    assert rules[3].input == () and rules[3].qdisc == ()


def test_loss_is_a_random_drop_of_peer_traffic_only() -> None:
    rules, _ = fault_rules("loss", (2,), 0.25, _raft(3), netem=False)
    assert rules[2].output == (
        "ip daddr { 10.9.9.1, 10.9.9.3 } numgen random mod 10000 < 2500 drop",
    )
    assert rules[2].input[0].startswith("ip saddr { 10.9.9.1, 10.9.9.3 }")


def test_delay_and_reorder_use_netem_when_the_kernel_has_it() -> None:
    delay, note = fault_rules("delay", (2,), 80.0, _raft(3), netem=True)
    assert delay == {2: delay[2]} and delay[2].qdisc == ("netem", "delay", "80ms")
    assert "netem" in note
    reorder, _ = fault_rules("reorder", (2,), 80.0, _raft(3), netem=True)
    assert reorder[2].qdisc == ("netem", "delay", "80ms", "reorder", "25%", "50%")
    assert reorder[2].output == ()


def test_without_netem_delay_is_a_throttle_and_says_so() -> None:
    delay, note = fault_rules("delay", (2,), 100.0, _raft(3), netem=False)
    assert delay[2].qdisc[0] == "tbf" and delay[2].output == ()
    assert note.startswith("no netem: a tbf throttle")
    reorder, note = fault_rules("reorder", (2,), 100.0, _raft(3), netem=False)
    assert reorder[2].qdisc == delay[2].qdisc
    assert "numgen random mod 10000 < 500 drop" in reorder[2].output[0]
    assert "5%" in note


def test_a_fault_table_is_one_nft_script() -> None:
    rules, _ = fault_rules("isolate", (1,), 0.0, _raft(2), netem=False)
    script = rules[1].nft_table("qdbf7")
    assert script.startswith("table inet qdbf7 {")
    assert "type filter hook output priority 0; policy accept;" in script
    assert "type filter hook input priority 0; policy accept;" in script
    assert fault_rules("delay", (1,), 50.0, _raft(2), netem=True)[0][1].nft_table("t") == ""


# --- namespaces, as root -----------------------------------------------------------------------


def _names_left(tag: str) -> list[str]:
    """The namespaces and links whose names carry `tag` (the run's)."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in netns.stdout.splitlines()]
    names += [line.split()[1].rstrip(":").split("@")[0] for line in links.stdout.splitlines()]
    return [name for name in names if tag in name]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[NamespaceNetwork]:
    network = NamespaceNetwork(tmp_path / "net", 3, 23_000)
    try:
        yield network
    finally:
        network.close()
        assert _names_left(network.names.tag) == []


_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"hi")
    c.close()
"""

_CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0) as c:
        print(c.recv(2).decode())
except OSError as exc:
    print(type(exc).__name__)
"""


class _Servers:
    """A TCP listener (answers "hi") per node on its Raft address, inside its namespace."""

    def __init__(self, net: NamespaceNetwork) -> None:
        self.net = net
        self.procs: list[subprocess.Popen[str]] = []
        for i, m in net.members.items():
            proc = subprocess.Popen(
                [*net.layout().launch[i], sys.executable, "-c", _SERVER, *map(str, m.raft)],
                stdout=subprocess.PIPE,
                text=True,
            )
            self.procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"

    def dial(self, src: int | None, dst: int) -> str:
        """Connect from node `src`'s namespace (None: the root namespace) to `dst`'s Raft port:
        "hi" if it got through, else the error's name."""
        prefix = self.net.layout().launch[src] if src is not None else []
        host, port = self.net.members[dst].raft
        out = subprocess.run(
            [*prefix, sys.executable, "-c", _CLIENT, host, str(port)],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


@pytest.fixture
def servers(net: NamespaceNetwork) -> Iterator[_Servers]:
    s = _Servers(net)
    try:
        yield s
    finally:
        s.close()


def _fault(variant: str, nodes: tuple[int, ...], amount: float = 0.0) -> Fault:
    return Fault(0.0, Nemesis.PARTITION, variant, nodes, 1.0, amount)


@needs_netns
def test_close_removes_every_namespace_veth_and_bridge_of_the_run(tmp_path: Path) -> None:
    network = NamespaceNetwork(tmp_path / "net", 3, 23_000)
    tag = network.names.tag
    try:
        assert sorted(_names_left(tag)) == sorted(
            [f"{tag}-n1", f"{tag}-n2", f"{tag}-n3", f"{tag}br"] + [f"{tag}v{i}" for i in (1, 2, 3)]
        )
        network.start(_fault("isolate", (1,)), (1,))
        network.start(_fault("delay", (2,), 50.0), (2,))
    finally:
        network.close()
    assert _names_left(tag) == []
    network.close()  # twice is fine
    applied = [json.loads(line) for line in (tmp_path / "net" / "applied.jsonl").open()]
    assert [a.get("variant") for a in applied] == [None, "isolate", "delay"]
    assert "netem" in applied[0] and applied[0]["setup"].startswith(f"bridge {tag}br")


@needs_netns
def test_an_isolated_node_is_cut_off_from_its_peers_until_healed(
    net: NamespaceNetwork, servers: _Servers
) -> None:
    assert servers.dial(1, 2) == "hi"
    fault = _fault("isolate", (1,))
    net.start(fault, (1,))
    assert servers.dial(1, 2) == "TimeoutError"
    assert servers.dial(3, 1) == "TimeoutError"
    assert servers.dial(2, 3) == "hi", "the others still talk"
    assert servers.dial(None, 1) == "hi", "clients (the root namespace) are not cut"
    net.stop(fault, (1,))
    assert servers.dial(1, 2) == "hi" and servers.dial(3, 1) == "hi"
    net.start(_fault("majority-minority", (3,)), (3,))
    assert servers.dial(3, 1) == "TimeoutError" and servers.dial(1, 2) == "hi"
    net.heal()
    assert servers.dial(3, 1) == "hi"


@needs_netns
def test_one_way_cuts_only_the_senders_connections(
    net: NamespaceNetwork, servers: _Servers
) -> None:
    fault = _fault("one-way", (1, 2))
    net.start(fault, (1, 2))
    assert servers.dial(1, 2) == "TimeoutError", "1's messages to 2 are dropped"
    assert servers.dial(2, 1) == "hi", "2's messages to 1 still arrive"
    assert servers.dial(1, 3) == "hi"
    net.stop(fault, (1, 2))
    assert servers.dial(1, 2) == "hi"


@needs_netns
def test_loss_delay_and_reorder_rules_come_and_go_with_their_fault(net: NamespaceNetwork) -> None:
    ns = net.names.ns(2)

    def state() -> str:
        rules = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"],
                               capture_output=True, text=True, check=True)  # fmt: skip
        qdisc = subprocess.run(["tc", "-n", ns, "qdisc", "show", "dev", "eth0"],
                               capture_output=True, text=True, check=True)  # fmt: skip
        return rules.stdout + qdisc.stdout

    for variant, amount in (("loss", 0.3), ("delay", 40.0), ("reorder", 40.0)):
        fault = _fault(variant, (2,), amount)
        net.start(fault, (2,))
        during = state()
        assert ("numgen random" in during) == (variant != "delay"), during
        assert (("netem" if net.netem else "tbf") in during) == (variant != "loss"), during
        net.stop(fault, (2,))
        after = state()
        assert "numgen" not in after and "netem" not in after and "tbf" not in after, after


@needs_netns
def test_a_node_started_with_the_launch_prefix_runs_in_its_namespace_with_its_own_pid(
    net: NamespaceNetwork,
) -> None:
    proc = subprocess.Popen(
        [*net.layout().launch[2], sys.executable, "-c", "import os; print(os.getpid())"],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate()
    assert int(out) == proc.pid, "kill -9 and SIGSTOP must reach the node itself"
    # Asked from inside (no pid): asking about a just-started pid from outside can run
    # before `ip netns exec` has entered the namespace.
    named = subprocess.run([*net.layout().launch[2], "ip", "netns", "identify"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert named.stdout.strip() == net.names.ns(2)


@needs_netns
def test_leftovers_of_a_dead_run_are_swept_and_live_ones_kept(net: NamespaceNetwork) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"qdb-{gone.pid:x}-0"
    subprocess.run(["ip", "netns", "add", f"{dead}-n1"], check=True)
    subprocess.run(["ip", "link", "add", f"{dead}br", "type", "bridge"], check=True)
    try:
        swept = sweep_leftovers()
        assert sorted(swept) == sorted([f"{dead}-n1", f"{dead}br"])
        assert _names_left(dead) == []
        assert len(_names_left(net.names.tag)) == 7, "the live run's names stay"
    finally:
        subprocess.run(["ip", "netns", "delete", f"{dead}-n1"], capture_output=True, check=False)
        subprocess.run(["ip", "link", "delete", f"{dead}br"], capture_output=True, check=False)


# --- a whole run ------------------------------------------------------------------------------


@needs_netns
def test_a_register_run_under_partitions_and_kills_in_namespaces_is_valid(tmp_path: Path) -> None:
    # Seed 9: the leader killed (and restarted, in its namespace), then the leader isolated.
    kinds = (Nemesis.PARTITION, Nemesis.KILL)
    assert [(f.kind, f.variant) for f in plan(9, list(kinds), [1, 2, 3], 10.0)] == [
        (Nemesis.KILL, "leader"),
        (Nemesis.PARTITION, "isolate-leader"),
    ]
    out = tmp_path / "run"
    result = run_test(RunOptions(out=out, nemesis=kinds, net="netns", time_s=10, rate=60, seed=9))
    assert result.valid, result.summary
    faults = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    assert [f["kind"] for f in faults] == ["kill", "partition"]
    applied = [
        json.loads(line) for line in (out / "net" / "applied.jsonl").read_text().splitlines()
    ]
    setup = applied[0]["setup"]
    assert applied[1]["applied"].startswith("nft drop both ways between")
    tag = setup.split()[1].removesuffix("br")
    assert _names_left(tag) == [], "the run's network is gone"
    killed = faults[0]["nodes"][0]
    log = (out / "cluster" / f"n{killed}" / "node.log").read_text()
    address = re.search(rf"n{killed} \S+ ([0-9.]+)", setup)
    assert address is not None, setup
    assert log.count(f"kafka listener on {address.group(1)}:") == 2, (
        "the killed node came back on its namespace's address"
    )


@needs_netns
def test_stale_local_reads_are_caught_when_a_follower_is_isolated(tmp_path: Path) -> None:
    # Seed 20: node 2, then node 3, isolated for about 2 s each; with reads answered from the
    # local state (no ReadIndex), an isolated follower serves values the majority overwrote.
    assert [(f.variant, f.nodes) for f in plan(20, [Nemesis.PARTITION], [1, 2, 3], 10.0)] == [
        ("isolate", (2,)),
        ("isolate", (3,)),
    ]
    opts = RunOptions(
        out=tmp_path / "run",
        nemesis=(Nemesis.PARTITION,),
        net="netns",
        time_s=10,
        rate=60,
        seed=20,
        bugs=("stale-local-reads",),
    )
    result = run_test(opts)
    assert not result.valid, result.summary
    assert result.summary.startswith("not linearizable"), result.summary


@needs_netns
def test_ctrl_c_during_a_partition_leaves_no_network_and_no_node_behind(tmp_path: Path) -> None:
    def interrupt(line: str) -> None:
        # The first fault (seed 2: isolate node 2) is in effect.
        if line.startswith("t=") and " partition " in line:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    opts = RunOptions(out=out, nemesis=(Nemesis.PARTITION,), net="netns", time_s=5, seed=2)
    with pytest.raises(KeyboardInterrupt):
        run_test(opts, progress=interrupt)
    setup = json.loads((out / "net" / "applied.jsonl").read_text().splitlines()[0])["setup"]
    tag = setup.split()[1].removesuffix("br")
    assert _names_left(tag) == []
    assert processes_using(out / "cluster") == []
