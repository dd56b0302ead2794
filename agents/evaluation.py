"""One evaluator for every policy: rollouts, per-request metrics, confidence intervals.

Protocol (what ``edgerl evaluate`` and ``edgerl compare`` report):

- Episodes run on the **held-out** traces (``split="eval"``) with ``record=True``; episode
  ``i`` of evaluation seed ``k`` resets the env with ``derive_seeds(k, N, "eval")[i]``, so
  every policy sees the same traces, trace offsets and arrival streams for a seed.
- **Stratified** (``stratified=True``, the default of ``edgerl evaluate``, ``compare`` and
  ``bench agents``): each seed runs every stratum of
  :func:`edgerl.envs.sim.build.eval_strata` (every held-out uplink trace, several start
  offsets along long ones, drawn from the seed), ``episodes`` times each; episode ``i`` pins
  device 0's uplink to stratum ``i mod n_strata`` (``reset(options=...)``; the observation
  does not say which trace it is) and draws everything else from its seed as above. Results
  are then also reported per trace family and per trace (``by_family``, ``by_trace``: each
  episode a unit, with the number of episodes behind each interval).
- Per request, for **every** request that arrived: arrivals stop at the horizon and the
  system then drains (:meth:`edgerl.envs.sim.simulator.Simulator.drain`), so every request
  is completed or dropped, and none is left out (requests in flight at the horizon are
  counted as ``in_flight_at_horizon`` and included in every metric): utility, latency, SLO
  hit, accuracy, device energy, bytes sent (device uplink + WAN, the bytes the reward
  charges), cache hit, raw input leaving the device.
- A *unit* is one evaluation seed (its episodes pooled); with a single seed, each episode
  is a unit. Per unit the metrics below are computed; across units we report the mean and a
  95 % Student-t confidence interval ``mean ± t(0.975, n-1) * sd / sqrt(n)`` over the
  per-unit values (undefined, reported as null, for one unit).

Metric definitions (``METRICS``): latency statistics over completed requests; accuracy is
the expected accuracy of the exit that answered (the env's reward uses it); ``correct_rate``
the sampled correctness; SLO hit rate, energy, bytes, raw-input fraction over all requests
(all finish, see above); cache hit rate over completed requests.

Serving-style tail metrics (as serving systems such as Nexus, SOSP 2019, Clockwork, OSDI
2020, and Shepherd, NSDI 2023, report results: goodput and attainment of a latency SLO at a
high percentile): ``goodput_per_s`` is the number of requests completed within their
deadline divided by the episodes' arrival window (the horizon; requests drained after it
count if they arrived before it); ``slo_p99_attained`` is, per unit, 1 if at least 99 % of
all its requests completed within their deadline (a dropped request is a miss; equivalently
the 99th percentile of latency/deadline, dropped requests counting as never finishing, is at
most 1) and 0 otherwise, so its mean is the share of units that attain the 99th-percentile
SLO.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from edgerl.agents.base import Policy, derive_seeds
from edgerl.envs.sim.build import ScenarioModel, Stratum, eval_strata

CI_LEVEL = 0.95
EVAL_SEED_STREAM = "eval"
#: Grid step of the recorded true bandwidth trace (for plots) [s].
BANDWIDTH_GRID_S = 1.0
#: Observation features recorded at every decision (raw units), for knob-usage tables.
DECISION_STATE_FEATURES = ("uplink_mbps", "arrival_rate_per_s", "edge_queue_len")
US_PER_S = 1e6
MS_PER_S = 1e3
MJ_PER_J = 1e3
PERCENTILES = (50, 95, 99)
#: Two simulated times this close are the same instant [s].
SAME_INSTANT_S = 1e-12
#: Share of requests that must meet their deadline for the tail SLO to be attained.
SLO_ATTAINMENT_QUANTILE = 0.99
#: Metrics of the per-trace and per-family breakdown of a stratified evaluation.
BREAKDOWN_METRICS = ("utility_mean", "latency_p95_ms", "slo_hit_rate", "dropped_per_episode")

#: name -> (unit, description). Order is the table order.
METRICS: dict[str, tuple[str, str]] = {
    "utility_mean": ("utility/request", "mean utility per request (reward units)"),
    "latency_mean_ms": ("ms", "mean latency of completed requests"),
    "latency_p50_ms": ("ms", "median latency of completed requests"),
    "latency_p95_ms": ("ms", "95th percentile latency of completed requests"),
    "latency_p99_ms": ("ms", "99th percentile latency of completed requests"),
    "slo_hit_rate": ("fraction", "finished requests completed within their deadline"),
    "goodput_per_s": ("requests/s", "requests completed within their deadline per second"),
    "slo_p99_attained": (
        "fraction",
        "units in which >= 99 % of requests completed within their deadline (drops miss)",
    ),
    "accuracy": ("fraction", "expected accuracy of the answering exit, completed requests"),
    "correct_rate": ("fraction", "sampled correct answers among completed requests"),
    "energy_mj_per_request": ("mJ", "device energy (compute + radio) per finished request"),
    "bytes_per_request": ("bytes", "device uplink + WAN bytes per finished request"),
    "cache_hit_rate": ("fraction", "completed requests answered from the edge cache"),
    "raw_input_left_fraction": ("fraction", "finished requests whose raw input left the device"),
    "completed_per_episode": ("requests", "completed requests per episode"),
    "dropped_per_episode": ("requests", "dropped requests per episode"),
    "arrived_per_episode": ("requests", "requests that arrived per episode"),
    "in_flight_at_horizon_per_episode": (
        "requests",
        "requests in flight when arrivals stopped (then drained; included in every metric)",
    ),
    "return_per_episode": ("utility", "sum of utilities per episode (the RL return)"),
    "shed_at_decision_fraction": (
        "fraction",
        "requests dropped at the instant of their decision, before using any resource (a plan "
        "certain to miss its deadline: an implicit 'drop now' action)",
    ),
    "decision_time_us": ("us", "mean wall time of one predict() call"),
}


@dataclass
class EpisodeLog:
    """Everything recorded in one evaluation episode (arrays: one row per request)."""

    seed: int
    arrival_s: np.ndarray
    finish_s: np.ndarray
    completed: np.ndarray  # bool
    latency_s: np.ndarray
    deadline_s: np.ndarray
    utility: np.ndarray
    accuracy: np.ndarray
    correct: np.ndarray
    energy_j: np.ndarray
    bytes_sent: np.ndarray
    cache_hit: np.ndarray
    raw_input_left: np.ndarray
    plan_index: np.ndarray
    decision_s: np.ndarray  # simulated time of each decision
    decision_plan: np.ndarray
    decision_state: np.ndarray  # (n_decisions, len(DECISION_STATE_FEATURES)), raw units
    n_arrived: int
    in_flight_at_horizon: int
    ep_return: float
    decision_wall_s: float
    #: the arrival window: arrivals stop at the horizon [s] (NaN where unknown)
    horizon_s: float = float("nan")
    bandwidth_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bandwidth_mbps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: the stratum of a stratified episode (device 0's uplink): trace, family, offset [s]
    trace: str = ""
    family: str = ""
    offset_s: float = float("nan")

    @property
    def n_decisions(self) -> int:
        return len(self.decision_plan)


def run_episode(
    env: Any,
    policy: Policy,
    seed: int,
    deterministic: bool = True,
    record_bandwidth: bool = False,
    stratum: Stratum | None = None,
) -> EpisodeLog:
    """Run one episode of ``policy`` (already bound to ``env``); ``env`` must record.
    ``stratum``: pin device 0's uplink to it (stratified evaluation)."""
    inner = env.unwrapped
    if not inner.record:
        raise ValueError("evaluation needs an env created with record=True")
    options = None
    if stratum is not None:
        options = {"uplink_trace": stratum.trace_index, "uplink_offset_s": stratum.offset_s}
    obs, _ = env.reset(seed=seed, options=options)
    reset = getattr(policy, "reset", None)
    if reset is not None:
        reset(seed=seed)
    dec_t: list[float] = []
    dec_a: list[int] = []
    dec_state: list[list[float]] = []
    names = [f.name for f in inner.features]
    state_idx = [names.index(n) for n in DECISION_STATE_FEATURES if n in names]
    ret = 0.0
    wall = 0.0
    perf = time.perf_counter
    # a short episode may see no request at all (nothing to decide; it still counts)
    while inner.pending_request is not None:
        mask = inner.action_masks()
        t0 = perf()
        a = policy.predict(obs, mask, deterministic)
        wall += perf() - t0
        dec_t.append(inner.sim.env.now)
        dec_a.append(a)
        raw = inner.raw_state()
        dec_state.append([float(raw[i]) for i in state_idx])
        obs, r, term, trunc, _ = env.step(a)
        ret += r
        if term or trunc:
            break
    sim = inner.sim
    reqs = sim.finished
    if sim.in_flight or len(reqs) != sim.arrived:
        raise AssertionError(
            f"episode ended with {sim.in_flight} requests in flight and {len(reqs)} of "
            f"{sim.arrived} recorded: every request must be counted"
        )
    log = EpisodeLog(
        seed=seed,
        arrival_s=np.array([q.arrival_s for q in reqs]),
        finish_s=np.array([q.finish_s for q in reqs]),
        completed=np.array([q.status == "completed" for q in reqs], dtype=bool),
        latency_s=np.array([q.latency_s for q in reqs]),
        deadline_s=np.array([q.deadline_s for q in reqs]),
        utility=np.array([q.utility for q in reqs]),
        accuracy=np.array([q.accuracy for q in reqs]),
        correct=np.array([q.correct for q in reqs], dtype=bool),
        energy_j=np.array([q.energy_j for q in reqs]),
        bytes_sent=np.array([q.bytes_uplink + q.bytes_wan for q in reqs], dtype=np.float64),
        cache_hit=np.array([q.cache_hit for q in reqs], dtype=bool),
        raw_input_left=np.array([q.raw_input_left for q in reqs], dtype=bool),
        plan_index=np.array([q.plan_index for q in reqs], dtype=np.int64),
        decision_s=np.array(dec_t),
        decision_plan=np.array(dec_a, dtype=np.int64),
        decision_state=np.array(dec_state, dtype=np.float64).reshape(len(dec_a), len(state_idx)),
        n_arrived=int(sim.arrived),
        in_flight_at_horizon=int(sim.in_flight_at_horizon),
        ep_return=float(ret),
        decision_wall_s=wall,
        horizon_s=float(inner.cfg.horizon_s),
    )
    if stratum is not None:
        log.trace, log.family, log.offset_s = stratum.trace, stratum.family, stratum.offset_s
    if record_bandwidth:
        bw = sim.devices[0].uplink.bandwidth
        grid = np.arange(0.0, inner.cfg.horizon_s, BANDWIDTH_GRID_S)
        log.bandwidth_t_s = grid
        log.bandwidth_mbps = np.array([bw.mean_mbps(t, t + BANDWIDTH_GRID_S) for t in grid])
    return log


def _nanmean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else float("nan")


def unit_metrics(logs: Sequence[EpisodeLog]) -> dict[str, float]:
    """The metrics of one unit (its episodes pooled), keyed as in ``METRICS``."""
    cat = {
        k: np.concatenate([getattr(lg, k) for lg in logs])
        for k in (
            "completed",
            "latency_s",
            "deadline_s",
            "utility",
            "accuracy",
            "correct",
            "energy_j",
            "bytes_sent",
            "cache_hit",
            "raw_input_left",
            "arrival_s",
            "finish_s",
        )
    }
    done = cat["completed"]
    lat_ms = cat["latency_s"][done] * MS_PER_S
    slo = done & (cat["latency_s"] <= cat["deadline_s"])
    n_ep = len(logs)
    n_dec = sum(lg.n_decisions for lg in logs)
    out = {
        "utility_mean": _nanmean(cat["utility"]),
        "latency_mean_ms": _nanmean(lat_ms),
        **{
            f"latency_p{q}_ms": float(np.percentile(lat_ms, q)) if lat_ms.size else float("nan")
            for q in PERCENTILES
        },
        "slo_hit_rate": _nanmean(slo.astype(float)),
        "goodput_per_s": float(slo.sum()) / sum(lg.horizon_s for lg in logs),
        "slo_p99_attained": (
            float(_nanmean(slo.astype(float)) >= SLO_ATTAINMENT_QUANTILE) if slo.size else math.nan
        ),
        "accuracy": _nanmean(cat["accuracy"][done]),
        "correct_rate": _nanmean(cat["correct"][done].astype(float)),
        "energy_mj_per_request": _nanmean(cat["energy_j"]) * MJ_PER_J,
        "bytes_per_request": _nanmean(cat["bytes_sent"]),
        "cache_hit_rate": _nanmean(cat["cache_hit"][done].astype(float)),
        "raw_input_left_fraction": _nanmean(cat["raw_input_left"].astype(float)),
        "completed_per_episode": float(done.sum()) / n_ep,
        "dropped_per_episode": float((~done).sum()) / n_ep,
        "arrived_per_episode": float(sum(lg.n_arrived for lg in logs)) / n_ep,
        "in_flight_at_horizon_per_episode": float(sum(lg.in_flight_at_horizon for lg in logs))
        / n_ep,
        "return_per_episode": float(np.mean([lg.ep_return for lg in logs])),
        "shed_at_decision_fraction": _nanmean(
            (~done & (cat["finish_s"] - cat["arrival_s"] <= SAME_INSTANT_S)).astype(float)
        ),
        "decision_time_us": sum(lg.decision_wall_s for lg in logs) / max(n_dec, 1) * US_PER_S,
    }
    return out


def t_interval(
    values: Sequence[float], level: float = CI_LEVEL
) -> tuple[float, float | None, float | None]:
    """(mean, low, high) of a Student-t confidence interval; bounds None for < 2 values."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if x.size == 0:
        return float("nan"), None, None
    mean = float(x.mean())
    if x.size < 2:  # noqa: PLR2004 (a spread needs two values)
        return mean, None, None
    from scipy.stats import t as student_t

    half = float(student_t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


@dataclass
class PolicyEvaluation:
    """All episodes of one policy, grouped by evaluation seed, and the aggregated metrics."""

    label: str
    description: dict[str, Any]
    seeds: list[int]
    episodes: int
    logs: dict[int, list[EpisodeLog]]  # seed -> its episodes
    wall_time_s: float

    @property
    def unit(self) -> str:
        return "seed" if len(self.seeds) > 1 else "episode"

    def units(self) -> list[list[EpisodeLog]]:
        if len(self.seeds) > 1:
            return [self.logs[s] for s in self.seeds]
        return [[lg] for lg in self.logs[self.seeds[0]]]

    def metrics(self) -> dict[str, dict[str, Any]]:
        per_unit = [unit_metrics(u) for u in self.units()]
        out: dict[str, dict[str, Any]] = {}
        for name, (unit, _desc) in METRICS.items():
            vals = [m[name] for m in per_unit]
            mean, lo, hi = t_interval(vals)
            out[name] = {
                "mean": mean,
                "ci95": [lo, hi] if lo is not None else None,
                "unit": unit,
                "per_unit": vals,
            }
        out["utility_pooled"] = {
            **self.pooled_utility(),
            "unit": "utility/request",
            "per_unit": [float(lg.utility.mean()) for lg in self.all_logs()],  # per episode
        }
        return out

    def all_logs(self) -> list[EpisodeLog]:
        return [lg for s in self.seeds for lg in self.logs[s]]

    def episode_totals(self) -> tuple[np.ndarray, np.ndarray]:
        """(utility summed per episode, requests per episode), in (seed, episode) order."""
        logs = self.all_logs()
        return (
            np.array([float(lg.utility.sum()) for lg in logs]),
            np.array([float(lg.utility.size) for lg in logs]),
        )

    def pooled_utility(self) -> dict[str, Any]:
        """U: the utility per request pooled over every held-out request (:func:`pooled`)."""
        return pooled(*self.episode_totals())

    @property
    def stratified(self) -> bool:
        return any(lg.trace for lg in self.all_logs())

    def breakdown(self, key: str) -> dict[str, dict[str, Any]]:
        """Metrics per trace (``key="trace"``, named ``family/trace``) or per trace family
        (``"family"``) of a stratified evaluation: each episode is a unit of the interval;
        ``n_episodes`` says how many stand behind it. Empty if not stratified."""
        groups: dict[str, list[EpisodeLog]] = {}
        for lg in self.all_logs():
            if lg.trace:
                name = lg.family if key == "family" else f"{lg.family}/{lg.trace}"
                groups.setdefault(name, []).append(lg)
        out: dict[str, dict[str, Any]] = {}
        for name, logs in groups.items():
            per_ep = [unit_metrics([lg]) for lg in logs]
            entry: dict[str, Any] = {"n_episodes": len(logs)}
            for m in BREAKDOWN_METRICS:
                mean, lo, hi = t_interval([u[m] for u in per_ep])
                entry[m] = {"mean": mean, "ci95": [lo, hi] if lo is not None else None}
            out[name] = entry
        return out

    def to_json(self) -> dict[str, Any]:
        doc = {
            "policy": self.label,
            "description": self.description,
            "seeds": self.seeds,
            "episodes_per_seed": self.episodes,
            "n_episodes": len(self.all_logs()),
            "ci_unit": self.unit,
            "n_units": len(self.units()),
            "wall_time_s": self.wall_time_s,
            "metrics": self.metrics(),
        }
        if self.stratified:
            doc["by_family"] = self.breakdown("family")
            doc["by_trace"] = self.breakdown("trace")
        return doc


def pooled(totals: np.ndarray, counts: np.ndarray, level: float = CI_LEVEL) -> dict[str, Any]:
    """Utility per request pooled over episodes, ``sum(totals) / sum(counts)``, with a
    confidence interval over episodes (the ratio estimator's linearised variance, Student-t
    with n - 1 degrees of freedom; episodes are the independent units: each has its own
    traces, offsets and arrivals). This is the one definition of U in every table; a mean of
    per-seed means weights a seed's requests by 1 / (its request count) instead."""
    totals, counts = np.asarray(totals, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    n = totals.size
    if n == 0 or counts.sum() <= 0:
        return {"mean": float("nan"), "ci95": None, "n_episodes": int(n)}
    u = float(totals.sum() / counts.sum())
    if n < 2:  # noqa: PLR2004 (a spread needs two episodes)
        return {"mean": u, "ci95": None, "n_episodes": 1}
    from scipy.stats import t as student_t

    resid = totals - u * counts
    se = math.sqrt(n / (n - 1) * float((resid**2).sum())) / float(counts.sum())
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * se
    return {"mean": u, "ci95": [u - half, u + half], "n_episodes": int(n)}


def paired_difference(
    policy: Sequence[PolicyEvaluation], reference: PolicyEvaluation
) -> dict[str, Any]:
    """U(policy) - U(reference) on the same held-out episodes (common random numbers: each
    episode has the same arrivals for both), pooled per request, with its CI over episodes.

    ``policy``: one evaluation per training seed of a learned algorithm (their per-episode
    totals are averaged first), or a single evaluation. The relative gain divides by
    ``|U(reference)|`` (null when it is 0)."""
    ref_t, ref_n = reference.episode_totals()
    totals = []
    for ev in policy:
        t, n = ev.episode_totals()
        if not np.array_equal(n, ref_n):
            raise ValueError(
                f"{ev.label} vs {reference.label}: different requests per episode; a paired "
                "difference needs the same held-out episodes"
            )
        totals.append(t)
    diff = pooled(np.mean(totals, axis=0) - ref_t, ref_n)
    u_ref = float(ref_t.sum() / ref_n.sum())
    rel = None
    if u_ref != 0:
        rel = {
            "mean": diff["mean"] / abs(u_ref),
            "ci95": [c / abs(u_ref) for c in diff["ci95"]] if diff["ci95"] else None,
        }
    return {**diff, "relative": rel, "reference_utility": u_ref}


def make_eval_env(model: ScenarioModel, horizon_s: float | None = None) -> Any:
    """A recording env on the held-out split, optionally with a shorter horizon."""
    import dataclasses

    from edgerl.envs.env import CollabInferenceEnv

    if horizon_s is not None and horizon_s < model.cfg.horizon_s:
        model = dataclasses.replace(model, cfg=dataclasses.replace(model.cfg, horizon_s=horizon_s))
    return CollabInferenceEnv(model, split="eval", record=True)


def evaluate(
    model: ScenarioModel,
    policy: Policy,
    seeds: Sequence[int],
    episodes: int,
    *,
    label: str | None = None,
    horizon_s: float | None = None,
    deterministic: bool = True,
    record_bandwidth: bool = False,
    progress: Callable[[str], None] | None = None,
    stratified: bool = False,
) -> PolicyEvaluation:
    """Evaluate ``policy`` on the held-out traces of ``model`` (see the module docstring).

    Args:
        model: the scenario.
        policy: any :class:`Policy`; its ``bind(env)`` is called if it has one.
        seeds: evaluation seeds (units of the confidence interval when more than one).
        episodes: episodes per seed.
        label: name in the results (default ``policy.name``).
        horizon_s: truncate episodes earlier than the scenario's horizon (budgeted runs).
        deterministic: deterministic actions for learned policies.
        record_bandwidth: keep the true uplink trace of device 0 (plots) for the first
            episode of each seed.
        progress: called with a short message after every episode.
        stratified: every seed covers every held-out uplink trace (see the module docstring;
            ``episodes`` is then the number of passes over the strata); a constant uplink
            has no strata and runs ``episodes`` plain episodes.
    """
    if episodes < 1 or not seeds:
        raise ValueError("need at least one seed and one episode")
    env = make_eval_env(model, horizon_s)
    bind = getattr(policy, "bind", None)
    if bind is not None:
        bind(env)
    t0 = time.perf_counter()
    logs: dict[int, list[EpisodeLog]] = {}
    name = str(label or getattr(policy, "name", type(policy).__name__))
    n_per_seed = episodes
    for s in seeds:
        strata: list[Stratum | None] = [None]
        if stratified:
            strata = [*eval_strata(env.unwrapped.model, env.unwrapped.cfg.horizon_s, s)] or [None]
        n_per_seed = episodes * len(strata)
        ep_seeds = derive_seeds(s, n_per_seed, EVAL_SEED_STREAM)
        logs[s] = []
        for i, es in enumerate(ep_seeds):
            logs[s].append(
                run_episode(
                    env,
                    policy,
                    es,
                    deterministic,
                    record_bandwidth and i == 0,
                    strata[i % len(strata)],
                )
            )
            if progress is not None:
                progress(f"{name}: seed {s} episode {i + 1}/{n_per_seed}")
    describe = getattr(policy, "describe", None)
    return PolicyEvaluation(
        label=name,
        description=describe() if describe is not None else {"name": name},
        seeds=list(seeds),
        episodes=n_per_seed,
        logs=logs,
        wall_time_s=time.perf_counter() - t0,
    )
