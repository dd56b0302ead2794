"""One random generator per stochastic source of an episode (common random numbers).

Every stochastic source of the simulator draws from a generator of its own, spawned from the
episode's seed with :meth:`numpy.random.SeedSequence.spawn`:

- ``traces``: which trace each link gets and where in it the episode starts (drawn once,
  when the episode is built);
- ``content``: what each input id *is*: its latent difficulty, or the test image it stands for
  (drawn once per episode for the whole catalogue, before any request);
- ``arrivals[d]``: device ``d``'s arrival process: inter-arrival gaps, MMPP state switches,
  application and input id of each request.

No source draws lazily at a time that depends on the policy (for example when a request
finishes), so every policy faces the same workload for a seed: the same arrival times,
applications and inputs, the same traces and offsets, the same input difficulties. This is
what makes comparisons of policies on one seed paired comparisons (common random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Children spawned before the per-device arrival streams (traces, content).
_SHARED_STREAMS = 2
#: Range of the entropy drawn from a caller's Generator to seed an episode.
_ENTROPY_HIGH = 2**63

SeedLike = int | np.random.SeedSequence | np.random.Generator


@dataclass(frozen=True)
class RandomStreams:
    """The generators of one episode (see the module docstring)."""

    traces: np.random.Generator
    content: np.random.Generator
    arrivals: tuple[np.random.Generator, ...]

    @classmethod
    def spawn(cls, seed: SeedLike, n_devices: int) -> RandomStreams:
        """Spawn the streams of an episode with ``n_devices`` devices.

        Args:
            seed: an integer seed, a ``SeedSequence``, or a ``Generator`` (one integer is drawn
                from it as the episode's entropy: this is how the Gymnasium env passes the
                seed given to ``reset()``).
            n_devices: number of arrival streams.

        Device ``d``'s stream depends only on the seed and ``d``, not on the device count.
        """
        if isinstance(seed, np.random.Generator):
            seq = np.random.SeedSequence(episode_entropy(seed))
        elif isinstance(seed, np.random.SeedSequence):
            seq = seed
        else:
            seq = np.random.SeedSequence(int(seed))
        children = seq.spawn(_SHARED_STREAMS + n_devices)
        gens = [np.random.default_rng(c) for c in children]
        return cls(traces=gens[0], content=gens[1], arrivals=tuple(gens[_SHARED_STREAMS:]))


def episode_entropy(rng: np.random.Generator) -> int:
    """The integer an episode's streams are spawned from, drawn from ``rng`` (one draw)."""
    return int(rng.integers(_ENTROPY_HIGH))
