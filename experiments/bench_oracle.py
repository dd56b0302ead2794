"""Oracle cost benchmark: the hindsight oracle's planning time by how its forks are made.

The oracle (:mod:`edgerl.agents.oracle`) forks the simulator once per candidate plan and
window, so its cost follows the cost of ``fork()``, which grows with the forking process. One
run plans the same episode (scenario, seed, window) three ways and checks that every way gives
the same schedule:

- ``lean``: in this process before torch is imported (what ``edgerl bench headroom`` does);
- ``torch``: in this process after ``import torch`` (what ``edgerl bench agents`` paid before
  the oracle planned in a spawned interpreter);
- ``isolated``: torch loaded here, planned in a freshly spawned interpreter (the oracle's
  default when torch is loaded).

``lean`` must run before torch is imported, so it runs once, first; the two others are
repeated ``rounds`` times, interleaved, and their medians compared (the machine is shared).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgerl.experiments import runinfo
from edgerl.experiments.errors import check_positive

TORCH_MODES = ("torch", "isolated")


@dataclass(frozen=True)
class OracleBenchResult:
    scenario: str
    horizon_s: float
    window_s: float
    seed: int
    rounds: int
    candidates: int
    windows: int
    wall_s: dict[str, list[float]]
    median_wall_s: dict[str, float]
    speedup_vs_torch: dict[str, float]
    same_schedule: bool
    git_commit: str
    created: str
    machine: dict[str, Any] = field(default_factory=dict)


def run_oracle_bench(
    scenario: str = "camera-lte",
    horizon_s: float = 30.0,
    window_s: float = 2.0,
    seed: int = 100,
    rounds: int = 3,
    progress: Callable[[str], None] = print,
) -> OracleBenchResult:
    from edgerl.agents.oracle import heavy_modules_loaded, window_schedule

    for option, value in (
        ("--horizon-s", horizon_s),
        ("--window-s", window_s),
        ("--rounds", rounds),
    ):
        check_positive(option, value)
    model, _ = runinfo.resolve_scenario(scenario, [f"horizon_s={horizon_s}"])
    if heavy_modules_loaded():
        raise RuntimeError(
            "edgerl bench oracle must start without torch loaded (its 'lean' mode measures a "
            "process without it); run it as its own command"
        )
    walls: dict[str, list[float]] = {m: [] for m in ("lean", *TORCH_MODES)}
    schedules: list[Any] = []

    def timed(mode: str, plan: Callable[[], Any]) -> None:
        t = time.perf_counter()
        schedules.append(plan())
        walls[mode].append(time.perf_counter() - t)
        progress(f"{mode:13s} {walls[mode][-1]:7.2f} s")

    timed("lean", lambda: window_schedule(model, seed, "eval", window_s))
    import torch  # noqa: F401  (the point: a process that holds torch, as bench agents does)

    for _ in range(rounds):
        timed("torch", lambda: window_schedule(model, seed, "eval", window_s))
        timed("isolated", lambda: window_schedule(model, seed, "eval", window_s, spawn=True))
    med = {m: statistics.median(w) for m, w in walls.items()}
    return OracleBenchResult(
        scenario=scenario,
        horizon_s=horizon_s,
        window_s=window_s,
        seed=seed,
        rounds=rounds,
        candidates=int(model.static_mask.sum()),
        windows=len(schedules[0]),
        wall_s=walls,
        median_wall_s=med,
        speedup_vs_torch={m: med["torch"] / med[m] for m in med},
        same_schedule=all(s == schedules[0] for s in schedules),
        git_commit=runinfo.git_commit(),
        created=runinfo.now_iso(),
        machine=runinfo.machine_info(),
    )
