"""The exact what-if of one decision: everything already decided, nothing decided later.

:meth:`Simulator.predict_outcome` answers "what happens to this request if it gets this plan
now?" with the *true* future (bandwidth traces, inputs): the clairvoyant reference asks it for
every plan, and the env's per-request (``decision``) credit pays it to the deciding step. A
prediction from the resources' current horizons alone (the next free time of the device CPU,
the links and the workers) misses the work that is already decided but has not yet reached a
shared resource: a request still computing on the device CPU uploads its tensor later, and
that upload goes ahead of this request's on the FIFO uplink; requests on the uplink will join
edge batches and occupy workers; results on the way back share the downlink; a pending
lookup may hit the cache and leave the device CPU free. Measured on ``camera-lte`` with the
int8 split at unit 4 for every request, the horizon-only prediction was wrong for 8.9 % of
the requests (issue 18), always with an earlier request still on the device.

:class:`Replay` is exact in that sense: it replays the remaining path of every request in
flight (each one's plan is decided, so its future is determined) together with the new one,
in the order the simulator would process the same events, on copies of the shared state
(device CPUs, links, radio activity of the device, edge batchers and their windows, edge and
cloud workers, WAN, the result cache), until the new request finishes. With no later arrival
its outcome equals the real one (tested: ``tests/test_whatif.py`` compares every decision of
one-device episodes with a run whose arrivals close right after that decision). What it cannot
know are later decisions, which may still overtake: a raw input decided later reaches the
uplink before a split request still computing on the device, or a later request joins this
one's edge batch. The remaining difference is paid at the finish (``credit_correction``).

The replay mirrors :meth:`Simulator._serve` stage by stage (same shedding checks, same batcher
rules, same FIFO links and workers). Each in-flight request records where its process waits
(``Request.stage``, ``resume_s``, ``seq``); events at the same time are processed in the
order SimPy would (time, priority, scheduling order).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgerl.envs.sim.cache import CacheEntry, ResultCache
from edgerl.envs.sim.network import RadioActivity

if TYPE_CHECKING:
    from edgerl.envs.plans import Plan
    from edgerl.envs.sim.servers import MultiServer
    from edgerl.envs.sim.simulator import Batcher, Request, Simulator

# Where an in-flight request's process waits (Request.stage), set by Simulator._serve before
# each wait; resume_s is when it resumes.
S_NEW = 0  # decided, its process not started yet (two decisions at the same instant)
S_LOOKUP_UP = 1  # its fingerprint travels to the edge cache
S_LOOKUP_BACK = 2  # the lookup's answer travels back (Request.lookup_entry: the hit or None)
S_DEVICE = 3  # queued for or running on the device CPU
S_UPLINK = 4  # its tensor travels to the edge
S_BATCH = 5  # waiting in an edge batcher (no resume time: the batcher decides)
S_EDGE_RUN = 6  # in a dispatched edge batch (Simulator.running_batches)
S_WAN_UP = 7  # travels to the cloud
S_CLOUD = 8  # queued for or running on a cloud worker
S_WAN_DOWN = 9  # its result travels back to the edge
S_DOWNLINK = 10  # its result travels to the device: touches nothing shared any more
S_LEAVING = 11  # shed or dropped, about to leave: touches nothing shared any more

#: SimPy's event priorities: a process starts (URGENT) before ordinary events at its time.
URGENT, NORMAL = 0, 1


class _Finished(Exception):
    """The predicted request has finished: the replay stops."""


class _ShadowBatcher:
    __slots__ = ("generation", "min_target", "plan", "waiting")

    def __init__(self, b: Batcher) -> None:
        self.plan = b.plan
        self.waiting: list[tuple[Request, float]] = [(r, j) for r, _, j in b.waiting]
        self.min_target = b.min_target
        self.generation = b.generation


class Snapshot:
    """The part of the simulator's state a replay starts from, taken once per decision.

    Several plans for the same request (the clairvoyant reference asks for every plan) share
    one snapshot; each :class:`Replay` copies what it changes.
    """

    __slots__ = ("events", "now", "seq", "sim")

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.now = now = sim.env.now
        ev: list[tuple[Any, ...]] = []
        for r in sim.inflight.values():
            st = r.stage
            if st == S_NEW:
                ev.append((now, URGENT, r.seq, "start", r))
            elif st in _RESUME:
                ev.append((r.resume_s, NORMAL, r.seq, _RESUME[st], r))
        for end_s, seq, members in sim.running_batches.values():
            ev.append((end_s, NORMAL, seq, "batch_end", members))
        for b in sim.armed_batchers:
            if b.timer is not None and b.timer[2] == b.generation and b.waiting:
                ev.append((b.timer[0], NORMAL, b.timer[1], "window", b))
        for at_s, seq, r, plan in sim.pending_admits.values():
            ev.append((at_s, NORMAL, seq, "admit", (r, plan)))
        heapq.heapify(ev)
        self.events = ev
        self.seq = sim.seq


_RESUME = {
    S_LOOKUP_UP: "lookup",
    S_LOOKUP_BACK: "lookup_back",
    S_DEVICE: "device_done",
    S_UPLINK: "at_edge",
    S_WAN_UP: "at_cloud",
    S_CLOUD: "cloud_done",
    S_WAN_DOWN: "back_at_edge",
}


class Replay:
    """Run one request's plan through a copy of the pipeline with everything in flight.

    After :meth:`run`, the attributes hold the request's outcome: ``finish_s``, ``energy_j``,
    ``bytes_up``, ``bytes_wan``, ``accuracy``, ``correct``, ``raw_left``, ``drop``.
    """

    def __init__(self, snap: Snapshot, me: Request, plan: Plan) -> None:
        sim = self.sim = snap.sim
        self.snap = snap
        self.me, self.my_plan, self.my_device = me, plan, me.device
        self.cfg = sim.cfg
        self.shedding = sim.shedding
        self.cpu = [d.cpu.busy_until_s for d in sim.devices]
        self.up = [d.uplink.busy_until_s for d in sim.devices]
        self.down = [d.downlink.busy_until_s for d in sim.devices]
        self.wan_up, self.wan_down = sim.wan_up.busy_until_s, sim.wan_down.busy_until_s
        radio = RadioActivity()
        radio.copy_from(sim.devices[me.device].radio_on)
        self.radio = radio
        self.edge: MultiServer = sim.edge_workers.copy()
        self.cloud: MultiServer = sim.cloud_workers.copy()
        self.ebw = sim.edge_batch_waiting
        self.batchers: dict[int, _ShadowBatcher] = {}
        self.cache: ResultCache | None = None  # copied on the first change
        self.entry_copy: dict[int, CacheEntry] = {}
        self.answers: dict[int, tuple[float, bool]] = {}  # request id -> (accuracy, correct)
        self.events = list(snap.events)
        self.seq = snap.seq
        # the outcome
        self.finish_s = snap.now
        self.energy_j = 0.0
        self.bytes_up = 0
        self.bytes_wan = 0
        self.accuracy = 0.0
        self.correct = False
        self.raw_left = False
        self.drop = ""

    # ------------------------------------------------------------------ driver

    def run(self) -> Replay:
        self._push(self.snap.now, URGENT, "start", self.me)
        handlers: dict[str, Callable[..., None]] = {
            "start": self._start,
            "lookup": self._lookup,
            "lookup_back": self._lookup_back,
            "device_done": self._after_device,
            "at_edge": self._at_edge,
            "at_cloud": self._at_cloud,
            "cloud_done": self._cloud_done,
            "back_at_edge": self._result_at_edge,
            "edge_done": self._edge_done,
            "batch_end": self._batch_end,
            "window": self._window,
            "admit": self._admit_event,
            "down_done": self._down_done,
        }
        ev = self.events
        pop = heapq.heappop
        try:
            while ev:
                t, _, _, kind, arg = pop(ev)
                handlers[kind](t, arg)
        except _Finished:
            return self
        raise AssertionError("what-if replay ended before the predicted request finished")

    def _push(self, t: float, prio: int, kind: str, arg: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, prio, self.seq, kind, arg))

    def _plan(self, r: Request) -> Plan:
        return self.my_plan if r is self.me else self.sim.all_plans[r.run_plan]

    # ------------------------------------------------------------------ outcomes

    def _done(self, r: Request, t: float, drop: str = "") -> None:
        if r is self.me:
            self.finish_s, self.drop = t, drop
            raise _Finished

    def _complete(self, r: Request, t: float) -> None:
        if r is self.me:
            self.accuracy, self.correct = self.answers[r.id]
            self._done(r, t)

    # ------------------------------------------------------------------ links

    def _send(self, r: Request, t: float, nbytes: int, up: bool) -> float:
        """A device link transfer from t; returns its arrival time (Simulator._radio_send)."""
        d = r.device
        dev = self.sim.devices[d]
        link = dev.uplink if up else dev.downlink
        busy = self.up if up else self.down
        start = t if t > busy[d] else busy[d]
        end = link.bandwidth.transfer_end_s(start, nbytes) if nbytes > 0 else start
        busy[d] = end
        if d == self.my_device:
            on_air = self.radio.add(t, start, end)
            if r is self.me:
                radio = self.sim.radio
                if up:
                    self.bytes_up += nbytes
                    self.energy_j += radio.uplink_energy_j(nbytes, on_air)
                else:
                    self.energy_j += radio.downlink_energy_j(nbytes, on_air)
        return end + link.prop_s

    # ------------------------------------------------------------------ cache

    def _cache(self) -> ResultCache:
        if self.cache is None:
            real = self.sim.cache
            c = ResultCache(real.capacity)
            for k, e in real.entries.items():
                c.entries[k] = self.entry_copy.setdefault(
                    id(e), CacheEntry(e.last_access_s, e.hits, e.cost_s, e.correct, e.accuracy)
                )
            self.cache = c
        return self.cache

    def _admit(self, t: float, r: Request, plan: Plan) -> None:
        acc, correct = self.answers.get(r.id, (r.accuracy, r.correct))
        self._cache().admit(
            t, r.input_id, plan.cache_policy, self.sim.compute_s[plan.index], correct, acc
        )

    def _admit_event(self, t: float, arg: tuple[Request, Plan]) -> None:
        self._admit(t, *arg)

    # ------------------------------------------------------------------ stages (as _serve)

    def _start(self, t: float, r: Request) -> None:
        p = self._plan(r)
        if p.cache_policy != "none":
            arrive = self._send(r, t, self.cfg.network.fingerprint_bytes, True)
            self._push(arrive, NORMAL, "lookup", r)
        else:
            self._device(t, r, p)

    def _lookup(self, t: float, r: Request) -> None:
        entry = self._cache().lookup(t, r.input_id)
        arrive = self._send(r, t, self.cfg.network.result_bytes, False)
        self._push(arrive, NORMAL, "lookup_back", (r, entry))

    def _lookup_back(self, t: float, arg: Any) -> None:
        if isinstance(arg, tuple):
            r, entry = arg
        else:  # in flight at the snapshot: its entry is the real cache's (or its copy)
            r = arg
            entry = r.lookup_entry
            if entry is not None and self.cache is not None:
                entry = self.entry_copy.get(id(entry), entry)
        if entry is not None:
            self.answers[r.id] = (entry.accuracy, entry.correct)
            self._complete(r, t)
            return
        self._device(t, r, self._plan(r))

    def _device(self, t: float, r: Request, p: Plan) -> None:
        sim = self.sim
        self.answers[r.id] = (p.accuracy, sim.is_correct(r.input_id, p))
        if p.device_s > 0:
            d = r.device
            start = t if t > self.cpu[d] else self.cpu[d]
            if self.shedding and (
                start + p.device_s + sim.rest_device_out[p.index] > r.arrival_s + r.deadline_s
            ):
                self._done(r, t, "deadline@device")
                return
            self.cpu[d] = start + p.device_s
            if r is self.me:
                self.energy_j += sim.devices[d].power_w * p.device_s
            self._push(start + p.device_s, NORMAL, "device_done", r)
        else:
            self._after_device(t, r)

    def _after_device(self, t: float, r: Request) -> None:
        sim, p = self.sim, self._plan(r)
        net = self.cfg.network
        if p.offloads:
            d = r.device
            if self.shedding and (
                max(t, self.up[d]) + sim.rest_device_out[p.index] > r.arrival_s + r.deadline_s
            ):
                self._done(r, max(t, self.up[d]), "deadline@uplink")
                return
            if r is self.me:
                self.raw_left = p.raw_input_leaves
            self._push(self._send(r, t, p.uplink_bytes, True), NORMAL, "at_edge", r)
        elif p.cache_policy != "none":
            arrive = self._send(r, t, net.result_bytes + net.fingerprint_bytes, True)
            if r is not self.me:
                self._push(arrive, NORMAL, "admit", (r, p))
            self._complete(r, t)
        else:
            self._complete(r, t)

    def _at_edge(self, t: float, r: Request) -> None:
        sim, p = self.sim, self._plan(r)
        b = sim.plan_batcher[p.index]
        if b is None:
            self._edge_done(t, r)
            return
        if self.shedding and t + sim.rest_edge_in[p.index] > r.arrival_s + r.deadline_s:
            self._done(r, t, "deadline@edge")
            return
        if self.ebw + self.edge.waiting(t) >= self.cfg.edge.queue_capacity:
            self._done(r, t, "edge_full")
            return
        self._join(self._shadow(b), r, t, p.batch_size)

    def _edge_done(self, t: float, r: Request) -> None:
        sim, p = self.sim, self._plan(r)
        if not p.uses_cloud:
            self._result_at_edge(t, r)
            return
        start = t if t > self.wan_up else self.wan_up
        if self.shedding and start + sim.rest_edge_out[p.index] > r.arrival_s + r.deadline_s:
            self._done(r, start, "deadline@wan")
            return
        end = sim.wan_up.bandwidth.transfer_end_s(start, p.wan_bytes) if p.wan_bytes else start
        self.wan_up = end
        if r is self.me:
            self.bytes_wan += p.wan_bytes
        self._push(end + sim.wan_up.prop_s, NORMAL, "at_cloud", r)

    def _at_cloud(self, t: float, r: Request) -> None:
        sim, p = self.sim, self._plan(r)
        if self.cloud.waiting(t) >= self.cfg.cloud.queue_capacity:
            self._done(r, t, "cloud_full")
            return
        free = self.cloud.free_at_s()
        start = t if t > free else free
        if self.shedding and (
            start + p.cloud_s + sim.rest_cloud_out[p.index] > r.arrival_s + r.deadline_s
        ):
            self._done(r, t, "deadline@cloud")
            return
        _, end = self.cloud.schedule(t, p.cloud_s)
        self._push(end, NORMAL, "cloud_done", r)

    def _cloud_done(self, t: float, r: Request) -> None:
        sim = self.sim
        nbytes = self.cfg.network.result_bytes
        start = t if t > self.wan_down else self.wan_down
        end = sim.wan_down.bandwidth.transfer_end_s(start, nbytes) if nbytes else start
        self.wan_down = end
        if r is self.me:
            self.bytes_wan += nbytes
        self._push(end + sim.wan_down.prop_s, NORMAL, "back_at_edge", r)

    def _result_at_edge(self, t: float, r: Request) -> None:
        p = self._plan(r)
        if p.cache_policy != "none":
            self._admit(t, r, p)
        arrive = self._send(r, t, self.cfg.network.result_bytes, False)
        if r is self.me:
            self._push(arrive, NORMAL, "down_done", r)

    def _down_done(self, t: float, r: Request) -> None:
        self._complete(r, t)

    # ------------------------------------------------------------------ batching (as Simulator)

    def _shadow(self, b: Batcher) -> _ShadowBatcher:
        sb = self.batchers.get(id(b))
        if sb is None:
            sb = self.batchers[id(b)] = _ShadowBatcher(b)
        return sb

    def _batch_size(self, r: Request) -> int:
        return self.my_plan.batch_size if r is self.me else self.sim.plans[r.plan_index].batch_size

    def _join(self, b: _ShadowBatcher, r: Request, t: float, target: int) -> None:
        b.waiting.append((r, t))
        self.ebw += 1
        if len(b.waiting) == 1 or target < b.min_target:
            b.min_target = target
        if len(b.waiting) >= b.min_target:
            self._dispatch(b, t)
        elif len(b.waiting) == 1:
            self._arm(b, t)

    def _arm(self, b: _ShadowBatcher, t: float) -> None:
        self._push(t + self.cfg.edge.max_batch_wait_ms / 1e3, NORMAL, "window", (b, b.generation))

    def _window(self, t: float, arg: Any) -> None:
        if isinstance(arg, tuple):
            b, generation = arg
        else:  # armed at the snapshot
            b = self._shadow(arg)
            generation = arg.generation
        if b.generation == generation and b.waiting:
            self._dispatch(b, t)

    def _dispatch(self, b: _ShadowBatcher, t: float) -> None:
        sim = self.sim
        max_batch = sim.max_batch
        members, b.waiting = b.waiting[:max_batch], b.waiting[max_batch:]
        b.generation += 1
        self.ebw -= len(members)
        if self.shedding:
            members = self._shed_members(b, members, t)
        if members:
            n = len(members)
            service_s = sim.edge_s_by_n[b.plan.index][n]
            _, end = self.edge.schedule(t, service_s, n)
            self._push(end, NORMAL, "batch_end", [r for r, _ in members])
        if b.waiting:
            b.min_target = min(self._batch_size(r) for r, _ in b.waiting)
            if len(b.waiting) >= b.min_target:
                self._dispatch(b, t)
            else:
                self._arm(b, t)

    def _shed_members(
        self, b: _ShadowBatcher, members: list[tuple[Request, float]], t: float
    ) -> list[tuple[Request, float]]:
        sim = self.sim
        rest = sim.rest_edge_out[b.plan.index]
        free = self.edge.free_at_s()
        start = t if t > free else free
        while members:
            end = start + sim.edge_s_by_n[b.plan.index][len(members)]
            keep = [m for m in members if end + rest <= m[0].arrival_s + m[0].deadline_s]
            if len(keep) == len(members):
                break
            for m in members:
                if m not in keep and m[0] is self.me:
                    self._done(self.me, t, "deadline@edge")
            members = keep
        return members

    def _batch_end(self, t: float, members: list[Request]) -> None:
        for r in members:  # each member's `done` event fires after the batch's end
            self._push(t, NORMAL, "edge_done", r)
