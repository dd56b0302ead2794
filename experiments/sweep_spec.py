"""The sweep spec of ``edgerl sweep``: a strict, typed YAML file, checked before any trial.

::

    name: camera-lte-quick          # optional (default: the file's stem)
    scenarios: [camera-lte]         # shipped names or scenario YAML files (relative to the spec)
    scenario_set: []                # optional: scenario overrides (train --set), every scenario
    algorithms: [ppo, a2c]          # maskable_ppo | ppo | a2c | dqn
    seeds: [0, 1]                   # every configuration trains once per seed
    search: random                  # grid | random | optuna (TPE)
    search_seed: 0                  # optional: seeds the random and TPE samplers
    hyperparams:                    # optional fixed overrides, as `edgerl train --hp key=value`
      eval_freq: 512
    space:                          # one search space per hyperparameter key (dotted keys reach
      learning_rate: {loguniform: [1.0e-4, 1.0e-3]}   # into mappings, as with --hp)
      ent_coef: {choice: [0.0, 0.01]}
    space_per_algorithm:            # optional: spaces for one algorithm only
      ppo: {n_epochs: {choice: [5, 10]}}
    budget:
      timesteps: 2048               # training steps of each run (one seed of one configuration)
      trials: 4                     # configurations per (scenario, algorithm); not with grid
      wall_time_s: 600              # optional: per (scenario, algorithm) study
    early_stopping:                 # optional: ASHA on the held-out utility
      grace_timesteps: 1024
      reduction_factor: 2
    max_concurrent: 2               # optional: trials at once (default: as the CPUs allow)

A search space is one of ``{grid: [v, ...]}`` (``search: grid`` only, every value),
``{choice: [v, ...]}``, ``{uniform: [low, high]}`` and ``{loguniform: [low, high]}``.
Hyperparameter keys and values are those of the hyperparameter files
(``agents/hyperparams/<algo>.yaml``, see :mod:`edgerl.agents.hyperparams`): a trial is
``edgerl train --hp key=value ...`` with its sampled values.

:func:`load_spec` rejects an unknown key (naming it, with the closest known one), a wrong type,
an impossible value, an unknown scenario or algorithm and a hyperparameter the algorithm does
not take (each space is tried at its ends and at each of its values), all before Ray starts.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from edgerl.envs.config import ConfigError, decode_dataclass

SearchName = Literal["grid", "random", "optuna"]
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform")
#: Hyperparameter keys a sweep sets itself (the budget), never from a space or ``hyperparams``.
SWEEP_OWNED_KEYS = ("n_timesteps",)
#: The smallest ASHA reduction factor (each rung keeps at most 1/factor of the trials).
MIN_REDUCTION_FACTOR = 2


class SweepSpecError(ValueError):
    """A sweep spec is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Budget:
    timesteps: int
    """training steps of each run (one seed of one configuration)"""
    trials: int | None = None
    """configurations tried per (scenario, algorithm); grid search: omit (its size)"""
    wall_time_s: float | None = None
    """stop starting and running trials of one (scenario, algorithm) after this long"""


@dataclass(frozen=True)
class EarlyStopping:
    """ASHA (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning")."""

    grace_timesteps: int
    """no trial is stopped before this many training steps (summed over its seeds)"""
    reduction_factor: int = 2


@dataclass(frozen=True)
class Space:
    """A search space of one hyperparameter."""

    kind: str
    """grid | choice | uniform | loguniform"""
    values: tuple[Any, ...]
    """the values (grid, choice) or (low, high)"""

    def probe_values(self) -> tuple[Any, ...]:
        """Values that validation tries: every listed value, or both ends of a range."""
        return self.values


@dataclass(frozen=True)
class _SpecFields:
    """The typed part of the spec file (decoded by :func:`edgerl.envs.config.decode_dataclass`)."""

    scenarios: tuple[str, ...]
    algorithms: tuple[str, ...]
    seeds: tuple[int, ...]
    search: SearchName
    budget: Budget
    name: str | None = None
    scenario_set: tuple[str, ...] = ()
    search_seed: int = 0
    hyperparams_file: str | None = None
    early_stopping: EarlyStopping | None = None
    max_concurrent: int | None = None


#: Top-level keys of a spec file.
SPEC_KEYS = (
    *(f for f in _SpecFields.__dataclass_fields__),
    "hyperparams",
    "space",
    "space_per_algorithm",
)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec (see the module docstring for the file format)."""

    name: str
    scenarios: tuple[str, ...]
    algorithms: tuple[str, ...]
    seeds: tuple[int, ...]
    search: SearchName
    budget: Budget
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    space: Mapping[str, Space] = field(default_factory=dict)
    space_per_algorithm: Mapping[str, Mapping[str, Space]] = field(default_factory=dict)
    scenario_set: tuple[str, ...] = ()
    search_seed: int = 0
    hyperparams_file: str | None = None
    early_stopping: EarlyStopping | None = None
    max_concurrent: int | None = None
    path: str = "<memory>"

    def spaces(self, algo: str) -> dict[str, Space]:
        """The search spaces of ``algo``: the shared ones, then its own."""
        return {**self.space, **self.space_per_algorithm.get(algo, {})}

    def fixed_overrides(self) -> list[str]:
        """The fixed ``hyperparams`` as ``key=value`` overrides (values as JSON, valid YAML)."""
        return [hp_override(k, v) for k, v in self.hyperparams.items()]

    def to_json(self) -> dict[str, Any]:
        """The spec as plain data (what ``spec.yaml`` in the sweep directory holds)."""
        out: dict[str, Any] = {
            "name": self.name,
            "scenarios": list(self.scenarios),
            "scenario_set": list(self.scenario_set),
            "algorithms": list(self.algorithms),
            "seeds": list(self.seeds),
            "search": self.search,
            "search_seed": self.search_seed,
            "hyperparams": dict(self.hyperparams),
            "space": {k: {s.kind: list(s.values)} for k, s in self.space.items()},
            "space_per_algorithm": {
                a: {k: {s.kind: list(s.values)} for k, s in sp.items()}
                for a, sp in self.space_per_algorithm.items()
            },
            "budget": {
                "timesteps": self.budget.timesteps,
                "trials": self.budget.trials,
                "wall_time_s": self.budget.wall_time_s,
            },
        }
        if self.hyperparams_file is not None:
            out["hyperparams_file"] = self.hyperparams_file
        if self.early_stopping is not None:
            out["early_stopping"] = {
                "grace_timesteps": self.early_stopping.grace_timesteps,
                "reduction_factor": self.early_stopping.reduction_factor,
            }
        if self.max_concurrent is not None:
            out["max_concurrent"] = self.max_concurrent
        return out


def hp_override(key: str, value: Any) -> str:
    """``key=value`` as ``edgerl train --hp`` reads it: JSON, which is YAML, but for the
    non-finite floats, which YAML spells ``.nan``, ``.inf`` and ``-.inf``."""
    if isinstance(value, float) and not math.isfinite(value):
        text = ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
        return f"{key}={text}"
    return f"{key}={json.dumps(value)}"


def _unknown_key(where: str, key: object, allowed: Sequence[str]) -> SweepSpecError:
    close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return SweepSpecError(f"{where}.{key}: unknown key{hint} (allowed: {', '.join(allowed)})")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise SweepSpecError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _space(data: Any, where: str) -> Space:
    if not isinstance(data, Mapping) or len(data) != 1:
        raise SweepSpecError(
            f"{where}: expected one of {{grid: [...]}}, {{choice: [...]}}, "
            f"{{uniform: [low, high]}}, {{loguniform: [low, high]}}; got {data!r}"
        )
    ((kind, values),) = data.items()
    if kind not in DISTRIBUTIONS:
        raise _unknown_key(where, kind, DISTRIBUTIONS)
    if not isinstance(values, list) or not values:
        raise SweepSpecError(f"{where}.{kind}: expected a non-empty list, got {values!r}")
    if kind in ("grid", "choice"):
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise SweepSpecError(f"{where}.{kind}: repeated value in {values!r}")
        return Space(kind, tuple(values))
    if len(values) != 2:  # noqa: PLR2004 (a range is [low, high])
        raise SweepSpecError(f"{where}.{kind}: expected [low, high], got {values!r}")
    low, high = (_number(v, f"{where}.{kind}") for v in values)
    if not low < high:
        raise SweepSpecError(f"{where}.{kind}: low must be < high, got {values!r}")
    if kind == "loguniform" and low <= 0:
        raise SweepSpecError(f"{where}.{kind}: low must be > 0 for a log scale, got {low}")
    return Space(kind, (low, high))


def _spaces(data: Any, where: str) -> dict[str, Space]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SweepSpecError(f"{where}: expected a mapping of hyperparameter: space")
    out = {}
    for k, v in data.items():
        if not isinstance(k, str) or not k.strip():
            raise SweepSpecError(f"{where}: a hyperparameter key must be a string, got {k!r}")
        if k in SWEEP_OWNED_KEYS:
            raise SweepSpecError(f"{where}.{k}: set by the sweep (budget.timesteps)")
        out[k] = _space(v, f"{where}.{k}")
    return out


def spec_from_dict(data: Any, path: str = "<memory>", base_dir: Path | None = None) -> SweepSpec:
    """Decode and check a spec (everything but the scenarios and hyperparameters themselves,
    which :func:`check_spec` resolves)."""
    if not isinstance(data, Mapping):
        raise SweepSpecError(f"{path}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in SPEC_KEYS:
            raise _unknown_key(path, key, SPEC_KEYS)
    typed = {k: v for k, v in data.items() if k in _SpecFields.__dataclass_fields__}
    try:
        f = decode_dataclass(_SpecFields, typed, path)
    except ConfigError as exc:
        raise SweepSpecError(str(exc)) from None
    hyperparams = data.get("hyperparams") or {}
    if not isinstance(hyperparams, Mapping):
        raise SweepSpecError(f"{path}.hyperparams: expected a mapping of key: value")
    for k in hyperparams:
        if k in SWEEP_OWNED_KEYS:
            raise SweepSpecError(f"{path}.hyperparams.{k}: set by the sweep (budget.timesteps)")
    space = _spaces(data.get("space"), f"{path}.space")
    per_algo_raw = data.get("space_per_algorithm") or {}
    if not isinstance(per_algo_raw, Mapping):
        raise SweepSpecError(f"{path}.space_per_algorithm: expected a mapping of algorithm: space")
    per_algo = {
        str(a): _spaces(s, f"{path}.space_per_algorithm.{a}") for a, s in per_algo_raw.items()
    }
    name = f.name if f.name is not None else Path(path).stem
    spec = SweepSpec(
        name=name,
        scenarios=f.scenarios,
        algorithms=f.algorithms,
        seeds=f.seeds,
        search=f.search,
        budget=f.budget,
        hyperparams=dict(hyperparams),
        space=space,
        space_per_algorithm=per_algo,
        scenario_set=f.scenario_set,
        search_seed=f.search_seed,
        hyperparams_file=f.hyperparams_file,
        early_stopping=f.early_stopping,
        max_concurrent=f.max_concurrent,
        path=path,
    )
    if base_dir is not None:
        spec = _resolve_paths(spec, base_dir)
    _check_shape(spec)
    return spec


def _resolve_paths(spec: SweepSpec, base: Path) -> SweepSpec:
    """Scenario and hyperparameter files relative to the spec's folder -> absolute paths (Ray
    runs trials in other working directories)."""

    def fix(s: str) -> str:
        p = Path(s)
        if p.suffix in (".yaml", ".yml") and not p.is_absolute():
            return str((base / p).resolve())
        return s

    hp_file = spec.hyperparams_file
    return replace(
        spec,
        scenarios=tuple(fix(s) for s in spec.scenarios),
        hyperparams_file=None if hp_file is None else str((base / hp_file).resolve()),
    )


def _check_shape(spec: SweepSpec) -> None:
    """Checks of the spec on its own (no scenario or hyperparameter file read)."""
    from edgerl.agents.rundir import ALGO_NAMES

    p = spec.path
    for key, seq in (("scenarios", spec.scenarios), ("algorithms", spec.algorithms)):
        if not seq:
            raise SweepSpecError(f"{p}.{key}: name at least one")
        if len(set(seq)) != len(seq):
            raise SweepSpecError(f"{p}.{key}: repeated entry in {list(seq)}")
    if not spec.seeds:
        raise SweepSpecError(f"{p}.seeds: name at least one seed")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise SweepSpecError(f"{p}.seeds: repeated seed in {list(spec.seeds)}")
    for i, a in enumerate(spec.algorithms):
        if a not in ALGO_NAMES:
            raise SweepSpecError(
                f"{p}.algorithms[{i}]: unknown algorithm {a!r}; choose from {', '.join(ALGO_NAMES)}"
            )
    for a in spec.space_per_algorithm:
        if a not in spec.algorithms:
            raise SweepSpecError(
                f"{p}.space_per_algorithm.{a}: not one of the sweep's algorithms "
                f"({', '.join(spec.algorithms)})"
            )
    b = spec.budget
    if b.timesteps < 1:
        raise SweepSpecError(f"{p}.budget.timesteps: must be >= 1, got {b.timesteps}")
    if b.wall_time_s is not None and not b.wall_time_s > 0:
        raise SweepSpecError(f"{p}.budget.wall_time_s: must be > 0, got {b.wall_time_s}")
    if spec.search == "grid":
        if b.trials is not None:
            raise SweepSpecError(
                f"{p}.budget.trials: grid search runs each combination once; remove the key"
            )
    elif b.trials is None or b.trials < 1:
        raise SweepSpecError(
            f"{p}.budget.trials: {spec.search} search needs a number of trials >= 1"
        )
    for algo in spec.algorithms:
        for k, s in spec.spaces(algo).items():
            where = f"{p}.space.{k}" if k in spec.space else f"{p}.space_per_algorithm.{algo}.{k}"
            if spec.search == "grid" and s.kind != "grid":
                raise SweepSpecError(f"{where}: search: grid takes only {{grid: [...]}} spaces")
            if spec.search != "grid" and s.kind == "grid":
                raise SweepSpecError(
                    f"{where}: grid spaces need search: grid; use {{choice: [...]}} to sample"
                )
            if k in spec.hyperparams:
                raise SweepSpecError(f"{where}: also fixed in {p}.hyperparams; keep one")
    es = spec.early_stopping
    if es is not None:
        if es.grace_timesteps < 1:
            raise SweepSpecError(f"{p}.early_stopping.grace_timesteps: must be >= 1")
        if es.reduction_factor < MIN_REDUCTION_FACTOR:
            raise SweepSpecError(
                f"{p}.early_stopping.reduction_factor: must be >= {MIN_REDUCTION_FACTOR}"
            )
    if spec.max_concurrent is not None and spec.max_concurrent < 1:
        raise SweepSpecError(f"{p}.max_concurrent: must be >= 1")
    if spec.search == "optuna" and importlib.util.find_spec("optuna") is None:
        raise SweepSpecError(f"{p}.search: optuna is not installed (pip install optuna)")


def check_spec(spec: SweepSpec) -> None:
    """Resolve every scenario and try every hyperparameter value the spec can give.

    Raises:
        SweepSpecError: naming the spec key (``scenarios[i]``, ``space.KEY``,
            ``hyperparams``) and what the scenario or hyperparameter loader said.
    """
    from edgerl.agents.hyperparams import HyperparamError, load_hyperparams
    from edgerl.experiments import runinfo

    p = spec.path
    for i, sc in enumerate(spec.scenarios):
        try:
            model, _ = runinfo.resolve_scenario(sc, spec.scenario_set)
        except ConfigError as exc:
            raise SweepSpecError(f"{p}.scenarios[{i}]: {exc}") from None
        fixed = spec.fixed_overrides()
        for algo in spec.algorithms:
            try:
                load_hyperparams(algo, model.cfg.name, fixed, spec.hyperparams_file)
            except HyperparamError as exc:
                raise SweepSpecError(f"{p}.hyperparams ({algo}): {exc}") from None
            for k, s in spec.spaces(algo).items():
                for v in s.probe_values():
                    try:
                        load_hyperparams(
                            algo, model.cfg.name, [*fixed, hp_override(k, v)], spec.hyperparams_file
                        )
                    except HyperparamError as exc:
                        where = (
                            f"space.{k}" if k in spec.space else f"space_per_algorithm.{algo}.{k}"
                        )
                        raise SweepSpecError(f"{p}.{where} = {v!r} ({algo}): {exc}") from None


def load_spec(path: str | Path, check: bool = True) -> SweepSpec:
    """Read, decode and (``check``) fully validate a spec file.

    Raises:
        SweepSpecError: unreadable file, unknown key, wrong type, impossible value, unknown
            scenario or algorithm, a hyperparameter the algorithm does not take.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        one_line = " ".join(str(exc).split())
        raise SweepSpecError(f"{p}: cannot read the sweep spec: {one_line}") from None
    if data is None:
        raise SweepSpecError(f"{p}: empty sweep spec")
    spec = spec_from_dict(data, str(p), p.parent)
    if check:
        check_spec(spec)
    return spec
