"""The Gymnasium adapter over the simulator."""

from __future__ import annotations

import operator
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from edgerl.envs.config import ScenarioConfig
from edgerl.envs.observation import (
    OBS_CLIP,
    Feature,
    feature_scales,
    observation_features,
)
from edgerl.envs.sim.build import LinkPin, ScenarioModel, build_simulator, scenario_model
from edgerl.envs.sim.network import BITS_PER_BYTE, BITS_PER_MBIT
from edgerl.envs.sim.simulator import REWARD_PARTS, Request, Simulator
from edgerl.envs.sim.streams import episode_entropy
from gymnasium import spaces

#: Below this window the bandwidth estimate is the instantaneous value [s].
_MIN_WINDOW_S = 1e-9
#: A bandwidth estimate below this counts as this much in drain-time estimates (an outage
#: reads as a very long drain, which the observation clips) [Mbit/s].
_MIN_ESTIMATE_MBPS = 1e-3
BYTES_PER_KB = 1e3


class CollabInferenceEnv(gym.Env[np.ndarray, np.int64]):
    """Collaborative DNN inference across device, edge and cloud.

    ## Description

    Requests arrive at one or more devices (Poisson, bursty MMPP or trace-driven arrivals,
    with Zipf-popular input identities and per-application deadlines). For each request the
    agent chooses a joint execution plan: the model variant (e.g. fp32, int8, reduced
    resolution), the early-exit branch (BranchyNet), the device-edge and edge-cloud cut points
    (Neurosurgeon-style partitioning), the batch size the request waits for at the edge and
    the edge cache policy. A SimPy simulator driven by measured per-layer profiles and real
    bandwidth traces then runs the request through device CPU, uplink, edge batching and
    workers, WAN and cloud.

    ## Action Space

    ``Discrete(N)``: an index into the scenario's flat plan catalogue
    (:func:`edgerl.envs.plans.build_catalogue`; decode with ``env.unwrapped.plans[a]``).
    Per-request meaning of the shared-state choices: ``batch_size`` is the batch size this
    request waits for at the edge (at most ``edge.max_batch_wait_ms``); ``cache_policy``
    ``none`` bypasses the cache, any other value looks the input up first and, on a miss,
    admits the result, evicting by that policy if the cache is full.
    ``action_masks()`` marks the plans that fit device and edge memory. An infeasible action
    taken anyway (an unmasked agent) drops the request: it earns the drop penalty and
    ``info["infeasible"]`` is True. An action outside ``[0, N)`` raises ``ValueError``.

    ## Observation Space

    ``Box(0, OBS_CLIP, (F,), float32)``; each feature is a raw measurement / scale, clipped.
    Only what the device knows or the edge reports at decision time (no future trace values;
    sources in :mod:`edgerl.envs.observation`):

    | name                | unit      | meaning                                               |
    |---------------------|-----------|-------------------------------------------------------|
    | uplink_mbps         | Mbit/s    | uplink bandwidth, mean over the past window           |
    | wan_mbps            | Mbit/s    | edge-cloud bandwidth, mean over the past window       |
    | device_backlog_ms   | ms        | profiled work queued on the device CPU (to the next   |
    |                     |           | exit decision of a threshold-rule job)                |
    | uplink_queue_kb     | kB        | bytes handed to the uplink, not yet delivered         |
    | uplink_drain_est_ms | ms        | uplink_queue_kb at the past-window bandwidth          |
    | edge_queue_len      | requests  | waiting at the edge (batchers + worker queue)         |
    | edge_backlog_ms     | ms        | until an edge worker is free (profiled compute)       |
    | edge_batch_waiting  | requests  | waiting in edge batchers                              |
    | cloud_queue_len     | requests  | waiting for a cloud worker                            |
    | wan_queue_kb        | kB        | bytes queued edge -> cloud, not yet delivered         |
    | wan_drain_est_ms    | ms        | wan_queue_kb at the past-window WAN bandwidth         |
    | edge_batch_ms       | ms        | service time of the edge's recent batches (EWMA)      |
    | cache_hit_rate      | fraction  | recent edge cache hit rate                            |
    | cache_fill          | fraction  | edge cache occupancy                                  |
    | arrival_rate_per_s  | 1/s       | this device's recent request rate                     |
    | input_seen_recently | indicator | the device sent this input among its recent requests  |
    | deadline_ms         | ms        | this request's deadline                               |
    | energy_left         | fraction  | device energy budget left                             |
    | app_<name>          | indicator | one per application                                   |

    ## Rewards

    Each request has a utility, the sum of weighted parts: ``w_acc * accuracy - w_lat *
    min(latency_s, latency_cap_s) - w_energy * energy_j - w_slo * missed - w_bytes * MB_sent
    - w_priv * raw_input_left``; a dropped request earns ``-w_drop`` minus its energy, bytes
    and privacy parts (``latency_cap_s``: optional, none by default). Which step is credited
    with it is the scenario's ``reward.credit``:

    * ``decision`` (default): step k earns the utility of the request decided at step k, as
      :meth:`Simulator.predict_outcome` computes it at the decision (an exact replay of its
      path on the current queues with the true future bandwidth: rewards may use hindsight,
      observations may not). When a request finishes, the difference between its actual and
      predicted utility is added to the reward of the step in which it finishes. The
      difference is zero wherever the path is FIFO (one device, no batch partner arriving
      later, no cache entry changing before the lookup); in every case the episode's return
      equals the sum of the actual utilities. ``info["credit_correction"]`` is that step's
      sum of differences.
    * ``finish``: step k earns the utilities of the requests that finished during it (v1).

    The weighted parts are in ``info["reward_parts"]``; weights in the scenario's ``reward``.

    ## Episode End

    Truncated at the decision after which no request is left to decide: arrivals stop at
    ``horizon_s``. The system then drains (every request in flight finishes), and the
    utilities of the drained requests enter that last step's reward, so the return counts
    every request that arrived. The last observation is the real state at the horizon (SB3
    bootstraps its value from it). Never terminated.

    ## Arguments

    ``gym.make("edgerl/CollabInference-v2", scenario="lte-dynamic", split="train")``;
    ``scenario``: a shipped scenario name, a YAML path or a :class:`ScenarioConfig`;
    ``split``: ``"train"`` or ``"eval"`` traces (held-out evaluation);
    ``record``: keep every finished request in ``env.unwrapped.sim.finished``.

    ## Version History

    * v0: initial version.
    * v1: ``reward.latency_cap_s`` (the latency penalty may saturate); ``lte-dynamic`` and
      ``hsdpa-mobile`` set it, so their rewards differ from v0.
    * v2: honest comparisons. One random stream per source (the workload no longer depends
      on the policy); the uplink and WAN backlog features (true future drain times) are
      replaced by queued bytes and their estimated drain time; arrivals stop at the horizon
      and the system drains into the last reward; the last observation is the real state;
      results computed on the device are uploaded before the edge may cache them; the radio
      base power is paid once while up- and downlink overlap; MMPP arrivals start in their
      stationary state; dropped requests pay their bytes and privacy parts.

    ## References

    * Kang et al., Neurosurgeon, ASPLOS 2017 (partitioning).
    * Teerapittayanon et al., BranchyNet, ICPR 2016 (early exits).
    * Li, Zhou, Chen, Edgent, IEEE TWC 2019 (exit + partition under deadlines).
    * Huang et al., MobiSys 2012 (radio power model).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium convention)

    def __init__(
        self,
        scenario: str | ScenarioConfig | ScenarioModel = "lte-dynamic",
        split: Literal["train", "eval"] = "train",
        record: bool = False,
        log_events: bool = False,
    ) -> None:
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        if isinstance(scenario, ScenarioModel):
            self.model = scenario
        elif isinstance(scenario, ScenarioConfig):
            self.model = ScenarioModel.from_config(scenario)
        else:
            self.model = scenario_model(str(scenario))
        cfg = self.cfg = self.model.cfg
        self.split = split
        self.record = record
        self.log_events = log_events
        self.plans = self.model.plans
        self.features: list[Feature] = observation_features(
            [a.name for a in cfg.workload.apps],
            cfg.edge.queue_capacity,
            cfg.cloud.queue_capacity,
            max(a.deadline_ms for a in cfg.workload.apps),
        )
        self._inv_scales = 1.0 / feature_scales(self.features)
        self._inv_scales_list: list[float] = self._inv_scales.tolist()
        self._window_s = cfg.network.bandwidth_window_s
        self._energy_budget_j = cfg.devices.energy_budget_j
        self._n_base = len(self.features) - len(cfg.workload.apps)
        self.action_space = spaces.Discrete(len(self.plans))
        self.observation_space = spaces.Box(
            0.0, OBS_CLIP, shape=(len(self.features),), dtype=np.float32
        )
        self._mask = self.model.static_mask
        self._feasible = [bool(m) for m in self._mask]  # the mask as Python bools (step)
        self._zero_parts = [0.0] * len(REWARD_PARTS)
        self._app_onehot = [
            [1.0 if i == j else 0.0 for j in range(len(cfg.workload.apps))]
            for i in range(len(cfg.workload.apps))
        ]
        self._parts = [0.0] * len(REWARD_PARTS)
        self._n_done = 0
        self._correction = 0.0
        self._decision_credit = cfg.reward.credit == "decision"
        self.sim: Simulator | None = None
        self._req: Request | None = None
        self._last_req: Request | None = None
        self.episode_entropy = 0
        self.uplink_pin: LinkPin | None = None

    # --------------------------------------------------------------------- gym API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # One integer drawn from np_random seeds the episode's streams (one per source); it is
        # kept so that references (the hindsight oracle) can rebuild the same episode.
        self.episode_entropy = episode_entropy(self.np_random)
        self.uplink_pin = _uplink_pin(options)
        sim = build_simulator(
            self.model,
            np.random.SeedSequence(self.episode_entropy),
            self.split,
            record=self.record,
            log_events=self.log_events,
            uplink_pin=self.uplink_pin,
        )
        return self.attach(sim), {}

    def attach(self, sim: Simulator) -> np.ndarray:
        """Run ``sim`` (a fresh simulator of this env's scenario, built elsewhere, e.g. by the
        hindsight oracle from an episode's seed) as the current episode; returns the first
        observation. :meth:`reset` builds the simulator and calls this."""
        self.sim = sim
        sim.on_finish.append(self._on_finish)
        self._req = sim.next_decision()
        self._last_req = self._req
        return self._observe(self._req)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        sim = self.sim
        if sim is None or self._req is None:
            raise RuntimeError("call reset() before step() (and again after the episode ended)")
        a = int(action)
        if not 0 <= a < len(self.plans) or a != action:
            raise ValueError(
                f"invalid action {action!r}: expected an integer in [0, {len(self.plans)})"
            )
        parts = self._parts
        parts[:] = self._zero_parts
        self._n_done = 0
        self._correction = 0.0
        feasible = self._feasible[a]
        if self._decision_credit and feasible:
            # decision-time credit: the request's own outcome, as the exact what-if predicts it
            req = self._req
            predicted = sim.predict_outcome(req, self.plans[a]).parts
            req.predicted_parts = predicted
            for i, v in enumerate(predicted):
                parts[i] += v
        sim.apply(a, feasible)
        self._last_req = self._req
        self._req = sim.next_decision()
        truncated = self._req is None
        if truncated:
            # The state at the horizon, seen by the last request's device (SB3 bootstraps
            # its value from this observation); then the system drains, and the utilities of
            # every request still in flight enter this last reward.
            obs = self._observe(self._last_req)
            sim.drain()
        else:
            obs = self._observe(self._req)
        reward = sum(parts)
        info = {
            "reward_parts": dict(zip(REWARD_PARTS, parts, strict=True)),
            "finished": self._n_done,
            "infeasible": not feasible,
            "credit_correction": self._correction,
        }
        return obs, reward, False, truncated, info

    def action_masks(self) -> np.ndarray:
        """Plans that fit the device and edge memory (for MaskablePPO)."""
        return self._mask

    @property
    def pending_request(self) -> Request | None:
        """The request awaiting a plan (None after the horizon)."""
        return self._req

    # --------------------------------------------------------------------- internals

    def _on_finish(self, req: Request) -> None:
        parts = self._parts
        predicted = req.predicted_parts
        if predicted:  # decision credit: only the prediction's error is left to pay
            correction = self._correction
            for i, (v, p) in enumerate(zip(req.parts, predicted, strict=True)):
                d = v - p
                parts[i] += d
                correction += d
            self._correction = correction
        else:
            for i, v in enumerate(req.parts):
                parts[i] += v
        self._n_done += 1

    def raw_state(self) -> np.ndarray:
        """The raw (unnormalised) feature vector for the pending request, in spec order."""
        return np.array(self._raw_list(self._req), dtype=np.float64)

    def _raw_list(self, req: Request | None) -> list[float]:
        """The raw features at the current simulated time, for ``req``'s device and app."""
        sim = self.sim
        assert sim is not None
        if req is None:
            return [0.0] * len(self.features)
        now = sim.env.now
        dev = sim.devices[req.device]
        t0 = now - self._window_s
        t0 = t0 if t0 > 0.0 else 0.0
        if now - t0 > _MIN_WINDOW_S:
            uplink_mbps = dev.uplink.bandwidth.mean_mbps(t0, now)
            wan_mbps = sim.wan_up.bandwidth.mean_mbps(t0, now)
        else:
            uplink_mbps = dev.uplink.bandwidth.mbps_at(now)
            wan_mbps = sim.wan_up.bandwidth.mbps_at(now)
        up_queued = dev.uplink.queued_bytes(now)
        wan_queued = sim.wan_up.queued_bytes(now)
        gap = dev.arrival_gap_ewma_s
        budget = self._energy_budget_j
        energy_left = max(0.0, 1.0 - dev.energy_used_j / budget) if budget < float("inf") else 1.0
        edge_workers_waiting = sim.edge_workers.waiting(now)
        return [
            uplink_mbps,
            wan_mbps,
            dev.known_backlog_s(now) * 1e3,
            up_queued / BYTES_PER_KB,
            _drain_ms(up_queued, uplink_mbps),
            sim.edge_batch_waiting + edge_workers_waiting,
            sim.edge_workers.backlog_s(now) * 1e3,
            sim.edge_batch_waiting,
            sim.cloud_workers.waiting(now),
            wan_queued / BYTES_PER_KB,
            _drain_ms(wan_queued, wan_mbps),
            sim.edge_batch_ms_ewma,
            sim.cache_hit_ewma,
            sim.cache.fill,
            1.0 / gap if gap > 0 else 0.0,
            float(req.seen_recently),
            req.deadline_s * 1e3,
            energy_left,
            *self._app_onehot[req.app],
        ]

    def raw_state_dict(self) -> dict[str, float]:
        """The raw state by feature name (what the runtime planner takes)."""
        return {
            f.name: float(v) for f, v in zip(self.features, self._raw_list(self._req), strict=True)
        }

    def _observe(self, req: Request | None) -> np.ndarray:
        """:func:`normalise` of the raw features, in Python floats (the same float64 products
        and clipping, one float32 array at the end: several times cheaper than numpy's ufuncs
        on a vector this short, and bit-identical; ``tests/test_env.py`` checks both agree)."""
        clip = OBS_CLIP
        scaled = map(operator.mul, self._raw_list(req), self._inv_scales_list)
        return np.array(
            [0.0 if x < 0.0 else (clip if x > clip else x) for x in scaled], dtype=np.float32
        )


#: ``reset(options=...)`` keys: device 0's uplink trace (index in the split's trace list) and
#: start offset [s]; both or neither (stratified evaluation, :func:`eval_strata`).
RESET_OPTIONS = ("uplink_trace", "uplink_offset_s")


def _uplink_pin(options: dict[str, Any] | None) -> LinkPin | None:
    if not options:
        return None
    unknown = sorted(set(options) - set(RESET_OPTIONS))
    if unknown:
        raise ValueError(f"reset options: unknown key(s) {unknown}; known: {list(RESET_OPTIONS)}")
    if set(options) != set(RESET_OPTIONS):
        raise ValueError(f"reset options: give both {list(RESET_OPTIONS)} or neither")
    return LinkPin(int(options["uplink_trace"]), float(options["uplink_offset_s"]))


def _drain_ms(queued_bytes: float, mbps: float) -> float:
    """Time to deliver ``queued_bytes`` at ``mbps`` [ms] (a sender's estimate)."""
    if queued_bytes <= 0.0:
        return 0.0
    return queued_bytes * BITS_PER_BYTE / (max(mbps, _MIN_ESTIMATE_MBPS) * BITS_PER_MBIT) * 1e3
