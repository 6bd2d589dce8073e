"""check/timeline_html: per-key lanes with the counterexample outlined and the linearizable
prefix closed by a line, read back by parsing the page and its SVG (not by substring)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

from quorumdb.check import check_linearizable, history_from_events
from quorumdb.check.timeline_html import (
    KEYS_MAX,
    LANES_MAX,
    OPS_MAX,
    KeyMarks,
    key_anchor,
    marks_from_result,
    timeline_page,
)

SVG = "{http://www.w3.org/2000/svg}"
QUORUMDB = Path(sys.executable).parent / "quorumdb"
if not QUORUMDB.exists():
    QUORUMDB = Path(shutil.which("quorumdb") or "quorumdb")


def _ev(
    process: int, type_: str, f: str, value: object, t: int, *, key: str = "x"
) -> dict[str, object]:
    return {"process": process, "type": type_, "f": f, "key": key, "value": value, "time": t}


# Process 3's read returns 1 after the write of 2 completed: a stale read (events #5..#6).
STALE = [
    _ev(1, "invoke", "write", 1, 0),
    _ev(1, "ok", "write", 1, 10),
    _ev(2, "invoke", "write", 2, 20),
    _ev(2, "ok", "write", 2, 30),
    _ev(3, "invoke", "read", None, 40),
    _ev(3, "ok", "read", 1, 50),
    _ev(1, "invoke", "write", 3, 60),
    _ev(1, "ok", "write", 3, 70),
    _ev(4, "invoke", "read", None, 80, key="y"),
    _ev(4, "ok", "read", None, 90, key="y"),
]


def _svgs(page: str) -> dict[str, ET.Element]:
    """Each key's SVG, parsed as XML, by the key it is drawn for."""
    out = {}
    for text in re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL):
        svg = ET.fromstring(text)
        out[svg.attrib["data-key"]] = svg
    return out


def _ops(svg: ET.Element) -> dict[int, ET.Element]:
    """Operation groups by invoke event number."""
    return {
        int(g.attrib["data-invoke"]): g
        for g in svg.iter(f"{SVG}g")
        if "op" in g.attrib.get("class", "").split()
    }


def _with_class(svg: ET.Element, cls: str) -> set[int]:
    return {n for n, g in _ops(svg).items() if cls in g.attrib["class"].split()}


class _Sections(HTMLParser):
    """Ids of the page's key sections, and its note paragraphs, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.notes: list[str] = []
        self._in_note = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("class") == "key":
            self.ids.append(str(a["id"]))
        self._in_note = tag == "p" and a.get("class") == "note"

    def handle_data(self, data: str) -> None:
        if self._in_note:
            self.notes.append(data)
            self._in_note = False


def _sections(page: str) -> _Sections:
    parser = _Sections()
    parser.feed(page)
    return parser


def _stale_page() -> tuple[str, KeyMarks]:
    history = history_from_events(STALE)
    result = check_linearizable(history)
    marks = marks_from_result(result)
    return timeline_page(history, marks, title="t", summary="s"), marks["x"]


def test_the_counterexample_is_outlined_and_later_operations_dimmed() -> None:
    page, marks = _stale_page()
    svg = _svgs(page)["x"]
    assert set(_ops(svg)) == {1, 3, 5, 7}
    assert _with_class(svg, "cx") == {i + 1 for i in marks.window}
    assert 5 in _with_class(svg, "cx")
    assert _with_class(svg, "culprit") == {5}
    # The culprit's completion (#6) is the first no order explains: the prefix ends at #5.
    assert marks.linearizable_through == 4
    assert _with_class(svg, "dim") == {7}
    assert _ops(svg)[7].attrib["opacity"] == "0.35"
    lanes = [t.text for t in svg.iter(f"{SVG}text") if (t.text or "").startswith("process")]
    assert lanes == ["process 1", "process 2", "process 3"]


def test_the_prefix_line_falls_inside_the_operation_that_cannot_be_placed() -> None:
    page, _ = _stale_page()
    svg = _svgs(page)["x"]
    (prefix,) = [g for g in svg.iter(f"{SVG}g") if g.attrib.get("class") == "linearizable-through"]
    assert prefix.attrib["data-event"] == "5"
    line = prefix.find(f"{SVG}line")
    assert line is not None
    rect = _ops(svg)[5].find(f"{SVG}rect")
    assert rect is not None
    x, left, width = int(line.attrib["x1"]), int(rect.attrib["x"]), int(rect.attrib["width"])
    assert left < x < left + width
    title = _ops(svg)[5].find(f"{SVG}title")
    assert title is not None and title.text is not None
    assert title.text.splitlines()[0] == "process 3: read 1 -> ok"
    assert "events #5 .. #6" in title.text and "no order" in title.text


def test_failing_keys_come_first_and_unmarked_keys_have_no_marks() -> None:
    page, _ = _stale_page()
    assert _sections(page).ids == [key_anchor("x"), key_anchor("y")]
    y = _svgs(page)["y"]
    assert _with_class(y, "cx") == set() and _with_class(y, "dim") == set()
    assert not [g for g in y.iter(f"{SVG}g") if g.attrib.get("class") == "linearizable-through"]


def test_the_page_is_deterministic() -> None:
    assert _stale_page()[0] == _stale_page()[0]


def test_key_anchors_are_plain_and_distinct() -> None:
    keys = ["a b", "a_b", "é", "_e9_", "x"]
    anchors = [key_anchor(k) for k in keys]
    assert len(set(anchors)) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", a) for a in anchors)


def test_a_large_key_is_cut_to_a_window_with_a_note() -> None:
    events = []
    for n in range(1000):  # sequential writes, each from its own process: 1000 lanes
        events += [_ev(n, "invoke", "write", n, 2 * n), _ev(n, "ok", "write", n, 2 * n + 1)]
    history = history_from_events(events)
    page = timeline_page(history, marks_from_result(check_linearizable(history)), title="big")
    svg = _svgs(page)["x"]
    assert len(_ops(svg)) == LANES_MAX  # one op per process, and lanes are capped
    notes = _sections(page).notes
    assert f"Showing operations 1..{OPS_MAX} of 1000 on this key (in invoke order)." in notes
    assert any(n.startswith(f"Showing {LANES_MAX} of {OPS_MAX} processes") for n in notes)


def test_many_keys_are_cut_with_a_note() -> None:
    events = []
    for n in range(KEYS_MAX + 1):
        events += [
            _ev(0, "invoke", "write", n, 2 * n, key=f"k{n:03}"),
            _ev(0, "ok", "write", n, 2 * n + 1, key=f"k{n:03}"),
        ]
    history = history_from_events(events)
    page = timeline_page(history, {}, title="many")
    assert len(_sections(page).ids) == KEYS_MAX
    assert f"Showing {KEYS_MAX} of {KEYS_MAX + 1} keys" in " ".join(_sections(page).notes)


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QUORUMDB), "check", "linearizable", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_html_is_written_and_the_exit_status_kept(tmp_path: Path) -> None:
    history = tmp_path / "h.json"
    history.write_text(json.dumps(STALE), encoding="utf-8")
    out = tmp_path / "t.html"
    done = _check(str(history), "--html", str(out), "--format", "json")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["verdict"] == "not linearizable"
    assert _with_class(_svgs(out.read_text(encoding="utf-8"))["x"], "culprit") == {5}

    history.write_text(json.dumps(STALE[:4]), encoding="utf-8")
    done = _check(str(history), "--html", str(out))
    assert done.returncode == 0, done.stderr
    assert _with_class(_svgs(out.read_text(encoding="utf-8"))["x"], "cx") == set()


def test_cli_html_to_an_unwritable_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    history = tmp_path / "h.json"
    history.write_text(json.dumps(STALE), encoding="utf-8")
    done = _check(str(history), "--html", str(tmp_path / "no" / "such" / "t.html"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot write" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_operation_that_never_completed_runs_to_the_edge() -> None:
    events = [
        _ev(1, "invoke", "write", 1, 0),
        _ev(2, "invoke", "read", None, 5),
        _ev(2, "ok", "read", None, 9),
    ]
    history = history_from_events(events)
    svg = _svgs(timeline_page(history, marks_from_result(check_linearizable(history)), title="t"))
    ops = _ops(svg["x"])
    pending_rect, read_rect = ops[1].find(f"{SVG}rect"), ops[2].find(f"{SVG}rect")
    assert pending_rect is not None and read_rect is not None
    pending_end = int(pending_rect.attrib["x"]) + int(pending_rect.attrib["width"])
    assert pending_end > int(read_rect.attrib["x"]) + int(read_rect.attrib["width"])
    assert pending_rect.attrib["stroke-dasharray"] == "3 2"
    assert {"op", "op-info"} <= set(ops[1].attrib["class"].split())
    title = ops[1].find(f"{SVG}title")
    assert title is not None and "never completed" in (title.text or "")
