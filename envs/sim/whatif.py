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

Cost (issue 24): the env asks for one replay per decision, so the replay skips what cannot
change the outcome. Requests on a device CPU whose plan ends there without the cache have
nothing left to do (their CPU time is in the device's horizon): their events are left out.
The result cache is not copied but viewed copy-on-write (:class:`_CacheView`). The members
of an ending edge batch are handled at once when nothing else is due at that instant (the
queue would return them next anyway). The replay stops when the request's result is handed
to its downlink (a FIFO link: its arrival is known then). Event handlers are functions in
the queue, not names. ``Snapshot(sim, full=True)`` turns every shortcut off: the plain
replay, which ``tests/test_whatif_fast.py`` compares bit for bit with the shortcuts on
random episodes of five scenarios and a busy toy.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from heapq import heappush as _heappush
from typing import TYPE_CHECKING, Any

from edgerl.envs.sim.cache import _EVICTION_KEYS, CacheEntry, ResultCache
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

    ``full=False`` (the default) leaves out the events that cannot change any outcome: a
    request on a device CPU whose plan ends there without the cache has nothing left to do
    (its CPU time is already in the device's horizon) when its device work ends. ``full=True``
    keeps every event and makes the replay copy the whole cache up front: the plain replay,
    kept as the reference the shortcuts are tested against (``tests/test_whatif_fast.py``).
    """

    __slots__ = ("events", "full", "now", "seq", "sim")

    def __init__(self, sim: Simulator, full: bool = False) -> None:
        self.sim = sim
        self.full = full
        self.now = now = sim.env.now
        ev: list[tuple[Any, ...]] = []
        resume = _RESUME
        silent = None if full else sim.device_only_nocache
        for r in sim.inflight.values():
            st = r.stage
            if st == S_NEW:
                ev.append((now, URGENT, r.seq, _H_START, r))
            elif st in resume:
                if st == S_DEVICE and silent is not None and silent[r.run_plan]:
                    continue  # its device_done does nothing (Replay._after_device)
                ev.append((r.resume_s, NORMAL, r.seq, resume[st], r))
        for end_s, seq, members in sim.running_batches.values():
            ev.append((end_s, NORMAL, seq, _H_BATCH_END, members))
        for b in sim.armed_batchers:
            if b.timer is not None and b.timer[2] == b.generation and b.waiting:
                ev.append((b.timer[0], NORMAL, b.timer[1], _H_WINDOW, b))
        for at_s, seq, r, plan in sim.pending_admits.values():
            ev.append((at_s, NORMAL, seq, _H_ADMIT, (r, plan)))
        heapq.heapify(ev)
        self.events = ev
        self.seq = sim.seq


class _CacheView:
    """A copy-on-write view of the simulator's result cache (what a replay changes).

    Behaves as a copy of the cache (:class:`ResultCache`'s ``lookup`` and ``admit``, same
    eviction choices and ties) without copying it: entries the replay reads or changes are
    copied on first touch (``copies``: id of the real entry -> its copy), evictions of
    untouched entries are remembered in ``gone``. Key order, which is recency order (and the
    tie order of the eviction rank), is the untouched real keys in their order, then the
    touched ones in the order of their last touch: what the copy's dict order would be.
    """

    __slots__ = ("base", "capacity", "copies", "gone", "own")

    def __init__(self, real: ResultCache, copies: dict[int, CacheEntry]) -> None:
        self.base = real.entries
        self.capacity = real.capacity
        self.copies = copies
        self.own: dict[int, CacheEntry] = {}  # touched (or new) keys, in recency order
        self.gone: set[int] = set()  # real keys the view no longer takes from the real cache

    def _take(self, key: int) -> CacheEntry | None:
        """The entry of ``key``, removed from the view (the caller re-inserts it)."""
        e = self.own.pop(key, None)
        if e is not None or key in self.gone:
            return e
        real = self.base.get(key)
        if real is None:
            return None
        self.gone.add(key)
        e = self.copies[id(real)] = CacheEntry(
            real.last_access_s, real.hits, real.cost_s, real.correct, real.accuracy
        )
        return e

    def lookup(self, now_s: float, key: int) -> CacheEntry | None:
        e = self._take(key)
        if e is not None:
            self.own[key] = e
            e.hits += 1
            e.last_access_s = now_s
        return e

    def _keys(self) -> Iterator[int]:
        gone = self.gone
        for k in self.base:
            if k not in gone:
                yield k
        yield from self.own

    def _entry(self, key: int) -> CacheEntry:
        e = self.own.get(key)
        return e if e is not None else self.base[key]

    def admit(
        self, now_s: float, key: int, policy: str, cost_s: float, correct: bool, accuracy: float
    ) -> None:
        if self.capacity == 0 or policy == "none":
            return
        e = self._take(key)
        if e is not None:  # a concurrent request admitted it meanwhile: keep the better one
            self.own[key] = e
            e.last_access_s = now_s
            if accuracy > e.accuracy:
                e.accuracy, e.correct = accuracy, correct
            return
        if len(self.base) - len(self.gone) + len(self.own) >= self.capacity:
            if policy == "lru":  # the least recently used: the first key in recency order
                victim = next(self._keys())
            else:
                rank = _EVICTION_KEYS[policy]
                entry = self._entry
                victim = min(self._keys(), key=lambda k: rank(entry(k)))
            if self.own.pop(victim, None) is None:
                self.gone.add(victim)
        self.own[key] = CacheEntry(now_s, 0, cost_s, correct, accuracy)


class Replay:
    """Run one request's plan through a copy of the pipeline with everything in flight.

    After :meth:`run`, the attributes hold the request's outcome: ``finish_s``, ``energy_j``,
    ``bytes_up``, ``bytes_wan``, ``accuracy``, ``correct``, ``raw_left``, ``drop``.
    """

    def __init__(self, snap: Snapshot, me: Request, plan: Plan) -> None:
        sim = self.sim = snap.sim
        self.snap = snap
        self.me, self.my_plan, self.my_device = me, plan, me.device
        self.cfg = cfg = sim.cfg
        self.shedding = sim.shedding
        # hot lookups, bound once
        self.all_plans = sim.all_plans
        self.fingerprint_bytes = cfg.network.fingerprint_bytes
        self.result_bytes = cfg.network.result_bytes
        self.uplinks = [d.uplink for d in sim.devices]
        self.downlinks = [d.downlink for d in sim.devices]
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
        self.full = snap.full
        # plans whose requests have nothing left to do after their device work (not replayed)
        self.silent = None if snap.full else sim.device_only_nocache
        self.cache: ResultCache | _CacheView | None = None  # made on the first use
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
        self._push(self.snap.now, URGENT, _H_START, self.me)
        ev = self.events
        pop = heapq.heappop
        try:
            while ev:
                t, _, _, handler, arg = pop(ev)
                handler(self, t, arg)
        except _Finished:
            return self
        raise AssertionError("what-if replay ended before the predicted request finished")

    def _push(self, t: float, prio: int, handler: _Handler, arg: Any) -> None:
        self.seq = seq = self.seq + 1
        _heappush(self.events, (t, prio, seq, handler, arg))

    def _plan(self, r: Request) -> Plan:
        return self.my_plan if r is self.me else self.all_plans[r.run_plan]

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
        if up:
            link, busy = self.uplinks[d], self.up
        else:
            link, busy = self.downlinks[d], self.down
        b = busy[d]
        start = t if t > b else b
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

    def _cache(self) -> ResultCache | _CacheView:
        c = self.cache
        if c is None:
            real = self.sim.cache
            if self.full:  # the reference: a copy of every entry
                c = ResultCache(real.capacity)
                for k, e in real.entries.items():
                    c.entries[k] = self.entry_copy.setdefault(
                        id(e), CacheEntry(e.last_access_s, e.hits, e.cost_s, e.correct, e.accuracy)
                    )
            else:
                c = _CacheView(real, self.entry_copy)
            self.cache = c
        return c

    def _admit(self, t: float, r: Request, plan: Plan) -> None:
        acc, correct = self.answers.get(r.id, (r.accuracy, r.correct))
        self._cache().admit(
            t, r.input_id, plan.cache_policy, self.sim.compute_s[plan.index], correct, acc
        )

    def _admit_event(self, t: float, arg: tuple[Request, Plan]) -> None:
        self._admit(t, *arg)

    # ------------------------------------------------------------------ stages (as _serve)

    def _start(self, t: float, r: Request) -> None:
        p = self.my_plan if r is self.me else self.all_plans[r.run_plan]
        if p.cache_policy != "none":
            arrive = self._send(r, t, self.fingerprint_bytes, True)
            self._push(arrive, NORMAL, _H_LOOKUP, r)
        else:
            self._device(t, r, p)

    def _lookup(self, t: float, r: Request) -> None:
        entry = self._cache().lookup(t, r.input_id)
        arrive = self._send(r, t, self.result_bytes, False)
        self._push(arrive, NORMAL, _H_LOOKUP_BACK, (r, entry))

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
            elif self.silent is not None and self.silent[p.index]:
                return  # its device_done would do nothing (_after_device)
            self._push(start + p.device_s, NORMAL, _H_DEVICE_DONE, r)
        else:
            self._after_device(t, r)

    def _after_device(self, t: float, r: Request) -> None:
        sim, p = self.sim, (self.my_plan if r is self.me else self.all_plans[r.run_plan])
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
            self._push(self._send(r, t, p.uplink_bytes, True), NORMAL, _H_AT_EDGE, r)
        elif p.cache_policy != "none":
            arrive = self._send(r, t, net.result_bytes + net.fingerprint_bytes, True)
            if r is not self.me:
                self._push(arrive, NORMAL, _H_ADMIT, (r, p))
            self._complete(r, t)
        else:
            self._complete(r, t)

    def _at_edge(self, t: float, r: Request) -> None:
        sim, p = self.sim, (self.my_plan if r is self.me else self.all_plans[r.run_plan])
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
        sim, p = self.sim, (self.my_plan if r is self.me else self.all_plans[r.run_plan])
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
        self._push(end + sim.wan_up.prop_s, NORMAL, _H_AT_CLOUD, r)

    def _at_cloud(self, t: float, r: Request) -> None:
        sim, p = self.sim, (self.my_plan if r is self.me else self.all_plans[r.run_plan])
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
        self._push(end, NORMAL, _H_CLOUD_DONE, r)

    def _cloud_done(self, t: float, r: Request) -> None:
        sim = self.sim
        nbytes = self.result_bytes
        start = t if t > self.wan_down else self.wan_down
        end = sim.wan_down.bandwidth.transfer_end_s(start, nbytes) if nbytes else start
        self.wan_down = end
        if r is self.me:
            self.bytes_wan += nbytes
        self._push(end + sim.wan_down.prop_s, NORMAL, _H_BACK_AT_EDGE, r)

    def _result_at_edge(self, t: float, r: Request) -> None:
        p = self.my_plan if r is self.me else self.all_plans[r.run_plan]
        if p.cache_policy != "none":
            self._admit(t, r, p)
        arrive = self._send(r, t, self.result_bytes, False)
        if r is self.me:
            if self.full:
                self._push(arrive, NORMAL, _H_DOWN_DONE, r)
            else:  # nothing that happens meanwhile changes its arrival (FIFO link, sent now)
                self._complete(r, arrive)

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
        self._push(t + self.cfg.edge.max_batch_wait_ms / 1e3, NORMAL, _H_WINDOW, (b, b.generation))

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
            self._push(end, NORMAL, _H_BATCH_END, [r for r, _ in members])
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
        # Each member's `done` event fires after the batch's end, after every event already
        # scheduled at t. With none at t (the usual case), they are next in line: handled
        # here, in the same order, without the round trip through the queue.
        ev = self.events
        if not self.full and (not ev or ev[0][0] > t):
            for r in members:
                self._edge_done(t, r)
            return
        for r in members:
            self._push(t, NORMAL, _H_EDGE_DONE, r)


#: An event's handler: ``handler(replay, time, argument)``.
_Handler = Callable[[Replay, float, Any], None]

_H_START = Replay._start
_H_LOOKUP = Replay._lookup
_H_LOOKUP_BACK = Replay._lookup_back
_H_DEVICE_DONE = Replay._after_device
_H_AT_EDGE = Replay._at_edge
_H_AT_CLOUD = Replay._at_cloud
_H_CLOUD_DONE = Replay._cloud_done
_H_BACK_AT_EDGE = Replay._result_at_edge
_H_EDGE_DONE = Replay._edge_done
_H_BATCH_END = Replay._batch_end
_H_WINDOW = Replay._window
_H_ADMIT = Replay._admit_event
_H_DOWN_DONE = Replay._down_done

#: The handler an in-flight request resumes with, by the stage it waits in.
_RESUME: dict[int, _Handler] = {
    S_LOOKUP_UP: _H_LOOKUP,
    S_LOOKUP_BACK: _H_LOOKUP_BACK,
    S_DEVICE: _H_DEVICE_DONE,
    S_UPLINK: _H_AT_EDGE,
    S_WAN_UP: _H_AT_CLOUD,
    S_CLOUD: _H_CLOUD_DONE,
    S_WAN_DOWN: _H_BACK_AT_EDGE,
}
