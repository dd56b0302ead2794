"""``edgerl bench runtime``: the edge server's throughput with batching off and on, side by side.

One process, one event loop: an :class:`~edgerl.runtime.servers.EdgeServer` on loopback and
an open-loop load generator that speaks the frame protocol as a device would (HELLO, then WORK
frames of raw uint8 inputs for an edge-only plan: every unit and the final exit on the edge).
The links are unshaped (a constant 10 Gbit/s downlink, no RTT) so that the edge's compute is
what is measured. For each configuration (batch size 1 = batching off; batch size B with a
window W = on) and each offered rate (Poisson arrivals, seeded), the generator runs
``duration_s`` seconds and records every request's latency from send to result.

Reported per configuration: the *goodput at the latency budget* = requests per second that
completed within ``budget_ms``, at the highest offered rate whose p95 latency stays within the
budget (0 if none), and the ratio on / off. Results depend on this machine's load; they are
measured in one run, side by side, never asserted in tests.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from edgerl.runtime.common import hello_meta
from edgerl.runtime.frames import DType, Frame, Kind, read_frame, tensor_frame, write_frame
from edgerl.runtime.segments import ModelStore, PlanSpec
from edgerl.runtime.servers import EdgeServer
from edgerl.runtime.workload import build_setup

#: Unshaped links for the benchmark: constant, far above any batch's output rate.
FAST_LINK = "{constant_mbps: 10000.0}"
P95 = 95


@dataclass
class RatePoint:
    """One offered rate of one configuration."""

    offered_per_s: float
    sent: int
    completed: int
    within_budget: int
    p50_ms: float
    p95_ms: float
    goodput_per_s: float


@dataclass
class BenchRuntimeResult:
    """``edgerl bench runtime`` output (JSON)."""

    scenario: str
    model: str
    variant: str
    budget_ms: float
    duration_s: float
    window_ms: float
    batch_on: int
    torch_threads: int
    seed: int
    points: dict[str, list[RatePoint]] = field(default_factory=dict)
    goodput_per_s: dict[str, float] = field(default_factory=dict)
    ratio_on_off: float | None = None  # None: batching off met the budget at no rate
    date: str = ""
    command: str = ""


async def _load(
    setup: Any, store: ModelStore, plan: PlanSpec, window_ms: float, rate_per_s: float,
    duration_s: float, budget_ms: float, seed: int,
) -> RatePoint:  # fmt: skip
    edge = EdgeServer(setup, store, None, window_ms=window_ms)
    server = await asyncio.start_server(edge.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hello = hello_meta("device", setup, time.monotonic(), None)
    await write_frame(writer, Frame(Kind.HELLO, 0, hello))
    await read_frame(reader, 10.0)
    rng = np.random.default_rng(seed)
    shape = store.spec.input_shape(plan.variant)
    x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    errors = 0

    async def receive() -> None:
        nonlocal errors
        while True:
            frame = await read_frame(reader, None)
            if frame is None:
                return
            t0 = sent_at.pop(frame.request_id, None)
            if t0 is None:
                continue
            if frame.kind == Kind.RESULT:
                latencies.append((time.monotonic() - t0) * 1e3)
            else:
                errors += 1

    rx = asyncio.get_running_loop().create_task(receive())
    meta = {"plan": plan.to_json()}
    start = time.monotonic()
    t, rid = 0.0, 0
    while True:
        t += float(rng.exponential(1.0 / rate_per_s))
        if t >= duration_s:
            break
        delay = start + t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        rid += 1
        sent_at[rid] = time.monotonic()
        await write_frame(writer, tensor_frame(Kind.WORK, rid, meta, x, DType.UINT8))
    deadline = time.monotonic() + budget_ms / 1e3 * 4 + 2.0
    while sent_at and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    rx.cancel()
    writer.close()
    server.close()
    lat = np.array(latencies) if latencies else np.array([np.inf])
    within = int((lat <= budget_ms).sum())
    return RatePoint(
        offered_per_s=rate_per_s,
        sent=rid,
        completed=len(latencies),
        within_budget=within,
        p50_ms=float(np.median(lat)),
        p95_ms=float(np.percentile(lat, P95)),
        goodput_per_s=within / duration_s,
    )


def bench_runtime(
    scenario: str = "edgent-rpi", overrides: tuple[str, ...] = (), variant: str = "fp32",
    rates_per_s: tuple[float, ...] = (50.0, 100.0, 200.0, 400.0), duration_s: float = 3.0,
    budget_ms: float = 100.0, batch_on: int = 8, window_ms: float = 10.0, seed: int = 0,
    threads: int = 1,
) -> BenchRuntimeResult:  # fmt: skip
    """Run the benchmark (see the module docstring)."""
    torch.set_num_threads(threads)
    links = (f"network.downlink={FAST_LINK}", "network.access_rtt_ms=0")
    setup = build_setup(scenario, (*overrides, *links), seed)
    store = ModelStore(setup.cfg.model.name)
    store.net(variant)
    n_exits = len(store.spec.exit_after)
    n_units = store.spec.exit_after[-1] + 1
    res = BenchRuntimeResult(scenario, store.spec.name, variant, budget_ms, duration_s,
                             window_ms, batch_on, threads, seed)  # fmt: skip
    for label, batch, window in (("off", 1, 0.0), ("on", batch_on, window_ms)):
        plan = PlanSpec(0, variant, n_exits - 1, n_units, 0, n_units, batch, "none")
        points = [
            asyncio.run(_load(setup, store, plan, window, r, duration_s, budget_ms, seed))
            for r in rates_per_s
        ]
        res.points[label] = points
        ok = [p.goodput_per_s for p in points if p.p95_ms <= budget_ms]
        res.goodput_per_s[label] = max(ok, default=0.0)
    off = res.goodput_per_s["off"]
    res.ratio_on_off = res.goodput_per_s["on"] / off if off > 0 else None
    return res
