"""The trace-driven token bucket against a synthetic trace (issue 20: within 5 %)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from edgerl.envs.sim.network import BYTES_PER_S_PER_MBPS, ConstantBandwidth
from edgerl.envs.traces import BandwidthTrace
from edgerl.runtime.shaper import CHUNK_BYTES, ShapedLink, TokenBucket

#: A synthetic trace with a 32x swing: 4, 0.5, 16 then 2 Mbit/s for 0.25 s each (loops).
SYNTH = BandwidthTrace(
    name="synthetic",
    family="test",
    times_s=np.array([0.0, 0.25, 0.5, 0.75]),
    mbps=np.array([4.0, 0.5, 16.0, 2.0]),
    duration_s=1.0,
)


def trace_bytes(t_s: float) -> float:
    """Bytes the trace can deliver from 0 to ``t_s``."""
    return SYNTH.mean_mbps(0.0, t_s) * t_s * BYTES_PER_S_PER_MBPS


def test_bucket_delivers_the_trace_when_backlogged() -> None:
    bucket = TokenBucket(SYNTH)
    releases = np.array([bucket.release_s(0.0, CHUNK_BYTES) for _ in range(2000)])
    delivered = np.arange(1, len(releases) + 1) * CHUNK_BYTES
    for t in np.arange(0.1, 2.01, 0.05):  # every 50 ms over two periods
        got = delivered[releases <= t].max(initial=0)
        assert got == pytest.approx(trace_bytes(t), rel=0.05, abs=CHUNK_BYTES), t


def test_bucket_idle_link_banks_at_most_one_chunk() -> None:
    bucket = TokenBucket(ConstantBandwidth(1.0))  # 125,000 B/s
    assert bucket.release_s(10.0, CHUNK_BYTES) == 10.0  # full after idling: one chunk at once
    second = bucket.release_s(10.0, CHUNK_BYTES)
    assert second == pytest.approx(10.0 + CHUNK_BYTES / 125_000)
    with pytest.raises(ValueError, match="the depth"):
        bucket.release_s(0.0, CHUNK_BYTES + 1)


def test_shaped_socket_delivers_the_trace_within_5_percent() -> None:
    """A real loopback socket behind the shaper: bytes received over time follow the trace."""
    delay_s = 0.02
    arrivals: list[tuple[float, int]] = []

    async def run() -> float:
        done = asyncio.Event()

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            total = 0
            while chunk := await reader.read(65536):
                total += len(chunk)
                arrivals.append((time.monotonic(), total))
            done.set()
            writer.close()

        server = await asyncio.start_server(sink, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        epoch = time.monotonic()
        link = ShapedLink(writer, SYNTH, delay_s, epoch)
        n_bytes = int(trace_bytes(1.5))  # one and a half periods, all queued at once
        link.send(bytes(n_bytes))
        await link.flush(timeout_s=10.0)
        writer.close()
        await asyncio.wait_for(done.wait(), 10.0)
        server.close()
        return epoch

    epoch = asyncio.run(run())
    times = np.array([a[0] - epoch - delay_s for a in arrivals])
    totals = np.array([a[1] for a in arrivals])
    for t in (0.25, 0.5, 0.75, 1.0, 1.25, 1.5):  # the end of every trace step
        got = totals[times <= t].max(initial=0)
        assert got == pytest.approx(trace_bytes(t), rel=0.05), (t, got, trace_bytes(t))
