"""How much longer a segment takes as a runtime runs it than its per-unit profile says.

Times the device-only plan of B-AlexNet (fp32, all 7 units + the final head) on this machine,
one thread, pinned to core 0: its profiled time (sum of ``cpu-epyc-1t`` unit medians), the
chained segment back to back, and with 100 ms idle gaps between calls (as requests arrive at
10/s), directly and through a one-thread pool (as the runtime's device does). README, Runtime
("What the misses were") quotes its output of 2026-12-02.

    .venv/bin/python experiments/examples/segment_cold_probe.py
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from edgerl.runtime.segments import ModelStore, PlanSpec, run_segment
from edgerl.runtime.workload import build_setup

SETS = [
    "model.variants=[fp32]",
    "action_menu.tiers=[device,edge,cloud]",
    "devices.hardware=cpu-epyc-1t",
    "edge.hardware=cpu-epyc-1t",
    "cloud.hardware=cpu-epyc-1t",
    "devices.active_power_w=5.4",
]


def timed(fn: Callable[[], object], n: int, gap_s: float) -> str:
    out = []
    for _ in range(n):
        if gap_s:
            time.sleep(gap_s)
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return f"median {statistics.median(out):.2f} ms, p95 {np.percentile(out, 95):.2f} ms"


def main() -> None:
    torch.set_num_threads(1)
    os.sched_setaffinity(0, {0})
    setup = build_setup("edgent-rpi", SETS, 0)
    on_device = [p for p in setup.model.plans if p.cut_edge == p.n_units and p.threshold is None]
    plan = max(on_device, key=lambda p: p.exit_index)  # the whole network, final exit
    print(f"{plan.name}: profiled {plan.device_s * 1e3:.2f} ms")
    store = ModelStore(setup.cfg.model.name)
    store.net(plan.variant)
    spec = PlanSpec.from_plan(plan)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (1, 3, 32, 32), np.uint8))

    def direct() -> object:
        return run_segment(store, spec, "device", x)

    for _ in range(20):
        direct()
    pool = ThreadPoolExecutor(1)

    def pooled() -> object:
        return pool.submit(run_segment, store, spec, "device", x).result()

    print("back to back:          ", timed(direct, 200, 0.0))
    print("100 ms gaps:           ", timed(direct, 40, 0.1))
    print("pool, back to back:    ", timed(pooled, 200, 0.0))
    print("pool, 100 ms gaps:     ", timed(pooled, 40, 0.1))
    pool.shutdown()


if __name__ == "__main__":
    main()
