"""What the host's sockets and processes look like, for tests that must leave nothing behind."""

from __future__ import annotations

import os
from pathlib import Path


def listening(ports: list[int]) -> set[int]:
    """Which of `ports` this process still listens on (/proc/net/tcp, state 0A, a socket
    among our open files). A closed connection may keep its port in TIME_WAIT a while, and
    another process may take a freed port at once: neither is a listener of ours."""
    ours = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[len("socket:[") : -1])
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        port = int(fields[1].rsplit(":", 1)[1], 16)
        if fields[3] == "0A" and port in ports and fields[9] in ours:
            found.add(port)
    return found


def processes_using(path: Path | str) -> list[int]:
    """Live (non-zombie) pids whose command line names `path` (a cluster's node processes)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(path).encode() in cmdline and state != "Z":
            found.append(int(proc.name))
    return found
