"""The hindsight windowed oracle: the headroom per-state adaptation can reach.

For each window of ``window_s`` seconds of an episode, in order, the oracle picks for each
device the single plan that maximises the utility of the requests arriving in that window
(and, optionally, the next ``lookahead_s`` seconds decided by the same plans), given the
*true* future (bandwidth, arrivals, inputs) and the true state the earlier windows' choices
left behind. It finds it by simulating every candidate from that state: a fork of the
simulator. With several devices (which see different uplinks and loads) it first takes the
best plan common to all devices, then improves device by device, each taking its best plan
with the others held (one pass of coordinate ascent; devices share the edge, the WAN and the
cloud, so a device's plan changes what the others get).

The default lookahead is 0: a window's requests are scored once they have all finished (the
fork drains), and what a window's plan leaves in the queues is seen by the next window's
forks, which start from that state. A lookahead decided by the same plan would charge a plan
for conditions after its window, where the next window may choose another plan (it made the
oracle keep a local plan through windows of fast uplink that were followed by an outage).

Forks. A planning simulator of the episode is rebuilt from the episode's seed (the same
random streams, :mod:`edgerl.envs.sim.streams`: the same arrivals, traces and inputs) and
advanced window by window with the committed plans. At the start of window k it is forked
once per candidate plan with ``os.fork()`` (a SimPy process is a Python generator, which
cannot be copied in memory; a process fork copies the whole simulation, copy-on-write). Each
child applies its candidate to every request until ``window end + lookahead_s``, when its
arrivals stop (:meth:`~edgerl.envs.sim.simulator.Simulator.close_arrivals`); it drains and
reports the sum of the utilities of the requests that arrived in ``[window start, window end
+ lookahead_s)``: the same requests for every candidate, so the comparison is paired. The
best plan is committed for the window only. POSIX only (``os.fork``).

It is not myopic (unlike :class:`~edgerl.agents.baselines.ClairvoyantGreedyPolicy`, which
takes each request's best plan alone and ignores what its choice does to the next ones), but
it is not a global optimum either: one plan per window, chosen greedily window by window.

Cost: ``n_windows * n_candidates * (1 + n_devices)`` forks (``n_windows * n_candidates``
with one device), each simulating ``window_s + lookahead_s`` seconds and draining, plus one
pass of the episode; ``workers`` children run at a time (measured per scenario in README).
A fork costs more the larger the forking process is (page tables copied, pages copied on
write, the address space torn down at the child's exit), so :class:`HindsightWindowOracle`
plans in a freshly spawned interpreter (numpy, SimPy and the simulator only) when torch is
loaded in this one (``isolate="auto"``), as in any command that also trains or evaluates
learned policies. ``edgerl bench oracle`` measures both side by side.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import struct
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Literal

import numpy as np
from edgerl.agents.base import BasePolicy
from edgerl.envs.sim.build import LinkPin, ScenarioModel, Split, build_simulator
from edgerl.envs.sim.simulator import Simulator

#: The window [s]: bandwidth traces change every second and MMPP load states last seconds, so a
#: 2 s window lets the oracle follow both (10 s windows averaged bursts and outages away).
DEFAULT_WINDOW_S = 2.0
_SCORE = struct.Struct("<d")


Assignment = tuple[int, ...]  # one plan index per device


def _child_score(sim: Simulator, plans: Assignment, t0: float, until_s: float) -> float:
    """In a forked child: decide every request with its device's plan until ``until_s``,
    drain, and return the utility of the requests that arrived in ``[t0, until_s)``."""
    total = [0.0]

    def on_finish(req: Any) -> None:
        if t0 <= req.arrival_s < until_s:
            total[0] += req.utility

    sim.on_finish.append(on_finish)
    sim.close_arrivals(max(until_s, sim.env.now))
    while (req := sim.next_decision()) is not None:
        sim.apply(plans[req.device])
    sim.drain()
    return total[0]


def fork_scores(
    sim: Simulator,
    candidates: Sequence[Assignment],
    t0: float,
    until_s: float,
    workers: int = 1,
) -> list[float]:
    """The score of every candidate assignment from ``sim``'s current state (one child each)."""
    if not hasattr(os, "fork"):
        raise RuntimeError("the hindsight oracle forks the simulator with os.fork (POSIX only)")
    scores: list[float] = [math.nan] * len(candidates)
    running: dict[int, tuple[int, int]] = {}  # pid -> (candidate position, read fd)

    def reap_one() -> None:
        pid, status = os.wait()
        pos, fd = running.pop(pid)
        data = os.read(fd, _SCORE.size)
        os.close(fd)
        if status != 0 or len(data) != _SCORE.size:
            raise RuntimeError(f"oracle fork for {candidates[pos]} failed (status {status})")
        scores[pos] = _SCORE.unpack(data)[0]

    for pos, cand in enumerate(candidates):
        while len(running) >= workers:
            reap_one()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never return into the caller
            code = 1
            try:
                os.close(r)
                os.write(w, _SCORE.pack(_child_score(sim, cand, t0, until_s)))
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        running[pid] = (pos, r)
    while running:
        reap_one()
    return scores


def _best_assignment(
    sim: Simulator,
    cand: Sequence[int],
    start: Assignment,
    t0: float,
    until_s: float,
    workers: int,
) -> Assignment:
    """One device: its best plan. Several: the best plan common to all devices, then one pass
    over the devices, each taking its best plan with the others' held (coordinate ascent)."""
    n = len(start)
    scores = fork_scores(sim, [(c,) * n for c in cand], t0, until_s, workers)
    best, best_score = (cand[int(np.argmax(scores))],) * n, max(scores)  # first best on ties
    if n == 1:
        return best
    if start != best:
        prev = fork_scores(sim, [start], t0, until_s, workers)[0]
        if prev > best_score:
            best, best_score = start, prev
    for d in range(n):
        trials = [(*best[:d], c, *best[d + 1 :]) for c in cand if c != best[d]]
        scores = fork_scores(sim, trials, t0, until_s, workers)
        k = int(np.argmax(scores))
        if scores[k] > best_score:
            best, best_score = trials[k], scores[k]
    return best


def window_schedule(
    model: ScenarioModel,
    entropy: int,
    split: Split,
    window_s: float = DEFAULT_WINDOW_S,
    lookahead_s: float | None = None,
    candidates: Sequence[int] | None = None,
    workers: int = 1,
    spawn: bool = False,
    uplink_pin: LinkPin | None = None,
) -> list[Assignment]:
    """The oracle's plan for every window and device of the episode seeded with ``entropy``:
    ``schedule[k][d]`` is device ``d``'s plan in window ``k``. ``spawn``: compute it in a
    freshly spawned interpreter that imports only the simulator, so that its forks copy a
    small process (the model is pickled over); the schedule is the same. ``uplink_pin``: the
    episode's pinned uplink (stratified evaluation), as given to the env's ``reset``."""
    if spawn:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            args = (model, entropy, split, window_s, lookahead_s, candidates, workers)
            return pool.submit(window_schedule, *args, uplink_pin=uplink_pin).result()
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    look = 0.0 if lookahead_s is None else lookahead_s
    if look < 0:
        raise ValueError(f"lookahead_s must be >= 0, got {look}")
    cand = (
        [int(i) for i in np.flatnonzero(model.static_mask)]
        if candidates is None
        else [int(i) for i in candidates]
    )
    if not cand:
        raise ValueError("the oracle needs at least one candidate plan")
    horizon = model.cfg.horizon_s
    n_dev = model.cfg.devices.count
    sim = build_simulator(model, np.random.SeedSequence(entropy), split, uplink_pin=uplink_pin)
    req = sim.next_decision()
    committed: list[Assignment] = []
    for k in range(math.ceil(horizon / window_s)):
        t0, t1 = k * window_s, (k + 1) * window_s
        previous = committed[-1] if committed else (cand[0],) * n_dev
        if req is None or req.arrival_s >= t1:  # no arrival in this window
            committed.append(previous)
            continue
        best = _best_assignment(sim, cand, previous, t0, min(horizon, t1 + look), workers)
        committed.append(best)
        while req is not None and req.arrival_s < t1:
            sim.apply(best[req.device])
            req = sim.next_decision()
    return committed


Isolate = Literal["auto", "always", "never"]


def heavy_modules_loaded() -> bool:
    """Whether this process holds torch, which makes every fork several times dearer."""
    return "torch" in sys.modules


class HindsightWindowOracle(BasePolicy):
    """Per window, the best single plan given the true future (see the module docstring).

    A reference, not a deployable policy: at each episode start (``reset``) it rebuilds the
    episode the env is running from its seed and plans every window with forks. ``isolate``:
    plan in a freshly spawned interpreter (``"always"``), in this process (``"never"``), or
    in a spawned one only when torch is loaded here (``"auto"``); the schedule is the same.
    """

    name = "oracle"

    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        lookahead_s: float | None = None,
        candidates: Sequence[int] | None = None,
        workers: int = 1,
        isolate: Isolate = "auto",
    ) -> None:
        super().__init__()
        if isolate not in ("auto", "always", "never"):
            raise ValueError(f"isolate must be 'auto', 'always' or 'never', got {isolate!r}")
        self.window_s = window_s
        self.lookahead_s = lookahead_s
        self.candidates = candidates
        self.workers = workers
        self.isolate = isolate
        self.schedule: list[Assignment] = []
        self._entropy: tuple[int, LinkPin | None] | None = None

    def reset(self, seed: int | None = None) -> None:
        env = self.env
        if env.sim is None:
            raise RuntimeError("oracle: reset the env before the policy")
        episode = (env.episode_entropy, env.uplink_pin)
        if self._entropy != episode or not self.schedule:
            self._entropy = episode
            spawn = self.isolate == "always" or (self.isolate == "auto" and heavy_modules_loaded())
            self.schedule = window_schedule(
                env.model,
                env.episode_entropy,
                env.split,
                self.window_s,
                self.lookahead_s,
                self.candidates,
                self.workers,
                spawn,
                uplink_pin=env.uplink_pin,
            )

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        req = self.env.pending_request
        episode = (self.env.episode_entropy, self.env.uplink_pin)
        if req is None or not self.schedule or self._entropy != episode:
            raise RuntimeError("oracle: call reset() after the env's reset, before predict()")
        k = min(int(req.arrival_s // self.window_s), len(self.schedule) - 1)
        return self.schedule[k][req.device]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            window_s=self.window_s,
            lookahead_s=0.0 if self.lookahead_s is None else self.lookahead_s,
            deployable=False,
        )
        return d
