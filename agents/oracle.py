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
from edgerl.envs.sim.simulator import Request, Simulator

#: The window [s]: bandwidth traces change every second and MMPP load states last seconds, so a
#: 2 s window lets the oracle follow both (10 s windows averaged bursts and outages away).
DEFAULT_WINDOW_S = 2.0
#: The online references the oracle may follow for a window (issue 18: per-request
#: clairvoyant and Neurosurgeon beat the plan-only oracle on ``alexnet-edgepc-lte``).
REFERENCES = ("clairvoyant", "composite", "neurosurgeon", "edgent")
#: Alternations of the window's best plan with each of the next best plans: a burst split
#: between two tiers (every other request to each), which one plan per window cannot express.
DEFAULT_ALTERNATIONS = 8
_SCORE = struct.Struct("<d")

#: What one device does in a window: a plan index, an online reference's name, or an
#: alternation (a, b) of two plans (a for its 1st, 3rd, ... request of the window, b else).
Choice = int | str | tuple[int, int]
Assignment = tuple[Choice, ...]  # one choice per device


class _Driver:
    """The planning episode: the simulator, and (with references) the env adapter over it,
    whose observations the references read. Stateful references (e.g. the composite's AIMD
    batch size) are asked at *every* decision, followed or not, so their state is the same
    in planning and in evaluation; stateless ones only when followed."""

    def __init__(self, model: ScenarioModel, sim: Simulator, references: Sequence[str]) -> None:
        self.sim = sim
        self.env: Any = None
        self.refs: dict[str, BasePolicy] = {}
        self.counts: dict[int, int] = {}  # requests of each device in the current window
        if references:
            from edgerl.agents.baselines import make_baseline  # only the reference oracle
            from edgerl.envs.env import CollabInferenceEnv

            env = CollabInferenceEnv(model)
            env._decision_credit = False  # rewards are not needed here
            env.attach(sim)
            self.env = env
            for name in references:
                pol = make_baseline(name)
                pol.bind(env)
                pol.reset(None)
                self.refs[name] = pol
        self.stateful = [n for n, p in self.refs.items() if not getattr(p, "stateless", False)]
        self.req = self.env.pending_request if self.env is not None else sim.next_decision()

    def new_window(self) -> None:
        self.counts.clear()

    def decide(self, choices: Assignment, asked: dict[str, int] | None = None) -> int:
        """The plan for the pending request under ``choices``; ``asked``: the stateful
        references' answers for it (they were asked already)."""
        req = self.req
        assert req is not None
        c = choices[req.device]
        if isinstance(c, int):
            return c
        if isinstance(c, tuple):
            k = self.counts.get(req.device, 0)
            self.counts[req.device] = k + 1
            return c[k % 2]
        if asked is not None and c in asked:
            return asked[c]
        return self._ask(c)

    def _ask(self, name: str) -> int:
        env = self.env
        obs = env._observe(self.req)
        return int(self.refs[name].predict(obs, env.action_masks()))

    def ask_stateful(self) -> dict[str, int]:
        return {n: self._ask(n) for n in self.stateful}

    def apply(self, action: int) -> None:
        if self.env is not None:
            self.env.step(action)
            self.req = self.env.pending_request
        else:
            self.sim.apply(action)
            self.req = self.sim.next_decision()

    def run_window(self, choices: Assignment, until_s: float, *, shadow: bool) -> None:
        """Decide every request arriving before ``until_s`` with ``choices``."""
        self.new_window()
        while self.req is not None and self.req.arrival_s < until_s:
            asked = self.ask_stateful() if shadow else None
            self.apply(self.decide(choices, asked))


def _child_score(drv: _Driver, choices: Assignment, t0: float, until_s: float) -> float:
    """In a forked child: decide every request with ``choices`` until ``until_s``, drain, and
    return the utility of the requests that arrived in ``[t0, until_s)``."""
    total = [0.0]
    sim = drv.sim

    def on_finish(req: Request) -> None:
        if t0 <= req.arrival_s < until_s:
            total[0] += req.utility

    sim.on_finish.append(on_finish)
    sim.close_arrivals(max(until_s, sim.env.now))
    drv.run_window(choices, math.inf, shadow=False)
    if drv.env is None:
        sim.drain()
    return total[0]


def fork_scores(
    drv: _Driver,
    candidates: Sequence[Assignment],
    t0: float,
    until_s: float,
    workers: int = 1,
) -> list[float]:
    """The score of every candidate from the driver's current state (one child each)."""
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
                os.write(w, _SCORE.pack(_child_score(drv, cand, t0, until_s)))
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        running[pid] = (pos, r)
    while running:
        reap_one()
    return scores


def _best_assignment(
    drv: _Driver,
    cand: Sequence[int],
    start: Assignment,
    t0: float,
    until_s: float,
    workers: int,
    alternations: int,
) -> Assignment:
    """One device: its best plan. Several: the best plan common to all devices, then one pass
    over the devices, each taking its best plan with the others' held (coordinate ascent).
    Then the references and the alternations of the best common plan with the next best
    plans, each for every device at once; the best of all (the first on ties)."""
    n = len(start)
    fixed = fork_scores(drv, [(c,) * n for c in cand], t0, until_s, workers)
    order = sorted(range(len(cand)), key=lambda k: -fixed[k])  # stable: first best first
    top = cand[order[0]]
    best: Assignment = (top,) * n
    best_score = fixed[order[0]]
    if n > 1:
        if start != best and all(isinstance(c, int) for c in start):
            prev = fork_scores(drv, [start], t0, until_s, workers)[0]
            if prev > best_score:
                best, best_score = start, prev
        for d in range(n):
            trials = [(*best[:d], c, *best[d + 1 :]) for c in cand if c != best[d]]
            scores = fork_scores(drv, trials, t0, until_s, workers)
            k = int(np.argmax(scores))
            if scores[k] > best_score:
                best, best_score = trials[k], scores[k]
    extra: list[Assignment] = [(name,) * n for name in drv.refs]
    extra += [((top, cand[k]),) * n for k in order[1 : 1 + alternations]]
    if extra:
        scores = fork_scores(drv, extra, t0, until_s, workers)
        k = int(np.argmax(scores))
        if scores[k] > best_score:
            best, best_score = extra[k], scores[k]
    return best


def schedule_total(
    model: ScenarioModel,
    entropy: int,
    split: Split,
    schedule: Sequence[Assignment],
    window_s: float,
    references: Sequence[str],
    uplink_pin: LinkPin | None = None,
) -> float:
    """The utility summed over the episode seeded with ``entropy`` when window ``k`` follows
    ``schedule[k]`` (the last entry beyond the schedule), as :class:`HindsightWindowOracle`
    plays it."""
    sim = build_simulator(model, np.random.SeedSequence(entropy), split, uplink_pin=uplink_pin)
    total = [0.0]
    sim.on_finish.append(lambda r: total.__setitem__(0, total[0] + r.utility))
    drv = _Driver(model, sim, references)
    k = 0
    while drv.req is not None:
        k = max(k, int(drv.req.arrival_s // window_s))
        drv.run_window(schedule[min(k, len(schedule) - 1)], (k + 1) * window_s, shadow=True)
    if drv.env is None:
        sim.drain()
    return total[0]


def window_schedule(
    model: ScenarioModel,
    entropy: int,
    split: Split,
    window_s: float = DEFAULT_WINDOW_S,
    lookahead_s: float | None = None,
    candidates: Sequence[int] | None = None,
    workers: int = 1,
    spawn: bool = False,
    references: Sequence[str] = (),
    alternations: int = 0,
    uplink_pin: LinkPin | None = None,
) -> list[Assignment]:
    """The oracle's choice for every window and device of the episode seeded with ``entropy``:
    ``schedule[k][d]`` is device ``d``'s :data:`Choice` in window ``k``.

    ``references``: online references (names of :mod:`edgerl.agents.baselines`) that a window
    may follow; ``alternations``: how many alternations of the window's best plan with its
    next best plans are tried. With either, the greedy schedule is finally compared with
    following each reference for the whole episode, and the better is returned, so the
    oracle is never below any of its references. ``spawn``: compute it in a freshly spawned
    interpreter that imports only the simulator (and the references), so that its forks copy
    a small process (the model is pickled over); the schedule is the same. ``uplink_pin``: the
    episode's pinned uplink (stratified evaluation), as given to the env's ``reset``."""
    if spawn:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            args = (model, entropy, split, window_s, lookahead_s, candidates, workers)
            return pool.submit(
                window_schedule,
                *args,
                False,
                tuple(references),
                alternations,
                uplink_pin=uplink_pin,
            ).result()
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    look = 0.0 if lookahead_s is None else lookahead_s
    if look < 0:
        raise ValueError(f"lookahead_s must be >= 0, got {look}")
    if alternations < 0:
        raise ValueError(f"alternations must be >= 0, got {alternations}")
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
    greedy_total = [0.0]
    sim.on_finish.append(lambda r: greedy_total.__setitem__(0, greedy_total[0] + r.utility))
    drv = _Driver(model, sim, references)
    committed: list[Assignment] = []
    for k in range(math.ceil(horizon / window_s)):
        t0, t1 = k * window_s, (k + 1) * window_s
        previous = committed[-1] if committed else (cand[0],) * n_dev
        if drv.req is None or drv.req.arrival_s >= t1:  # no arrival in this window
            committed.append(previous)
            continue
        until = min(horizon, t1 + look)
        best = _best_assignment(drv, cand, previous, t0, until, workers, alternations)
        committed.append(best)
        drv.run_window(best, t1, shadow=True)
    if drv.env is None:
        sim.drain()
    best_total, schedule = greedy_total[0], committed
    for name in references:  # never below a reference followed for the whole episode
        total = schedule_total(
            model, entropy, split, [(name,) * n_dev], horizon, references, uplink_pin
        )
        if total > best_total:
            best_total, schedule = total, [(name,) * n_dev] * len(committed)
    PLANNED_TOTALS[(entropy, uplink_pin)] = best_total
    return schedule


#: The episode utility each schedule was planned to reach, by (episode entropy, uplink pin)
#: (tests compare it with the evaluation of the schedule; this process only, not a spawn).
PLANNED_TOTALS: dict[tuple[int, LinkPin | None], float] = {}


Isolate = Literal["auto", "always", "never"]


def heavy_modules_loaded() -> bool:
    """Whether this process holds torch, which makes every fork several times dearer."""
    return "torch" in sys.modules


class HindsightWindowOracle(BasePolicy):
    """Per window, the best choice given the true future (see the module docstring).

    A reference, not a deployable policy: at each episode start (``reset``) it rebuilds the
    episode the env is running from its seed and plans every window with forks. Each window
    follows one plan per device, an alternation of two plans, or one of ``references``
    (default :data:`REFERENCES`; ``references=()`` and ``alternations=0`` give the plan-only
    oracle of env v2). ``isolate``: plan in a freshly spawned interpreter (``"always"``), in
    this process (``"never"``), or in a spawned one only when torch is loaded here
    (``"auto"``); the schedule is the same.
    """

    name = "oracle"

    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        lookahead_s: float | None = None,
        candidates: Sequence[int] | None = None,
        workers: int = 1,
        isolate: Isolate = "auto",
        references: Sequence[str] = REFERENCES,
        alternations: int = DEFAULT_ALTERNATIONS,
    ) -> None:
        super().__init__()
        if isolate not in ("auto", "always", "never"):
            raise ValueError(f"isolate must be 'auto', 'always' or 'never', got {isolate!r}")
        if alternations < 0:
            raise ValueError(f"alternations must be >= 0, got {alternations}")
        self.window_s = window_s
        self.lookahead_s = lookahead_s
        self.candidates = candidates
        self.workers = workers
        self.isolate = isolate
        self.references = tuple(references)
        self.alternations = alternations
        self.schedule: list[Assignment] = []
        self._entropy: tuple[int, LinkPin | None] | None = None
        self._refs: dict[str, BasePolicy] = {}
        self._stateful: list[str] = []
        self._window = -1
        self._counts: dict[int, int] = {}

    def bind(self, env: Any) -> None:
        super().bind(env)
        if self.references:
            from edgerl.agents.baselines import make_baseline

            self._refs = {name: make_baseline(name) for name in self.references}
            for pol in self._refs.values():
                pol.bind(env)
            self._stateful = [n for n, p in self._refs.items() if not p.stateless]

    def reset(self, seed: int | None = None) -> None:
        env = self.env
        if env.sim is None:
            raise RuntimeError("oracle: reset the env before the policy")
        for pol in self._refs.values():
            pol.reset(None)
        self._window, self._counts = -1, {}
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
                self.references,
                self.alternations,
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
        if k != self._window:
            self._window, self._counts = k, {}
        mask = self.env.action_masks() if action_mask is None else action_mask
        # the stateful references see every decision, as when the schedule was planned
        asked = {n: int(self._refs[n].predict(observation, mask)) for n in self._stateful}
        c = self.schedule[k][req.device]
        if isinstance(c, int):
            return c
        if isinstance(c, tuple):
            j = self._counts.get(req.device, 0)
            self._counts[req.device] = j + 1
            return c[j % 2]
        return asked[c] if c in asked else int(self._refs[c].predict(observation, mask))

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            window_s=self.window_s,
            lookahead_s=0.0 if self.lookahead_s is None else self.lookahead_s,
            references=list(self.references),
            alternations=self.alternations,
            deployable=False,
        )
        return d
