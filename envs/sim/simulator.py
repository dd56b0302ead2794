"""The device-edge-cloud discrete-event simulator (SimPy; no Gymnasium).

A request's path (see README, "The simulator's model")::

    arrival on device d
      -> [cache policy != none] fingerprint up to the edge, lookup; a hit returns the result
      -> device compute: units [0, c_edge) (+ exit head if it ends there)   (device CPU, FIFO)
      -> uplink transfer of the cut tensor (raw input if c_edge == 0)       (device uplink, FIFO)
      -> edge: dynamic batching of identical segments, units [c_edge, c_cloud)  (edge workers)
      -> WAN transfer to the cloud, units [c_cloud, n_e) + head, WAN back     (cloud workers)
      -> downlink transfer of the result to the device
      -> completed

With a cache policy, the result is admitted into the edge cache when the edge holds it: after
the edge computed the exit head, when the cloud's result is back at the edge, or, for a result
computed on the device, when the device's upload of the result (plus its fingerprint) reaches
the edge. A request is dropped when the plan is infeasible (a documented treatment for unmasked
agents), or when the edge or cloud queue is full on its arrival there. At every instant
``arrived == completed + dropped + in_flight`` (pending decisions count as in flight).

Episode end: arrivals stop at ``horizon_s``; requests that arrived before still get their
decisions, and :meth:`Simulator.drain` then runs the system until every request has finished,
so no request is left out of any metric.

Randomness: one generator per stochastic source, spawned from the episode's seed
(:mod:`edgerl.envs.sim.streams`), so the workload does not depend on the policy. Components
are plain objects holding the SimPy environment, so many simulators can live in one process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy
from edgerl.envs.config import ConfigError, ScenarioConfig
from edgerl.envs.plans import MB, Plan
from edgerl.envs.sim.cache import CacheEntry, ResultCache
from edgerl.envs.sim.network import (
    RADIO_MODELS,
    BandwidthSource,
    ConstantBandwidth,
    Link,
    RadioActivity,
)
from edgerl.envs.sim.servers import FifoServer, MultiServer
from edgerl.envs.sim.streams import RandomStreams
from edgerl.envs.sim.whatif import (
    S_BATCH,
    S_CLOUD,
    S_DEVICE,
    S_DOWNLINK,
    S_EDGE_RUN,
    S_LEAVING,
    S_LOOKUP_BACK,
    S_LOOKUP_UP,
    S_NEW,
    S_UPLINK,
    S_WAN_DOWN,
    S_WAN_UP,
    Replay,
    Snapshot,
)
from edgerl.envs.sim.workload import AppMix, Popularity, interarrival_times
from edgerl.profiles import interpolate_latency

#: Smoothing of the cache hit-rate, arrival-rate and batch-latency estimates (weight of the
#: newest sample).
EWMA_WEIGHT = 0.05
#: How many of its own recent inputs (fingerprints) a device remembers (an observation
#: feature: a repeat is worth a cache lookup). A design choice: a few seconds of requests.
RECENT_INPUTS_PER_DEVICE = 64

#: Above this many requests in flight :meth:`Simulator.predict_outcome` predicts from the
#: resources' horizons instead of replaying every one of them (a replay costs about 6 us per
#: event of the requests in flight: 200 requests queued in an overloaded lte-dynamic episode
#: under a random policy made one decision cost 100-200 ms; see README, "Reward"). A design
#: choice: above the request counts of the shedding scenarios' trained policies.
WHATIF_MAX_IN_FLIGHT = 64

REWARD_PARTS = ("accuracy", "latency", "energy", "slo_miss", "bytes", "privacy", "drop")


@dataclass(slots=True)
class Request:
    """One inference request and everything that happened to it (times in s, energy in J)."""

    id: int
    device: int
    app: int
    input_id: int
    arrival_s: float
    deadline_s: float
    plan_index: int = -1
    seen_recently: bool = False  # the device sent the same input among its recent requests
    status: str = "pending"  # pending | in_flight | completed | dropped
    drop_reason: str = ""
    finish_s: float = float("nan")
    t_lookup_s: float = 0.0
    t_device_s: float = 0.0
    t_uplink_s: float = 0.0
    t_edge_wait_s: float = 0.0
    t_edge_s: float = 0.0
    t_wan_s: float = 0.0
    t_cloud_wait_s: float = 0.0
    t_cloud_s: float = 0.0
    t_downlink_s: float = 0.0
    bytes_uplink: int = 0
    bytes_wan: int = 0
    bytes_downlink: int = 0
    energy_compute_j: float = 0.0
    energy_radio_j: float = 0.0
    cache_hit: bool = False
    raw_input_left: bool = False
    accuracy: float = 0.0
    correct: bool = False
    utility: float = 0.0
    parts: tuple[float, ...] = ()  # weighted reward parts, in REWARD_PARTS order
    predicted_parts: tuple[float, ...] = ()  # what-if at decision (decision credit, the env)
    # where its process waits (the what-if replay, :mod:`edgerl.envs.sim.whatif`)
    stage: int = 0  # one of whatif.S_*
    resume_s: float = 0.0  # when it resumes
    seq: int = 0  # scheduling order of that resumption (ties at the same time)
    run_plan: int = -1  # the plan it runs (a threshold rule's resolved plan)
    lookup_entry: CacheEntry | None = None  # the cache's answer while it travels back

    @property
    def parts_dict(self) -> dict[str, float]:
        return dict(zip(REWARD_PARTS, self.parts, strict=True))

    @property
    def latency_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def energy_j(self) -> float:
        return self.energy_compute_j + self.energy_radio_j

    @property
    def slo_met(self) -> bool:
        return self.status == "completed" and self.latency_s <= self.deadline_s


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    """A predicted outcome (:meth:`Simulator.predict_outcome`)."""

    latency_s: float
    energy_j: float
    bytes_sent: int
    accuracy: float
    raw_input_left: bool
    drop_reason: str
    utility: float
    parts: tuple[float, ...]  # weighted reward parts, in REWARD_PARTS order


#: Value a batch member's ``done`` event carries when load shedding drops it at dispatch.
_SHED = "shed"


@dataclass(frozen=True)
class MeasuredAnswers:
    """Measured per-test-image answers of the scenario's model (from its accuracy table).

    ``correct[(variant, exit)][i]``: whether that exit answers test image ``i`` right;
    ``exit_of[(variant, tau, rule_exits)][i]``: the exit a threshold rule takes on image ``i``.
    """

    n_images: int
    correct: dict[tuple[str, int], np.ndarray]
    exit_of: dict[tuple[str, float, tuple[int, ...]], np.ndarray]

    @classmethod
    def from_table(cls, table: Any, plans: Sequence[Plan]) -> MeasuredAnswers:
        variants = {p.variant for p in plans}
        correct = {
            (v, e): np.asarray(table.correct(v, e))
            for v in variants
            for e in range(len(table.exit_names))
        }
        exit_of = {
            (p.variant, p.threshold, p.rule_exits): table.threshold_exits(
                p.variant, p.threshold, list(p.rule_exits)
            )
            for p in plans
            if p.threshold is not None
        }
        return cls(int(table.n_inputs), correct, exit_of)


class _OffsetBandwidth:
    """A bandwidth source seen from ``offset_s`` into it, scaled by ``scale``."""

    __slots__ = ("_src", "offset_s", "scale")

    def __init__(self, src: BandwidthSource, offset_s: float, scale: float) -> None:
        self._src, self.offset_s, self.scale = src, offset_s, scale

    @property
    def source(self) -> BandwidthSource:
        """The source seen through the offset (e.g. the trace, with its name)."""
        return self._src

    def mbps_at(self, t_s: float) -> float:
        return self._src.mbps_at(t_s + self.offset_s) * self.scale

    def transfer_end_s(self, start_s: float, nbytes: float) -> float:
        return (
            self._src.transfer_end_s(start_s + self.offset_s, nbytes / self.scale) - self.offset_s
        )

    def mean_mbps(self, t0_s: float, t1_s: float) -> float:
        return self._src.mean_mbps(t0_s + self.offset_s, t1_s + self.offset_s) * self.scale


class Device:
    __slots__ = (
        "arrival_gap_ewma_s",
        "cpu",
        "downlink",
        "energy_used_j",
        "index",
        "last_arrival_s",
        "power_w",
        "radio_on",
        "recent_inputs",
        "recent_order",
        "rule_jobs",
        "uplink",
    )

    def __init__(self, index: int, uplink: Link, downlink: Link, power_w: float) -> None:
        self.index = index
        self.cpu = FifoServer()
        self.uplink = uplink
        self.downlink = downlink
        self.radio_on = RadioActivity()
        self.power_w = power_w
        self.energy_used_j = 0.0
        self.last_arrival_s = 0.0
        #: EWMA of the gaps between this device's arrivals; 0 until the first arrival, whose
        #: gap (from the episode start) initialises it (an EWMA started at 0 would report up
        #: to 1/EWMA_WEIGHT times the true rate for the first tens of requests)
        self.arrival_gap_ewma_s = 0.0
        # the device's own recent inputs: id -> count within the last RECENT_INPUTS_PER_DEVICE
        self.recent_inputs: dict[int, int] = {}
        self.recent_order: deque[int] = deque()
        # the CPU's jobs (start, end, decision points [s of compute]) when the scenario has
        # threshold rules: the device cannot know where such a job ends before it has
        # evaluated its exits (known_backlog_s)
        self.rule_jobs: deque[tuple[float, float, tuple[float, ...]]] = deque()

    def known_backlog_s(self, now_s: float) -> float:
        """The CPU's queued work as the device can know it at ``now_s`` [s].

        A BranchyNet threshold job's length depends on the confidence of exits it has not
        evaluated yet: the device knows only the work up to its next decision point (its
        next exit head on the device, or the cut). Other jobs count in full. Without
        threshold plans in the scenario (no jobs tracked) this is the CPU's backlog.
        """
        jobs = self.rule_jobs
        if not jobs:
            return self.cpu.backlog_s(now_s)
        while jobs and jobs[0][1] <= now_s:
            jobs.popleft()
        backlog = 0.0
        for start_s, _, points in jobs:
            done_s = now_s - start_s if now_s > start_s else 0.0
            for c in points:  # the first decision point not yet reached
                if c > done_s:
                    backlog += c - done_s
                    break
        return backlog

    def remember(self, input_id: int) -> bool:
        """Record a request's input; return whether it was among the recent ones before."""
        seen = input_id in self.recent_inputs
        self.recent_inputs[input_id] = self.recent_inputs.get(input_id, 0) + 1
        self.recent_order.append(input_id)
        if len(self.recent_order) > RECENT_INPUTS_PER_DEVICE:
            old = self.recent_order.popleft()
            left = self.recent_inputs[old] - 1
            if left:
                self.recent_inputs[old] = left
            else:
                del self.recent_inputs[old]
        return seen


class Batcher:
    """Dynamic batching of one edge segment (same variant, same units, same head).

    A request waits until the batch has at least as many members as the smallest batch size
    any member asked for, or until the first member's wait window expires; then up to
    ``max_batch`` members run together with the profile's latency at that batch size.
    """

    __slots__ = ("generation", "min_target", "plan", "timer", "waiting")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan  # any plan of this segment: the segment's latencies
        self.waiting: list[tuple[Request, simpy.Event, float]] = []
        self.min_target = 0
        self.generation = 0
        self.timer: tuple[float, int, int] | None = None  # armed window: (at, seq, generation)


class Simulator:
    """One episode of the device-edge-cloud system.

    Args:
        cfg: the scenario.
        plans: the plan catalogue (:func:`edgerl.envs.plans.build_catalogue`).
        edge_batch_sizes: the edge profile's measured batch sizes (for interpolation).
        streams: the episode's random generators (:class:`RandomStreams`; an integer seed or
            a Generator is turned into them with :meth:`RandomStreams.spawn`).
        uplinks / downlinks: one bandwidth source per device (traces or constants).
        wan: the edge-cloud bandwidth source.
        device_power_w: active compute power of the device class [W].
        record: keep every finished :class:`Request` in ``finished`` (evaluation, tests).
        log_events: keep an event log ``(time_s, request_id, event)`` in ``events`` (tests).
    """

    def __init__(
        self,
        cfg: ScenarioConfig,
        plans: Sequence[Plan],
        edge_batch_sizes: Sequence[int],
        streams: RandomStreams | int | np.random.Generator,
        uplinks: Sequence[BandwidthSource],
        downlinks: Sequence[BandwidthSource],
        wan: BandwidthSource,
        device_power_w: float,
        *,
        record: bool = False,
        log_events: bool = False,
        resolved: dict[int, dict[int, Plan]] | None = None,
        answers: MeasuredAnswers | None = None,
    ) -> None:
        if len(uplinks) != cfg.devices.count or len(downlinks) != cfg.devices.count:
            raise ConfigError(f"{cfg.path}: need one uplink and downlink per device")
        self.cfg = cfg
        self.plans = plans  # the catalogue: actions index it
        self._resolved = resolved or {}
        # every plan a request may run: the catalogue, then resolved threshold plans
        all_plans = list(plans) + sorted(
            (r for d in self._resolved.values() for r in d.values()), key=lambda r: r.index
        )
        if [p.index for p in all_plans] != list(range(len(all_plans))):
            raise ConfigError(f"{cfg.path}: plan indices must be 0..n-1 (catalogue, then resolved)")
        self.all_plans = all_plans
        #: per plan: runs on the device alone and skips the cache (nothing shared to touch)
        self.device_only_nocache = [not p.offloads and p.cache_policy == "none" for p in all_plans]
        #: per catalogue plan, the device compute [s] after which the device decides whether a
        #: request goes on (a threshold rule's exit heads on the device, and the cut)
        self.device_points = [
            tuple(sorted({r.device_s for r in self._resolved[p.index].values()}))
            if p.threshold is not None
            else (p.device_s,)
            for p in plans
        ]
        self.has_rules = any(p.threshold is not None for p in plans)
        self.answers = answers
        if not isinstance(streams, RandomStreams):
            streams = RandomStreams.spawn(streams, cfg.devices.count)
        self.streams = streams
        self.env = simpy.Environment()
        self.edge_batch_sizes = tuple(edge_batch_sizes)
        self.max_batch = max(edge_batch_sizes)
        net = cfg.network
        access_prop_s = net.access_rtt_ms / 2e3
        self.devices = [
            Device(
                i,
                Link(uplinks[i], access_prop_s),
                Link(downlinks[i], access_prop_s),
                device_power_w,
            )
            for i in range(cfg.devices.count)
        ]
        self.radio = RADIO_MODELS[cfg.devices.radio]
        wan_prop_s = net.wan_rtt_ms / 2e3
        self.wan_up = Link(wan, wan_prop_s)
        self.wan_down = Link(wan, wan_prop_s)
        self.edge_workers = MultiServer(cfg.edge.workers)
        self.cloud_workers = MultiServer(cfg.cloud.workers)
        self.cache = ResultCache(cfg.edge.cache_capacity)
        self.cache_hit_ewma = 0.0
        self.batchers: dict[tuple[Any, ...], Batcher] = {}
        self.plan_batcher: list[Batcher | None] = []
        for p in all_plans:
            if not p.uses_edge_compute:
                self.plan_batcher.append(None)
                continue
            key = (  # the edge segment: same variant, units and heads batch together
                p.variant,
                p.cut_edge,
                p.cut_cloud,
                p.exit_index if p.head_tier == "edge" else -1,
                p.rule_exits if p.threshold is not None else (),
            )
            self.plan_batcher.append(self.batchers.setdefault(key, Batcher(p)))
        self.edge_batch_waiting = 0
        self.edge_batch_ms_ewma = 0.0
        self.popularity = Popularity(cfg.workload.catalogue_size, cfg.workload.zipf_s)
        self.apps = AppMix([a.weight for a in cfg.workload.apps])
        self.deadlines_s = [a.deadline_ms / 1e3 for a in cfg.workload.apps]
        # What each input id is, drawn once for the whole catalogue (see is_correct): a
        # latent difficulty, or the test image it stands for (measured answers).
        n_inputs = cfg.workload.catalogue_size
        self.difficulty: list[float] = []
        self.image_of: list[int] = []
        if answers is None:
            self.difficulty = streams.content.random(n_inputs).tolist()
        elif n_inputs <= answers.n_images:  # distinct inputs are distinct images
            self.image_of = streams.content.permutation(answers.n_images)[:n_inputs].tolist()
        else:
            self.image_of = streams.content.integers(answers.n_images, size=n_inputs).tolist()
        # compute a plan saves when its result is reused (cost-aware eviction) [s]
        self.compute_s = [
            p.device_s
            + p.uses_edge_compute * interpolate_latency(edge_batch_sizes, p.edge_batch_ms, 1) / 1e3
            + p.cloud_s
            for p in all_plans
        ]
        self.w = cfg.reward
        self.shedding = cfg.shedding == "deadline"
        # Lower bounds on the time from a stage to the result reaching the device [s]:
        # remaining profiled compute (edge at batch 1) plus propagation; transfers count 0.
        a_s, w_s = net.access_rtt_ms / 2e3, net.wan_rtt_ms / 2e3
        # edge service time [s] of each plan's segment for a batch of n = 0..max_batch
        self.edge_s_by_n = [
            [
                interpolate_latency(edge_batch_sizes, p.edge_batch_ms, max(n, 1)) / 1e3
                for n in range(self.max_batch + 1)
            ]
            for p in all_plans
        ]
        edge_b1_s = [
            e[1] * p.uses_edge_compute for e, p in zip(self.edge_s_by_n, all_plans, strict=True)
        ]
        self.rest_cloud_out = [w_s + a_s for _ in all_plans]
        self.rest_edge_out = [
            (2 * w_s + p.cloud_s if p.uses_cloud else 0.0) + a_s for p in all_plans
        ]
        self.rest_edge_in = [r + e for r, e in zip(self.rest_edge_out, edge_b1_s, strict=True)]
        self.rest_device_out = [
            (a_s + r) if p.offloads else 0.0
            for r, p in zip(self.rest_edge_in, all_plans, strict=True)
        ]
        # accounting
        self.arrived = 0
        self.completed = 0
        self.dropped = 0
        self.in_flight = 0
        self.pending: deque[Request] = deque()
        # what the what-if replay (predict_outcome) starts from: requests in flight, batches
        # running at the edge, batchers with an armed window, device results on their way
        # to the cache, and a counter ordering resumptions at the same instant
        self.inflight: dict[int, Request] = {}
        self.running_batches: dict[int, tuple[float, int, list[Request]]] = {}
        self.armed_batchers: set[Batcher] = set()
        self.pending_admits: dict[int, tuple[float, int, Request, Plan]] = {}
        self.seq = 0
        self.starting = 0  # processes applied but not started yet (same-instant decisions)
        self.whatif_fallbacks = 0  # predictions made from the horizons (too many in flight)
        self.record = record
        self.finished: list[Request] = []
        self.events: list[tuple[float, int, str]] | None = [] if log_events else None
        self.on_finish: list[Callable[[Request], None]] = []
        self.truncated = False  # arrivals have stopped (the horizon has passed)
        self.in_flight_at_horizon = 0
        self._next_id = 0
        self._decision = self.env.event()
        self.horizon_s = cfg.horizon_s
        self.arrivals_end_s = cfg.horizon_s
        self.env.timeout(cfg.horizon_s).callbacks.append(self._on_horizon)
        for dev in self.devices:
            self.env.process(self._arrivals(dev, streams.arrivals[dev.index]))

    # ------------------------------------------------------------------ decisions

    def next_decision(self) -> Request | None:
        """Run the simulation until a request awaits a plan.

        None once arrivals have stopped at the horizon and every request that arrived before
        has its plan (then call :meth:`drain`).
        """
        while not self.pending:
            if self.truncated:
                return None
            if self._decision.triggered:
                # SimPy re-schedules (rather than processes) an `until` event that stopped a
                # run, so a used decision event is replaced, never awaited twice.
                self._decision = self.env.event()
            self.env.run(until=self._decision)
        return self.pending[0]

    def apply(self, plan_index: int, feasible: bool = True) -> Request:
        """Apply a plan to the oldest pending request. An infeasible plan drops it."""
        req = self.pending.popleft()
        req.plan_index = plan_index
        if not feasible:
            self._log(req, "drop:infeasible")
            self._finish_dropped(req, "infeasible")
            return req
        req.status = "in_flight"
        plan = self.resolve(req, self.plans[plan_index])
        req.run_plan = plan.index
        req.stage, req.seq = S_NEW, self._tick()
        self.inflight[req.id] = req
        self.starting += 1
        self.env.process(self._serve(req, plan))
        return req

    def drain(self) -> None:
        """After the last decision: run until every request in flight has finished.

        Arrivals have stopped at the horizon, so the system empties; every request that
        arrived is then completed or dropped and counted in every metric.
        """
        if not self.truncated or self.pending:
            raise RuntimeError("drain() is for the end of an episode: decide every request first")
        self.env.run()
        if self.in_flight:
            raise AssertionError(f"{self.in_flight} requests still in flight after the drain")

    def close_arrivals(self, at_s: float) -> None:
        """Stop arrivals at ``at_s`` (before the horizon): the episode ends there, then drains.

        Used by forks of an episode (:mod:`edgerl.agents.oracle`); arrivals before ``at_s``
        are the same as without the call (each device's stream is its own).
        """
        if at_s < self.env.now:
            raise ValueError(f"close_arrivals({at_s}): the simulation is already at {self.env.now}")
        if at_s < self.arrivals_end_s:
            self.arrivals_end_s = at_s
            self.env.timeout(at_s - self.env.now).callbacks.append(self._on_horizon)

    def _on_horizon(self, _event: simpy.Event) -> None:
        if self.truncated:
            return
        self.truncated = True
        self.in_flight_at_horizon = self.in_flight
        if not self._decision.triggered:
            self._decision.succeed()

    def _arrivals(self, dev: Device, rng: np.random.Generator) -> Any:
        env = self.env
        for gap in interarrival_times(self.cfg.workload.arrival, rng):
            if env.now + gap >= self.arrivals_end_s:
                return  # arrivals stop at the horizon
            yield env.timeout(gap)
            if env.now >= self.arrivals_end_s:
                return  # closed early while this arrival was pending
            now = env.now
            app = self.apps.draw(rng)
            req = Request(
                id=self._next_id,
                device=dev.index,
                app=app,
                input_id=self.popularity.draw(rng),
                arrival_s=now,
                deadline_s=self.deadlines_s[app],
            )
            self._next_id += 1
            req.seen_recently = dev.remember(req.input_id)
            gap_s = now - dev.last_arrival_s
            if dev.arrival_gap_ewma_s == 0.0:
                dev.arrival_gap_ewma_s = gap_s
            else:
                dev.arrival_gap_ewma_s += EWMA_WEIGHT * (gap_s - dev.arrival_gap_ewma_s)
            dev.last_arrival_s = now
            self.arrived += 1
            self.in_flight += 1
            self.pending.append(req)
            self._log(req, "arrive")
            if not self._decision.triggered:
                self._decision.succeed()

    # ------------------------------------------------------------------ request pipeline

    def _radio_send(self, req: Request, dev: Device, nbytes: int, up: bool) -> float:
        """Hand ``nbytes`` to the device's up- or downlink; charge the request its bytes and
        radio energy; return the arrival time at the receiver [s]."""
        now = self.env.now
        link = dev.uplink if up else dev.downlink
        start, end = link.send(now, nbytes)
        on_air_s = dev.radio_on.add(now, start, end)
        if up:
            req.bytes_uplink += nbytes
            req.energy_radio_j += self.radio.uplink_energy_j(nbytes, on_air_s)
        else:
            req.bytes_downlink += nbytes
            req.energy_radio_j += self.radio.downlink_energy_j(nbytes, on_air_s)
        return end + link.prop_s

    def _tick(self) -> int:
        self.seq += 1
        return self.seq

    def _wait(self, req: Request, stage: int, until_s: float) -> simpy.Event:
        """The timeout a request's process waits on, recorded for the what-if replay."""
        req.stage, req.resume_s, req.seq = stage, until_s, self._tick()
        return self.env.timeout(until_s - self.env.now)

    def _serve(self, req: Request, plan: Plan) -> Any:
        self.starting -= 1  # the process runs now (see predict_outcome)
        env, dev, net = self.env, self.devices[req.device], self.cfg.network
        caching = plan.cache_policy != "none"
        shed, due_s, i = self.shedding, req.arrival_s + req.deadline_s, plan.index
        if caching:
            t0 = env.now
            arrive_s = self._radio_send(req, dev, net.fingerprint_bytes, True)
            yield self._wait(req, S_LOOKUP_UP, arrive_s)
            entry = self.cache.lookup(env.now, req.input_id)
            hit = entry is not None
            self.cache_hit_ewma += EWMA_WEIGHT * (hit - self.cache_hit_ewma)
            req.lookup_entry = entry
            arrive_s = self._radio_send(req, dev, net.result_bytes, False)
            yield self._wait(req, S_LOOKUP_BACK, arrive_s)
            req.lookup_entry = None
            req.t_lookup_s = env.now - t0
            if entry is not None:
                req.cache_hit = True
                req.accuracy, req.correct = entry.accuracy, entry.correct
                self._log(req, "cache_hit")
                self._finish_completed(req)
                return
            self._log(req, "cache_miss")
        req.accuracy = plan.accuracy
        req.correct = self.is_correct(req.input_id, plan)
        if plan.device_s > 0:
            t0 = env.now
            if (
                shed
                and max(t0, dev.cpu.busy_until_s) + plan.device_s + self.rest_device_out[i] > due_s
            ):
                self._shed(req, "device")
                return
            start_s, end_s = dev.cpu.schedule(t0, plan.device_s)
            if self.has_rules:
                jobs = dev.rule_jobs
                while jobs and jobs[0][1] <= t0:
                    jobs.popleft()
                jobs.append((start_s, end_s, self.device_points[req.plan_index]))
            req.energy_compute_j += dev.power_w * plan.device_s
            yield self._wait(req, S_DEVICE, end_s)
            req.t_device_s = env.now - t0
            self._log(req, "device_done")
        if plan.offloads:
            t0 = env.now
            if shed and max(t0, dev.uplink.busy_until_s) + self.rest_device_out[i] > due_s:
                # abandoned when it would reach the head of the uplink queue
                yield self._wait(req, S_LEAVING, dev.uplink.skip(t0, plan.uplink_bytes))
                self._shed(req, "uplink")
                return
            req.raw_input_left = plan.raw_input_leaves
            yield self._wait(req, S_UPLINK, self._radio_send(req, dev, plan.uplink_bytes, True))
            req.t_uplink_s = env.now - t0
            self._log(req, "at_edge")
            batcher = self.plan_batcher[i]
            if batcher is not None:
                if shed and env.now + self.rest_edge_in[i] > due_s:
                    self._shed(req, "edge")
                    return
                if self.edge_queue_len() >= self.cfg.edge.queue_capacity:
                    self._log(req, "drop:edge_full")
                    self._finish_dropped(req, "edge_full")
                    return
                done = env.event()
                req.stage = S_BATCH
                self._join_batch(batcher, req, done, plan.batch_size)
                if (yield done) == _SHED:
                    self._shed(req, "edge")
                    return
                self._log(req, "edge_done")
            if plan.uses_cloud:
                t0 = env.now
                if shed and max(t0, self.wan_up.busy_until_s) + self.rest_edge_out[i] > due_s:
                    yield self._wait(req, S_LEAVING, self.wan_up.skip(t0, plan.wan_bytes))
                    self._shed(req, "wan")
                    return
                _, end_s = self.wan_up.send(t0, plan.wan_bytes)
                req.bytes_wan += plan.wan_bytes
                yield self._wait(req, S_WAN_UP, end_s + self.wan_up.prop_s)
                req.t_wan_s += env.now - t0
                if self.cloud_workers.waiting(env.now) >= self.cfg.cloud.queue_capacity:
                    self._log(req, "drop:cloud_full")
                    self._finish_dropped(req, "cloud_full")
                    return
                t0 = env.now
                if shed and (
                    max(t0, self.cloud_workers.free_at_s()) + plan.cloud_s + self.rest_cloud_out[i]
                    > due_s
                ):
                    self._shed(req, "cloud")
                    return
                start_s, end_s = self.cloud_workers.schedule(t0, plan.cloud_s)
                req.t_cloud_wait_s = start_s - t0
                req.t_cloud_s = plan.cloud_s
                yield self._wait(req, S_CLOUD, end_s)
                t0 = env.now
                _, end_s = self.wan_down.send(t0, net.result_bytes)
                req.bytes_wan += net.result_bytes
                yield self._wait(req, S_WAN_DOWN, end_s + self.wan_down.prop_s)
                req.t_wan_s += env.now - t0
                self._log(req, "cloud_done")
            if caching:  # the edge holds the result now (computed there or back from the cloud)
                self._admit(req, plan)
            t0 = env.now
            yield self._wait(req, S_DOWNLINK, self._radio_send(req, dev, net.result_bytes, False))
            req.t_downlink_s = env.now - t0
        elif caching:
            # computed on the device: the result and its fingerprint go up to the edge cache
            arrive_s = self._radio_send(req, dev, net.result_bytes + net.fingerprint_bytes, True)
            token = self._tick()
            self.pending_admits[token] = (arrive_s, token, req, plan)

            def admit(_e: simpy.Event) -> None:
                del self.pending_admits[token]
                self._admit(req, plan)

            self.env.timeout(arrive_s - env.now).callbacks.append(admit)
        self._finish_completed(req)

    def _shed(self, req: Request, tier: str) -> None:
        """Load shedding: the request can no longer meet its deadline; drop it at ``tier``."""
        self._log(req, f"drop:deadline@{tier}")
        self._finish_dropped(req, f"deadline@{tier}")

    def _admit(self, req: Request, plan: Plan) -> None:
        self.cache.admit(
            self.env.now,
            req.input_id,
            plan.cache_policy,
            self.compute_s[plan.index],
            req.correct,
            req.accuracy,
        )

    def _join_batch(self, b: Batcher, req: Request, done: simpy.Event, target: int) -> None:
        b.waiting.append((req, done, self.env.now))
        self.edge_batch_waiting += 1
        if len(b.waiting) == 1 or target < b.min_target:
            b.min_target = target
        if len(b.waiting) >= b.min_target:
            self._dispatch(b)
        elif len(b.waiting) == 1:
            self._arm_timer(b)

    def _batch_ended(self, token: int) -> None:
        del self.running_batches[token]

    def _arm_timer(self, b: Batcher) -> None:
        gen = b.generation
        wait_s = self.cfg.edge.max_batch_wait_ms / 1e3
        b.timer = (self.env.now + wait_s, self._tick(), gen)
        self.armed_batchers.add(b)
        timer = self.env.timeout(wait_s)
        timer.callbacks.append(lambda _e: self._on_window(b, gen))

    def _on_window(self, b: Batcher, generation: int) -> None:
        if b.generation == generation:
            b.timer = None
            self.armed_batchers.discard(b)
            if b.waiting:
                self._dispatch(b)

    def _dispatch(self, b: Batcher) -> None:
        now = self.env.now
        members, b.waiting = b.waiting[: self.max_batch], b.waiting[self.max_batch :]
        b.generation += 1
        if b.timer is not None:  # the armed window is stale now
            b.timer = None
            self.armed_batchers.discard(b)
        self.edge_batch_waiting -= len(members)
        if self.shedding:  # members certain to miss their deadline leave before the batch runs
            members = self._shed_members(b, members, now)
        n = len(members)
        if n:
            self._run_batch(b, members, now)
        if b.waiting:  # leftovers beyond max_batch form the next batch, with a fresh window
            b.min_target = min(self.plans[r.plan_index].batch_size for r, _, _ in b.waiting)
            if len(b.waiting) >= b.min_target:
                self._dispatch(b)
            else:
                self._arm_timer(b)

    def _batch_service_s(self, b: Batcher, n: int) -> float:
        return self.edge_s_by_n[b.plan.index][n]

    def _shed_members(
        self, b: Batcher, members: list[tuple[Request, simpy.Event, float]], now: float
    ) -> list[tuple[Request, simpy.Event, float]]:
        """Drop the members whose deadline the batch's known start and end make impossible.

        A smaller batch ends earlier, so this repeats until every remaining member can still
        make it (or none is left). Dropped members' ``done`` events carry :data:`_SHED`.
        """
        rest = self.rest_edge_out[b.plan.index]
        start = max(now, self.edge_workers.free_at_s())
        while members:
            end = start + self._batch_service_s(b, len(members))
            keep = [m for m in members if end + rest <= m[0].arrival_s + m[0].deadline_s]
            if len(keep) == len(members):
                break
            for m in members:
                if m not in keep:
                    m[0].stage = S_LEAVING
                    m[1].succeed(_SHED)
            members = keep
        return members

    def _run_batch(
        self, b: Batcher, members: list[tuple[Request, simpy.Event, float]], now: float
    ) -> None:
        n = len(members)
        service_s = self._batch_service_s(b, n)
        self.edge_batch_ms_ewma += EWMA_WEIGHT * (service_s * 1e3 - self.edge_batch_ms_ewma)
        start_s, end_s = self.edge_workers.schedule(now, service_s, n)
        token = self._tick()
        self.running_batches[token] = (end_s, token, [m[0] for m in members])
        finished = self.env.timeout(end_s - now)
        finished.callbacks.append(lambda _e: self._batch_ended(token))
        for req, done, joined_s in members:
            req.stage = S_EDGE_RUN
            req.t_edge_wait_s = start_s - joined_s
            req.t_edge_s = service_s
            finished.callbacks.append(done.trigger)  # done succeeds when the batch ends
            self._log(req, f"batch:{n}")

    # ------------------------------------------------------------------ outcomes

    def resolve(self, req: Request, plan: Plan) -> Plan:
        """The plan ``req`` actually runs: a threshold rule's plan for the exit its input
        takes (from the measured confidences), else ``plan`` itself."""
        if plan.threshold is None:
            return plan
        assert self.answers is not None  # a threshold rule needs measured answers (config)
        key = (plan.variant, plan.threshold, plan.rule_exits)
        taken = int(self.answers.exit_of[key][self.image_of[req.input_id]])
        return self._resolved[plan.index][taken]

    def is_correct(self, input_id: int, plan: Plan) -> bool:
        """Whether the plan's (variant, exit) answers input ``input_id`` correctly.

        With measured answers (``model.input_correctness: measured``), each input id stands
        for a test image, drawn once per episode for the whole catalogue (the ``content``
        stream), and gets that image's measured answer at the plan's (variant, exit): hard
        images fail at early exits and in compressed variants. Otherwise each input has a
        latent difficulty u ~ U(0, 1), drawn the same way, and the answer is correct iff
        u < accuracy of the (variant, exit): a Bernoulli(accuracy) draw per input, nested across
        exits (an input a weaker exit gets right, a stronger one also gets right; a
        simplifying assumption). Either way a repeated input gets the same answer (what a
        cached result reproduces).
        """
        if self.answers is not None:
            image = self.image_of[input_id]
            return bool(self.answers.correct[(plan.variant, plan.exit_index)][image])
        return self.difficulty[input_id] < plan.accuracy

    def _finish_completed(self, req: Request) -> None:
        now = self.env.now
        req.finish_s = now
        req.status = "completed"
        self.completed += 1
        self.in_flight -= 1
        self.inflight.pop(req.id, None)
        w = self.w
        latency_s = now - req.arrival_s
        acc = req.accuracy if w.accuracy_mode == "expected" else float(req.correct)
        dev = self.devices[req.device]
        dev.energy_used_j += req.energy_j
        parts = (
            w.accuracy * acc,
            -w.latency_per_s * self._capped(latency_s),
            -w.energy_per_j * req.energy_j,
            -w.slo_miss * (latency_s > req.deadline_s),
            -w.bytes_per_mb * (req.bytes_uplink + req.bytes_wan) / MB,
            -w.privacy * req.raw_input_left,
            0.0,
        )
        req.parts = parts
        req.utility = sum(parts)
        self._log(req, "complete")
        self._emit(req)

    def _finish_dropped(self, req: Request, reason: str) -> None:
        """A dropped request pays the drop penalty plus what it already cost: device energy,
        bytes sent and, if its raw input left the device, the privacy part."""
        req.finish_s = self.env.now
        req.status = "dropped"
        req.drop_reason = reason
        self.dropped += 1
        self.in_flight -= 1
        self.inflight.pop(req.id, None)
        self.devices[req.device].energy_used_j += req.energy_j
        w = self.w
        parts = (
            0.0,
            0.0,
            -w.energy_per_j * req.energy_j,
            0.0,
            -w.bytes_per_mb * (req.bytes_uplink + req.bytes_wan) / MB,
            -w.privacy * req.raw_input_left,
            -w.drop,
        )
        req.parts = parts
        req.utility = sum(parts)
        self._emit(req)

    def _emit(self, req: Request) -> None:
        if self.record:
            self.finished.append(req)
        for cb in self.on_finish:
            cb(req)

    def _log(self, req: Request, what: str) -> None:
        if self.events is not None:
            self.events.append((self.env.now, req.id, what))

    # ------------------------------------------------------------------ what-if

    def predict_outcome(
        self, req: Request, plan: Plan, snapshot: Snapshot | None = None
    ) -> PlanOutcome:
        """The outcome of giving ``plan`` to ``req`` now, without changing any state.

        Exact given everything decided so far, with the *true* future bandwidth and inputs:
        the clairvoyant reference's view and the env's decision-time credit. A plan that
        runs on the device alone and skips the cache depends only on the device CPU's FIFO
        horizon; any other plan is replayed together with the remaining path of every request
        in flight (:class:`edgerl.envs.sim.whatif.Replay`). With no later arrival the real
        outcome equals the prediction; a request decided later may still overtake this one
        (a raw input reaching the uplink first, a later member joining its edge batch).
        With more than :data:`WHATIF_MAX_IN_FLIGHT` requests in flight it falls back to the
        resources' horizons (:meth:`_predict_horizons`, counted in ``whatif_fallbacks``).
        ``snapshot``: a :class:`Snapshot` of the current state, to share between several
        plans for the same request (taken here when omitted).
        """
        if plan.threshold is not None:
            plan = self.resolve(req, plan)
        now = self.env.now
        if self.device_only_nocache[plan.index] and not self.starting:
            # the device CPU alone, and no decision of this instant not yet started: FIFO
            dev = self.devices[req.device]
            busy = dev.cpu.busy_until_s
            start = now if now > busy else busy
            if self.shedding and start + plan.device_s > req.arrival_s + req.deadline_s:
                return self._outcome(req, now, 0.0, 0, 0, 0.0, False, False, "deadline@device")
            correct = self.is_correct(req.input_id, plan)
            return self._outcome(
                req,
                start + plan.device_s,
                dev.power_w * plan.device_s,
                0,
                0,
                plan.accuracy,
                correct,
                False,
                "",
            )
        if len(self.inflight) > WHATIF_MAX_IN_FLIGHT:
            self.whatif_fallbacks += 1
            return self._predict_horizons(req, plan)
        r = Replay(snapshot or Snapshot(self), req, plan).run()
        return self._outcome(
            req,
            r.finish_s,
            r.energy_j,
            r.bytes_up,
            r.bytes_wan,
            r.accuracy,
            r.correct,
            r.raw_left,
            r.drop,
        )

    def _predict_horizons(self, req: Request, plan: Plan) -> PlanOutcome:
        """The outcome from the resources' current horizons alone (env v2 up to b33cbc7).

        What :meth:`predict_outcome` falls back to when more than
        :data:`WHATIF_MAX_IN_FLIGHT` requests are in flight (an overloaded system, where a
        replay of every one of them per decision would cost milliseconds): it ignores the work
        already decided that has not yet reached a shared resource (uploads of requests still
        on the device CPU, arrivals at the edge, results on their way back), so it is
        optimistic for split plans. ``plan`` is already resolved.
        """
        net, dev = self.cfg.network, self.devices[req.device]
        now = self.env.now
        radio, on_air = self.radio, dev.radio_on.uncovered_s
        up_busy, down_busy = dev.uplink.busy_until_s, dev.downlink.busy_until_s
        up_end, down_end = (
            dev.uplink.bandwidth.transfer_end_s,
            dev.downlink.bandwidth.transfer_end_s,
        )
        prop = dev.uplink.prop_s
        shed, due_s, i = self.shedding, req.arrival_s + req.deadline_s, plan.index
        energy_j, bytes_up, t = 0.0, 0, now
        drop, wan_bytes = "", 0
        caching = plan.cache_policy != "none"
        if caching:  # fingerprint up, answer down (transfers: start, end, energy of added air)
            start = t if t > up_busy else up_busy
            up_busy = up_end(start, net.fingerprint_bytes)
            energy_j += radio.uplink_energy_j(net.fingerprint_bytes, on_air(start, up_busy))
            bytes_up += net.fingerprint_bytes
            entry = self.cache.entries.get(req.input_id)
            at = up_busy + prop
            start = at if at > down_busy else down_busy
            down_busy = down_end(start, net.result_bytes)
            energy_j += radio.downlink_energy_j(net.result_bytes, on_air(start, down_busy))
            t = down_busy + prop
            if entry is not None:
                return self._outcome(
                    req, t, energy_j, bytes_up, 0, entry.accuracy, entry.correct, False, ""
                )
        if plan.device_s > 0:
            busy = dev.cpu.busy_until_s
            start = t if t > busy else busy
            if shed and start + plan.device_s + self.rest_device_out[i] > due_s:
                drop = "deadline@device"
            else:
                t = start + plan.device_s
                energy_j += dev.power_w * plan.device_s
        if plan.offloads and not drop:
            start = t if t > up_busy else up_busy
            if shed and start + self.rest_device_out[i] > due_s:
                drop, t = "deadline@uplink", start
            else:
                up_busy = up_end(start, plan.uplink_bytes)
                energy_j += radio.uplink_energy_j(plan.uplink_bytes, on_air(start, up_busy))
                bytes_up += plan.uplink_bytes
                t = up_busy + prop
                drop, t = self._predict_edge(plan, t, due_s, now)
            if plan.uses_cloud and not drop:
                drop, t = self._predict_cloud(plan, t, due_s, now)
                if drop != "deadline@wan":  # a WAN transfer abandoned at its start sent nothing
                    wan_bytes = plan.wan_bytes + (0 if drop else net.result_bytes)
            if not drop:
                start = t if t > down_busy else down_busy
                down_busy = down_end(start, net.result_bytes)
                energy_j += radio.downlink_energy_j(net.result_bytes, on_air(start, down_busy))
                t = down_busy + prop
        elif caching and not drop:  # the device uploads its result (+ fingerprint) for the cache
            nbytes = net.result_bytes + net.fingerprint_bytes
            start = t if t > up_busy else up_busy
            end = up_end(start, nbytes)
            energy_j += radio.uplink_energy_j(nbytes, on_air(start, end))
            bytes_up += nbytes
        if drop:
            # a request shed before its upload never sent its raw input
            left = plan.raw_input_leaves and drop not in ("deadline@device", "deadline@uplink")
            return self._outcome(req, t, energy_j, bytes_up, wan_bytes, 0.0, False, left, drop)
        correct = self.is_correct(req.input_id, plan)
        return self._outcome(
            req, t, energy_j, bytes_up, wan_bytes, plan.accuracy, correct, plan.raw_input_leaves, ""
        )

    def _predict_edge(self, plan: Plan, t: float, due_s: float, now: float) -> tuple[str, float]:
        """(drop reason or "", time the edge stage ends) for a request reaching the edge at t."""
        i = plan.index
        batcher = self.plan_batcher[i]
        if batcher is None:
            return "", t
        if self.shedding and t + self.rest_edge_in[i] > due_s:
            return "deadline@edge", t
        if self.edge_queue_len() >= self.cfg.edge.queue_capacity:
            return "edge_full", t
        window_s = self.cfg.edge.max_batch_wait_ms / 1e3
        waiting = [j for _, _, j in batcher.waiting if j + window_s > t]
        n = min(len(waiting) + 1, self.max_batch)
        target = min(plan.batch_size, batcher.min_target) if waiting else plan.batch_size
        dispatch = t if n >= target else (waiting[0] if waiting else t) + window_s
        free = self.edge_workers.free_at_s()
        end = (dispatch if dispatch > free else free) + self.edge_s_by_n[i][n]
        if self.shedding and end + self.rest_edge_out[i] > due_s:
            return "deadline@edge", dispatch
        return "", end

    def _predict_cloud(self, plan: Plan, t: float, due_s: float, now: float) -> tuple[str, float]:
        """(drop reason or "", time the result is back at the edge) from the edge at t."""
        i, net = plan.index, self.cfg.network
        wan_start = max(t, self.wan_up.busy_until_s)
        if self.shedding and wan_start + self.rest_edge_out[i] > due_s:
            return "deadline@wan", wan_start
        t = self.wan_up.bandwidth.transfer_end_s(wan_start, plan.wan_bytes) + self.wan_up.prop_s
        if self.cloud_workers.waiting(now) >= self.cfg.cloud.queue_capacity:
            return "cloud_full", t
        free = self.cloud_workers.free_at_s()
        start = t if t > free else free
        if self.shedding and start + plan.cloud_s + self.rest_cloud_out[i] > due_s:
            return "deadline@cloud", t
        t = start + plan.cloud_s
        back = self.wan_down.bandwidth.transfer_end_s(
            max(t, self.wan_down.busy_until_s), net.result_bytes
        )
        return "", back + self.wan_down.prop_s

    def _capped(self, latency_s: float) -> float:
        """The latency the reward charges (``reward.latency_cap_s``, if set, bounds it)."""
        cap = self.w.latency_cap_s
        return latency_s if cap is None or latency_s < cap else cap

    def _outcome(
        self,
        req: Request,
        finish_s: float,
        energy_j: float,
        bytes_up: int,
        bytes_wan: int,
        accuracy: float,
        correct: bool,
        raw_left: bool,
        drop_reason: str,
    ) -> PlanOutcome:
        w = self.w
        latency_s = finish_s - req.arrival_s
        mb = (bytes_up + bytes_wan) / MB
        parts: tuple[float, ...]
        if drop_reason:
            parts = (
                0.0,
                0.0,
                -w.energy_per_j * energy_j,
                0.0,
                -w.bytes_per_mb * mb,
                -w.privacy * raw_left,
                -w.drop,
            )
        else:
            acc = accuracy if w.accuracy_mode == "expected" else float(correct)
            parts = (
                w.accuracy * acc,
                -w.latency_per_s * self._capped(latency_s),
                -w.energy_per_j * energy_j,
                -w.slo_miss * (latency_s > req.deadline_s),
                -w.bytes_per_mb * mb,
                -w.privacy * raw_left,
                0.0,
            )
        return PlanOutcome(
            latency_s,
            energy_j,
            bytes_up + bytes_wan,
            accuracy,
            raw_left,
            drop_reason,
            sum(parts),
            parts,
        )

    # ------------------------------------------------------------------ observable state

    def edge_queue_len(self) -> int:
        return self.edge_batch_waiting + self.edge_workers.waiting(self.env.now)

    def check_conservation(self) -> None:
        """Raise if a request was lost or counted twice."""
        if self.arrived != self.completed + self.dropped + self.in_flight:
            raise AssertionError(
                f"request accounting broken: arrived={self.arrived} completed={self.completed} "
                f"dropped={self.dropped} in_flight={self.in_flight}"
            )


def constant_links(n: int, mbps: float) -> list[BandwidthSource]:
    return [ConstantBandwidth(mbps) for _ in range(n)]


def offset_source(src: BandwidthSource, offset_s: float, scale: float) -> BandwidthSource:
    return src if offset_s == 0 and scale == 1 else _OffsetBandwidth(src, offset_s, scale)
