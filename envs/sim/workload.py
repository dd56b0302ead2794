"""Request arrivals, input popularity and applications.

Each device's arrival process draws from its own generator (see :mod:`edgerl.envs.sim.streams`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from edgerl.envs.config import ArrivalConfig, ConfigError, WorkloadConfig


class Popularity:
    """Input identities with Zipf(s) popularity over a catalogue of N inputs (s=0: uniform)."""

    def __init__(self, catalogue_size: int, zipf_s: float) -> None:
        ranks = np.arange(1, catalogue_size + 1, dtype=float)
        weights = ranks**-zipf_s
        self._cdf = (np.cumsum(weights) / weights.sum()).tolist()
        self._cdf[-1] = 1.0

    def draw(self, rng: np.random.Generator) -> int:
        return bisect.bisect_left(self._cdf, rng.random())


class AppMix:
    def __init__(self, weights: Sequence[float]) -> None:
        total = float(sum(weights))
        acc, cdf = 0.0, []
        for w in weights:
            acc += w / total
            cdf.append(acc)
        cdf[-1] = 1.0
        self._cdf = cdf

    def draw(self, rng: np.random.Generator) -> int:
        if len(self._cdf) == 1:
            return 0
        return bisect.bisect_left(self._cdf, rng.random())


def load_interarrivals(path: str, where: str) -> list[float]:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").split()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read arrival trace {p}: {exc}") from exc
    out = []
    for i, tok in enumerate(lines, 1):
        try:
            v = float(tok)
        except ValueError as exc:
            raise ConfigError(f"{p}: value {i}: not a number: {tok!r}") from exc
        if not (v >= 0 and math.isfinite(v)):
            raise ConfigError(
                f"{p}: value {i}: inter-arrival time must be finite and >= 0, got {v}"
            )
        out.append(v)
    if not out or sum(out) <= 0:
        raise ConfigError(f"{p}: the arrival trace is empty")
    return out


def mmpp_initial_state(mean_sojourn_s: Sequence[float], rng: np.random.Generator) -> int:
    """The MMPP's state at time 0, drawn from its stationary distribution.

    The states are visited in a cycle with exponential sojourns, so over time state ``i``
    holds a share ``mean_sojourn_s[i] / sum(mean_sojourn_s)`` of the time (the embedded jump
    chain visits every state equally often). Starting from this distribution makes an
    episode's start look like any other moment of the process.
    """
    total = float(sum(mean_sojourn_s))
    u = rng.random() * total
    acc = 0.0
    for i, m in enumerate(mean_sojourn_s):
        acc += m
        if u < acc:
            return i
    return len(mean_sojourn_s) - 1


def interarrival_times(cfg: ArrivalConfig, rng: np.random.Generator) -> Iterator[float]:
    """An endless iterator of inter-arrival times [s] for one device."""
    if cfg.process == "poisson":
        assert cfg.rate_per_s is not None
        mean = 1.0 / cfg.rate_per_s
        while True:
            yield float(rng.exponential(mean))
    elif cfg.process == "mmpp":
        n_states = len(cfg.rates_per_s)
        state = mmpp_initial_state(cfg.mean_sojourn_s, rng)
        # memoryless sojourns: the residual time in the initial state has the same law
        state_left_s = float(rng.exponential(cfg.mean_sojourn_s[state]))
        while True:
            gap = float(rng.exponential(1.0 / cfg.rates_per_s[state]))
            elapsed = 0.0
            # Competing exponentials: the state may end before the next arrival; memorylessness
            # lets us redraw the gap in the next state.
            while gap > state_left_s:
                elapsed += state_left_s
                state = (state + 1) % n_states
                state_left_s = float(rng.exponential(cfg.mean_sojourn_s[state]))
                gap = float(rng.exponential(1.0 / cfg.rates_per_s[state]))
            state_left_s -= gap
            yield elapsed + gap
    else:
        assert cfg.trace_file is not None
        gaps = load_interarrivals(cfg.trace_file, "workload.arrival.trace_file")
        i = int(rng.integers(len(gaps)))
        while True:
            yield gaps[i]
            i = (i + 1) % len(gaps)


def mean_rate_per_s(cfg: WorkloadConfig) -> float:
    """Long-run arrival rate of one device [requests/s]."""
    a = cfg.arrival
    if a.process == "poisson":
        assert a.rate_per_s is not None
        return a.rate_per_s
    if a.process == "mmpp":
        total = sum(a.mean_sojourn_s)
        return sum(r * s for r, s in zip(a.rates_per_s, a.mean_sojourn_s, strict=True)) / total
    assert a.trace_file is not None
    gaps = load_interarrivals(a.trace_file, "workload.arrival.trace_file")
    return len(gaps) / sum(gaps)
