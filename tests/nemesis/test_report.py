"""nemesis/report: the run report drawn from a run directory's files alone.

`data/register-run` is a real run's history, fault log and verdict (`quorumdb test`, register
workload under kill and pause, 10 s at 60 ops/s, seed 3), kept so the report can be tested on
real output without starting a cluster. Invalid runs are crafted, with their verdicts built by
the same code a run uses. Pages are parsed (html.parser, and xml.etree for the SVG) and every
in-page link is checked to land on an element.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from quorumdb.check import check_delivery, delivery_to_json, kafka_history_from_events
from quorumdb.nemesis.register import RegisterWorkload
from quorumdb.nemesis.report import write_report
from quorumdb.nemesis.run_dir import RunDirError
from quorumdb.nemesis.series import latency_buckets, operations, throughput

DATA = Path(__file__).parent / "data" / "register-run"
SVG = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUORUMDB = Path(sys.executable).parent / "quorumdb"
if not QUORUMDB.exists():
    QUORUMDB = Path(shutil.which("quorumdb") or "quorumdb")


class _Page(HTMLParser):
    """What the tests read from a page: ids, links, rows by class, images, banner, text."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []
        self.rows: list[tuple[str, list[str]]] = []  # (class, cell texts)
        self.banner = ""
        self.text: list[str] = []
        self._row: list[str] | None = None
        self._row_class = ""
        self._cell: list[str] | None = None
        self._in_banner = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a":
            self.links.append(a.get("href", ""))
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "tr":
            self._row, self._row_class = [], a.get("class", "")
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "p" and "banner" in a.get("class", ""):
            self._in_banner = True
            self.banner = a["class"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append((self._row_class, self._row))
            self._row = None
        elif tag == "p":
            self._in_banner = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_banner:
            self.banner += "|" + data


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _assert_links_land(page: _Page, run_dir: Path) -> None:
    for href in page.links:
        target, _, anchor = href.partition("#")
        if target:
            assert (run_dir / target).is_file(), href
        elif anchor:
            assert anchor in page.ids, f"link {href} lands nowhere"


def _svgs(path: Path) -> list[ET.Element]:
    text = path.read_text(encoding="utf-8")
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", text, flags=re.DOTALL)]


def _op_classes(svg: ET.Element) -> dict[int, set[str]]:
    return {
        int(g.attrib["data-invoke"]): set(g.attrib["class"].split())
        for g in svg.iter(f"{SVG}g")
        if "data-invoke" in g.attrib
    }


def _real_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(DATA, run_dir)
    return run_dir


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_real_run_gets_both_plots_and_a_page_with_its_verdict_and_faults(
    tmp_path: Path,
) -> None:
    run_dir = _real_run(tmp_path)
    assert write_report(run_dir) == run_dir / "report.html"
    for name in ("throughput.png", "latency.png"):
        assert _png_size(run_dir / name) == (1000, 400)
        assert (run_dir / name).stat().st_size > 10_000, "a plot with something drawn on it"
    page = _parse(run_dir / "report.html")
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert page.banner.startswith("banner valid|VALID|")
    assert verdict["summary"] in page.banner
    faults = [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines()]
    fault_rows = [cells for cls, cells in page.rows if cls == "fault"]
    assert [(r[1], r[2], r[3]) for r in fault_rows] == [
        (f["kind"], f["variant"], ", ".join(map(str, f["nodes"]))) for f in faults
    ]
    assert [float(r[5]) for r in fault_rows] == [f["start_s"] for f in faults]
    assert page.images == ["throughput.png", "latency.png"]
    assert "timeline.html" in page.links and (run_dir / "timeline.html").is_file()
    assert "None: the checker found the history valid." in page.text
    _assert_links_land(page, run_dir)


def test_the_op_counts_match_the_history(tmp_path: Path) -> None:
    run_dir = _real_run(tmp_path)
    write_report(run_dir)
    rows = {cells[0]: cells for _, cells in _parse(run_dir / "report.html").rows if cells}
    history = json.loads((run_dir / "history.json").read_text())
    for f in ("read", "write"):
        ok = sum(1 for e in history if e["type"] == "ok" and e["f"] == f)
        assert int(rows[f][1]) == ok


def test_the_page_is_the_same_when_drawn_again(tmp_path: Path) -> None:
    run_dir = _real_run(tmp_path)
    first = write_report(run_dir).read_text()
    timeline = (run_dir / "timeline.html").read_text()
    assert write_report(run_dir).read_text() == first
    assert (run_dir / "timeline.html").read_text() == timeline


def _event(process: int, type_: str, f: str, value: Any, t_ms: int, **more: Any) -> dict[str, Any]:
    return {"process": process, "type": type_, "f": f, **more, "value": value, "time": t_ms * 10**6}


def _write_run(
    run_dir: Path,
    events: list[dict[str, Any]],
    verdict: dict[str, Any],
    faults: list[dict[str, Any]] | None = None,
) -> None:
    run_dir.mkdir()
    (run_dir / "history.json").write_text(json.dumps(events))
    if faults is None:
        faults = [
            {
                "kind": "partition",
                "variant": "isolate",
                "nodes": [2],
                "amount": 0.0,
                "start_s": 0.5,
                "end_s": 1.5,
            }
        ]
    (run_dir / "faults.jsonl").write_text("".join(json.dumps(f) + "\n" for f in faults))
    (run_dir / "verdict.json").write_text(json.dumps(verdict))


# Process 3's read returns 1 after the write of 2 completed: stale (events #5 and #6).
STALE = [
    _event(1, "invoke", "write", 1, 0, key="x"),
    _event(1, "ok", "write", 1, 100, key="x"),
    _event(2, "invoke", "write", 2, 200, key="x"),
    _event(2, "ok", "write", 2, 300, key="x"),
    _event(3, "invoke", "read", None, 400, key="x"),
    _event(3, "ok", "read", 1, 500, key="x"),
    _event(1, "invoke", "write", 3, 1600, key="x"),
    _event(1, "ok", "write", 3, 1700, key="x"),
]


def _register_verdict(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The verdict exactly as a register run builds it."""
    workload = RegisterWorkload([], clients=1, keys=1, rate=1.0, seed=0)
    workload.history.events = events
    workload._final_read.update(workload.keys)  # as if its final reads had all succeeded
    v = workload.check()
    return {
        "valid": v.valid,
        "checker": v.checker,
        "summary": v.summary,
        "anomalies": v.anomalies,
        "details": v.details,
        "ops": workload.history.counts(),
        "options": {"workload": "register"},
    }


def test_an_invalid_register_run_shows_its_counterexample(tmp_path: Path) -> None:
    run_dir = tmp_path / "stale"
    _write_run(run_dir, STALE, _register_verdict(STALE))
    write_report(run_dir)
    page = _parse(run_dir / "report.html")
    assert page.banner.startswith("banner invalid|INVALID|")
    assert "anomaly-1" in page.ids and "anomaly-2" not in page.ids
    (culprit,) = [cells for cls, cells in page.rows if cls == "culprit"]
    assert culprit[:5] == ["3", "read x", "null", "ok", "1"]
    assert culprit[5] == "#5 .. #6"
    assert {"ev-5", "ev-6"} <= page.ids  # the cited events' rows
    assert "#ev-5" in page.links and "timeline.html#key-x" in page.links
    (embedded,) = _svgs(run_dir / "report.html")
    ops = _op_classes(embedded)
    assert "culprit" in ops[5] and "cx" in ops[5]
    assert "dim" in ops[7] and "cx" not in ops[1] | ops[7]
    (full,) = _svgs(run_dir / "timeline.html")
    assert _op_classes(full) == ops
    _assert_links_land(page, run_dir)


def test_a_kafka_finding_links_its_offsets_and_polls(tmp_path: Path) -> None:
    send = {"topic": "t", "partition": 0}
    events = []
    for n, value in enumerate("abc"):
        events.append(_event(1, "invoke", "send", {**send, "value": value}, 10 * n))
        events.append(_event(1, "ok", "send", {**send, "value": value, "offset": n}, 10 * n + 5))
    read = [{**send, "offset": 0, "value": "a"}, {**send, "offset": 2, "value": "c"}]
    events += [_event(2, "invoke", "poll", None, 40), _event(2, "ok", "poll", read, 45)]
    result = check_delivery(kafka_history_from_events(events))
    (finding,) = delivery_to_json(result)["partitions"][0]["findings"]  # type: ignore[index]
    assert finding["kind"] == "lost"
    anomaly = {
        **finding,
        "topic": "t",
        "partition": 0,
        "message": "b was lost",
        "ops": [events[e - 1] for e in finding["events"]],
    }
    verdict = {
        "valid": False,
        "checker": "kafka-delivery",
        "summary": "1 lost",
        "anomalies": [anomaly],
        "ops": {"ok": 4, "info": 0, "fail": 0},
    }
    run_dir = tmp_path / "kafka"
    _write_run(run_dir, events, verdict)
    write_report(run_dir)
    page = _parse(run_dir / "report.html")
    assert {"#off-t-0-0", "#off-t-0-1", "#off-t-0-2"} <= set(page.links)
    rows = {cells[1]: cells for cls, cells in page.rows if cells[:1] == ["t/0"]}
    assert rows["1"][2] == "#4 b" and rows["1"][3] == "none"  # acked at 1, never read
    assert rows["0"][3] == "#8 a" and rows["2"][3] == "#8 c"  # the poll that went over it
    assert {"ev-4", "ev-8"} <= page.ids
    _assert_links_land(page, run_dir)


def test_any_workload_history_gets_plots_and_counts_per_f(tmp_path: Path) -> None:
    events = [
        _event(7, "invoke", "transfer", {"from": 1, "to": 2}, 0),
        _event(7, "ok", "transfer", None, 20),
        _event(8, "invoke", "txn", [["r", 1, None]], 30),
        _event(8, "info", "txn", None, 1030),
        {"process": 9, "type": "invoke", "f": "audit"},  # no time, never completed
    ]
    verdict = {"valid": True, "checker": "bank", "summary": "conserved", "anomalies": []}
    run_dir = tmp_path / "bank"
    _write_run(run_dir, events, verdict)
    write_report(run_dir)
    assert (run_dir / "latency.png").read_bytes()[:8] == PNG_MAGIC
    assert not (run_dir / "timeline.html").exists()
    rows = {cells[0]: cells[1:5] for _, cells in _parse(run_dir / "report.html").rows if cells}
    assert rows["transfer"] == ["1", "0", "0", "0"]
    assert rows["txn"] == ["0", "1", "0", "0"]
    assert rows["audit"] == ["0", "0", "0", "1"]


def test_a_fault_that_took_the_leader_away_shows_its_failover_time(tmp_path: Path) -> None:
    events = [
        _event(1, "invoke", "write", 1, 600, key="x"),
        _event(1, "ok", "write", 1, 900, key="x"),
    ]
    faults = [
        {
            "kind": "kill",
            "variant": "leader",
            "nodes": [2],
            "leader": 2,
            "amount": 0.0,
            "start_s": 0.5,
            "end_s": 1.5,
        },
        {
            "kind": "clock",
            "variant": "offset",
            "nodes": [3],
            "leader": 2,
            "amount": 200.0,
            "start_s": 2.0,
            "end_s": 3.0,
        },
    ]
    run_dir = tmp_path / "failover"
    _write_run(run_dir, events, _register_verdict(events), faults)
    write_report(run_dir)
    rows = [cells for cls, cells in _parse(run_dir / "report.html").rows if cls == "fault"]
    assert [(r[1], r[8], r[9]) for r in rows] == [("kill", "2", "0.400"), ("clock", "2", "")]


def test_series_pair_invokes_with_completions_per_process() -> None:
    events = [
        _event(1, "invoke", "w", 1, 0),
        _event(2, "invoke", "r", None, 100),
        _event(1, "ok", "w", 1, 1200),
        _event(2, "fail", "r", None, 1300),
        _event(1, "invoke", "w", 2, 1400),
        _event(1, "ok", "w", 2, 1410),
    ]
    ops = operations(events)
    assert [(o.invoke_index, o.complete_index, o.outcome) for o in ops] == [
        (0, 2, "ok"),
        (1, 3, "fail"),
        (4, 5, "ok"),
    ]
    assert throughput(ops, 2) == {"ok": [0, 2], "info": [0, 0], "fail": [0, 1]}
    (first, second) = latency_buckets(ops)
    assert (first.second, first.count, first.p99_ms) == (0, 1, 1200.0)
    assert (second.second, second.count, second.p50_ms) == (1, 1, 10.0)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (None, "no such directory"),
        ({}, "is not a run directory (no verdict.json or history.json in it)"),
        ({"verdict.json": "{", "history.json": "[]"}, "verdict.json: not JSON"),
        ({"verdict.json": '{"valid": true}', "history.json": "{}"}, "not a JSON array"),
        (
            {"verdict.json": '{"valid": true}', "history.json": "[]", "faults.jsonl": "[1]\n"},
            "line 1 is not a fault",
        ),
    ],
)
def test_what_is_not_a_run_dir_is_one_error(
    tmp_path: Path, files: dict[str, str] | None, message: str
) -> None:
    run_dir = tmp_path / "d"
    if files is not None:
        run_dir.mkdir()
        for name, text in files.items():
            (run_dir / name).write_text(text)
    with pytest.raises(RunDirError, match=re.escape(message)):
        write_report(run_dir)


@pytest.mark.parametrize(
    ("verdict", "message"),
    [
        ({"anomalies": "x"}, "'anomalies' is not a list"),
        ({"anomalies": [3]}, "anomaly #1 is not an object"),
        ({"anomalies": [{"kind": "k", "ops": 3}]}, "anomaly #1: 'ops' is not a list of events"),
        ({"anomalies": [{"ops": [{}]}, {"ops": [1]}]}, "anomaly #2: 'ops' is not a list"),
        ({"ops": [1]}, "'ops' is not an object"),
        ({"options": "x"}, "'options' is not an object"),
        ({"details": 1}, "'details' is not an object"),
    ],
)
def test_a_malformed_verdict_is_one_error(
    tmp_path: Path, verdict: dict[str, Any], message: str
) -> None:
    run_dir = tmp_path / "d"
    run_dir.mkdir()
    (run_dir / "history.json").write_text("[]")
    (run_dir / "verdict.json").write_text(json.dumps({"valid": False, **verdict}))
    with pytest.raises(RunDirError, match=re.escape(f"verdict.json: {message}")):
        write_report(run_dir)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QUORUMDB), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_report_on_a_missing_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _cli("test", "report", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert done.stderr == f"quorumdb: error: {tmp_path / 'nope'}: no such directory\n"
    done = _cli("test", "report", str(tmp_path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "is not a run directory" in done.stderr


def test_cli_report_on_a_malformed_verdict_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text("[]")
    (tmp_path / "verdict.json").write_text('{"valid": true, "anomalies": [{"ops": 3}]}')
    done = _cli("test", "report", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"quorumdb: error: {tmp_path / 'verdict.json'}: "
        "anomaly #1: 'ops' is not a list of events (objects)\n"
    )


def test_cli_report_draws_a_run_again(tmp_path: Path) -> None:
    run_dir = _real_run(tmp_path)
    done = _cli("test", "report", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"report: {run_dir / 'report.html'}\n"
    assert _parse(run_dir / "report.html").banner.startswith("banner valid|")


def test_cli_run_options_with_a_subcommand_are_refused(tmp_path: Path) -> None:
    done = _cli("test", "--nodes", "5", "report", str(tmp_path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--nodes is an option of a test run, not of 'report'" in done.stderr
