"""Compute servers with known service times.

A server queue is FIFO and the service time of each job is known when it is enqueued (it
comes from the profiles), so start and end times are computed exactly at enqueue time. The
requesting process then waits with a single ``env.timeout``. This is equivalent to a SimPy
``Resource`` with ``with res.request() as req: yield req`` for FIFO service, at a fraction of
the events.
"""

from __future__ import annotations

import heapq
from collections import deque


class FifoServer:
    """One server (a device CPU)."""

    __slots__ = ("busy_s", "busy_until_s", "jobs")

    def __init__(self) -> None:
        self.busy_until_s = 0.0
        self.busy_s = 0.0
        self.jobs = 0

    def schedule(self, now_s: float, service_s: float) -> tuple[float, float]:
        start = now_s if now_s > self.busy_until_s else self.busy_until_s
        self.busy_until_s = start + service_s
        self.busy_s += service_s
        self.jobs += 1
        return start, self.busy_until_s

    def backlog_s(self, now_s: float) -> float:
        return self.busy_until_s - now_s if self.busy_until_s > now_s else 0.0


class MultiServer:
    """``k`` identical servers fed by one FIFO queue (edge GPUs, cloud servers).

    FIFO assignment to the earliest free server makes start times non-decreasing, so the jobs
    still waiting at time t are a suffix of the scheduled ones (``waiting(now)``).
    """

    __slots__ = ("_free_s", "_starts", "_waiting", "busy_s", "jobs")

    def __init__(self, workers: int) -> None:
        self._free_s = [0.0] * workers
        self._starts: deque[tuple[float, int]] = deque()  # (start time, jobs in it)
        self._waiting = 0  # jobs in _starts
        self.busy_s = 0.0
        self.jobs = 0

    def schedule(self, now_s: float, service_s: float, n_jobs: int = 1) -> tuple[float, float]:
        free = self._free_s[0]
        start = now_s if now_s > free else free
        end = start + service_s
        heapq.heapreplace(self._free_s, end)
        if start > now_s:
            self._starts.append((start, n_jobs))
            self._waiting += n_jobs
        self.busy_s += service_s
        self.jobs += n_jobs
        return start, end

    def copy(self) -> MultiServer:
        """An independent copy (the what-if replay schedules on it)."""
        c = MultiServer.__new__(MultiServer)
        c._free_s = list(self._free_s)
        c._starts = deque(self._starts)
        c._waiting = self._waiting
        c.busy_s, c.jobs = self.busy_s, self.jobs
        return c

    def waiting(self, now_s: float) -> int:
        """Jobs enqueued but not yet started at ``now_s``."""
        starts = self._starts
        while starts and starts[0][0] <= now_s:
            self._waiting -= starts.popleft()[1]
        return self._waiting

    def free_at_s(self) -> float:
        """When the earliest server is free (the start of the next job enqueued now)."""
        return self._free_s[0]

    def backlog_s(self, now_s: float) -> float:
        """Time until the earliest server is free."""
        free = self._free_s[0]
        return free - now_s if free > now_s else 0.0
