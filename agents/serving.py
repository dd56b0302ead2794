"""Strong heuristic references: a serving-side composite and Edgent's dynamic mode.

Both are online baselines (:mod:`edgerl.agents.base`): at ``bind`` they read static scenario
data (plans, profiles and the latency regressions fitted on them, the *training* traces for
Edgent's offline map), and each decision reads only the observation.

**Serving composite** (:class:`ServingCompositePolicy`, ``composite``): the strongest rules
the serving systems use for the knobs Edgent does not touch, combined with Neurosurgeon's
partition:

* variant: INFaaS-style (Romero et al., "INFaaS: Automated Model-less Inference Serving",
  USENIX ATC 2021): the *cheapest* variant (least predicted compute) whose predicted latency
  at the current load meets the request's deadline, among the variants accurate enough.
  INFaaS users state a minimum accuracy; edgerl's applications do not, so "accurate enough"
  is within ``accuracy_tolerance`` (default 0.02, a design choice) of the most accurate
  variant. If none meets the deadline, the fastest accurate-enough plan;
* partition: Neurosurgeon's latency-optimal device-edge cut of that variant (Kang et al.,
  ASPLOS 2017), from the same regressions and observed backlogs as ``neurosurgeon``;
* batch size: Clipper-style AIMD (Crankshaw et al., "Clipper", NSDI 2017, Section 4.3):
  the batch-size target grows additively (+1 per decision) while the edge's recent batch
  latency (the ``edge_batch_ms`` observation) fits the request's edge budget (deadline minus
  the predicted rest of the path), and shrinks multiplicatively (x0.9, Clipper's 10 %
  back-off) when it does not; the plan takes the largest offered batch size not above it;
* cache: LRU result cache always on (when offered).

**Edgent's dynamic mode** (:class:`EdgentDynamicPolicy`, ``edgent-dynamic``): Li, Zeng,
Zhou, Chen, "Edge AI: On-Demand Accelerating Deep Neural Network Inference via Edge
Computing", IEEE TWC 2019: for a dynamic network, an offline *configuration map* from
bandwidth state to the best (exit, partition) configuration, and online change-point
detection on the bandwidth to decide when the state changed. Here: the bandwidth states are
the ``n_states`` quantile bins of the scenario's *training* uplink traces (time-weighted);
each state's configuration is Edgent's right-sizing configurator (:class:`EdgentPolicy`) at
the bin's median bandwidth with empty queues, per application deadline; online, Bayesian
change-point detection (Adams & MacKay 2007, :mod:`edgerl.agents.changepoint`) on the log
of the observed bandwidth estimate tracks the current segment's level, and the
configuration changes only when that level moves to another state. Unlike ``edgent``
(static mode: re-optimised per request with the observed backlogs) it does not react to
queues.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from edgerl.agents.baselines import EdgentPolicy, _CostModelPolicy, literature_defaults
from edgerl.agents.changepoint import GaussianBOCPD
from edgerl.agents.latency import FitOn, LatencySource, ObservedState
from edgerl.envs.plans import Plan
from edgerl.envs.sim.build import ScenarioModel

#: Clipper's AIMD: additive increase per decision, multiplicative back-off (NSDI 2017: 10 %).
AIMD_INCREASE = 1.0
AIMD_BACKOFF = 0.9
DEFAULT_ACCURACY_TOLERANCE = 0.02  # design choice (see the module docstring)
DEFAULT_STATES = 8  # bandwidth states of Edgent's map (quantile bins of the training traces)
#: Change-point detector on log(Mbit/s): expected segment length [decisions], noise sd of one
#: windowed estimate around its segment's level, prior sd of a level (design choices).
BOCPD_HAZARD_DECISIONS = 200.0
BOCPD_NOISE_SD = 0.3
BOCPD_PRIOR_SD = 2.0
MIN_LOG_MBPS = math.log(1e-3)  # log of an outage's bandwidth estimate (floor)


def _feature_index(features: Any, name: str) -> int:
    names = [f.name for f in features]
    if name not in names:
        raise ValueError(f"observation spec lacks the feature {name!r} (have {names})")
    return names.index(name)


class ServingCompositePolicy(_CostModelPolicy):
    """INFaaS variant choice + Neurosurgeon cut + Clipper AIMD batching + LRU cache."""

    name = "composite"

    def __init__(
        self,
        latency_source: LatencySource = "regression",
        fit_on: FitOn = "hardware",
        accuracy_tolerance: float = DEFAULT_ACCURACY_TOLERANCE,
    ) -> None:
        super().__init__(latency_source, fit_on)
        self.accuracy_tolerance = accuracy_tolerance
        self.by_variant: list[tuple[str, float, dict[int, np.ndarray]]] = []
        self.batch_sizes: list[int] = [1]
        self.cache = "none"
        self._batch_target = 1.0
        self._i_batch_ms = 0

    def _setup(self, model: ScenarioModel) -> None:
        assert self.costs is not None
        _, _, _, cache = literature_defaults(model)
        caches = {p.cache_policy for p in model.plans}
        self.cache = "lru" if "lru" in caches else cache
        self.batch_sizes = sorted({p.batch_size for p in model.plans})
        final = {
            v: max(p.exit_index for p in model.plans if p.variant == v and p.threshold is None)
            for v in model.cfg.model.variants
        }
        rows = []
        for v in model.cfg.model.variants:

            def ok(p: Plan, v: str = v) -> bool:
                return (
                    p.variant == v
                    and p.threshold is None
                    and p.exit_index == final[v]
                    and p.cut_cloud == p.n_units  # device-edge, as Neurosurgeon
                    and p.cache_policy == self.cache
                    and bool(model.static_mask[p.index])
                )

            plans = [p for p in model.plans if ok(p)]
            if not plans:
                continue
            per_batch = {
                b: np.array(
                    [p.index for p in plans if p.batch_size == b or not p.uses_edge_compute],
                    dtype=np.intp,
                )
                for b in self.batch_sizes
            }
            local = [p.index for p in plans if not p.offloads]
            cost = float(self.costs.device_s[local[0]]) if local else math.inf
            rows.append((v, plans[0].accuracy, per_batch, cost))
        if not rows:
            raise ValueError(f"{self.name}: no feasible plan at a final exit")
        rows.sort(key=lambda r: r[3])  # cheapest first
        self.by_variant = [(v, acc, pb) for v, acc, pb, _ in rows]
        self._i_batch_ms = _feature_index(self.env.features, "edge_batch_ms")
        self._batch_scale = self.env.features[self._i_batch_ms].scale

    def reset(self, seed: int | None = None) -> None:
        self._batch_target = float(self.batch_sizes[0])

    def _batch(self) -> int:
        fitting = [b for b in self.batch_sizes if b <= self._batch_target]
        return fitting[-1] if fitting else self.batch_sizes[0]

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        assert self.costs is not None and self._decoder is not None, "call bind(env) first"
        state = self._decoder.decode(observation)
        batch = self._batch_for(observation)
        floor = max(acc for _, acc, _ in self.by_variant) - self.accuracy_tolerance
        fastest: tuple[float, int] = (math.inf, -1)
        chosen = -1
        for _, acc, per_batch in self.by_variant:
            if acc < floor:
                continue
            cand = per_batch[batch]
            lat = self.costs.latency_s(cand, state)
            if action_mask is not None:
                lat = np.where(action_mask[cand], lat, np.inf)
            k = int(np.argmin(lat))
            if lat[k] < fastest[0]:
                fastest = (float(lat[k]), int(cand[k]))
            if lat[k] <= state.deadline_s:
                chosen = int(cand[k])
                break
        if chosen < 0:
            chosen = fastest[1] if fastest[1] >= 0 else int(self.by_variant[0][2][batch][0])
        self._after(chosen, state, observation)
        return chosen

    def _batch_for(self, observation: np.ndarray) -> int:
        """The edge batch size of this request's plan (Clipper's AIMD target here)."""
        return self._batch()

    def _after(self, plan_index: int, state: ObservedState, observation: np.ndarray) -> None:
        """Feedback after a decision (Clipper's AIMD update here)."""
        self._aimd(plan_index, state, float(observation[self._i_batch_ms]) * self._batch_scale)

    def _aimd(self, plan_index: int, state: ObservedState, batch_ms: float) -> None:
        """Clipper's AIMD on the batch-size target, against the request's edge budget."""
        assert self.costs is not None
        if not self.costs.uses_edge[plan_index]:
            return
        idx = np.array([plan_index])
        rest_s = float(self.costs.latency_s(idx, state)[0]) - float(self.costs.edge_s[plan_index])
        budget_s = state.deadline_s - rest_s
        if batch_ms / 1e3 <= budget_s:
            self._batch_target = min(self._batch_target + AIMD_INCREASE, self.batch_sizes[-1])
        else:
            self._batch_target = max(self._batch_target * AIMD_BACKOFF, self.batch_sizes[0])

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            accuracy_tolerance=self.accuracy_tolerance,
            cache=self.cache,
            variants_cheapest_first=[v for v, _, _ in self.by_variant],
        )
        return d


#: Ray Serve's ``@serve.batch`` defaults (docs.ray.io, ``ray.serve.batch`` API reference:
#: ``max_batch_size: int = 10, batch_wait_timeout_s: float = 0.01``).
RAY_SERVE_MAX_BATCH_SIZE = 10
RAY_SERVE_BATCH_WAIT_TIMEOUT_S = 0.01


class _PractitionerBatchingComposite(ServingCompositePolicy):
    """The composite with a serving framework's default edge batcher instead of AIMD.

    Variant (INFaaS), cut (Neurosurgeon) and cache (LRU) are the composite's; only the batch
    size of the plan changes, so a reader sees what a batch choice adds over the defaults
    people deploy. The simulator's batcher (:class:`edgerl.envs.sim.simulator.Batcher`)
    dispatches a segment's batch when as many requests wait as the smallest batch-size
    target among them, or when the first one has waited the scenario's
    ``edge.max_batch_wait_ms``; a policy can only choose each request's target.
    """

    def _setup(self, model: ScenarioModel) -> None:
        super()._setup(model)
        names = [f.name for f in self.env.features]
        self._raw_idx = {
            n: names.index(n)
            for n in ("edge_backlog_ms", "edge_batch_waiting", "arrival_rate_per_s")
        }
        self._raw_scale = {n: self.env.features[i].scale for n, i in self._raw_idx.items()}
        self._n_devices = model.cfg.devices.count
        self._window_s = model.cfg.edge.max_batch_wait_ms / 1e3

    def _raw(self, observation: np.ndarray, name: str) -> float:
        return float(observation[self._raw_idx[name]]) * self._raw_scale[name]

    def _largest_offered(self, n: float) -> int:
        fitting = [b for b in self.batch_sizes if b <= n]
        return fitting[-1] if fitting else self.batch_sizes[0]

    def _after(self, plan_index: int, state: ObservedState, observation: np.ndarray) -> None:
        return None  # no feedback: a framework default is static


class TritonBatchingComposite(_PractitionerBatchingComposite):
    """``composite-triton``: Triton's dynamic batcher with its default settings.

    NVIDIA Triton Inference Server user guide, "Batchers / Dynamic Batcher"
    (docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/batcher.html):
    "by default the dynamic batcher will create batches as large as possible up to the
    maximum batch size and will not delay when forming batches" (``max_queue_delay_microseconds``
    defaults to 0); batches are formed "when a model instance becomes available" from the
    requests waiting then. So a request finding an edge worker idle runs at once, and one
    finding it busy is batched with whatever waits when the worker frees.

    Mapping (approximate): the simulator forms a batch when it is dispatched to the worker
    queue, not when a worker frees, so the target is set from the edge's report: batch size
    1 (no added delay) when the observed time until an edge worker is free is zero;
    otherwise the largest offered batch size not above the number expected to wait when the
    worker frees (this request, the requests already in batchers, and the arrivals expected
    during the observed backlog: devices x this device's observed rate x backlog). A batch
    that does not fill leaves at the scenario's ``edge.max_batch_wait_ms`` window (Triton
    would wait exactly until the worker frees, which can be shorter or longer).
    """

    name = "composite-triton"

    def _batch_for(self, observation: np.ndarray) -> int:
        backlog_s = self._raw(observation, "edge_backlog_ms") / 1e3
        if backlog_s <= 0.0:
            return self.batch_sizes[0]
        waiting = self._raw(observation, "edge_batch_waiting")
        rate = self._raw(observation, "arrival_rate_per_s") * self._n_devices
        return self._largest_offered(1.0 + waiting + rate * backlog_s)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(batcher="triton-default", max_queue_delay_us=0)
        return d


class RayServeBatchingComposite(_PractitionerBatchingComposite):
    """``composite-rayserve``: Ray Serve's ``@serve.batch`` with its default settings.

    Ray Serve API reference, ``ray.serve.batch`` (docs.ray.io): ``max_batch_size=10``,
    ``batch_wait_timeout_s=0.01``; a batch runs "once there is a batch of max_batch_size
    or batch_wait_timeout_s has elapsed, whichever occurs first".

    Mapping (approximate): every request's target is the largest offered edge batch size not
    above 10 (the action menu may not offer 10 itself: with ``[1, 4]`` a batch leaves at 4
    waiting requests, earlier than Ray Serve would), and the wait is the scenario's
    ``edge.max_batch_wait_ms`` window (equal to Ray Serve's 10 ms on camera-lte and
    alexnet-edgepc-lte, 15 ms on camera-fleet-lte: the simulator has one window per edge).
    """

    name = "composite-rayserve"

    def _batch_for(self, observation: np.ndarray) -> int:
        return self._largest_offered(RAY_SERVE_MAX_BATCH_SIZE)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            batcher="ray-serve-default",
            max_batch_size=RAY_SERVE_MAX_BATCH_SIZE,
            batch_wait_timeout_s=RAY_SERVE_BATCH_WAIT_TIMEOUT_S,
            scenario_window_s=self._window_s if self._env is not None else None,
        )
        return d


def bandwidth_states(model: ScenarioModel, n_states: int) -> tuple[np.ndarray, np.ndarray]:
    """(inner bin edges, representative Mbit/s per state) from the training uplink traces.

    Edges are time-weighted quantiles ``k / n_states``; a state's representative is its
    median (quantile ``(k + 0.5) / n_states``). A constant uplink has a single state.
    """
    bw = model.cfg.network.uplink
    if bw.constant_mbps is not None:
        return np.zeros(0), np.array([bw.constant_mbps * bw.scale])
    from edgerl.envs.sim.build import training_uplink_traces
    from edgerl.envs.traces import time_weighted_quantile

    # the training traces as scaled in the episodes (with randomised families: all of theirs,
    # pooled by duration)
    traces = training_uplink_traces(model.cfg)
    q = [time_weighted_quantile(traces, k / n_states) for k in range(1, n_states)]
    reps = [time_weighted_quantile(traces, (k + 0.5) / n_states) for k in range(n_states)]
    return np.array(q), np.array(reps)


class EdgentDynamicPolicy(EdgentPolicy):
    """Edgent's dynamic-bandwidth configurator: offline map + online change-point detection."""

    stateless = False  # its change-point detector and current configuration

    name = "edgent-dynamic"

    def __init__(
        self,
        latency_source: LatencySource = "regression",
        fit_on: FitOn = "hardware",
        n_states: int = DEFAULT_STATES,
        states_mbps: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        super().__init__(latency_source, fit_on, all_variants=True)
        self.name = "edgent-dynamic"
        self.n_states = n_states
        self._given_states = states_mbps
        self.edges = np.zeros(0)
        self.reps = np.zeros(1)
        self.config_map: dict[tuple[float, int], int] = {}
        self.detector: GaussianBOCPD | None = None
        self.state = -1
        self.changes = 0

    def _setup(self, model: ScenarioModel) -> None:
        super()._setup(model)
        self.edges, self.reps = (
            self._given_states
            if self._given_states is not None
            else bandwidth_states(self.training_scenario(), self.n_states)
        )
        self.config_map = {}
        prior = float(np.mean(np.log(np.maximum(self.reps, 1e-3))))
        self.detector = GaussianBOCPD(BOCPD_HAZARD_DECISIONS, BOCPD_NOISE_SD, prior, BOCPD_PRIOR_SD)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        if self.detector is not None:
            self.detector.reset()
        self.state = -1
        self.changes = 0

    def configuration(self, state_index: int, deadline_s: float) -> int:
        """The map entry: Edgent's configurator at the state's bandwidth, empty queues."""
        key = (deadline_s, state_index)
        if key not in self.config_map:
            mbps = float(self.reps[state_index])
            s = ObservedState(mbps, mbps, 0.0, 0.0, 0.0, 0.0, deadline_s)
            self.config_map[key] = self.choose(s)
        return self.config_map[key]

    def state_of(self, mbps: float) -> int:
        return int(np.searchsorted(self.edges, mbps, side="right"))

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        assert self._decoder is not None and self.detector is not None, "call bind(env) first"
        obs = self._decoder.decode(observation)
        x = math.log(obs.uplink_mbps) if obs.uplink_mbps > 0 else MIN_LOG_MBPS
        self.detector.update(max(x, MIN_LOG_MBPS))
        level = self.state_of(math.exp(self.detector.segment_mean))
        if level != self.state:
            self.changes += self.state >= 0
            self.state = level
        plan = self.configuration(self.state, obs.deadline_s)
        if action_mask is not None and not action_mask[plan]:
            return self.choose(obs, action_mask)
        return plan

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            n_states=len(self.reps),
            states_mbps=[float(x) for x in self.reps],
            state_changes_last_episode=self.changes,
        )
        return d
