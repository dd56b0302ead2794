"""Hyperparameters per algorithm and scenario (rl-baselines3-zoo layout), with overrides.

``agents/hyperparams/<algo>.yaml`` maps a scenario name to a block of settings; a ``default``
block (shared through a YAML anchor) applies to scenarios without their own key. Values are
plain YAML scalars and lists: nothing is ``eval``'d. Names of torch activation functions are
strings resolved from a fixed table (:data:`ACTIVATIONS`).

A block mixes two kinds of keys:

- *run keys* (:data:`RUN_DEFAULTS`): how training is run (number of envs, budget, vectoriser,
  evaluation and checkpoint cadence);
- *algorithm keys*: keyword arguments of the SB3 algorithm's constructor (``learning_rate``,
  ``n_steps``, ``policy_kwargs``, ...). Unknown keys are rejected with the list of valid ones.

Overrides from the command line are ``key=value`` strings; ``value`` is parsed as YAML
(``--hp learning_rate=1e-4 --hp policy_kwargs.net_arch=[128,128]``); dotted keys reach into
nested mappings.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from edgerl.agents.rundir import ALGO_NAMES

HP_DIR = Path(__file__).resolve().parent / "hyperparams"
DEFAULT_KEY = "default"

#: Run keys and their defaults (used when a YAML block does not set them).
RUN_DEFAULTS: dict[str, Any] = {
    "n_envs": 4,  # parallel training envs
    "n_timesteps": 100_000,  # used when the CLI gives no --timesteps
    "vec_env": "dummy",  # dummy | subproc
    "eval_freq": 10_000,  # evaluate every this many timesteps (summed over envs)
    "eval_episodes": 2,  # held-out episodes per evaluation
    "eval_horizon_s": None,  # shorter evaluation episodes (None: the scenario's horizon)
    "checkpoint_freq": 50_000,  # save checkpoints/ every this many timesteps
    "normalize_reward": False,  # scale training rewards by a running return std (VecNormalize)
}
VEC_ENVS = ("dummy", "subproc")
#: Constructor arguments set by the training script itself, never by hyperparameters.
RESERVED = {"self", "env", "seed", "tensorboard_log", "verbose", "device", "_init_setup_model"}
ACTIVATIONS = ("tanh", "relu", "elu", "leaky_relu")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class HyperparamError(ValueError):
    """A hyperparameter file, key or override is invalid (the message says which)."""


@dataclass(frozen=True)
class Hyperparams:
    """Resolved settings of one training run."""

    algo: str
    source: str  # "<file>:<key>"
    algo_kwargs: Mapping[str, Any]
    run: Mapping[str, Any]
    overrides: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "overrides": list(self.overrides),
            "algo_kwargs": copy.deepcopy(dict(self.algo_kwargs)),
            "run": dict(self.run),
        }


def algo_class(algo: str) -> Any:
    """The SB3 class of ``algo`` (imports torch and SB3)."""
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    if algo in ("ppo", "a2c", "dqn"):
        import stable_baselines3

        return getattr(stable_baselines3, algo.upper())
    raise HyperparamError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGO_NAMES)}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (["a", "b"], YAML-parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise HyperparamError(f"hyperparameter override {text!r}: expected key=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise HyperparamError(f"hyperparameter override {text!r}: bad YAML value: {exc}") from exc
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
    return [k.strip() for k in key.split(".")], value


def _apply(block: dict[str, Any], path: list[str], value: Any, where: str) -> None:
    node = block
    for k in path[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise HyperparamError(f"{where}: '{k}' is not a mapping, cannot set {'.'.join(path)}")
        node = child
    node[path[-1]] = value


def load_hyperparams(
    algo: str,
    scenario: str,
    overrides: Sequence[str] = (),
    path: str | Path | None = None,
) -> Hyperparams:
    """Settings for ``algo`` on ``scenario`` (its key, else ``default``), then ``overrides``.

    Raises:
        HyperparamError: unknown algorithm, unreadable file, unknown key, bad value.
    """
    if algo not in ALGO_NAMES:
        raise HyperparamError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGO_NAMES)}")
    p = Path(path) if path is not None else HP_DIR / f"{algo}.yaml"
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise HyperparamError(f"{p}: cannot read hyperparameters: {exc}") from exc
    if not isinstance(data, dict) or DEFAULT_KEY not in data:
        raise HyperparamError(f"{p}: expected a mapping with a '{DEFAULT_KEY}' block")
    key, block = _block(data, scenario, overrides, p)
    run = dict(RUN_DEFAULTS)
    kwargs: dict[str, Any] = {}
    for k, v in block.items():
        if k in RUN_DEFAULTS:
            run[k] = v
        else:
            kwargs[k] = v
    _validate(algo, kwargs, run, f"{p}:{key}")
    return Hyperparams(algo, f"{p.name}:{key}", kwargs, run, tuple(overrides))


def _block(
    data: Mapping[str, Any], scenario: str, overrides: Sequence[str], p: Path
) -> tuple[str, dict[str, Any]]:
    """(the key used, a copy of its block with ``overrides`` applied)."""
    key = scenario if scenario in data else DEFAULT_KEY
    block = copy.deepcopy(data[key])
    if not isinstance(block, dict):
        raise HyperparamError(f"{p}:{key}: expected a mapping")
    for ov in overrides:
        _apply(block, *parse_override(ov), where=f"override {ov!r}")
    return key, block


def hyperparams_block(
    algo: str,
    scenario: str,
    overrides: Sequence[str] = (),
    path: str | Path | None = None,
) -> dict[str, Any]:
    """The YAML block :func:`load_hyperparams` resolves for ``algo`` on ``scenario`` with
    ``overrides`` applied, as plain data (anchors merged): written under ``default:`` in a
    file of its own, it is a hyperparameter file that ``edgerl train --hyperparams`` reads
    back to the same settings. Validated first (same errors as :func:`load_hyperparams`)."""
    load_hyperparams(algo, scenario, overrides, path)
    p = Path(path) if path is not None else HP_DIR / f"{algo}.yaml"
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    return _block(data, scenario, overrides, p)[1]


def _validate(algo: str, kwargs: dict[str, Any], run: dict[str, Any], where: str) -> None:
    allowed = set(inspect.signature(algo_class(algo).__init__).parameters) - RESERVED
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise HyperparamError(
            f"{where}: unknown key(s) {unknown} for {algo}; run keys: {sorted(RUN_DEFAULTS)}; "
            f"algorithm keys: {sorted(allowed)}"
        )
    if not isinstance(run["normalize_reward"], bool):
        raise HyperparamError(f"{where}: normalize_reward must be true or false")
    if run["vec_env"] not in VEC_ENVS:
        raise HyperparamError(f"{where}: vec_env must be one of {VEC_ENVS}, got {run['vec_env']!r}")
    for k in ("n_envs", "n_timesteps", "eval_freq", "eval_episodes", "checkpoint_freq"):
        if isinstance(run[k], bool) or not isinstance(run[k], int) or run[k] < 1:
            raise HyperparamError(f"{where}: {k} must be a positive integer, got {run[k]!r}")
    act = (kwargs.get("policy_kwargs") or {}).get("activation_fn")
    if act is not None and act not in ACTIVATIONS:
        raise HyperparamError(
            f"{where}: policy_kwargs.activation_fn must be one of {ACTIVATIONS}, got {act!r}"
        )


def sb3_kwargs(hp: Hyperparams) -> dict[str, Any]:
    """The algorithm keyword arguments with names resolved to objects (imports torch)."""
    kwargs = copy.deepcopy(dict(hp.algo_kwargs))
    pk = kwargs.get("policy_kwargs")
    if pk and "activation_fn" in pk:
        from torch import nn

        pk["activation_fn"] = {
            "tanh": nn.Tanh,
            "relu": nn.ReLU,
            "elu": nn.ELU,
            "leaky_relu": nn.LeakyReLU,
        }[pk["activation_fn"]]
    return kwargs
