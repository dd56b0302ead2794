"""A trace-driven token bucket in the sender: links shaped by replaying a bandwidth trace.

This machine's kernel has no ``netem`` qdisc, so links are shaped where the bytes are sent
(portable, and the default of issue 20). A :class:`ShapedLink` wraps the writing end of an
asyncio stream. Every message handed to :meth:`ShapedLink.send` is cut into chunks of at most
:data:`CHUNK_BYTES`; a chunk leaves when the link's :class:`TokenBucket` holds as many tokens
as it has bytes, tokens accruing at the trace's bandwidth of the moment, and is written to the
socket one propagation delay (the scenario's RTT / 2) later. Loopback adds only microseconds,
so what the receiver sees is the trace's capacity plus the propagation delay.

The bucket is the simulator's link model in token form: FIFO, starting empty, with a depth of
one chunk (so an idle link banks at most one chunk of credit: ``CHUNK_BYTES`` at 1 Mbit/s is
12 ms). The simulator's link has no credit at all; the difference is at most one chunk's
transmission time per message.

Trace time 0 is the run's *epoch* (a ``time.monotonic()`` value every role receives; on one
host ``CLOCK_MONOTONIC`` is shared by all processes), and the trace source is the one the
simulator would draw for the same scenario and seed (:mod:`edgerl.runtime.workload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

from edgerl.envs.sim.network import BYTES_PER_S_PER_MBPS, BandwidthSource

#: Bytes per shaped chunk: a TCP segment's payload on Ethernet (1500 B MTU - 40 B IPv4/TCP
#: headers - 12 B timestamp option = 1448 B; RFC 7323 section 3).
CHUNK_BYTES = 1448
#: A chunk due sooner than this is written at once instead of sleeping for it [s]: bounds the
#: wake-ups to about 1,000/s per link (asyncio's timer resolution is about 1 ms anyway).
SLEEP_MIN_S = 0.001


class TokenBucket:
    """Tokens (bytes) accruing at a bandwidth source's rate, capped at ``depth_bytes``.

    A pure object: time is passed in (trace seconds), so tests replay traces without sockets.

    Args:
        bandwidth: The trace (or constant) [Mbit/s over trace time].
        depth_bytes: Bucket depth; a message is sent in pieces of at most this size.
        start_s: Trace time at which the bucket starts (empty).
    """

    def __init__(
        self, bandwidth: BandwidthSource, depth_bytes: int = CHUNK_BYTES, start_s: float = 0.0
    ) -> None:
        if depth_bytes < 1:
            raise ValueError(f"TokenBucket.depth_bytes must be >= 1, got {depth_bytes}")
        self.bandwidth = bandwidth
        self.depth_bytes = depth_bytes
        self._t_s = start_s  # when ``_tokens`` was last brought up to date
        self._tokens = 0.0

    def _accrued(self, t0_s: float, t1_s: float) -> float:
        if t1_s <= t0_s:
            return 0.0
        return self.bandwidth.mean_mbps(t0_s, t1_s) * (t1_s - t0_s) * BYTES_PER_S_PER_MBPS

    def release_s(self, ready_s: float, nbytes: int) -> float:
        """When a chunk of ``nbytes`` that is ready at ``ready_s`` leaves; consumes its tokens.

        Chunks leave in FIFO order: a chunk is ready no earlier than the previous release.

        Raises:
            ValueError: ``nbytes`` exceeds the bucket's depth or is negative.
        """
        if not 0 <= nbytes <= self.depth_bytes:
            raise ValueError(f"chunk of {nbytes} B: must be 0..{self.depth_bytes} B (the depth)")
        now = max(ready_s, self._t_s)
        tokens = min(float(self.depth_bytes), self._tokens + self._accrued(self._t_s, now))
        if tokens >= nbytes:
            self._t_s, self._tokens = now, tokens - nbytes
            return now
        release = self.bandwidth.transfer_end_s(now, nbytes - tokens)
        self._t_s, self._tokens = release, 0.0
        return release


def chunks(data: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    """``data`` in pieces of at most ``size`` bytes (one empty piece for empty data)."""
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


class ShapedLink:
    """The sending end of a shaped link: token bucket, then propagation, then the socket.

    Args:
        writer: The asyncio stream to write to.
        bandwidth: The link's trace (trace time 0 = ``epoch_s``).
        one_way_delay_s: Propagation delay added to every chunk (the scenario's RTT / 2).
        epoch_s: The run's epoch on ``clock``.
        clock: Time source (``time.monotonic``).
    """

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        bandwidth: BandwidthSource,
        one_way_delay_s: float,
        epoch_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if one_way_delay_s < 0:
            raise ValueError(f"one_way_delay_s must be >= 0, got {one_way_delay_s}")
        self.writer = writer
        self.bandwidth = bandwidth
        self.delay_s = one_way_delay_s
        self.epoch_s = epoch_s
        self.clock = clock
        self.bucket = TokenBucket(bandwidth, CHUNK_BYTES, start_s=max(0.0, clock() - epoch_s))
        self.bytes_sent = 0
        self._pending: deque[tuple[float, int]] = deque()  # (release trace-s, bytes) in FIFO
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._pump())
        self.error: BaseException | None = None

    def now_s(self) -> float:
        """Trace time now [s]."""
        return self.clock() - self.epoch_s

    def send(self, data: bytes) -> float:
        """Queue ``data`` on the link; the trace time [s] its last byte reaches the receiver.

        Raises:
            ConnectionError: an earlier write on this link failed.
        """
        if self.error is not None:
            raise ConnectionError(f"shaped link is broken: {self.error}")
        now = self.now_s()
        release = now
        for piece in chunks(data):
            release = self.bucket.release_s(now, len(piece))
            self._pending.append((release, len(piece)))
            self._queue.put_nowait((release + self.delay_s, piece))
        self.bytes_sent += len(data)
        return release + self.delay_s

    def queued_bytes(self) -> int:
        """Bytes handed to the link and not yet released by the bucket (what the sender knows)."""
        now = self.now_s()
        while self._pending and self._pending[0][0] <= now:
            self._pending.popleft()
        return sum(n for _, n in self._pending)

    def mean_mbps(self, window_s: float) -> float:
        """The link's capacity over the past ``window_s`` [Mbit/s] (the bandwidth estimate)."""
        now = self.now_s()
        t0 = max(0.0, now - window_s)
        return self.bandwidth.mean_mbps(t0, now) if now > t0 else self.bandwidth.mbps_at(now)

    async def _pump(self) -> None:
        try:
            while True:
                due_s, piece = await self._queue.get()
                wait = due_s - self.now_s()
                if wait > SLEEP_MIN_S:
                    await asyncio.sleep(wait)
                self.writer.write(piece)
                if self._queue.empty():
                    await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            self.error = exc

    async def flush(self, timeout_s: float) -> None:
        """Wait until every queued chunk is written (at most ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while not self._queue.empty() and time.monotonic() < deadline and self.error is None:
            await asyncio.sleep(SLEEP_MIN_S)

    async def close(self) -> None:
        """Stop the pump (queued chunks are discarded) and close the stream."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
