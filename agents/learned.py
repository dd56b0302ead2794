"""Learned agents: SB3 PPO, A2C, DQN and sb3-contrib MaskablePPO behind one factory.

:func:`make_model` builds any of them from :class:`edgerl.agents.hyperparams.Hyperparams`;
:class:`SB3Policy` wraps a trained model in the common policy interface, and
:func:`load_run_policy` loads one from a run directory.

Masks at prediction time. MaskablePPO learns with the action mask. PPO, A2C and DQN learn
without it (an infeasible plan drops the request and earns the drop penalty), but every
policy is *evaluated* with the mask applied, as the runtime planner does: the deterministic
action is the highest-logit (highest-Q for DQN) feasible plan; a stochastic action samples the
softmax over feasible logits (DQN: epsilon-greedy over feasible plans) from the policy's own
seeded generator. For MaskablePPO this is exactly its masked distribution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from edgerl.agents.base import BasePolicy, masked_argmax
from edgerl.agents.hyperparams import Hyperparams, algo_class, sb3_kwargs
from edgerl.agents.rundir import ALGO_NAMES, RunDirError, Which, read_run


def make_model(
    hp: Hyperparams, env: Any, seed: int, tensorboard_log: str | None = None, verbose: int = 0
) -> Any:
    """A fresh SB3 model of ``hp.algo`` on the (vectorised) ``env``."""
    cls = algo_class(hp.algo)
    return cls(
        env=env,
        seed=seed,
        tensorboard_log=tensorboard_log,
        verbose=verbose,
        device="cpu",
        **sb3_kwargs(hp),
    )


def load_model(path: str | Path, algo: str) -> Any:
    """Load an SB3 ``.zip`` of ``algo`` on the CPU."""
    if algo not in ALGO_NAMES:
        raise ValueError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGO_NAMES)}")
    p = Path(path)
    try:
        return algo_class(algo).load(str(p), device="cpu")
    except Exception as exc:  # SB3 raises many types on a corrupt zip
        raise RunDirError(
            f"{p}: cannot load the {algo} model: {type(exc).__name__}: {exc}"
        ) from exc


class PolicyMismatchError(ValueError):
    """A trained policy does not fit the scenario's observation or action space."""


class SB3Policy(BasePolicy):
    """A trained SB3 model as a :class:`~edgerl.agents.base.Policy` (masks at prediction)."""

    def __init__(self, model: Any, algo: str, name: str | None = None, seed: int = 0) -> None:
        super().__init__()
        if algo not in ALGO_NAMES:
            raise ValueError(f"unknown algorithm {algo!r}")
        self.model = model
        self.algo = algo
        self.name = name or algo
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self.source = ""
        self.trained_on = ""  # the scenario of the run it came from, if known

    def bind(self, env: Any) -> None:
        super().bind(env)
        self.check_fits(env)

    def check_fits(self, env: Any) -> None:
        """Raise :class:`PolicyMismatchError` unless the env has the model's spaces."""
        n_obs = self.model.observation_space.shape
        if n_obs != env.observation_space.shape or self.model.action_space.n != env.action_space.n:
            inner = getattr(env, "unwrapped", env)
            here = getattr(getattr(inner, "cfg", None), "name", "this scenario")
            trained = f" on scenario {self.trained_on!r}" if self.trained_on else ""
            raise PolicyMismatchError(
                f"policy {self.name!r} was trained{trained} with {n_obs[0]} observation "
                f"features and {self.model.action_space.n} plans; {here!r} has "
                f"{env.observation_space.shape[0]} and {env.action_space.n}: evaluate it on "
                "the scenario it was trained on (its run directory's scenario.yaml)"
            )

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(self._seed if seed is None else seed)

    def scores(self, observation: np.ndarray) -> np.ndarray:
        """Action logits (policy-gradient algorithms) or Q-values (DQN) for one observation."""
        import torch

        policy = self.model.policy
        obs_t, _ = policy.obs_to_tensor(np.asarray(observation, dtype=np.float32))
        with torch.no_grad():
            if self.algo == "dqn":
                out = policy.q_net(obs_t)
            else:
                out = policy.get_distribution(obs_t).distribution.logits
        return np.asarray(out[0].cpu().numpy(), dtype=np.float64)

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        s = self.scores(observation)
        if deterministic:
            return masked_argmax(s, action_mask)
        allowed = np.ones(len(s), dtype=bool) if action_mask is None else action_mask
        if self.algo == "dqn":
            if self._rng.random() < float(self.model.exploration_rate):
                return int(self._rng.choice(np.flatnonzero(allowed)))
            return masked_argmax(s, allowed)
        z = np.where(allowed, s, -np.inf)
        p = np.exp(z - z.max())
        return int(self._rng.choice(len(s), p=p / p.sum()))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": type(self).__name__,
            "algo": self.algo,
            "source": self.source,
        }


def load_run_policy(
    run_dir: str | Path, which: Which = "best", name: str | None = None
) -> SB3Policy:
    """The policy of a run directory (``best_model.zip`` by default).

    Raises:
        RunDirError: missing/corrupt run directory or model file.
    """
    info = read_run(run_dir)
    path = info.model_path(which)
    pol = SB3Policy(load_model(path, info.algo), info.algo, name=name or f"{info.algo}")
    pol.source = str(path)
    pol.trained_on = info.scenario
    return pol
