"""Environment throughput benchmark: decisions per second, env vs the bare simulator.

Both loops run the same scenario, the same seeds and the same random masked plans in one
process (uniform over the feasible plans, or with ``device_share`` a training-like mix: that
share of decisions picks a plan that runs on the device alone, the others one that
offloads), one after the other, repeated and interleaved (``rounds``) so that background
load on a shared machine hits both alike; the ratio of the medians is what is compared.

- *env*: ``CollabInferenceEnv.step`` (Gymnasium adapter: observation, reward parts, info);
- *bare*: the SimPy simulator alone (``sim.next_decision()`` / ``sim.apply()``), the same
  events per request without the environment.

Memory: resident set size before and after ``soak_steps`` env steps (episodes reset as they
end), to show that memory stays flat over long runs.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from edgerl.experiments import runinfo
from edgerl.experiments.errors import OptionError


@dataclass(frozen=True)
class EnvBenchResult:
    scenario: str
    device_share: float | None
    steps_per_round: int
    rounds: int
    env_decisions_per_s: float
    bare_decisions_per_s: float
    ratio_env_over_bare: float
    env_rounds_per_s: list[float]
    bare_rounds_per_s: list[float]
    soak_steps: int
    rss_start_mb: float
    rss_end_mb: float
    rss_growth_mb: float
    machine: dict[str, Any]
    command: str
    git_commit: str
    finished_utc: str


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process(os.getpid()).memory_info().rss) / 2**20


def run_env_bench(
    scenario: str = "lte-dynamic",
    steps: int = 20_000,
    rounds: int = 3,
    soak_steps: int = 0,
    seed: int = 0,
    progress: bool = True,
    device_share: float | None = None,
) -> EnvBenchResult:
    from edgerl.envs.env import CollabInferenceEnv
    from edgerl.envs.sim.build import build_simulator

    env = CollabInferenceEnv(scenario)
    model = env.model
    feasible = np.flatnonzero(env.action_masks())
    rng = np.random.default_rng(seed)
    if device_share is None:
        plans = feasible[rng.integers(len(feasible), size=steps)].tolist()
    else:
        if not 0.0 <= device_share <= 1.0:
            raise OptionError(
                f"--device-share (device_share) must be in [0, 1], got {device_share}"
            )
        local = np.array([a for a in feasible if not env.plans[a].offloads], dtype=np.int64)
        remote = np.array([a for a in feasible if env.plans[a].offloads], dtype=np.int64)
        if not len(local) or not len(remote):
            raise OptionError(
                f"{scenario}: --device-share (device_share) needs feasible plans both on the "
                f"device alone "
                f"({len(local)}) and offloading ({len(remote)})"
            )
        on_device = rng.random(steps) < device_share
        plans = np.where(
            on_device,
            local[rng.integers(len(local), size=steps)],
            remote[rng.integers(len(remote), size=steps)],
        ).tolist()

    def env_loop() -> float:
        env.reset(seed=seed)
        step = env.step
        t0 = time.perf_counter()
        for a in plans:
            if step(a)[3]:
                env.reset()
        return steps / (time.perf_counter() - t0)

    def bare_loop() -> float:
        episode = 0
        sim = build_simulator(model, np.random.default_rng(seed))
        t0 = time.perf_counter()
        for a in plans:
            if sim.next_decision() is None:
                episode += 1
                sim = build_simulator(model, np.random.default_rng(seed + episode))
                sim.next_decision()
            sim.apply(a)
        return steps / (time.perf_counter() - t0)

    env_rates, bare_rates = [], []
    for r in range(rounds):
        env_rates.append(env_loop())
        bare_rates.append(bare_loop())
        if progress:
            print(
                f"round {r + 1}/{rounds}: env {env_rates[-1]:,.0f}/s  bare {bare_rates[-1]:,.0f}/s"
            )
    rss0 = rss1 = _rss_mb()
    if soak_steps:
        env.reset(seed=seed)
        rng = np.random.default_rng(seed + 1)
        block = 100_000
        done = 0
        while done < soak_steps:
            for a in feasible[rng.integers(len(feasible), size=min(block, soak_steps - done))]:
                if env.step(a)[3]:
                    env.reset()
            done += min(block, soak_steps - done)
            if progress:
                print(f"soak {done:,}/{soak_steps:,} steps, RSS {_rss_mb():.1f} MB")
        rss1 = _rss_mb()
    env_med, bare_med = statistics.median(env_rates), statistics.median(bare_rates)
    return EnvBenchResult(
        scenario=scenario,
        device_share=device_share,
        steps_per_round=steps,
        rounds=rounds,
        env_decisions_per_s=env_med,
        bare_decisions_per_s=bare_med,
        ratio_env_over_bare=env_med / bare_med,
        env_rounds_per_s=env_rates,
        bare_rounds_per_s=bare_rates,
        soak_steps=soak_steps,
        rss_start_mb=rss0,
        rss_end_mb=rss1,
        rss_growth_mb=rss1 - rss0,
        machine=runinfo.machine_info(),
        command=runinfo.command_line(),
        git_commit=runinfo.git_commit(),
        finished_utc=runinfo.now_iso(),
    )
