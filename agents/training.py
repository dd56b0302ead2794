"""Training machinery around SB3: vectorised envs, env-time measurement, held-out evaluation.

- :func:`make_train_env`: ``n_envs`` copies of the scenario's env on the *training* traces,
  each in a ``Monitor``, vectorised with ``DummyVecEnv`` (default) or ``SubprocVecEnv``, and
  wrapped in :class:`TimedVecEnv`.
- :class:`TimedVecEnv`: accumulates the wall time spent in ``reset``, ``step_async`` and
  ``step_wait`` of the wrapped VecEnv: the time the environment costs (for
  ``SubprocVecEnv`` it includes inter-process transfer), reported as ``env_time_s``.
- :class:`HeldOutEvalCallback`: every ``eval_freq`` timesteps, evaluates the current policy
  on the **held-out** traces with :func:`edgerl.agents.evaluation.evaluate` (masks applied,
  deterministic), logs to TensorBoard, appends to ``learning_curve.csv`` and saves
  ``best_model.zip`` when the mean utility per request improves. Its episode seeds come from
  a stream of their own (``"callback"``), so they differ from the seeds of the final
  evaluation; the traces are the same held-out set, which the issue prescribes. The final
  reported numbers therefore carry a (small) selection effect from choosing the best
  checkpoint on held-out traces; ``edgerl evaluate --which final`` avoids it.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from edgerl.agents.base import derive_seeds
from edgerl.agents.evaluation import evaluate
from edgerl.agents.learned import SB3Policy
from edgerl.envs.sim.build import ScenarioModel
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecEnvWrapper,
    VecNormalize,
)

CALLBACK_SEED_STREAM = "callback"
CURVE_FIELDS = (
    "timesteps",
    "wall_time_s",
    "env_time_s",
    "eval_utility_mean",
    "eval_utility_ci_low",
    "eval_utility_ci_high",
    "eval_slo_hit_rate",
    "eval_latency_p95_ms",
    "eval_accuracy",
    "train_episode_return_mean",
    "best",
)


class TimedVecEnv(VecEnvWrapper):
    """A pass-through VecEnv wrapper that measures the env's wall time."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.env_time_s = 0.0
        self.env_steps = 0

    def reset(self) -> Any:
        t0 = time.perf_counter()
        obs = self.venv.reset()
        self.env_time_s += time.perf_counter() - t0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        t0 = time.perf_counter()
        self.venv.step_async(actions)
        self.env_time_s += time.perf_counter() - t0

    def step_wait(self) -> Any:
        t0 = time.perf_counter()
        out = self.venv.step_wait()
        self.env_time_s += time.perf_counter() - t0
        self.env_steps += self.num_envs
        return out


def make_train_env(
    model: ScenarioModel,
    n_envs: int,
    seed: int,
    vec_env: str = "dummy",
    normalize_reward: bool = False,
    gamma: float = 0.99,  # SB3 VecNormalize default; the caller passes the algorithm's gamma
) -> VecEnv:
    """``n_envs`` training-split envs (env ``i`` seeded ``seed + i`` by SB3), timed.

    With ``normalize_reward``, SB3's ``VecNormalize(norm_obs=False, norm_reward=True)``
    divides the *training* rewards by a running standard deviation of the discounted return
    (observations untouched, so the trained policy takes the env's observations as they are
    and nothing needs to be exported with it). Evaluation always uses the raw rewards.
    The returned VecEnv exposes the :class:`TimedVecEnv` as ``.timer``.
    """
    from edgerl.envs.env import CollabInferenceEnv

    def env_fn() -> CollabInferenceEnv:
        return CollabInferenceEnv(model, split="train")

    if vec_env not in ("dummy", "subproc"):
        raise ValueError(f"vec_env must be 'dummy' or 'subproc', got {vec_env!r}")
    cls: type[DummyVecEnv] | type[SubprocVecEnv] = (
        DummyVecEnv if vec_env == "dummy" else SubprocVecEnv
    )
    timed = TimedVecEnv(make_vec_env(env_fn, n_envs=n_envs, seed=seed, vec_env_cls=cls))
    out: VecEnv = timed
    if normalize_reward:
        out = VecNormalize(timed, norm_obs=False, norm_reward=True, gamma=gamma)
    out.timer = timed  # type: ignore[attr-defined]
    return out


class HeldOutEvalCallback(BaseCallback):
    """Periodic held-out evaluation, learning curve and best-model checkpointing."""

    def __init__(
        self,
        model_spec: ScenarioModel,
        algo: str,
        run_dir: Path,
        eval_freq: int,
        eval_episodes: int,
        seed: int,
        timed_env: TimedVecEnv | None = None,
        eval_horizon_s: float | None = None,
        on_eval: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self.on_eval = on_eval  # called with each learning-curve row once it is written
        self.scenario = model_spec
        self.algo = algo
        self.run_dir = Path(run_dir)
        self.eval_freq = eval_freq
        self.eval_episodes = eval_episodes
        self.eval_horizon_s = eval_horizon_s
        self.timed_env = timed_env
        self.seeds: Sequence[int] = derive_seeds(seed, 1, CALLBACK_SEED_STREAM)
        self.best = -np.inf
        self.last_eval_step = -1
        self.eval_time_s = 0.0
        self.t_start = time.perf_counter()
        self.curve_path = self.run_dir / "learning_curve.csv"
        self.rows: list[dict[str, Any]] = []

    def _on_training_start(self) -> None:
        self.t_start = time.perf_counter()
        with self.curve_path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(CURVE_FIELDS)

    def _on_step(self) -> bool:
        if self.num_timesteps - max(self.last_eval_step, 0) >= self.eval_freq:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if self.last_eval_step != self.num_timesteps:
            self._evaluate()

    def _evaluate(self) -> None:
        t0 = time.perf_counter()
        self.last_eval_step = self.num_timesteps
        pol = SB3Policy(self.model, self.algo)
        ev = evaluate(
            self.scenario, pol, self.seeds, self.eval_episodes, horizon_s=self.eval_horizon_s
        )
        m = ev.metrics()
        u = m["utility_mean"]
        improved = u["mean"] > self.best
        if improved:
            self.best = u["mean"]
            self.model.save(str(self.run_dir / "best_model.zip"))
        ep_buf = getattr(self.model, "ep_info_buffer", None)
        train_ret = float(np.mean([e["r"] for e in ep_buf])) if ep_buf else float("nan")
        ci = u["ci95"] or [None, None]
        row = {
            "timesteps": self.num_timesteps,
            "wall_time_s": round(time.perf_counter() - self.t_start, 3),
            "env_time_s": round(self.timed_env.env_time_s, 3) if self.timed_env else "",
            "eval_utility_mean": u["mean"],
            "eval_utility_ci_low": ci[0],
            "eval_utility_ci_high": ci[1],
            "eval_slo_hit_rate": m["slo_hit_rate"]["mean"],
            "eval_latency_p95_ms": m["latency_p95_ms"]["mean"],
            "eval_accuracy": m["accuracy"]["mean"],
            "train_episode_return_mean": train_ret,
            "best": int(improved),
        }
        self.rows.append(row)
        with self.curve_path.open("a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([row[k] for k in CURVE_FIELDS])
        self.logger.record("eval/utility_mean", u["mean"])
        self.logger.record("eval/slo_hit_rate", m["slo_hit_rate"]["mean"])
        self.logger.record("eval/latency_p95_ms", m["latency_p95_ms"]["mean"])
        if self.timed_env is not None:
            self.logger.record("time/env_time_s", self.timed_env.env_time_s)
        self.eval_time_s += time.perf_counter() - t0
        if self.on_eval is not None:
            self.on_eval(dict(row))


class ClampedProgressBar:
    """SB3's rich/tqdm progress bar, but never past its total.

    SB3 counts steps in whole rollouts (``n_envs * n_steps``), so a run of 200,000 steps
    ends at 200,704 and SB3's own bar overshoots its total; this one stops at the total.
    Built lazily (``make()``) so that this module does not import tqdm at import time.
    """

    @staticmethod
    def make() -> Any:
        from stable_baselines3.common.callbacks import ProgressBarCallback

        class _Clamped(ProgressBarCallback):
            def _on_step(self) -> bool:
                left = self.pbar.total - self.pbar.n
                if left > 0:
                    self.pbar.update(min(self.training_env.num_envs, left))
                return True

        return _Clamped()
