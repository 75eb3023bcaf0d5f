"""CPU seconds a process tree used between two samples, to show which side of a benchmark is busy."""

from __future__ import annotations

import asyncio
import contextlib
import time

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
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def sample(self) -> dict[int, float]:
        """Per-process CPU seconds right now."""
        if self.pid is None:
            return {}
        out: dict[int, float] = {}
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
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
