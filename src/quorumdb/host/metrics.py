"""Prometheus text exposition: counters, gauges and fixed-bucket histograms, no dependencies.

Only what the node needs: `Histogram.observe(seconds)` on hot paths is a bisect and two
increments; rendering happens when /metrics is scraped.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

__all__ = ["Histogram", "render"]

LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile `q` (0 when empty)."""
        if not self.count:
            return 0.0
        target = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= target:
                return self.bounds[i] if i < len(self.bounds) else float("inf")
        return float("inf")

    def lines(self, name: str, labels: str = "") -> Iterable[str]:
        sep = "," if labels else ""
        cum = 0
        for bound, c in zip(self.bounds, self.counts, strict=False):
            cum += c
            yield f'{name}_bucket{{{labels}{sep}le="{bound}"}} {cum}'
        yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}'
        lab = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{lab} {self.sum:.6f}"
        yield f"{name}_count{lab} {self.count}"


def render(
    gauges: Iterable[tuple[str, str, str, float]],
    histograms: Iterable[tuple[str, str, str, Histogram]],
) -> str:
    """`gauges`/`histograms`: (name, help, labels, value). Counters are gauges named `_total`."""
    out: list[str] = []
    seen: set[str] = set()
    for name, help_text, labels, value in gauges:
        if name not in seen:
            seen.add(name)
            kind = "counter" if name.endswith("_total") else "gauge"
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
        lab = f"{{{labels}}}" if labels else ""
        out.append(f"{name}{lab} {value:g}")
    for name, help_text, labels, hist in histograms:
        if name not in seen:
            seen.add(name)
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} histogram")
        out.extend(hist.lines(name, labels))
    return "\n".join(out) + "\n"
