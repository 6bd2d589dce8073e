"""The run's two plots, throughput and latency over time, with the fault windows shaded.

Drawn with matplotlib's object API (`Figure`, no pyplot): no global figure state and no
display, so it renders the same in CI, in a thread or over ssh; PNGs come from the Agg
renderer. Faults share one colour per kind on both plots, and each window is labelled with
its variant and nodes, so a dip in throughput or a latency spike can be read against the
fault that caused it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from quorumdb.nemesis.series import OUTCOMES, Op, latency_buckets, throughput

__all__ = ["fault_colour", "fault_label", "plot_latency", "plot_throughput"]

_KIND_COLOURS = {
    "kill": "#e377c2",
    "pause": "#17becf",
    "partition": "#bcbd22",
    "clock": "#8c564b",
    "disk": "#7f7f7f",
}
_SPARE_COLOURS = ("#9467bd", "#1f77b4", "#aec7e8", "#c49c94", "#dbdb8d")
_OUTCOME_COLOURS = {"ok": "#2ca02c", "info": "#ff7f0e", "fail": "#d62728"}
_SIZE_IN = (10.0, 4.0)
_DPI = 100
_LATENCY_FLOOR_MS = 0.01  # a log axis has no zero


def fault_colour(kind: str, kinds: Sequence[str] = ()) -> str:
    """The colour of a fault kind; unknown kinds get spare colours in sorted order."""
    if kind in _KIND_COLOURS:
        return _KIND_COLOURS[kind]
    unknown = sorted({k for k in kinds if k not in _KIND_COLOURS} | {kind})
    return _SPARE_COLOURS[unknown.index(kind) % len(_SPARE_COLOURS)]


def fault_label(fault: dict[str, Any]) -> str:
    """``kill leader n2``: the kind, the variant and the nodes of one fault."""
    nodes = fault.get("nodes") or []
    where = "n" + ",".join(str(n) for n in nodes) if nodes else ""
    parts = [str(fault.get("kind", "?")), str(fault.get("variant", "")), where]
    return " ".join(p for p in parts if p)


def plot_throughput(
    ops: Sequence[Op], faults: Sequence[dict[str, Any]], seconds: int, out: Path
) -> None:
    """Completions per second, stacked by outcome, written as a PNG to `out`."""
    fig = Figure(figsize=_SIZE_IN, dpi=_DPI)
    ax = fig.add_subplot()
    counts = throughput(ops, seconds)
    x = [s + 0.5 for s in range(seconds)]
    bottom = [0] * seconds
    for outcome in OUTCOMES:
        ax.bar(
            x,
            counts[outcome],
            width=0.9,
            bottom=bottom,
            label=outcome,
            color=_OUTCOME_COLOURS[outcome],
            zorder=2,
        )
        bottom = [b + c for b, c in zip(bottom, counts[outcome], strict=True)]
    ax.set_ylim(0, max([*bottom, 1]) * 1.4)  # headroom for the fault labels
    ax.set_ylabel("operations completed per second")
    ax.set_title("Throughput by outcome")
    _finish(ax, faults, seconds)
    fig.tight_layout()
    fig.savefig(out, format="png")


def plot_latency(
    ops: Sequence[Op], faults: Sequence[dict[str, Any]], seconds: int, out: Path
) -> None:
    """p50/p95/p99 latency of ok operations per second (log scale), info ones as crosses."""
    fig = Figure(figsize=_SIZE_IN, dpi=_DPI)
    ax = fig.add_subplot()
    buckets = latency_buckets(ops)
    x = [b.second + 0.5 for b in buckets]
    for name, values, style, colour in (
        ("p50", [b.p50_ms for b in buckets], "-", "#333333"),
        ("p95", [b.p95_ms for b in buckets], "--", "#1f77b4"),
        ("p99", [b.p99_ms for b in buckets], ":", "#7b1fa2"),
    ):
        ax.plot(
            x,
            [max(v, _LATENCY_FLOOR_MS) for v in values],
            style,
            marker=".",
            color=colour,
            label=f"{name} (ok)",
            zorder=3,
        )
    for outcome in ("info", "fail"):
        points = [
            (op.invoke_ns / 1e9, max(op.latency_ms or 0.0, _LATENCY_FLOOR_MS))
            for op in ops
            if op.outcome == outcome and op.invoke_ns is not None and op.latency_ms is not None
        ]
        if points:
            ax.scatter(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="x",
                s=18,
                color=_OUTCOME_COLOURS[outcome],
                label=f"{outcome} ops",
                zorder=3,
            )
    if not buckets:
        ax.text(0.5, 0.5, "no ok operation with times", transform=ax.transAxes, ha="center")
    else:
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 10)  # a decade of headroom for the fault labels
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency per second of invoke time")
    _finish(ax, faults, seconds)
    fig.tight_layout()
    fig.savefig(out, format="png")


def _finish(ax: Axes, faults: Sequence[dict[str, Any]], seconds: int) -> None:
    """Shade and label the fault windows, then the x axis and one legend for everything."""
    kinds = [str(f.get("kind", "?")) for f in faults]
    for fault, kind in zip(faults, kinds, strict=True):
        start, end = float(fault["start_s"]), float(fault["end_s"])
        ax.axvspan(start, end, color=fault_colour(kind, kinds), alpha=0.25, linewidth=0, zorder=0)
        ax.text(
            start,
            0.98,
            fault_label(fault),
            transform=ax.get_xaxis_transform(),
            rotation=90,
            va="top",
            ha="left",
            fontsize=7,
            color="#333333",
            zorder=4,
        )
    handles, labels = ax.get_legend_handles_labels()
    for kind in dict.fromkeys(kinds):
        handles.append(Patch(color=fault_colour(kind, kinds), alpha=0.35))
        labels.append(f"fault: {kind}")
    ax.set_xlim(0, seconds)
    ax.set_xlabel("seconds since the workload started")
    ax.grid(alpha=0.3, zorder=1)
    ax.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )
