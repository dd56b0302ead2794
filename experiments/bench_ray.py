"""``edgerl bench ray``: what Ray buys on this machine, side by side in one run.

1. Ray's start-up and shutdown with no work (a local Ray, as every ``--ray`` command starts
   it), median of a few.
2. The same sweep spec twice: one trial at a time (a local Ray with one CPU) and as many
   trials at once as the machine has cores (one CPU each); wall times and their ratio.
3. ``bench headroom`` of one scenario serially and with ``--ray`` (the evaluation episodes
   as Ray tasks), after one untimed best-fixed search that both then read from its cache, so
   both time the episodes (the oracle being the long pole); wall times, ratio, and whether
   the two give the same utilities (they must).

Every ratio is serial / parallel from this one run (the machines are shared and noisy).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Issue 22's target for both ratios on two cores.
TARGET_RATIO = 1.6


@dataclass
class RayScaling:
    spec: str
    scenario: str
    eval_seeds: list[int]
    cpus: int
    ray_startup_s: list[float] = field(default_factory=list)
    ray_startup_median_s: float = float("nan")
    sweep_serial_s: float = float("nan")
    sweep_parallel_s: float = float("nan")
    sweep_trials: int = 0
    sweep_ratio: float = float("nan")
    headroom_serial_s: float = float("nan")
    headroom_ray_s: float = float("nan")
    headroom_ratio: float = float("nan")
    headroom_equal: bool = False
    headroom_serial: dict[str, float] = field(default_factory=dict)
    headroom_ray: dict[str, float] = field(default_factory=dict)
    target_ratio: float = TARGET_RATIO
    method: str = __doc__ or ""
    date: str = ""
    command: str = ""


def _startup_s() -> float:
    from edgerl.experiments.ray_session import ray_session

    t0 = time.perf_counter()
    with ray_session(None, None):
        pass
    return time.perf_counter() - t0


def _sweep_s(spec: Path, out: Path, num_cpus: int) -> tuple[float, int]:
    from edgerl.experiments.sweep import SweepConfig, run_sweep

    t0 = time.perf_counter()
    res = run_sweep(SweepConfig(spec=spec, out=out, num_cpus=num_cpus, verbose=0))
    return time.perf_counter() - t0, len(res.rows)


def _headroom(scenario: str, seeds: tuple[int, ...], cache: Path, ray: bool) -> tuple[float, Any]:
    from edgerl.experiments.headroom import HeadroomConfig, measure_headroom

    cfg = HeadroomConfig(scenarios=(scenario,), eval_seeds=seeds, cache_dir=cache, ray=ray)
    t0 = time.perf_counter()
    entry = measure_headroom(cfg, scenario)
    return time.perf_counter() - t0, entry


def bench_ray(
    spec: Path, scenario: str, eval_seeds: tuple[int, ...], startups: int = 3
) -> RayScaling:
    """Run the three measurements (module docstring)."""
    from edgerl.agents.best_fixed import SearchConfig, search_best_fixed
    from edgerl.envs.sim.build import scenario_model

    cpus = len(os.sched_getaffinity(0))
    res = RayScaling(str(spec), scenario, list(eval_seeds), cpus)
    res.ray_startup_s = [_startup_s() for _ in range(startups)]
    res.ray_startup_median_s = statistics.median(res.ray_startup_s)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        res.sweep_serial_s, res.sweep_trials = _sweep_s(spec, root / "serial", 1)
        res.sweep_parallel_s, _ = _sweep_s(spec, root / "parallel", cpus)
        res.sweep_ratio = res.sweep_serial_s / res.sweep_parallel_s
        cache = root / "cache"
        search_best_fixed(scenario_model(scenario), SearchConfig(), cache)  # untimed, shared
        res.headroom_serial_s, serial = _headroom(scenario, eval_seeds, cache, ray=False)
        res.headroom_ray_s, par = _headroom(scenario, eval_seeds, cache, ray=True)
    res.headroom_ratio = res.headroom_serial_s / res.headroom_ray_s
    keys = ("utility_best_fixed", "utility_oracle", "headroom")
    res.headroom_serial = {k: float(serial[k]) for k in keys}
    res.headroom_ray = {k: float(par[k]) for k in keys}
    res.headroom_equal = res.headroom_serial == res.headroom_ray
    return res
