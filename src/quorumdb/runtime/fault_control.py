"""TEST ONLY: clock and disk faults a node takes from a control file (`quorumdb test`).

A node started with `QUORUMDB_FAULT_CONTROL=<dir>` reads `<dir>/n<node_id>.json` (one file
per node, so one directory serves a whole cluster) and keeps reading it: a daemon thread
checks it every `POLL_S` and takes a new version (by inode, size and mtime; the nemesis
replaces it atomically). The document, every field optional:

    {"clock": {"offset_ms": float, "drift_ppm": float},
     "disk": {"fsync_delay_ms": float, "fsync_stall": bool, "fsync_fail": bool, "full": bool}}

A missing file means no faults; so does a malformed one (with a log line, once per
version). The poller is a thread rather than a task of the event loop because a stalled
fsync may block the loop itself (snapshots and Kafka segments sync on it), and only a new
version of the file releases the stall.

The node applies the faults through `runtime.skewed_clock.SkewedClock` (its clock) and
`runtime.faulty_fs.FaultyFileSystem` (its file system). Without the variable neither is
installed: a node pays nothing for this module.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FAULT_CONTROL_ENV",
    "POLL_S",
    "FaultControl",
    "Faults",
    "control_file",
    "fault_control_from_env",
    "parse_faults",
]

log = logging.getLogger("quorumdb.faults")

FAULT_CONTROL_ENV = "QUORUMDB_FAULT_CONTROL"
POLL_S = 0.1


def control_file(directory: str | Path, node_id: int) -> Path:
    """Where node `node_id` reads its faults in the control directory."""
    return Path(directory) / f"n{node_id}.json"


def fault_control_from_env(node_id: int) -> FaultControl | None:
    """The node's fault control if `FAULT_CONTROL_ENV` is set (not started), else None."""
    directory = os.environ.get(FAULT_CONTROL_ENV)
    if not directory:
        return None
    path = control_file(directory, node_id)
    log.warning("TEST ONLY: %s set: clock and disk faults from %s", FAULT_CONTROL_ENV, path)
    return FaultControl(path)


@dataclass(frozen=True, slots=True)
class Faults:
    """The faults in effect; the default value is none."""

    offset_ms: float = 0.0
    drift_ppm: float = 0.0
    fsync_delay_ms: float = 0.0
    fsync_stall: bool = False
    fsync_fail: bool = False
    full: bool = False


_FIELDS: dict[str, dict[str, type]] = {
    "clock": {"offset_ms": float, "drift_ppm": float},
    "disk": {"fsync_delay_ms": float, "fsync_stall": bool, "fsync_fail": bool, "full": bool},
}


def parse_faults(doc: Any) -> Faults:
    """The faults a control document asks for; ValueError naming what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    values: dict[str, float | bool] = {}
    for section, body in doc.items():
        fields = _FIELDS.get(section)
        if fields is None:
            raise ValueError(f"unknown section {section!r} (known: clock, disk)")
        if not isinstance(body, dict):
            raise ValueError(f"{section}: expected an object")
        for name, value in body.items():
            kind = fields.get(name)
            if kind is None:
                raise ValueError(f"{section}: unknown field {name!r}")
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"{section}.{name}: expected true or false")
                values[name] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{section}.{name}: expected a number")
                if not math.isfinite(value):
                    raise ValueError(f"{section}.{name}: must be finite")
                values[name] = float(value)
    faults = Faults(**values)  # type: ignore[arg-type]
    if faults.fsync_delay_ms < 0:
        raise ValueError("disk.fsync_delay_ms: must be >= 0")
    if faults.drift_ppm <= -1e6:
        raise ValueError("clock.drift_ppm: must be > -1000000 (a clock that runs forward)")
    return faults


class FaultControl:
    """The faults in effect for one node, kept up to date from its control file.

    `faults` is read from any thread (one attribute read of a frozen value); `on_change`
    callbacks run on the poller thread; `wait_unstalled` blocks until a version without
    `fsync_stall` is read (a condition variable, no spinning)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.faults = Faults()
        self.on_change: list[Callable[[Faults], None]] = []
        self._version: tuple[int, int, int] | None = None
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """Read the file if it changed since the last poll."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            version = None
        else:
            version = (st.st_ino, st.st_size, st.st_mtime_ns)
        if version == self._version:
            return
        self._version = version
        faults = Faults()
        if version is not None:
            try:
                faults = parse_faults(json.loads(self.path.read_text()))
            except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
                log.error("TEST ONLY: bad fault control file %s: %s; no faults", self.path, exc)
        self._set(faults)

    def _set(self, faults: Faults) -> None:
        if faults == self.faults:
            return
        log.warning("TEST ONLY: faults now %s", _describe(faults))
        with self._changed:
            self.faults = faults
            for fn in self.on_change:
                fn(faults)
            self._changed.notify_all()

    def wait_unstalled(self) -> None:
        """Block while `fsync_stall` is in effect (until a new file version clears it)."""
        with self._changed:
            self._changed.wait_for(lambda: not self.faults.fsync_stall or self._closed.is_set())

    def start(self) -> None:
        """Read the file now, then poll it every `POLL_S` on a daemon thread."""
        self.poll()
        self._thread = threading.Thread(target=self._run, name="fault control", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.wait(POLL_S):
            try:
                self.poll()
            except Exception:  # never let a test aid take the poller down silently
                log.exception("TEST ONLY: fault control poll failed")

    def close(self) -> None:
        """Stop polling and release any stalled fsync."""
        self._closed.set()
        with self._changed:
            self._changed.notify_all()


def _describe(f: Faults) -> str:
    parts = [f"{x.name}={getattr(f, x.name)}" for x in dataclasses.fields(f) if getattr(f, x.name)]
    return " ".join(parts) or "none"
