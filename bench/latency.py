"""Latency samples of a benchmark and their percentiles (nearest rank, in milliseconds)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def _nearest_rank(ordered: list[int], q: float) -> float:
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] / 1e6


@dataclass
class Latencies:
    """Samples in nanoseconds; summarised in milliseconds."""

    samples_ns: list[int] = field(default_factory=list)

    def add(self, ns: int) -> None:
        """Record one sample."""
        self.samples_ns.append(ns)

    def extend(self, other: Latencies) -> None:
        """Record every sample of another set."""
        self.samples_ns.extend(other.samples_ns)

    def __len__(self) -> int:
        return len(self.samples_ns)

    def summary(self) -> dict[str, float]:
        """p50, p95, p99 and max in milliseconds (NaN when there are no samples)."""
        if not self.samples_ns:
            return dict.fromkeys(("p50", "p95", "p99", "max"), math.nan)
        ordered = sorted(self.samples_ns)
        return {
            "p50": _nearest_rank(ordered, 50),
            "p95": _nearest_rank(ordered, 95),
            "p99": _nearest_rank(ordered, 99),
            "max": ordered[-1] / 1e6,
        }
