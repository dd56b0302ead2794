"""Evaluate policies on a scenario's held-out traces and write the metrics as JSON.

A policy is named by a *spec*:

- ``RUN_DIR``: a trained agent (``best_model.zip``, or ``model.zip`` with ``which="final"``);
- ``baseline:NAME``: one of :func:`edgerl.agents.baselines.list_baselines`;
- ``planner:DIR``: an exported runtime planner (issue 6; needs ``edgerl.agents.planner``).

Every policy runs the same seeds and episodes (see :mod:`edgerl.agents.evaluation` for the
protocol and the confidence intervals).

    edgerl evaluate --scenario lte-dynamic --policy runs/lte-mppo-s0 --policy baseline:edgent \\
        --episodes 3 --seed 0 --seed 1 --seed 2 --json results/eval.json
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerl.agents.baselines import BaselineOptions, make_baseline
from edgerl.agents.best_fixed import SearchConfig
from edgerl.agents.evaluation import METRICS, PolicyEvaluation, evaluate
from edgerl.agents.rundir import (
    BEST_MODEL,
    FINAL_MODEL,
    Which,
    read_run,
    scenario_fingerprint,
)
from edgerl.envs.sim.build import ScenarioModel
from edgerl.experiments import runinfo
from edgerl.experiments.errors import OptionError, check_positive

EVAL_SCHEMA_VERSION = 1
BASELINE_PREFIX = "baseline:"
PLANNER_PREFIX = "planner:"


class PolicySpecError(ValueError):
    """A policy spec names nothing loadable (the message says why)."""


@dataclass
class EvalConfig:
    """What to evaluate (every field maps to an ``edgerl evaluate``/``compare`` option)."""

    scenario: str | ScenarioModel = "lte-dynamic"
    scenario_set: tuple[str, ...] = ()
    """scenario overrides, dotted.key=value (as for training)"""
    eval_set: tuple[str, ...] = ()
    """overrides only the evaluation episodes see (``--uplink-traces``): what a policy builds
    from training data (best-fixed's search, Edgent's bandwidth map) comes from the scenario
    without them, as an operator would build it, and is scored on the overridden one"""
    policies: tuple[str, ...] = ("baseline:edgent",)
    seeds: tuple[int, ...] = (0,)
    episodes: int = 3
    """episodes per seed"""
    horizon_s: float | None = None
    """shorter evaluation episodes than the scenario's horizon (budgeted runs)"""
    which: Which = "best"
    """best_model.zip or the final model.zip of run directories"""
    cache_dir: Path | None = None
    """where the best-fixed search caches its result (None: no cache)"""
    search: SearchConfig = field(default_factory=SearchConfig)
    latency_source: str = "regression"
    """Neurosurgeon/Edgent latency predictions: regression | profile"""
    record_bandwidth: bool = False
    stratified: bool = True
    """every seed covers every held-out uplink trace (several offsets in long ones),
    ``episodes`` times; False: ``episodes`` episodes per seed, traces drawn at random"""
    torch_threads: int = 1
    oracle_window_s: float = 2.0
    """the hindsight oracle's window [s]"""
    oracle_workers: int = 1
    """the oracle's concurrent simulator forks"""
    ray: bool = False
    """run the episodes as Ray tasks, one per (policy, seed) (same results as serially)"""
    ray_address: str | None = None
    """with ``ray``: a running Ray cluster (None: $RAY_ADDRESS, else a local Ray)"""


def load_policy(spec: str, cfg: EvalConfig) -> tuple[str, Any, dict[str, Any]]:
    """(label, policy, notes) for a policy spec.

    Raises:
        PolicySpecError / UnknownBaselineError / RunDirError: with a message naming the spec.
    """
    notes: dict[str, Any] = {"spec": spec}
    if spec.startswith(BASELINE_PREFIX):
        name = spec[len(BASELINE_PREFIX) :]
        opts = BaselineOptions(
            latency_source=cfg.latency_source,
            search=cfg.search,
            cache_dir=str(cfg.cache_dir) if cfg.cache_dir is not None else None,
            window_s=cfg.oracle_window_s,
            workers=cfg.oracle_workers,
        )
        return name, make_baseline(name, opts), notes
    if spec.startswith(PLANNER_PREFIX):
        path = Path(spec[len(PLANNER_PREFIX) :])
        try:
            from edgerl.agents.planner import Planner
        except ImportError as exc:
            raise PolicySpecError(
                f"{spec}: the runtime planner (edgerl.agents.planner) is not available: {exc}"
            ) from exc
        return f"planner:{path.name}", Planner.load(path), notes
    path = Path(spec)
    if not path.exists():
        prefix = spec.split(":", 1)[0] + ":" if ":" in spec else None
        what = f"unknown policy kind {prefix!r}" if prefix else "no such run directory"
        raise PolicySpecError(
            f"{spec}: {what}; a policy is a run directory, baseline:NAME or planner:DIR"
        )
    from edgerl.agents.learned import load_run_policy

    info = read_run(path)
    pol = load_run_policy(path, cfg.which, name=f"{info.algo}:{path.name}")
    best_missing = cfg.which == "best" and pol.source.endswith(FINAL_MODEL)
    fallback = f" (no {BEST_MODEL}: the final model)" if best_missing else ""
    print(f"{pol.name}: loaded {pol.source}{fallback}", file=sys.stderr)
    interrupted = info.interrupted_note()
    if interrupted is not None:
        notes["warning_interrupted"] = interrupted
        print(f"warning: {interrupted}", file=sys.stderr)
    notes.update(
        run_id=info.run_id,
        algo=info.algo,
        train_seed=info.seed,
        model=pol.source,
        trained_on=info.scenario,
        scenario_fingerprint=info.scenario_fingerprint,
    )
    return pol.name, pol, notes


def _episodes_on_ray(
    cfg: EvalConfig, progress: Callable[[str], None] | None
) -> dict[str, tuple[dict[int, list[Any]], int, dict[str, Any], float]]:
    """Every (policy, seed) of ``cfg`` as a Ray task (:mod:`edgerl.experiments.ray_eval`)."""
    from edgerl.experiments.ray_eval import evaluate_on_ray
    from edgerl.experiments.ray_session import ray_session

    with ray_session(cfg.ray_address, None):
        return evaluate_on_ray(cfg, cfg.policies, progress)


def run_evaluation(
    cfg: EvalConfig, progress: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], dict[str, PolicyEvaluation]]:
    """Evaluate every policy of ``cfg``; returns (JSON document, raw evaluations by label)."""
    import torch

    torch.set_num_threads(cfg.torch_threads)
    if cfg.episodes < 1:
        raise OptionError(f"--episodes must be >= 1, got {cfg.episodes}")
    if not cfg.seeds:
        raise OptionError("give at least one evaluation seed")
    check_positive("--horizon-s", cfg.horizon_s)
    training, label = runinfo.resolve_scenario(cfg.scenario, cfg.scenario_set)
    scenario = training
    if cfg.eval_set:
        if isinstance(cfg.scenario, ScenarioModel):
            raise OptionError("evaluation overrides need a scenario name or file, not a model")
        scenario, label = runinfo.resolve_scenario(cfg.scenario, (*cfg.scenario_set, *cfg.eval_set))
    if cfg.horizon_s is not None and cfg.horizon_s > scenario.cfg.horizon_s:
        print(
            f"warning: --horizon-s {cfg.horizon_s:g} is longer than the scenario's horizon "
            f"({scenario.cfg.horizon_s:g} s); episodes last {scenario.cfg.horizon_s:g} s",
            file=sys.stderr,
        )
    fingerprint = scenario_fingerprint(scenario.cfg)
    training_fingerprint = scenario_fingerprint(training.cfg)
    loaded = [load_policy(s, cfg) for s in cfg.policies]  # fail early, before any rollout
    if training is not scenario:
        for _, pol, _ in loaded:
            use = getattr(pol, "use_training_scenario", None)
            if use is not None:
                use(training)
    probe = None
    for _, pol, _ in loaded:  # a trained policy must fit the scenario's spaces
        if hasattr(pol, "check_fits"):
            from edgerl.envs.env import CollabInferenceEnv

            probe = probe or CollabInferenceEnv(scenario)
            pol.check_fits(probe)
    labels = [lbl for lbl, _, _ in loaded]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise PolicySpecError(f"policies with the same label {dupes}: give each spec once")
    results: dict[str, PolicyEvaluation] = {}
    docs: dict[str, Any] = {}
    t0 = time.perf_counter()
    on_ray = _episodes_on_ray(cfg, progress) if cfg.ray else {}
    for lbl, pol, notes in loaded:
        fp = notes.get("scenario_fingerprint")
        if fp is not None and fp != training_fingerprint:
            cause = (
                "; expected: --set/--uplink-traces changed the scenario it was trained on"
                if cfg.scenario_set
                else ""
            )
            notes["warning"] = (
                f"trained on scenario {notes.get('trained_on')!r} with another fingerprint "
                f"({fp[:12]} vs {training_fingerprint[:12]}){cause}"
            )
            print(f"warning: {lbl}: {notes['warning']}", file=sys.stderr)
        if cfg.ray:
            logs, n_per_seed, description, wall_s = on_ray[notes["spec"]]
            ev = PolicyEvaluation(
                label=lbl,
                description=description,
                seeds=list(cfg.seeds),
                episodes=n_per_seed,
                logs=logs,
                wall_time_s=wall_s,
            )
        else:
            ev = evaluate(
                scenario,
                pol,
                cfg.seeds,
                cfg.episodes,
                label=lbl,
                horizon_s=cfg.horizon_s,
                record_bandwidth=cfg.record_bandwidth,
                progress=progress,
                stratified=cfg.stratified,
            )
        results[lbl] = ev
        docs[lbl] = {**ev.to_json(), "spec": notes}
    horizon = cfg.horizon_s if cfg.horizon_s is not None else scenario.cfg.horizon_s
    doc = {
        "schema_version": EVAL_SCHEMA_VERSION,
        "kind": "edgerl.evaluation",
        "scenario": label,
        "scenario_name": scenario.cfg.name,
        "scenario_fingerprint": fingerprint,
        "training_scenario_fingerprint": training_fingerprint,
        "evaluation_overrides": list(cfg.eval_set),
        "episodes_ran_on": (
            f"ray ({len(cfg.policies) * len(cfg.seeds)} tasks: one per policy and seed)"
            if cfg.ray
            else "this process"
        ),
        "split": "eval",
        "seeds": list(cfg.seeds),
        "stratified": cfg.stratified,
        "episodes_per_seed": next(iter(results.values())).episodes if results else cfg.episodes,
        "horizon_s": min(horizon, scenario.cfg.horizon_s),
        "confidence_interval": {
            "level": 0.95,
            "method": "Student-t over per-unit values: mean ± t(0.975, n-1)·sd/√n",
            "unit": "evaluation seed (its episodes pooled); each episode when only one seed",
            "utility_pooled": "U, the one utility definition of every table: total utility / "
            "requests over every held-out episode; CI: ratio estimator over episodes",
        },
        "metric_definitions": {k: {"unit": u, "description": d} for k, (u, d) in METRICS.items()},
        "git_commit": runinfo.git_commit(),
        "versions": runinfo.versions(),
        "created": runinfo.now_iso(),
        "wall_time_s": time.perf_counter() - t0,
        "policies": docs,
    }
    return doc, results


def _json_safe(x: Any) -> Any:
    """NaN/inf to null (strict JSON)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def write_json(doc: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(doc), indent=1) + "\n", encoding="utf-8")
    return path


def summary_rows(doc: dict[str, Any], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per policy: label, then ``metric`` -> (mean, ci low, ci high)."""
    rows = []
    for lbl, pd in doc["policies"].items():
        row: dict[str, Any] = {"policy": lbl}
        for m in metrics:
            e = pd["metrics"][m]
            ci = e["ci95"] or [None, None]
            row[m] = (e["mean"], ci[0], ci[1])
        rows.append(row)
    return rows
