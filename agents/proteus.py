"""``proteus``: a Proteus-style planner (accuracy scaling by a periodically re-solved MILP).

Ahmad, Guan, Friedman, Williams, Sitaraman, Woo: "Proteus: A High-Throughput
Inference-Serving System with Accuracy Scaling", ASPLOS 2024 (simulator and traces:
github.com/UMass-LIDS/Proteus). Proteus separates a control path from the data path: at a
regular interval it measures the demand of each query type (an EWMA over the past window),
solves a mixed-integer linear program that chooses model variants, places them on devices
and assigns query types to them so that the served rate's accuracy is maximal subject to
each device's profiled throughput at the largest batch size that meets the latency SLO
(variant/device pairs that cannot meet it even at batch 1 are forbidden); if the program is
infeasible it lowers the served fraction it demands; if a solve fails it keeps the last
(cached) solution. The data path routes queries in the solved proportions and batches
adaptively: a device's batch grows while the request at the head of its queue can still
meet its deadline after the batch's processing time (the simulator's ``accscale``
batching in ``core/predictor.py``), with expired requests dropped early.

Adapted to edgerl (what changed, and why):

* **Plans instead of (variant, accelerator) pairs.** A query here is served by a *plan*
  (variant x exit or tau rule x device/edge/cloud cuts x edge batch size, the scenario's
  cache policy: LRU where offered, as ``composite``), spanning the device CPU, its uplink,
  the edge workers, the WAN and the cloud workers. The decision variable ``x[k, p]`` is the
  rate (requests/s) of application ``k`` sent to plan ``p``; an explicit unserved rate
  ``d[k]`` (priced at the reward's drop penalty) replaces Proteus's lowered served fraction,
  so the program is always feasible.
* **Objective: the scenario's utility, not accuracy alone.** edgerl's reward charges
  latency, energy, SLO misses, bytes and privacy besides accuracy, so each (app, plan) is
  valued at its predicted utility per request (the reward's weights applied to predicted
  accuracy, latency, device energy, bytes and raw-input exposure). Plans predicted to miss
  an application's deadline are forbidden for it (Proteus's SLO rule), unless no plan meets
  it (then the fastest are kept).
* **Capacity.** Per tier, the predicted busy time per second of the routed rates is at most
  ``utilisation`` (default 0.8, a design choice: headroom for the queueing that a fluid
  model ignores) times the tier's servers: device CPU (per device; demand is split evenly
  across the scenario's identical devices), each device's uplink at the observed bandwidth
  estimate, the edge workers with the profiled batch-size-dependent time per request
  (batch latency / batch size from the edge profile, scaled to the cost model's batch-1
  prediction), the WAN at its estimate, and the cloud workers.
* **Integer part.** Proteus's binaries place one variant per accelerator. The simulator has
  no model loading (every edge worker serves every segment), so placement has no
  counterpart; the integer decision kept is the batch size of each edge segment: a binary
  ``y[s, b]`` per segment ``s`` and offered batch size ``b``, at most one per segment, and
  ``x[k, p] <= demand[k] * y[s(p), b(p)]`` (one batcher serves a segment, so its requests
  share one batch size: Proteus's per-device maximal batch size).
* **Inputs: only what an online system observes.** Demand is the mean over the past
  interval of the observed per-device arrival rate (the ``arrival_rate_per_s`` feature)
  times the number of devices, split over applications by the scenario's static shares;
  bandwidths are the means of the observed uplink and WAN estimates over the interval;
  latencies come from the same :class:`edgerl.agents.latency.PlanCostModel` as the other
  online baselines (regressions on the profiles); nothing reads the simulator.
* **Interval.** The policy sees no clock, so it estimates elapsed time from the observed
  rate (each decision advances it by ``1 / (devices x rate)``) and re-solves every
  ``interval_s`` of that estimate (default 1 s, a design choice: the MMPP bursts of the
  shipped scenarios last seconds; the Proteus simulator's configurations re-solve on a
  window of the same order). Each solve's wall time is recorded; HiGHS via
  :func:`scipy.optimize.milp` with a ``time_limit_s`` (default 1 s); if a solve fails or
  returns no solution, the last solution is kept (as Proteus's cached solution).
* **Routing.** Per application, smooth weighted round-robin over the solved proportions
  (deterministic, low discrepancy: each plan's share of the decisions tracks its solved
  share within one request). Per request, a deadline guard adapts the routed plan to this
  request's observation, as Proteus's early drop does to its queue: if the plan is
  predicted (observed backlogs and bandwidth) to miss the deadline, the request takes the
  solution's plan of the app with the best predicted utility that meets it, else any
  candidate plan's, else the fastest.
* **Adaptive batching.** The solved batch size of a segment is its maximum; per request the
  plan's batch-size target is the largest offered size not above it whose predicted
  latency (observed state, profiled batch time, and the wait for the batch to fill at the
  segment's solved rate, at most the scenario's batching window) still meets the deadline:
  the batch grows only while the deadline slack allows, as in Proteus's batching. The
  simulator's batcher dispatches at the smallest target of its members or at the window.

Not modelled by the program: cache hits (no shipped scenario with a published result offers
the cache) and the result's downlink (a few bytes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from edgerl.agents.baselines import _CostModelPolicy, literature_defaults
from edgerl.agents.latency import MIN_BANDWIDTH_MBPS, FitOn, LatencySource, ObservedState
from edgerl.envs.plans import Plan
from edgerl.envs.sim.build import ScenarioModel
from edgerl.envs.sim.network import BITS_PER_BYTE, BITS_PER_MBIT
from edgerl.profiles import interpolate_latency

DEFAULT_INTERVAL_S = 1.0  # design choice (module docstring)
DEFAULT_UTILISATION = 0.8  # design choice (module docstring)
DEFAULT_TIME_LIMIT_S = 1.0  # HiGHS wall-time limit per solve
MB = 1e6
#: Shares below this fraction of an application's rate are routing noise of the solver.
MIN_SHARE = 1e-6
MIN_RATE_PER_S = 1e-3


@dataclass(frozen=True)
class Allocation:
    """One solution: per application, the plans and their shares of its requests."""

    plans: tuple[np.ndarray, ...]  # per app: plan indices (batch = the segment's maximum)
    shares: tuple[np.ndarray, ...]  # per app: shares summing to 1 (or empty)
    segment_rate_per_s: dict[Any, float]  # solved rate through each edge segment
    served_fraction: float
    objective: float


@dataclass(frozen=True)
class SolveRecord:
    """What one interval's solve did."""

    decision: int
    wall_ms: float
    status: str  # "optimal" | "time_limit" | "failed: ..."
    kept_last: bool


class ProteusPolicy(_CostModelPolicy):
    """Proteus-style periodic MILP over the plan catalogue (see the module docstring)."""

    name = "proteus"

    def __init__(
        self,
        latency_source: LatencySource = "regression",
        fit_on: FitOn = "hardware",
        interval_s: float = DEFAULT_INTERVAL_S,
        utilisation: float = DEFAULT_UTILISATION,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    ) -> None:
        super().__init__(latency_source, fit_on)
        if interval_s <= 0 or not 0 < utilisation <= 1 or time_limit_s <= 0:
            raise ValueError(
                "proteus: interval_s and time_limit_s must be > 0 and utilisation in (0, 1], "
                f"got {interval_s}, {time_limit_s}, {utilisation}"
            )
        self.interval_s = interval_s
        self.utilisation = utilisation
        self.time_limit_s = time_limit_s
        #: the MILP solver (``scipy.optimize.milp`` signature); replaceable in tests
        self.solver: Callable[..., Any] | None = None
        self.solve_log: list[SolveRecord] = []
        self.allocation: Allocation | None = None
        self._reset_state()

    # ------------------------------------------------------------------ set-up

    def _setup(self, model: ScenarioModel) -> None:
        assert self.costs is not None
        cfg = model.cfg
        caches = {p.cache_policy for p in model.plans}
        _, _, _, cache = literature_defaults(model)
        self.cache = "lru" if "lru" in caches else cache
        cand = [
            p for p in model.plans if model.static_mask[p.index] and p.cache_policy == self.cache
        ]
        if not cand:
            raise ValueError(f"{self.name}: no feasible plan with cache policy {self.cache!r}")
        self.cand = np.array([p.index for p in cand], dtype=np.intp)
        self.batch_sizes = sorted({p.batch_size for p in model.plans})
        # batch-size families (same plan but the batch size) and edge segments
        self._family: dict[int, dict[int, int]] = {}
        fam: dict[tuple[Any, ...], dict[int, int]] = {}
        for p in cand:
            fam.setdefault(_family_key(p), {})[p.batch_size] = p.index
        for p in cand:
            self._family[p.index] = fam[_family_key(p)]
        self._segment = {p.index: _segment_key(p) for p in cand if p.uses_edge_compute}
        # profiled batch time of the edge segment, scaled to the cost model's batch-1 time
        n = len(model.plans)
        self.edge_batch_s = np.zeros(n)
        for p in cand:
            if p.uses_edge_compute:
                t1 = interpolate_latency(model.edge_batch_sizes, p.edge_batch_ms, 1)
                tb = interpolate_latency(model.edge_batch_sizes, p.edge_batch_ms, p.batch_size)
                self.edge_batch_s[p.index] = float(self.costs.edge_s[p.index]) * tb / t1
        self.batch_of = np.array([p.batch_size for p in model.plans], dtype=np.float64)
        self.accuracy = np.array([p.accuracy for p in model.plans])
        self.raw_left = np.array([p.raw_input_leaves for p in model.plans], dtype=np.float64)
        apps = cfg.workload.apps
        self.app_names = [a.name for a in apps]
        self.deadline_s = np.array([a.deadline_ms / 1e3 for a in apps])
        w = np.array([a.weight for a in apps], dtype=np.float64)
        self.app_share = w / w.sum()
        names = [f.name for f in self.env.features]
        self._app_idx = np.array([names.index(f"app_{a}") for a in self.app_names])
        self._rate_idx = names.index("arrival_rate_per_s")
        self._rate_scale = self.env.features[self._rate_idx].scale
        self.n_devices = cfg.devices.count
        self.edge_workers = cfg.edge.workers
        self.cloud_workers = cfg.cloud.workers
        self.window_s = cfg.edge.max_batch_wait_ms / 1e3
        self.reward = cfg.reward
        from edgerl.envs.sim.workload import mean_rate_per_s

        self.prior_rate_per_s = mean_rate_per_s(cfg.workload)  # static: the workload's mean
        import scipy.optimize  # noqa: F401 (loaded here, so no solve time includes the import)

        self.reset()

    def _reset_state(self) -> None:
        self.allocation = None
        self._credit: list[dict[int, float]] = []
        self._elapsed_s = 0.0
        self._win = np.zeros(4)  # sums of uplink Mbit/s, WAN Mbit/s, rate; count
        self._decisions = 0

    def reset(self, seed: int | None = None) -> None:
        self._reset_state()

    # ------------------------------------------------------------------ the program

    def predicted(
        self, idx: np.ndarray, state: ObservedState, total_rate_per_s: float, seg_rate: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(latency [s], utility) per plan of ``idx`` for a request in ``state``.

        Latency: the cost model's pipeline (observed backlogs as start delays) with the edge
        segment at its profiled batch time plus the wait for the batch to fill (at the
        segment's solved rate if given, else at ``total_rate_per_s``), at most the window.
        """
        assert self.costs is not None
        lat = self.costs.latency_s(idx, state)
        b = self.batch_of[idx]
        uses_edge = self.costs.uses_edge[idx]
        rates = np.full(len(idx), max(total_rate_per_s, MIN_RATE_PER_S))
        if seg_rate is not None:
            rates = np.array(
                [max(seg_rate.get(self._segment.get(int(i)), 0.0), MIN_RATE_PER_S) for i in idx]
            )
        fill_s = np.minimum((b - 1.0) / rates, self.window_s)
        lat = lat + np.where(uses_edge, self.edge_batch_s[idx] - self.costs.edge_s[idx] + fill_s, 0)
        w = self.reward
        cap = w.latency_cap_s if w.latency_cap_s is not None else math.inf
        mb = (self.costs.uplink_bytes[idx] + self.costs.wan_bytes[idx]) / MB
        util = (
            w.accuracy * self.accuracy[idx]
            - w.latency_per_s * np.minimum(lat, cap)
            - w.energy_per_j * self.costs.device_energy_j(idx, state)
            - w.slo_miss * (lat > state.deadline_s)
            - w.bytes_per_mb * mb
            - w.privacy * self.raw_left[idx]
        )
        return lat, util

    def solve_allocation(
        self, app_rates_per_s: np.ndarray, uplink_mbps: float, wan_mbps: float
    ) -> tuple[Allocation | None, str]:
        """Solve the program for the given demand and bandwidth estimates.

        Returns the allocation (None if the solver gave no solution) and a status string.
        """
        from scipy.optimize import Bounds, LinearConstraint, milp

        assert self.costs is not None
        c = self.costs
        total = float(app_rates_per_s.sum())
        cand = self.cand
        rows_x: list[tuple[int, int]] = []  # (app, plan index) per x variable
        util_x: list[float] = []
        for k, dl in enumerate(self.deadline_s):
            s = ObservedState(uplink_mbps, wan_mbps, 0.0, 0.0, 0.0, 0.0, float(dl))
            lat, util = self.predicted(cand, s, total)
            ok = lat <= dl
            if not ok.any():
                ok = lat <= lat.min() * (1 + 1e-9)
            for i in np.flatnonzero(ok):
                rows_x.append((k, int(cand[i])))
                util_x.append(float(util[i]))
        n_x, n_apps = len(rows_x), len(self.deadline_s)
        seg_b = sorted(
            {(self._segment[p], self.batch_of[p]) for _, p in rows_x if p in self._segment},
            key=repr,
        )
        y_of = {sb: n_x + n_apps + j for j, sb in enumerate(seg_b)}
        n_var = n_x + n_apps + len(seg_b)
        scale = max(total, MIN_RATE_PER_S)
        obj = np.zeros(n_var)
        obj[:n_x] = -np.array(util_x) / scale
        obj[n_x : n_x + n_apps] = self.reward.drop / scale
        idx = np.array([p for _, p in rows_x], dtype=np.intp)
        up_s_per_byte = BITS_PER_BYTE / (max(uplink_mbps, MIN_BANDWIDTH_MBPS) * BITS_PER_MBIT)
        wan_s_per_byte = BITS_PER_BYTE / (max(wan_mbps, MIN_BANDWIDTH_MBPS) * BITS_PER_MBIT)
        rho = self.utilisation
        cap_rows = [
            (c.device_s[idx], rho * self.n_devices),
            (c.uplink_bytes[idx] * up_s_per_byte, rho * self.n_devices),
            (
                np.where(c.uses_edge[idx], self.edge_batch_s[idx] / self.batch_of[idx], 0.0),
                rho * self.edge_workers,
            ),
            (c.wan_bytes[idx] * wan_s_per_byte, rho),
            (np.where(c.uses_cloud[idx], c.cloud_s[idx], 0.0), rho * self.cloud_workers),
        ]
        a_rows, lo, hi = [], [], []
        for coef, cap in cap_rows:
            if not np.any(coef > 0):
                continue
            row = np.zeros(n_var)
            row[:n_x] = coef
            a_rows.append(row)
            lo.append(-np.inf)
            hi.append(cap)
        for k in range(n_apps):  # every request is routed or counted as unserved
            row = np.zeros(n_var)
            row[[j for j, (kk, _) in enumerate(rows_x) if kk == k]] = 1.0
            row[n_x + k] = 1.0
            a_rows.append(row)
            lo.append(float(app_rates_per_s[k]))
            hi.append(float(app_rates_per_s[k]))
        for j, (k, p) in enumerate(rows_x):  # x only on the segment's chosen batch size
            if p in self._segment:
                row = np.zeros(n_var)
                row[j] = 1.0
                row[y_of[(self._segment[p], self.batch_of[p])]] = -float(app_rates_per_s[k])
                a_rows.append(row)
                lo.append(-np.inf)
                hi.append(0.0)
        for seg in {s for s, _ in seg_b}:  # one batch size per edge segment
            row = np.zeros(n_var)
            row[[y_of[sb] for sb in seg_b if sb[0] == seg]] = 1.0
            a_rows.append(row)
            lo.append(-np.inf)
            hi.append(1.0)
        integrality = np.zeros(n_var)
        integrality[n_x + n_apps :] = 1
        upper = np.full(n_var, np.inf)
        upper[n_x + n_apps :] = 1.0
        solver = self.solver if self.solver is not None else milp
        try:
            res = solver(
                obj,
                constraints=LinearConstraint(np.array(a_rows), np.array(lo), np.array(hi)),
                integrality=integrality,
                bounds=Bounds(np.zeros(n_var), upper),
                options={"time_limit": self.time_limit_s, "disp": False},
            )
        except (ValueError, RuntimeError, ArithmeticError) as exc:
            return None, f"failed: {type(exc).__name__}: {exc}"
        x = getattr(res, "x", None)
        status = int(getattr(res, "status", -1))
        if x is None or status not in (0, 1):
            return None, f"failed: status {status} ({getattr(res, 'message', '')})"
        x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
        plans, shares = [], []
        seg_rate: dict[Any, float] = {}
        for k in range(n_apps):
            js = [j for j, (kk, _) in enumerate(rows_x) if kk == k]
            v = x[js]
            keep = v > MIN_SHARE * max(float(app_rates_per_s[k]), MIN_RATE_PER_S)
            pk = idx[js][keep]
            vk = v[keep]
            plans.append(pk)
            shares.append(vk / vk.sum() if vk.size else vk)
            for p, r in zip(pk, vk, strict=True):
                if int(p) in self._segment:
                    key = self._segment[int(p)]
                    seg_rate[key] = seg_rate.get(key, 0.0) + float(r)
        served = float(x[:n_x].sum()) / scale
        alloc = Allocation(tuple(plans), tuple(shares), seg_rate, served, -float(res.fun) * 1.0)
        return alloc, "optimal" if status == 0 else "time_limit"

    def _resolve(self, rate_per_s: float, uplink_mbps: float, wan_mbps: float) -> None:
        rates = self.app_share * rate_per_s * self.n_devices
        t0 = time.perf_counter()
        alloc, status = self.solve_allocation(rates, uplink_mbps, wan_mbps)
        wall_ms = (time.perf_counter() - t0) * 1e3
        kept = alloc is None or not any(len(p) for p in alloc.plans)
        if alloc is not None and not kept:
            self.allocation = alloc
            self._credit = [dict.fromkeys((int(p) for p in ps), 0.0) for ps in alloc.plans]
        self.solve_log.append(SolveRecord(self._decisions, wall_ms, status, kept))

    # ------------------------------------------------------------------ the data path

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        assert self.costs is not None and self._decoder is not None, "call bind(env) first"
        state = self._decoder.decode(observation)
        rate = float(observation[self._rate_idx]) * self._rate_scale
        if rate <= 0:
            rate = self.prior_rate_per_s
        self._win += (state.uplink_mbps, state.wan_mbps, rate, 1.0)
        self._elapsed_s += 1.0 / max(rate * self.n_devices, MIN_RATE_PER_S)
        if self.allocation is None or self._elapsed_s >= self.interval_s:
            up, wan, r, n = self._win
            self._resolve(r / n, up / n, wan / n)
            self._win[:] = 0.0
            self._elapsed_s = 0.0
        self._decisions += 1
        k = int(np.argmax(observation[self._app_idx]))
        return self._route(k, state, rate * self.n_devices, action_mask)

    def _route(
        self, k: int, state: ObservedState, total_rate: float, mask: np.ndarray | None
    ) -> int:
        alloc = self.allocation
        seg_rate = alloc.segment_rate_per_s if alloc is not None else None
        support_k = alloc.plans[k] if alloc is not None else np.zeros(0, dtype=np.intp)
        chosen = -1
        if alloc is not None and len(support_k):
            credit = self._credit[k]
            for p, s in zip(alloc.plans[k], alloc.shares[k], strict=True):
                credit[int(p)] += float(s)
            allowed = [p for p in credit if mask is None or mask[p]]
            if allowed:
                chosen = max(allowed, key=lambda p: (credit[p], -p))
                credit[chosen] -= 1.0
        if chosen >= 0:
            chosen = self._batch(chosen, state, total_rate, seg_rate, mask)
            lat, _ = self.predicted(np.array([chosen]), state, total_rate, seg_rate)
            if lat[0] <= state.deadline_s:
                return chosen
            # deadline guard: the solution's best plan for this app that meets the deadline
            support = np.array(
                [self._batch(int(p), state, total_rate, seg_rate, mask) for p in support_k]
            )
            lat, util = self.predicted(support, state, total_rate, seg_rate)
            ok = lat <= state.deadline_s
            if ok.any():
                return int(support[int(np.argmax(np.where(ok, util, -np.inf)))])
        cand = self.cand if mask is None else self.cand[mask[self.cand]]
        if cand.size == 0:
            cand = self.cand
        lat, util = self.predicted(cand, state, total_rate, seg_rate)
        ok = lat <= state.deadline_s
        if ok.any():
            return int(cand[int(np.argmax(np.where(ok, util, -np.inf)))])
        return int(cand[int(np.argmin(lat))])

    def _batch(
        self,
        plan_index: int,
        state: ObservedState,
        total_rate: float,
        seg_rate: Any,
        mask: np.ndarray | None,
    ) -> int:
        """Adaptive batching: the largest offered batch size up to the solved one whose
        predicted latency (including the wait to fill it) meets the deadline."""
        family = self._family.get(plan_index)
        if family is None or plan_index not in self._segment:
            return plan_index
        top = self.batch_of[plan_index]
        sizes = [b for b in sorted(family) if b <= top and (mask is None or mask[family[b]])]
        if not sizes:
            return plan_index
        idx = np.array([family[b] for b in sizes], dtype=np.intp)
        lat, _ = self.predicted(idx, state, total_rate, seg_rate)
        ok = np.flatnonzero(lat <= state.deadline_s)
        return int(idx[ok[-1]]) if ok.size else int(idx[0])

    # ------------------------------------------------------------------ reporting

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        walls = [r.wall_ms for r in self.solve_log]
        d.update(
            interval_s=self.interval_s,
            utilisation=self.utilisation,
            time_limit_s=self.time_limit_s,
            solver="HiGHS (scipy.optimize.milp)",
            solves=len(self.solve_log),
            solve_ms_mean=float(np.mean(walls)) if walls else None,
            solve_ms_max=float(np.max(walls)) if walls else None,
            solves_kept_last=sum(r.kept_last for r in self.solve_log),
            solve_statuses=sorted({r.status.split(":")[0] for r in self.solve_log}),
        )
        return d


def _family_key(p: Plan) -> tuple[Any, ...]:
    return (
        p.variant,
        p.exit_index,
        p.threshold,
        p.rule_exits,
        p.cut_edge,
        p.cut_cloud,
        p.cache_policy,
    )


def _segment_key(p: Plan) -> tuple[Any, ...]:
    """The edge batcher a plan's segment joins: same variant, same units, same head."""
    return (
        p.variant,
        p.cut_edge,
        p.cut_cloud,
        p.exit_index if p.head_tier == "edge" else -1,
        p.rule_exits if p.threshold is not None else (),
    )
