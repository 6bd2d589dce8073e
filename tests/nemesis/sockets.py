"""What the host's sockets and processes look like, for tests that must leave nothing behind."""

from __future__ import annotations

from pathlib import Path

from quorumdb.cli.local_cluster import alive


def listening(ports: list[int]) -> set[int]:
    """Which of `ports` a socket on this host listens on (/proc/net/tcp, state 0A). A closed
    connection may keep its port in TIME_WAIT a while; that is not a listener."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        port = int(fields[1].rsplit(":", 1)[1], 16)
        if fields[3] == "0A" and port in ports:
            found.add(port)
    return found


def processes_using(path: Path) -> list[int]:
    """Pids whose command line names `path` (a run's node processes)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline and alive(int(proc.name)):
            found.append(int(proc.name))
    return found
