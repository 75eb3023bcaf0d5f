"""CPU seconds a process tree used between two samples, to show which side of a benchmark is busy."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import psutil


def listener_pid(port: int) -> int | None:
    """The process listening on a local TCP port (None if unknown or not visible to us)."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    return None


class TreeCpu:
    """CPU seconds (user + system) of a process and its descendants.

    Processes that exit between two samples take their CPU time with them; pooled
    connections and long-lived children, which is what the benchmarks measure, stay.
    `skip(pid, command line)` leaves out descendants (say, a shared server's other clients).
    """

    def __init__(self, pid: int | None, skip: Callable[[int, str], bool] | None = None) -> None:
        self.pid = pid
        self.skip = skip

    def sample(self) -> dict[int, float]:
        """Per-process CPU seconds right now."""
        if self.pid is None:
            return {}
        out: dict[int, float] = {}
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    if proc.pid != self.pid and self.skip and self.skip(proc.pid, " ".join(proc.cmdline())):
                        continue
                    times = proc.cpu_times()
                    out[proc.pid] = times.user + times.system
        return out

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> float:
        """CPU seconds used between two samples."""
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def machine_busy() -> float:
    """CPU seconds every core of this machine spent not idle, since boot."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


async def wait_quiet(max_cores: float, timeout: float, window: float = 1.0) -> float:
    """Wait (up to timeout) until the machine was nearly idle for a window; returns the load last seen."""
    deadline = time.monotonic() + timeout
    while True:
        before = machine_busy()
        await asyncio.sleep(window)
        cores = (machine_busy() - before) / window
        if cores <= max_cores or time.monotonic() > deadline:
            return cores


def every_process() -> dict[int, tuple[str, float]]:
    """Command line (shortened) and CPU seconds of every process we can see."""
    out: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["cmdline", "name", "cpu_times"]):
        times = proc.info.get("cpu_times")
        if times is None:
            continue
        label = " ".join(proc.info.get("cmdline") or []) or proc.info.get("name") or "?"
        out[proc.pid] = (label[:90], times.user + times.system)
    return out


def busiest_others(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], ours: set[int], count: int = 3
) -> list[tuple[str, float]]:
    """The processes outside `ours` that used the most CPU seconds between two samples."""
    used = [(label, cpu - before.get(pid, (label, 0.0))[1]) for pid, (label, cpu) in after.items() if pid not in ours]
    return sorted((u for u in used if u[1] > 0), key=lambda u: -u[1])[:count]
