"""``edgerl fidelity``: the same workload through the runtime and the simulator, per plan.

For each fixed plan of a grid, one runtime run (:func:`edgerl.runtime.launch.run_local`: three
processes on loopback, ``--policy fixed:INDEX``) and one simulator episode of the same
scenario, overrides and seed (so the same arrivals, inputs and traces,
``tests/test_runtime.py``), with the scenario's ``horizon_s`` set to the run's duration so
both stop arrivals at the same time. Every role's hardware is set to ``cpu-epyc-1t`` (the
profiles measured on this machine at one thread, the roles' thread count), so the simulator
predicts what this machine runs. Requests are matched by arrival order; the relative error of
end-to-end latency ``|runtime - simulator| / simulator`` is summarised per plan (median, p95)
and overall.

What this first version does not do yet (issue 20): several traces and loads, per-stage
errors, the plot, and the planner / best-fixed / Edgent ranking comparison.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgerl.envs.sim.build import ScenarioModel, build_simulator
from edgerl.runtime.launch import read_log, run_local
from edgerl.runtime.workload import load_config

#: Hardware of every role: the profiles measured on this machine at one thread.
HOST_HARDWARE = "cpu-epyc-1t"
P95 = 95


@dataclass
class PlanFidelity:
    """One plan's comparison."""

    plan_index: int
    plan: str
    n_matched: int
    runtime_median_ms: float
    simulator_median_ms: float
    rel_error_median: float
    rel_error_p95: float
    runtime_dropped: int
    simulator_dropped: int


@dataclass
class FidelityResult:
    scenario: str
    overrides: list[str]
    seed: int
    duration_s: float
    plans: list[PlanFidelity] = field(default_factory=list)
    overall_rel_error_median: float = float("nan")
    overall_rel_error_p95: float = float("nan")
    date: str = ""
    command: str = ""


def host_overrides(duration_s: float) -> list[str]:
    return [
        f"devices.hardware={HOST_HARDWARE}",
        f"edge.hardware={HOST_HARDWARE}",
        f"cloud.hardware={HOST_HARDWARE}",
        f"horizon_s={duration_s}",
        "shedding='off'",  # the runtime does not shed (yet): compare like with like
    ]


def default_grid(model: ScenarioModel) -> list[int]:
    """Fixed plans of the catalogue: device only, raw input to the edge, a device/edge cut,
    the cloud path (each at the deepest exit offered) and an early exit (exit 0, raw input to
    the edge)."""
    kinds = [
        lambda p: p.cut_edge == p.n_units and p.threshold is None,
        lambda p: p.cut_edge == 0 and p.cut_cloud == p.n_units and p.threshold is None,
        lambda p: 0 < p.cut_edge < p.cut_cloud == p.n_units and p.threshold is None,
        lambda p: p.cut_cloud < p.n_units and p.threshold is None,
        lambda p: p.exit_index == 0 and p.cut_edge == 0 < p.cut_cloud and p.threshold is None,
    ]
    out: list[int] = []
    deepest_first = sorted(model.plans, key=lambda p: (-p.exit_index, p.index))
    for want in kinds:
        idx = next((p.index for p in deepest_first if want(p) and model.static_mask[p.index]), None)
        if idx is not None and idx not in out:
            out.append(idx)
    return out


def simulate(model: ScenarioModel, plan_index: int, seed: int, split: str) -> dict[int, Any]:
    """Request id -> finished simulator request, every request of the episode on one plan."""
    sim = build_simulator(model, seed, split, record=True)
    while sim.next_decision() is not None:
        sim.apply(plan_index, bool(model.static_mask[plan_index]))
    sim.drain()
    return {r.id: r for r in sim.finished}


def fidelity(
    scenario: str, overrides: list[str], plan_indices: list[int] | None, seed: int,
    duration_s: float,
    split: str = "eval", data: str | None = None,
) -> FidelityResult:  # fmt: skip
    """Run the comparison (see the module docstring)."""
    # energy stays the scenario's device's (the host profile has no power figure)
    power_w = ScenarioModel.from_config(load_config(scenario, overrides)).device_power_w
    sets = [*overrides, *host_overrides(duration_s), f"devices.active_power_w={power_w}"]
    cfg = load_config(scenario, sets)
    model = ScenarioModel.from_config(cfg)
    res = FidelityResult(scenario, sets, seed, duration_s)
    if not plan_indices:
        plan_indices = default_grid(model)
    common = ["--scenario", scenario, "--seed", str(seed), "--split", split]
    for s in sets:
        common += ["--set", s]
    all_errors: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for idx in plan_indices:
            log = Path(tmp) / f"plan{idx}.jsonl"
            dev = ["--policy", f"fixed:{idx}", "--duration-s", str(duration_s)]
            if data is not None:
                dev += ["--data", data]
            run_local(common, dev, log, duration_s + 60.0)
            runtime = {r["request_id"] & 0xFFFFFFFF: r for r in read_log(log)}
            sim = simulate(model, idx, seed, split)
            errs, rt_ms, sim_ms = [], [], []
            for rid, rec in runtime.items():
                req = sim.get(rid)
                if req is None or rec["outcome"] != "completed" or req.status != "completed":
                    continue
                s_ms = (req.finish_s - req.arrival_s) * 1e3
                errs.append(abs(rec["latency_ms"] - s_ms) / s_ms)
                rt_ms.append(rec["latency_ms"])
                sim_ms.append(s_ms)
            all_errors += errs
            res.plans.append(
                PlanFidelity(
                    plan_index=idx,
                    plan=model.plans[idx].name,
                    n_matched=len(errs),
                    runtime_median_ms=float(np.median(rt_ms)) if rt_ms else float("nan"),
                    simulator_median_ms=float(np.median(sim_ms)) if sim_ms else float("nan"),
                    rel_error_median=float(np.median(errs)) if errs else float("nan"),
                    rel_error_p95=float(np.percentile(errs, P95)) if errs else float("nan"),
                    runtime_dropped=sum(r["outcome"] == "dropped" for r in runtime.values()),
                    simulator_dropped=sum(r.status == "dropped" for r in sim.values()),
                )
            )
    if all_errors:
        res.overall_rel_error_median = float(np.median(all_errors))
        res.overall_rel_error_p95 = float(np.percentile(all_errors, P95))
    return res
