"""A finished run directory, read back: its history, fault log and verdict.

The report is drawn from these files alone, never from the objects of the run that wrote
them, so any run directory (an old one, one copied from another machine) can be rendered
again with `quorumdb test report DIR`. What `nemesis.run` writes:

- ``history.json``: a JSON array of events, each an object with at least ``process``,
  ``type`` (invoke, ok, info, fail) and ``f``; ``time`` in ns since the workload started.
  The other fields depend on the workload (``key``/``value`` for registers, Kafka sends and
  polls, transactions), and the report treats them as opaque.
- ``faults.jsonl``: one object per fault: kind, variant, nodes, amount, start_s, end_s.
  Optional (absent means no fault was injected).
- ``verdict.json``: an object: valid (a boolean), checker, summary, anomalies (a list of
  objects, each with ``ops``, if any, a list of event objects), details, ops and options
  (objects). Absent fields are allowed (the report says "not recorded").

Anything else is a `RunDirError` naming the file and the problem, one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RunDir", "RunDirError", "read_run_dir"]

HISTORY = "history.json"
FAULTS = "faults.jsonl"
VERDICT = "verdict.json"


class RunDirError(ValueError):
    """The directory is missing, is not a run directory, or one of its files is malformed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunDir:
    path: Path
    events: list[dict[str, Any]]
    faults: list[dict[str, Any]]
    verdict: dict[str, Any]


def read_run_dir(path: Path) -> RunDir:
    """Read and sanity-check the files of a finished run.

    Raises:
        RunDirError: no such directory, no history or verdict in it, or a malformed file.
    """
    if not path.is_dir():
        what = "not a directory" if path.exists() else "no such directory"
        raise RunDirError(f"{path}: {what}")
    missing = [name for name in (VERDICT, HISTORY) if not (path / name).is_file()]
    if missing:
        raise RunDirError(f"{path} is not a run directory (no {' or '.join(missing)} in it)")
    verdict = _json(path / VERDICT)
    if not isinstance(verdict, dict) or not isinstance(verdict.get("valid"), bool):
        raise RunDirError(f"{path / VERDICT}: not a verdict (an object with a boolean 'valid')")
    problem = _verdict_problem(verdict)
    if problem:
        raise RunDirError(f"{path / VERDICT}: {problem}")
    events = _json(path / HISTORY)
    if not isinstance(events, list):
        raise RunDirError(f"{path / HISTORY}: not a JSON array of events")
    for n, event in enumerate(events, start=1):
        if not isinstance(event, dict) or "process" not in event or "type" not in event:
            raise RunDirError(f"{path / HISTORY}: event #{n} is not an object with process/type")
    return RunDir(path=path, events=events, faults=_faults(path / FAULTS), verdict=verdict)


def _verdict_problem(verdict: dict[str, Any]) -> str:
    """What in a verdict the report could not draw (its field types), or ""."""
    for name in ("details", "ops", "options"):
        if verdict.get(name) is not None and not isinstance(verdict[name], dict):
            return f"'{name}' is not an object"
    anomalies = verdict.get("anomalies")
    if anomalies is None:
        return ""
    if not isinstance(anomalies, list):
        return "'anomalies' is not a list"
    for n, anomaly in enumerate(anomalies, start=1):
        if not isinstance(anomaly, dict):
            return f"anomaly #{n} is not an object"
        ops = anomaly.get("ops")
        if ops is not None and not (
            isinstance(ops, list) and all(isinstance(e, dict) for e in ops)
        ):
            return f"anomaly #{n}: 'ops' is not a list of events (objects)"
    return ""


def _json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunDirError(f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RunDirError(f"{file}: not UTF-8 text") from None
    except ValueError as exc:
        raise RunDirError(f"{file}: not JSON ({exc})") from None


def _faults(file: Path) -> list[dict[str, Any]]:
    if not file.exists():
        return []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"cannot read {file}: {exc}") from None
    faults = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            fault = json.loads(line)
        except ValueError as exc:
            raise RunDirError(f"{file}: line {n} is not JSON ({exc})") from None
        if not isinstance(fault, dict) or not all(
            isinstance(fault.get(k), int | float) for k in ("start_s", "end_s")
        ):
            raise RunDirError(f"{file}: line {n} is not a fault with start_s and end_s")
        faults.append(fault)
    return faults
