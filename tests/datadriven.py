"""A small datadriven test runner in the style of cockroachdb/datadriven (as etcd-raft uses it).

A test file is a sequence of directives separated by blank lines and `#` comment lines:

    command arg key=value key=(v1,v2)
    optional input lines
    ----
    expected output (no blank lines)

`run_file(path, handler, rewrite=...)` calls `handler(directive)` for each directive and compares
what it returns with the expected output; with `rewrite=True` it writes the actual outputs back
into the file instead (the rewritten file is then reviewed like code). Empty output is written
as `ok`. Outputs must not contain blank lines: a blank line ends an expectation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Arg", "DataDrivenError", "Directive", "parse", "run_file"]

_SEPARATOR = "----"
_ARG = re.compile(r"([^\s=]+)(?:=(\([^)]*\)|\S+))?")


class DataDrivenError(Exception):
    """A malformed test file, or a directive the handler does not understand."""


@dataclass(frozen=True, slots=True)
class Arg:
    key: str
    vals: tuple[str, ...] = ()


@dataclass(slots=True)
class Directive:
    pos: str  # "file.txt:12", for error messages
    cmd: str
    args: list[Arg]
    input: str
    expected: str
    # Line numbers (0-based, end exclusive) of the expected output, for rewriting.
    out_start: int = 0
    out_end: int = 0
    used: set[str] = field(default_factory=set)

    def fail(self, msg: str) -> DataDrivenError:
        return DataDrivenError(f"{self.pos}: {self.cmd}: {msg}")


def _parse_args(pos: str, text: str) -> list[Arg]:
    args: list[Arg] = []
    for m in _ARG.finditer(text):
        key, raw = m.group(1), m.group(2)
        if raw is None:
            args.append(Arg(key))
        elif raw.startswith("("):
            inner = raw[1:-1].strip()
            args.append(Arg(key, tuple(v.strip() for v in inner.split(",")) if inner else ()))
        else:
            args.append(Arg(key, (raw,)))
    if not all(a.key for a in args):
        raise DataDrivenError(f"{pos}: cannot parse arguments {text!r}")
    return args


def parse(path: Path) -> tuple[list[str], list[Directive]]:
    """Return the file's lines and its directives."""
    lines = path.read_text().split("\n")
    out: list[Directive] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            i += 1
            continue
        pos = f"{path.name}:{i + 1}"
        cmd, _, rest = line.strip().partition(" ")
        start = i
        i += 1
        inputs: list[str] = []
        while i < len(lines) and lines[i] != _SEPARATOR:
            if not lines[i].strip():
                raise DataDrivenError(f"{pos}: directive without '{_SEPARATOR}' line")
            inputs.append(lines[i])
            i += 1
        if i == len(lines):
            raise DataDrivenError(f"{pos}: directive without '{_SEPARATOR}' line")
        i += 1
        out_start = i
        while i < len(lines) and lines[i].strip():
            i += 1
        expected = "\n".join(lines[out_start:i])
        d = Directive(pos, cmd, _parse_args(pos, rest), "\n".join(inputs), expected)
        d.out_start, d.out_end = out_start, i
        out.append(d)
        assert start < out_start
    return lines, out


def run_file(path: Path, handler: Callable[[Directive], str], *, rewrite: bool) -> None:
    """Run every directive of `path` through `handler`; compare or rewrite expectations."""
    lines, directives = parse(path)
    new_lines: list[str] = []
    copied = 0
    for d in directives:
        actual = handler(d).rstrip("\n") or "ok"
        if any(not ln.strip() for ln in actual.split("\n")):
            raise d.fail(f"output contains a blank line:\n{actual}")
        if rewrite:
            new_lines += [*lines[copied : d.out_start], *actual.split("\n")]
            copied = d.out_end
        elif actual != d.expected:
            raise AssertionError(
                f"{d.pos}: {d.cmd} output differs (run pytest --rewrite to regenerate)\n"
                f"--- expected\n{d.expected}\n--- actual\n{actual}"
            )
    if rewrite:
        new_lines += lines[copied:]
        path.write_text("\n".join(new_lines))
