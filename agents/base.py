"""The one policy interface shared by baselines, learned agents and the runtime planner.

A policy answers, for the observation of the request awaiting a plan::

    predict(observation, action_mask=None, deterministic=True) -> int

the index of a plan in ``env.unwrapped.plans`` (the SB3 argument order, but one action and no
recurrent state; :class:`SB3TupleAdapter` gives the ``(action, state)`` tuple SB3's own
helpers expect). ``action_mask`` marks the feasible plans (``env.action_masks()``).

Policies that need more than the observation get it explicitly through :meth:`Policy.bind`,
called once per environment before the first ``predict``. What they may read there is part
of each baseline's contract (see :mod:`edgerl.agents.baselines`):

- *online baselines* (Neurosurgeon, Edgent, fixed plans, random) read only **static**
  scenario data at ``bind`` (the plan catalogue, the memory mask, profiles and the latency
  regressions fitted on them, link RTTs, the radio power model) and decide from the
  observation alone: what a real device knows at decision time;
- the *clairvoyant greedy* oracle additionally reads the live simulator
  (``env.unwrapped.sim.predict_outcome``, which uses the true future bandwidth) at every
  decision. It is a reference, not a deployable policy.

numpy only (no torch, SB3 or Gymnasium import), so the runtime planner can implement it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from edgerl.envs.env import CollabInferenceEnv
    from edgerl.envs.sim.build import ScenarioModel


@runtime_checkable
class Policy(Protocol):
    """What the evaluator needs of a policy."""

    name: str

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        """The plan index for the pending request."""
        ...


def unwrap(env: Any) -> CollabInferenceEnv:
    """The :class:`CollabInferenceEnv` under any Gymnasium wrappers."""
    from edgerl.envs.env import CollabInferenceEnv  # gymnasium: only where an env exists

    inner = getattr(env, "unwrapped", env)
    if not isinstance(inner, CollabInferenceEnv):
        raise TypeError(
            f"expected an edgerl CollabInferenceEnv (or a wrapper of one), got {type(env).__name__}"
        )
    return inner


class BasePolicy(ABC):
    """A policy with the optional ``bind`` (static scenario data) and ``reset`` hooks.

    Attributes:
        name: short identifier used in tables and file names.
    """

    name: str = "policy"
    #: whether ``predict`` depends on the current observation alone (no state carried from one
    #: decision to the next): the hindsight oracle asks a stateful reference at every decision
    stateless: bool = False

    def __init__(self) -> None:
        self._env: CollabInferenceEnv | None = None
        self._training_model: ScenarioModel | None = None

    def use_training_scenario(self, model: ScenarioModel | None) -> None:
        """Build what comes from training data from ``model``, not from the bound env's scenario.

        An operator builds a baseline's offline parts (the best fixed plan, Edgent's bandwidth
        map) from the traces they measured beforehand, and then meets other networks. When
        the evaluation episodes run on other traces than the scenario's (``--uplink-traces``),
        the evaluator passes the scenario as trained here; ``None`` restores the default.
        Call before :meth:`bind`; the plan catalogues must be the same.
        """
        self._training_model = model

    def training_scenario(self) -> ScenarioModel:
        """The scenario whose *training* traces build this policy's offline parts: the one
        given to :meth:`use_training_scenario`, else the bound env's.

        Raises:
            ValueError: the training scenario's plan catalogue differs from the env's.
        """
        model = self.env.model
        train = self._training_model
        if train is None or train is model:
            return model
        if [p.name for p in train.plans] != [p.name for p in model.plans]:
            raise ValueError(
                f"policy {self.name!r}: the training scenario {train.cfg.path} offers other "
                f"plans than the evaluation scenario {model.cfg.path}"
            )
        return train

    def bind(self, env: Any) -> None:
        """Attach to an environment (called once per env, before ``predict``).

        Subclasses read static scenario data here; the default only keeps the env.
        """
        self._env = unwrap(env)

    @property
    def env(self) -> CollabInferenceEnv:
        if self._env is None:
            raise RuntimeError(f"policy {self.name!r}: call bind(env) before predict()")
        return self._env

    def reset(self, seed: int | None = None) -> None:  # noqa: B027 (optional hook)
        """Start of an episode; stochastic policies re-seed their generator here."""

    @abstractmethod
    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        """The plan index for the pending request."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (what the policy is, which options it runs with)."""
        return {"name": self.name, "class": type(self).__name__}


def masked_argmax(scores: np.ndarray, action_mask: np.ndarray | None) -> int:
    """Index of the largest score among the allowed actions (first on ties)."""
    if action_mask is None:
        return int(np.argmax(scores))
    if not action_mask.any():
        raise ValueError("action mask allows no action")
    return int(np.argmax(np.where(action_mask, scores, -np.inf)))


class SB3TupleAdapter:
    """Expose a :class:`Policy` with SB3's ``predict(obs, state, episode_start, deterministic)
    -> (actions, state)`` convention, e.g. for ``stable_baselines3.common.evaluation``.

    Works on a single observation or a batch (one row per environment); masks are read with
    ``mask_fn(i)`` for row ``i`` when given.
    """

    def __init__(self, policy: Policy, mask_fn: Any = None) -> None:
        self.policy = policy
        self.mask_fn = mask_fn

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        obs = np.asarray(observation)
        if obs.ndim == 1:
            mask = self.mask_fn(0) if self.mask_fn else None
            return np.array(self.policy.predict(obs, mask, deterministic)), None
        acts = [
            self.policy.predict(o, self.mask_fn(i) if self.mask_fn else None, deterministic)
            for i, o in enumerate(obs)
        ]
        return np.array(acts), None


def derive_seeds(seed: int, n: int, stream: str = "") -> list[int]:
    """``n`` independent 32-bit seeds from ``seed`` (and a stream name), reproducibly.

    Uses numpy's ``SeedSequence`` so that seeds of different streams (evaluation episodes,
    best-fixed search, callbacks) never coincide by construction.
    """
    entropy = [seed, *(ord(c) for c in stream)]
    return [int(s) for s in np.random.SeedSequence(entropy).generate_state(n)]
