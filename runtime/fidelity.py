"""``edgerl fidelity``: the same workload through the runtime and the simulator.

For every condition (a seed, which draws the episode's traces, inputs and arrivals, × a load,
the Poisson arrival rate) and every fixed plan of a grid, one runtime run
(:func:`edgerl.runtime.launch.run_local`: three processes on loopback, ``--policy fixed:INDEX``)
and one simulator episode of the same scenario, overrides and seed (so the same arrivals,
inputs and traces, ``tests/test_runtime.py``), with the scenario's ``horizon_s`` set to the run's
duration so both stop arrivals at the same time. Every role's hardware is set to
``cpu-epyc-1t`` (the profiles measured on this machine at one thread, the roles' thread count),
so the simulator predicts what this machine runs.

Requests are matched by arrival order. Per plan (a cache plan split into its hits and misses),
overall and per stage, the comparison reports end-to-end relative errors
``|runtime - simulator| / simulator`` (median, p95) and per-stage medians and errors in ms; the
per-request pairs are kept for the plot (measured against simulated latency).

Then the *ranking*: a few policies (an exported planner, the best fixed plan, Edgent...) run
the same workload in both, per condition, and their mean utility per request is compared: the
simulator is useful for choosing a policy only if it orders them as the runtime does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgerl.envs.plans import edge_batch_latency_s
from edgerl.envs.sim.build import ScenarioModel, build_simulator
from edgerl.runtime.launch import read_log, run_local
from edgerl.runtime.workload import build_setup, load_config, load_policy

#: Hardware of every role: the profiles measured on this machine at one thread.
HOST_HARDWARE = "cpu-epyc-1t"
P95 = 95

#: Stages compared: (name, the runtime's stages summed, the simulator's request attribute).
#: The runtime's ``decide`` (observation + policy) counts with the device's stage: a
#: calibrated simulator charges it there (``execution.device_per_request_ms``), an
#: uncalibrated one not at all. The rest of the end-to-end latency that no stage covers
#: (encoding, hand-offs between tasks and threads) is ``unaccounted`` on both sides.
STAGES: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("cache_lookup", ("cache_lookup",), "t_lookup_s"),
    ("device+decide", ("decide", "device_queue", "device_compute"), "t_device_s"),
    ("uplink", ("uplink",), "t_uplink_s"),
    ("edge_wait", ("edge_batching+queue",), "t_edge_wait_s"),
    ("edge_compute", ("edge_compute",), "t_edge_s"),
    ("wan", ("wan_up", "wan_down"), "t_wan_s"),
    ("cloud_queue", ("cloud_queue",), "t_cloud_wait_s"),
    ("cloud_compute", ("cloud_compute",), "t_cloud_s"),
    ("downlink", ("downlink",), "t_downlink_s"),
)
UNACCOUNTED = "unaccounted"


@dataclass
class StageError:
    """One stage over the matched requests that passed it on either side."""

    stage: str
    n: int
    runtime_median_ms: float
    simulator_median_ms: float
    abs_error_median_ms: float
    signed_error_median_ms: float  # runtime - simulator


@dataclass
class PlanFidelity:
    """One plan's comparison (a cache plan: its hits or its misses), pooled over conditions."""

    plan_index: int
    plan: str
    label: str  # the plan's name, plus " [hit]" / " [miss]" for a cache plan
    n_matched: int
    runtime_median_ms: float
    simulator_median_ms: float
    rel_error_median: float
    rel_error_p95: float
    runtime_dropped: int
    simulator_dropped: int
    stages: list[StageError] = field(default_factory=list)
    # a cache plan: requests whose hit/miss outcome is the same on both sides / matched
    cache_outcome_agreement: float | None = None


@dataclass
class Condition:
    """A seed (the traces, inputs and arrivals it draws) and a load."""

    seed: int
    rate_per_s: float
    uplink: str  # the device's uplink trace (and start offset)
    uplink_mean_mbps: float  # over the run's duration


@dataclass
class PolicyRanking:
    """One policy on one condition in both: mean utility per request (all that arrived)."""

    policy: str
    condition: int
    runtime_utility: float
    simulator_utility: float
    runtime_requests: int
    simulator_requests: int
    runtime_slo_met: float
    simulator_slo_met: float


@dataclass
class FidelityResult:
    scenario: str
    overrides: list[str]
    seeds: list[int]
    rates_per_s: list[float]
    duration_s: float
    conditions: list[Condition] = field(default_factory=list)
    plans: list[PlanFidelity] = field(default_factory=list)
    stages: list[StageError] = field(default_factory=list)  # over every plan
    overall_rel_error_median: float = float("nan")
    overall_rel_error_p95: float = float("nan")
    # per matched request: [row in plans, condition, runtime ms, simulator ms]
    pairs: list[list[float]] = field(default_factory=list)
    ranking: list[PolicyRanking] = field(default_factory=list)
    ranking_agrees: list[bool] = field(default_factory=list)  # per condition
    calibration: Calibration | None = None
    uncalibrated: GridSummary | None = None  # the same runs against the profiles as they are
    date: str = ""
    command: str = ""
    git_commit: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


def host_overrides(duration_s: float) -> list[str]:
    return [
        f"devices.hardware={HOST_HARDWARE}",
        f"edge.hardware={HOST_HARDWARE}",
        f"cloud.hardware={HOST_HARDWARE}",
        f"horizon_s={duration_s}",
        "shedding='off'",  # the runtime does not shed (yet): compare like with like
    ]


def default_grid(model: ScenarioModel) -> list[int]:
    """Fixed plans of the catalogue: device only, raw input to the edge (batch 1), a
    device/edge cut, the cloud path (each at the deepest exit offered), an early exit (exit 0,
    raw input to the edge), and where the menu offers them raw input to the edge with the
    largest batch size and with a result cache (LRU if offered)."""
    plain = [p for p in model.plans if p.threshold is None and model.static_mask[p.index]]

    def b1(p: Any) -> bool:
        return p.batch_size == 1 and p.cache_policy == "none"

    kinds: list[Callable[[Any], bool]] = [
        lambda p: b1(p) and p.cut_edge == p.n_units,
        lambda p: b1(p) and p.cut_edge == 0 and p.cut_cloud == p.n_units,
        lambda p: b1(p) and 0 < p.cut_edge < p.cut_cloud == p.n_units,
        lambda p: b1(p) and p.cut_cloud < p.n_units,
        lambda p: b1(p) and p.exit_index == 0 and p.cut_edge == 0 < p.cut_cloud,
    ]
    biggest = max((p.batch_size for p in plain), default=1)
    if biggest > 1:
        kinds.append(
            lambda p: p.batch_size == biggest and p.cache_policy == "none"
            and p.cut_edge == 0 and p.cut_cloud == p.n_units
        )  # fmt: skip
    caches = sorted({p.cache_policy for p in plain} - {"none"}, key=lambda c: (c != "lru", c))
    if caches:
        kinds.append(
            lambda p: p.batch_size == 1 and p.cache_policy == caches[0]
            and p.cut_edge == 0 and p.cut_cloud == p.n_units
        )  # fmt: skip
    out: list[int] = []
    deepest_first = sorted(plain, key=lambda p: (-p.exit_index, p.index))
    for want in kinds:
        idx = next((p.index for p in deepest_first if want(p)), None)
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


def simulate_policy(model: ScenarioModel, policy: Any, seed: int, split: str) -> list[Any]:
    """The finished requests of ``seed``'s episode with ``policy`` deciding (its ``predict``
    on the env's observation and static mask, as everywhere)."""
    from edgerl.envs.env import CollabInferenceEnv

    env = CollabInferenceEnv(model, split=split, record=True)
    obs = env.attach(build_simulator(model, seed, split, record=True))
    reset = getattr(policy, "reset", None)
    if reset is not None:
        reset(seed=seed)
    while env.pending_request is not None:
        obs, _, term, trunc, _ = env.step(policy.predict(obs, env.action_masks()))
        if term or trunc:
            break
    assert env.sim is not None
    return list(env.sim.finished)


def _stage_ms(rec: dict[str, Any], req: Any) -> tuple[dict[str, float], dict[str, float]]:
    """Per compared stage, (runtime ms, simulator ms) of one matched request."""
    st = rec.get("stages_ms", {})
    rt: dict[str, float] = {}
    sim: dict[str, float] = {}
    for name, parts, attr in STAGES:
        if any(p in st for p in parts):
            rt[name] = float(sum(st.get(p, 0.0) for p in parts))
        s_ms = float(getattr(req, attr)) * 1e3 if attr is not None else 0.0
        if s_ms > 0 or name in rt:
            sim[name] = s_ms
            rt.setdefault(name, 0.0)
    rt[UNACCOUNTED] = rec["latency_ms"] - sum(rt.values())
    sim[UNACCOUNTED] = (req.finish_s - req.arrival_s) * 1e3 - sum(sim.values())
    return rt, sim


@dataclass
class _Pair:
    rt_ms: float
    sim_ms: float
    rt_stages: dict[str, float]
    sim_stages: dict[str, float]
    cache_agrees: bool | None


def _stage_errors(pairs: Sequence[_Pair]) -> list[StageError]:
    out = []
    for name in [s[0] for s in STAGES] + [UNACCOUNTED]:
        got = [(p.rt_stages[name], p.sim_stages[name]) for p in pairs if name in p.rt_stages]
        if not got:
            continue
        rt = np.array([g[0] for g in got])
        sm = np.array([g[1] for g in got])
        out.append(
            StageError(
                stage=name,
                n=len(got),
                runtime_median_ms=float(np.median(rt)),
                simulator_median_ms=float(np.median(sm)),
                abs_error_median_ms=float(np.median(np.abs(rt - sm))),
                signed_error_median_ms=float(np.median(rt - sm)),
            )
        )
    return out


def _summary(
    plan_index: int, plan: str, label: str, pairs: Sequence[_Pair], rt_dropped: int,
    sim_dropped: int,
) -> PlanFidelity:  # fmt: skip
    errs = [abs(p.rt_ms - p.sim_ms) / p.sim_ms for p in pairs]
    agree = [p.cache_agrees for p in pairs if p.cache_agrees is not None]

    def med(xs: Sequence[float]) -> float:
        return float(np.median(xs)) if len(xs) else float("nan")

    return PlanFidelity(
        plan_index=plan_index,
        plan=plan,
        label=label,
        n_matched=len(pairs),
        runtime_median_ms=med([p.rt_ms for p in pairs]),
        simulator_median_ms=med([p.sim_ms for p in pairs]),
        rel_error_median=med(errs),
        rel_error_p95=float(np.percentile(errs, P95)) if errs else float("nan"),
        runtime_dropped=rt_dropped,
        simulator_dropped=sim_dropped,
        stages=_stage_errors(pairs),
        cache_outcome_agreement=float(np.mean(agree)) if agree else None,
    )


def _condition(model: ScenarioModel, seed: int, split: str, rate: float) -> Condition:
    sim = build_simulator(model, seed, split)
    bw = sim.devices[0].uplink.bandwidth
    src = getattr(bw, "source", bw)
    name = str(getattr(src, "name", type(src).__name__))
    offset = float(getattr(bw, "offset_s", 0.0))
    horizon = model.cfg.horizon_s
    grid = np.linspace(0.0, horizon, 51)
    mean = float(np.mean([bw.mbps_at(t) for t in grid[:-1]]))
    return Condition(seed, rate, f"{name} @ {offset:.0f} s", mean)


@dataclass
class TierFit:
    """Measured segment time against profiled, one tier: ``measured = profiled * scale +
    overhead_ms``, least squares over the per-plan (per batch size on the edge) medians."""

    tier: str
    n_requests: int
    points: list[list[float]]  # [profiled ms, measured median ms, requests]
    compute_scale: float
    overhead_ms: float


@dataclass
class Calibration:
    """The :class:`~edgerl.envs.config.ExecutionConfig` fitted on a calibration run (its own
    seed: the episodes compared afterwards are not the ones it was fitted on)."""

    seed: int
    rate_per_s: float
    execution: dict[str, float]
    tiers: list[TierFit] = field(default_factory=list)
    decide_median_ms: float = float("nan")
    unaccounted_median_ms: float = float("nan")
    # the runtime's messages as they go on the wire (frame prefix, shape, JSON meta): the
    # simulator's ``network.result_bytes`` / ``fingerprint_bytes`` (medians; None: not seen)
    result_bytes: int | None = None
    fingerprint_bytes: int | None = None

    def overrides(self) -> list[str]:
        out = [f"execution.{k}={v:.4f}" for k, v in self.execution.items()]
        if self.result_bytes is not None:
            out.append(f"network.result_bytes={self.result_bytes}")
        if self.fingerprint_bytes is not None:
            out.append(f"network.fingerprint_bytes={self.fingerprint_bytes}")
        return out


def fit_tier(tier: str, samples: Sequence[tuple[float, float]]) -> TierFit:
    """Fit ``measured = profiled * scale + overhead`` to (profiled ms, measured ms) samples:
    least squares over the medians per distinct profiled time, with ``scale > 0`` and
    ``overhead >= 0`` (one distinct profiled time: scale 1 and the median difference)."""
    groups: dict[float, list[float]] = {}
    for x, y in samples:
        groups.setdefault(round(x, 6), []).append(y)
    pts = [[x, float(np.median(ys)), float(len(ys))] for x, ys in sorted(groups.items())]
    xs = np.array([p[0] for p in pts])
    ys = np.array([p[1] for p in pts])
    scale, over = 1.0, float(np.median(ys - xs)) if len(pts) else 0.0
    if len(pts) > 1 and np.ptp(xs) > 0:
        b, a = np.polyfit(xs, ys, 1)
        if b > 0 and a >= 0:
            scale, over = float(b), float(a)
        elif b > 0:  # through the origin
            scale, over = float(xs @ ys / (xs @ xs)), 0.0
    return TierFit(tier, len(samples), pts, scale, max(0.0, over))


def _calibrate(
    records: Sequence[tuple[dict[str, Any], Any]], model: ScenarioModel, seed: int, rate: float
) -> Calibration:
    """Fit the execution config from (runtime record, simulated plan) pairs of a calibration
    run whose simulator used the profiles as they are."""
    samples: dict[str, list[tuple[float, float]]] = {"device": [], "edge": [], "cloud": []}
    decide, unacc, results, lookups = [], [], [], []
    for rec, plan in records:
        st = rec.get("stages_ms", {})
        if rec["outcome"] != "completed":
            continue
        sent = rec.get("bytes", {})
        if rec.get("cache") == "hit":  # one lookup up, one reply down
            lookups.append(sent.get("uplink", 0))
        elif rec.get("tier") in ("edge", "cloud") and rec.get("cache") is None:
            results.append(sent.get("downlink", 0))
        if "decide" in st:
            decide.append(st["decide"])
        if "device_compute" in st and plan.device_s > 0:
            samples["device"].append((plan.device_s * 1e3, st["device_compute"]))
        if "edge_compute" in st and any(m > 0 for m in plan.edge_batch_ms):
            n = max(1, int(rec.get("edge_batch") or 1))
            prof = edge_batch_latency_s(plan, model.edge_batch_sizes, n) * 1e3
            samples["edge"].append((prof, st["edge_compute"]))
        if "cloud_compute" in st and plan.cloud_s > 0:
            samples["cloud"].append((plan.cloud_s * 1e3, st["cloud_compute"]))
        covered = sum(v for k, v in st.items() if k != "end_to_end")
        unacc.append(max(0.0, rec["latency_ms"] - covered))
    cal = Calibration(seed, rate, {})
    cal.decide_median_ms = float(np.median(decide)) if decide else 0.0
    cal.unaccounted_median_ms = float(np.median(unacc)) if unacc else 0.0
    ex = {"device_per_request_ms": cal.decide_median_ms + cal.unaccounted_median_ms}
    for tier, xs in samples.items():
        if not xs:
            continue
        fit = fit_tier(tier, xs)
        cal.tiers.append(fit)
        ex[f"{tier}_overhead_ms"] = fit.overhead_ms
        ex[f"{tier}_compute_scale"] = fit.compute_scale
    cal.execution = ex
    if results:
        cal.result_bytes = int(np.median(results))
    if lookups:
        cal.fingerprint_bytes = int(np.median(lookups))
    return cal


class _Acc:
    """Matched requests of the plan grid against one simulator configuration."""

    def __init__(self) -> None:
        self.rows: dict[str, list[_Pair]] = {}
        self.row_plan: dict[str, int] = {}
        self.dropped: dict[str, list[int]] = {}
        self.pair_rows: list[tuple[str, int, float, float]] = []

    def add(self, runtime: dict[int, dict[str, Any]], sim: dict[int, Any], idx: int,
            plan: Any, ci: int) -> None:  # fmt: skip
        caching = plan.cache_policy != "none"
        for rid, rec in runtime.items():
            req = sim.get(rid)
            label = plan.name
            if caching and rec.get("cache") in ("hit", "miss"):
                label = f"{plan.name} [{rec['cache']}]"
            self.row_plan[label] = idx
            rows = self.rows.setdefault(label, [])
            drops = self.dropped.setdefault(label, [0, 0])
            drops[0] += rec["outcome"] == "dropped"
            drops[1] += req is not None and req.status == "dropped"
            if req is None or rec["outcome"] != "completed" or req.status != "completed":
                continue
            s_ms = (req.finish_s - req.arrival_s) * 1e3
            rt_st, sim_st = _stage_ms(rec, req)
            agree = (rec.get("cache") == "hit") == bool(req.cache_hit) if caching else None
            rows.append(_Pair(rec["latency_ms"], s_ms, rt_st, sim_st, agree))
            self.pair_rows.append((label, ci, rec["latency_ms"], s_ms))

    def summarise(self, model: ScenarioModel, order: Sequence[int]) -> GridSummary:
        labels = sorted(self.rows, key=lambda lb: (list(order).index(self.row_plan[lb]), lb))
        out = GridSummary()
        every: list[_Pair] = []
        for lb in labels:
            idx = self.row_plan[lb]
            out.plans.append(_summary(idx, model.plans[idx].name, lb, self.rows[lb],
                                      *self.dropped[lb]))  # fmt: skip
            every += self.rows[lb]
        out.pairs = [
            [float(labels.index(lb)), float(c), rt, sm] for lb, c, rt, sm in self.pair_rows
        ]
        out.stages = _stage_errors(every)
        errs = [abs(p.rt_ms - p.sim_ms) / p.sim_ms for p in every]
        if errs:
            out.overall_rel_error_median = float(np.median(errs))
            out.overall_rel_error_p95 = float(np.percentile(errs, P95))
        return out


@dataclass
class GridSummary:
    plans: list[PlanFidelity] = field(default_factory=list)
    stages: list[StageError] = field(default_factory=list)
    overall_rel_error_median: float = float("nan")
    overall_rel_error_p95: float = float("nan")
    pairs: list[list[float]] = field(default_factory=list)


def fidelity(
    scenario: str, overrides: list[str], plan_indices: list[int] | None, seeds: Sequence[int],
    duration_s: float, split: str = "eval", data: str | None = None,
    rates_per_s: Sequence[float] | None = None, policies: Sequence[str] = (),
    calibrate_seed: int | None = None, progress: Callable[[str], None] | None = None,
) -> FidelityResult:  # fmt: skip
    """Run the comparison (see the module docstring).

    Args:
        seeds: One condition per seed and rate (each seed draws its own traces and arrivals).
        rates_per_s: Poisson arrival rates (default: the scenario's).
        policies: Policies for the ranking (``planner:DIR``, ``baseline:NAME``, ``fixed:I``;
            ``baseline:best-fixed`` is searched once here, on the training traces, and run as
            its fixed plan).
        calibrate_seed: First run the grid on this seed (at the first rate) and fit the
            scenario's ``execution`` block to it (:class:`Calibration`); the comparison then
            uses the calibrated simulator, and the uncalibrated one's errors are kept beside.
    """
    say = progress or (lambda _m: None)
    # energy stays the scenario's device's (the host profile has no power figure)
    power_w = ScenarioModel.from_config(load_config(scenario, overrides)).device_power_w
    base = [*overrides, *host_overrides(duration_s), f"devices.active_power_w={power_w}"]
    base_cfg = load_config(scenario, base)
    if rates_per_s is None or not len(rates_per_s):
        rates_per_s = [float(base_cfg.workload.arrival.rate_per_s)]
    res = FidelityResult(scenario, base, list(seeds), [float(r) for r in rates_per_s], duration_s)
    model = ScenarioModel.from_config(base_cfg)
    if not plan_indices:
        plan_indices = default_grid(model)
    bad = [i for i in plan_indices if not 0 <= i < len(model.plans)]
    if bad:
        raise ValueError(f"--plans: no plan {bad} in the catalogue of {len(model.plans)}")
    n_cal = len(plan_indices) if calibrate_seed is not None else 0
    n_runs = n_cal + len(seeds) * len(rates_per_s) * (len(plan_indices) + len(policies))
    done = 0

    def sets_for(rate: float, extra: Sequence[str] = ()) -> list[str]:
        return [*base, f"workload.arrival.rate_per_s={rate}", *extra]

    def common_for(seed: int, sets: Sequence[str]) -> list[str]:
        out = ["--scenario", scenario, "--seed", str(seed), "--split", split]
        for s in sets:
            out += ["--set", s]
        return out

    main, raw = _Acc(), _Acc()
    with tempfile.TemporaryDirectory() as tmp:
        cal_sets: list[str] = []
        if calibrate_seed is not None:
            rate = float(rates_per_s[0])
            cmodel = ScenarioModel.from_config(load_config(scenario, sets_for(rate)))
            pairs: list[tuple[dict[str, Any], Any]] = []
            for idx in plan_indices:
                done += 1
                say(f"[{done}/{n_runs}] calibration: seed {calibrate_seed}, {rate:g}/s, plan {idx}")
                runtime = _run(common_for(calibrate_seed, sets_for(rate)), f"fixed:{idx}",
                               duration_s, data, Path(tmp), done)  # fmt: skip
                pairs += [(rec, cmodel.plans[idx]) for rec in runtime.values()]
            res.calibration = _calibrate(pairs, cmodel, calibrate_seed, rate)
            cal_sets = res.calibration.overrides()
            res.overrides = [*base, *cal_sets]
        fixed_policies = _resolve_policies(policies, scenario, [*base, *cal_sets], split)
        for seed in seeds:
            for rate in rates_per_s:
                sets = sets_for(rate, cal_sets)
                cmodel = ScenarioModel.from_config(load_config(scenario, sets))
                rmodel = (
                    ScenarioModel.from_config(load_config(scenario, sets_for(rate)))
                    if cal_sets
                    else cmodel
                )
                ci = len(res.conditions)
                res.conditions.append(_condition(cmodel, seed, split, float(rate)))
                common = common_for(seed, sets)
                for idx in plan_indices:
                    done += 1
                    say(f"[{done}/{n_runs}] seed {seed}, {rate:g}/s, plan {idx}")
                    runtime = _run(common, f"fixed:{idx}", duration_s, data, Path(tmp), done)
                    main.add(
                        runtime, simulate(cmodel, idx, seed, split), idx, cmodel.plans[idx], ci
                    )
                    if cal_sets:
                        raw.add(runtime, simulate(rmodel, idx, seed, split), idx,
                                rmodel.plans[idx], ci)  # fmt: skip
                for spec, label, pol in fixed_policies:
                    done += 1
                    say(f"[{done}/{n_runs}] seed {seed}, {rate:g}/s, policy {label}")
                    runtime = _run(common, spec, duration_s, data, Path(tmp), done)
                    finished = simulate_policy(cmodel, pol, seed, split)
                    res.ranking.append(_ranking(label, ci, list(runtime.values()), finished))
                res.ranking_agrees.append(_agrees([r for r in res.ranking if r.condition == ci]))
    summary = main.summarise(model, plan_indices)
    res.plans, res.stages, res.pairs = summary.plans, summary.stages, summary.pairs
    res.overall_rel_error_median = summary.overall_rel_error_median
    res.overall_rel_error_p95 = summary.overall_rel_error_p95
    if cal_sets:
        unc = raw.summarise(model, plan_indices)
        unc.pairs = []
        res.uncalibrated = unc
    return res


def _run(
    common: list[str], policy: str, duration_s: float, data: str | None, tmp: Path, tag: int
) -> dict[int, dict[str, Any]]:
    """One runtime run; request id (low 32 bits: the simulator's id) -> its record."""
    log = tmp / f"run{tag}.jsonl"
    dev = ["--policy", policy, "--duration-s", str(duration_s)]
    if data is not None:
        dev += ["--data", data]
    run_local(common, dev, log, duration_s + 60.0)
    return {r["request_id"] & 0xFFFFFFFF: r for r in read_log(log)}


def _resolve_policies(
    specs: Sequence[str], scenario: str, sets: list[str], split: str
) -> list[tuple[str, str, Any]]:
    """(runtime spec, label, policy for the simulator) per ranking policy; ``best-fixed`` is
    searched once (training traces) and runs as ``fixed:INDEX`` in the runtime."""
    out = []
    setup = build_setup(scenario, sets, 0, split)
    for spec in specs:
        handle = load_policy(spec, setup)
        run_spec = spec
        if spec == "baseline:best-fixed":
            run_spec = f"fixed:{handle.policy.plan_index}"
        out.append((run_spec, spec, handle.policy))
    return out


def _ranking(
    label: str, ci: int, records: Sequence[dict[str, Any]], finished: Sequence[Any]
) -> PolicyRanking:
    def mean(xs: Sequence[float]) -> float:
        return float(np.mean(xs)) if len(xs) else float("nan")

    done = [r for r in records if r["outcome"] == "completed"]
    return PolicyRanking(
        policy=label,
        condition=ci,
        runtime_utility=mean([r["utility"] for r in records]),
        simulator_utility=mean([q.utility for q in finished]),
        runtime_requests=len(records),
        simulator_requests=len(finished),
        runtime_slo_met=mean([bool(r.get("slo_met")) for r in done]),
        simulator_slo_met=mean([q.slo_met for q in finished if q.status == "completed"]),
    )


#: Two policies whose simulated utilities differ by less than this are not ordered by the
#: simulator (e.g. two baselines that choose the same plans); the runtime's order of such a
#: pair is not checked.
RANK_TOLERANCE = 0.005


def _agrees(rows: Sequence[PolicyRanking]) -> bool:
    """Every pair of policies the simulator separates (by more than :data:`RANK_TOLERANCE`)
    is ordered the same way by the runtime."""
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            d_sim = a.simulator_utility - b.simulator_utility
            if abs(d_sim) > RANK_TOLERANCE and d_sim * (a.runtime_utility - b.runtime_utility) <= 0:
                return False
    return True
