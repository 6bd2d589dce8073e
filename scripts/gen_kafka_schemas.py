#!/usr/bin/env python3
"""Generate src/quorumdb/kafka/protocol/schemas.py from Kafka's JSON message specs.

Usage:
    python scripts/gen_kafka_schemas.py KAFKA_CHECKOUT [--source LABEL] [--out PATH]

KAFKA_CHECKOUT is a checkout (or export) of apache/kafka, or directly its
`clients/src/main/resources/common/message/` folder. LABEL names what was read (for example
"apache/kafka 1eb7644 (4.0.0-SNAPSHOT)") and goes into the generated header.

What it does: for every API in `_APIS` it reads `<Name>Request.json` and `<Name>Response.json`,
keeps the versions 0..max that quorumdb supports, resolves struct references (inline and
`commonStructs`), turns field names into snake_case, clips every version range to the supported
maximum, drops fields that only exist above it, and writes the result as plain Python data
(dicts and tuples, nothing else). The request and response headers are written the same way.
The codec (`quorumdb.kafka.protocol.codec`) interprets that data; nothing is hand-written per
field. The output is formatted so that `ruff format` leaves it unchanged.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

# (name, highest version quorumdb supports). Keep in sync with KAFKA.md; the codec handles
# compact/tagged encodings, so raising a maximum is a matter of regenerating (plus broker work).
_APIS: tuple[tuple[str, int], ...] = (
    ("Produce", 8),
    ("Fetch", 11),
    ("ListOffsets", 5),
    ("Metadata", 8),
    ("OffsetCommit", 7),
    ("OffsetFetch", 5),
    ("FindCoordinator", 2),
    ("JoinGroup", 5),
    ("Heartbeat", 3),
    ("LeaveGroup", 3),
    ("SyncGroup", 3),
    ("DescribeGroups", 4),
    ("ListGroups", 2),
    ("ApiVersions", 3),
    ("CreateTopics", 4),
    ("DeleteTopics", 3),
    ("InitProducerId", 1),
    ("OffsetForLeaderEpoch", 2),
    ("AddPartitionsToTxn", 2),
    ("AddOffsetsToTxn", 2),
    ("EndTxn", 2),
    ("TxnOffsetCommit", 2),
    ("DescribeConfigs", 2),
)
_HEADERS: tuple[tuple[str, int], ...] = (("RequestHeader", 2), ("ResponseHeader", 1))

_MESSAGE_DIR = Path("clients/src/main/resources/common/message")
_PRIMITIVES = {
    "bool",
    "int8",
    "int16",
    "uint16",
    "int32",
    "int64",
    "float64",
    "string",
    "bytes",
    "records",
    "uuid",
}
_FIELD_KEYS = {
    "name",
    "type",
    "versions",
    "nullableVersions",
    "taggedVersions",
    "tag",
    "ignorable",
    "default",
    "fields",
    "flexibleVersions",
    "about",
    "entityType",
    "mapKey",
    "zeroCopy",
}
_LINE = 100


class SpecError(Exception):
    """The JSON spec has something this generator does not understand: fail loudly."""


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _load(path: Path) -> dict[str, Any]:
    # Kafka's spec files are JSON with whole-line `//` comments.
    text = re.sub(r"^\s*//.*$", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    data: dict[str, Any] = json.loads(text)
    return data


def _versions(spec: str | None, max_version: int) -> tuple[int, int] | None:
    """Parse "N+", "N-M", "N" or "none"; clip to max_version; None when empty."""
    if spec is None or spec == "none":
        return None
    if m := re.fullmatch(r"(\d+)\+", spec):
        lo, hi = int(m.group(1)), max_version
    elif m := re.fullmatch(r"(\d+)-(\d+)", spec):
        lo, hi = int(m.group(1)), min(int(m.group(2)), max_version)
    elif re.fullmatch(r"\d+", spec):
        lo = hi = int(spec)
    else:
        raise SpecError(f"bad version range {spec!r}")
    return (lo, hi) if lo <= hi else None


def _open_min(spec: str) -> int | None:
    """The first flexible version of an open range "N+" (unclipped), or None for "none"."""
    if spec == "none":
        return None
    m = re.fullmatch(r"(\d+)\+", spec)
    if not m:
        raise SpecError(f"flexibleVersions {spec!r} is not of the form N+")
    return int(m.group(1))


def _collect_structs(fields: list[dict[str, Any]], out: dict[str, list[dict[str, Any]]]) -> None:
    for f in fields:
        if "fields" in f:
            name = f["type"].removeprefix("[]")
            if name in out:
                raise SpecError(f"struct {name} defined twice")
            out[name] = f["fields"]
            _collect_structs(f["fields"], out)


def _convert_fields(
    fields: list[dict[str, Any]],
    structs: dict[str, list[dict[str, Any]]],
    max_version: int,
    where: str,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in fields:
        unknown = set(f) - _FIELD_KEYS
        if unknown:
            raise SpecError(f"{where}.{f['name']}: unknown keys {sorted(unknown)}")
        versions = _versions(f["versions"], max_version)
        if versions is None:
            continue
        ftype: str = f["type"]
        item = ftype.removeprefix("[]")
        field: dict[str, Any] = {"name": _snake(f["name"]), "kafka_name": f["name"], "type": ftype}
        field["versions"] = versions
        for key, out_key in (
            ("nullableVersions", "nullable_versions"),
            ("taggedVersions", "tagged_versions"),
        ):
            # Specs sometimes say "0+" here for a field that only exists from v1: intersect.
            rng = _versions(f.get(key), max_version)
            if rng is not None and max(rng[0], versions[0]) <= min(rng[1], versions[1]):
                field[out_key] = (max(rng[0], versions[0]), min(rng[1], versions[1]))
        if "flexibleVersions" in f:
            field["flexible_versions"] = _versions(f["flexibleVersions"], max_version)
        if "tag" in f and "tagged_versions" in field:
            field["tag"] = int(f["tag"])
        if f.get("ignorable"):
            field["ignorable"] = True
        if "default" in f:
            field["default"] = str(f["default"])
        if item not in _PRIMITIVES:
            if item not in structs:
                raise SpecError(f"{where}.{f['name']}: unknown struct type {item}")
            field["fields"] = _convert_fields(
                structs[item], structs, max_version, f"{where}.{f['name']}"
            )
        out.append(field)
    return out


def _message(path: Path, max_version: int) -> dict[str, Any]:
    spec = _load(path)
    valid = _versions(spec["validVersions"], 10**6)
    if valid is None or valid[0] > max_version:
        raise SpecError(f"{path.name}: no supported version in {spec['validVersions']}")
    if valid[1] < max_version:
        raise SpecError(f"{path.name}: spec stops at v{valid[1]}, below v{max_version}")
    structs: dict[str, list[dict[str, Any]]] = {}
    for common in spec.get("commonStructs", []):
        structs[common["name"]] = common["fields"]
    _collect_structs(spec["fields"], structs)
    msg: dict[str, Any] = {"name": spec["name"], "kind": spec["type"]}
    if "apiKey" in spec:
        msg["api_key"] = int(spec["apiKey"])
    msg["versions"] = (valid[0], max_version)
    msg["spec_versions"] = spec["validVersions"]
    msg["flexible_min"] = _open_min(spec["flexibleVersions"])
    msg["fields"] = _convert_fields(spec["fields"], structs, max_version, spec["name"])
    return msg


# --- output: a tiny pretty-printer whose output ruff format leaves alone ----------------------


def _fits(text: str, indent: int, tail: str) -> bool:
    return indent + len(text) + len(tail) <= _LINE


def _emit(value: Any, indent: int, tail: str, lines: list[str]) -> None:
    """Append `value` (dict/list/tuple/scalar) at `indent`, followed by `tail` (e.g. ",")."""
    flat = _flat(value)
    pad = " " * indent
    if flat is not None and _fits(flat, indent, tail):
        lines.append(f"{pad}{flat}{tail}")
        return
    if isinstance(value, dict):
        lines.append(f"{pad}{{")
        for k, v in value.items():
            key = f"{json.dumps(k)}: "
            vflat = _flat(v)
            if vflat is not None and _fits(key + vflat, indent + 4, ","):
                lines.append(f"{pad}    {key}{vflat},")
            else:
                opener = "[" if isinstance(v, list) else "("
                closer = "]" if isinstance(v, list) else ")"
                if isinstance(v, dict):
                    opener, closer = "{", "}"
                lines.append(f"{pad}    {key}{opener}")
                _emit_items(v, indent + 8, lines)
                lines.append(f"{pad}    {closer},")
        lines.append(f"{pad}}}{tail}")
    elif isinstance(value, list | tuple):
        opener, closer = ("[", "]") if isinstance(value, list) else ("(", ")")
        lines.append(f"{pad}{opener}")
        _emit_items(value, indent + 4, lines)
        lines.append(f"{pad}{closer}{tail}")
    else:
        raise SpecError(f"cannot emit {value!r} on one line")


def _emit_items(value: Any, indent: int, lines: list[str]) -> None:
    if not isinstance(value, list | tuple):
        raise SpecError(f"cannot explode {value!r}")
    for item in value:
        _emit(item, indent, ",", lines)


def _flat(value: Any) -> str | None:
    """One-line rendering, or None if the value must be exploded (it holds fields)."""
    if isinstance(value, dict):
        if value.get("fields"):
            return None
        parts = []
        for k, v in value.items():
            sub = _flat(v)
            if sub is None:
                return None
            parts.append(f"{json.dumps(k)}: {sub}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, list):
        if value:
            return None
        return "[]"
    if isinstance(value, tuple):
        subs = [_flat(v) for v in value]
        if any(s is None for s in subs):
            return None
        inner = ", ".join(s for s in subs if s is not None)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _render(messages: list[dict[str, Any]], headers: list[dict[str, Any]], source: str) -> str:
    lines = [
        '"""Kafka message schemas as plain data. GENERATED: do not edit by hand.',
        "",
        "Source: the JSON message specs in clients/src/main/resources/common/message/ of",
        f"{source}.",
        "Regenerate: python scripts/gen_kafka_schemas.py PATH_TO_KAFKA_CHECKOUT --source LABEL",
        "(the supported maximum version of each API is the table `_APIS` in that script).",
        "",
        "MESSAGES maps a message name to a dict: kind ('request' | 'response' | 'header'),",
        "api_key, versions (min, max) kept here, spec_versions (the spec's full range),",
        "flexible_min (first flexible version in the spec, open-ended; None: never flexible) and",
        "fields. A field is a dict: name (snake_case), kafka_name, type (a Kafka type name,",
        "'[]T' for arrays, a struct name for structs), versions (lo, hi) inclusive, and when",
        "present: nullable_versions, tagged_versions + tag, ignorable, default (the spec's",
        "text), flexible_versions (a per-field override, None: never flexible), fields (nested).",
        "Every version range is clipped to the maximum kept for its message.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        '__all__ = ["MESSAGES", "SOURCE"]',
        "",
        f"SOURCE = {json.dumps(source)}",
        "",
        "MESSAGES: dict[str, dict[str, Any]] = {",
    ]
    for msg in headers + messages:
        lines.append(f"    {json.dumps(msg['name'])}: {{")
        for k, v in msg.items():
            key = f"{json.dumps(k)}: "
            vflat = _flat(v)
            if vflat is not None and _fits(key + vflat, 8, ","):
                lines.append(f"        {key}{vflat},")
            else:
                lines.append(f"        {key}[")
                _emit_items(v, 12, lines)
                lines.append("        ],")
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kafka", type=Path, help="apache/kafka checkout or its message folder")
    parser.add_argument("--source", default=None, help="label for the header (repo + commit)")
    default_out = Path(__file__).resolve().parent.parent / "src/quorumdb/kafka/protocol/schemas.py"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    folder: Path = args.kafka
    if (folder / _MESSAGE_DIR).is_dir():
        folder = folder / _MESSAGE_DIR
    if not (folder / "RequestHeader.json").is_file():
        print(f"gen_kafka_schemas: no Kafka message specs under {args.kafka}", file=sys.stderr)
        return 2
    source = args.source or f"apache/kafka ({args.kafka})"
    try:
        messages = [
            _message(folder / f"{name}{kind}.json", max_version)
            for name, max_version in _APIS
            for kind in ("Request", "Response")
        ]
        headers = [_message(folder / f"{name}.json", max_v) for name, max_v in _HEADERS]
    except SpecError as e:
        print(f"gen_kafka_schemas: {e}", file=sys.stderr)
        return 1
    args.out.write_text(_render(messages, headers, source), encoding="utf-8")
    print(f"wrote {args.out} ({len(messages)} messages, {len(headers)} headers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
