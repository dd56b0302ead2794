"""Headroom of a scenario, measured before any training.

Headroom = (U(oracle) - U(best fixed)) / |U(best fixed)|, on the scenario's *held-out*
traces (evaluation seeds, the same workload for both), where U is the mean utility per
request, the oracle is the hindsight windowed oracle (:mod:`edgerl.agents.oracle`) and the
best fixed plan is found by exhaustive search on the *training* traces
(:mod:`edgerl.agents.best_fixed`). It bounds what per-state adaptation can gain over the best
configuration an operator would pick offline; the adaptation issue calls a scenario with
headroom >= 15 % a headroom scenario.

``edgerl bench headroom`` writes ``experiments/results/headroom.json`` (by default), which
``edgerl scenarios`` reads to show each scenario's measured headroom; ``edgerl bench agents``
records there too when it evaluates both references on a scenario as shipped. Each entry
names its own protocol, commit and source.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerl.agents.best_fixed import SearchConfig
from edgerl.agents.rundir import evaluation_fingerprint
from edgerl.experiments import runinfo

HEADROOM_FILE = Path(__file__).resolve().parent / "results" / "headroom.json"
HEADROOM_KIND = "edgerl.headroom"
TARGET_HEADROOM = 0.15


@dataclass
class HeadroomConfig:
    scenarios: tuple[str, ...] = ()
    eval_seeds: tuple[int, ...] = (100, 101, 102)
    episodes: int = 1
    oracle_window_s: float = 2.0
    oracle_workers: int = 1
    out: Path = HEADROOM_FILE
    cache_dir: Path = Path("runs/headroom")
    search: SearchConfig = field(default_factory=SearchConfig)
    ray: bool = False
    """the evaluation episodes as Ray tasks, one per (policy, seed): same results"""
    ray_address: str | None = None
    """with ``ray``: a running Ray cluster (None: $RAY_ADDRESS, else a local Ray)"""


def measure_headroom(cfg: HeadroomConfig, scenario: str) -> dict[str, Any]:
    """Best fixed and oracle on ``scenario``'s held-out traces; the headroom between them."""
    from edgerl.experiments.evaluate import EvalConfig, run_evaluation

    t0 = time.perf_counter()
    doc, _ = run_evaluation(
        EvalConfig(
            scenario=scenario,
            policies=("baseline:best-fixed", "baseline:oracle"),
            seeds=cfg.eval_seeds,
            episodes=cfg.episodes,
            # the published headroom protocol (random held-out episodes); `bench agents` and
            # `bench generalise` measure it stratified, and each entry says which
            stratified=False,
            cache_dir=cfg.cache_dir,
            search=cfg.search,
            oracle_window_s=cfg.oracle_window_s,
            oracle_workers=cfg.oracle_workers,
            ray=cfg.ray,
            ray_address=cfg.ray_address,
        )
    )
    return headroom_entry(
        scenario,
        {k: v["metrics"] for k, v in doc["policies"].items()},
        best_fixed_plan=doc["policies"]["best-fixed"]["description"].get("plan", {}).get("name"),
        oracle_wall_time_s=doc["policies"]["oracle"]["wall_time_s"],
        wall_time_s=time.perf_counter() - t0,
        eval_seeds=cfg.eval_seeds,
        episodes=cfg.episodes,
        oracle_window_s=cfg.oracle_window_s,
        source="edgerl bench headroom",
        oracle_description=doc["policies"]["oracle"]["description"],
    )


def headroom_entry(
    scenario: str,
    metrics: dict[str, Any],
    *,
    best_fixed_plan: str | None,
    oracle_wall_time_s: float,
    wall_time_s: float,
    eval_seeds: tuple[int, ...],
    episodes: int,
    oracle_window_s: float,
    source: str,
    oracle_description: dict[str, Any] | None = None,
    stratified: bool = False,
) -> dict[str, Any]:
    """One scenario's record from the evaluation metrics of ``best-fixed`` and ``oracle``.

    Each entry carries its own protocol (seeds, episodes, window), commit and source, since
    the file merges entries measured by different commands at different times.
    """
    fixed = float(metrics["best-fixed"]["utility_pooled"]["mean"])
    oracle = float(metrics["oracle"]["utility_pooled"]["mean"])
    model, _ = runinfo.resolve_scenario(scenario)
    return {
        "scenario": scenario,
        # evaluation-only: a training randomisation does not make the headroom stale
        "scenario_fingerprint": evaluation_fingerprint(model.cfg),
        "utility_best_fixed": fixed,
        "utility_oracle": oracle,
        "headroom": (oracle - fixed) / abs(fixed) if fixed != 0 else None,
        "headroom_abs_utility": oracle - fixed,
        "best_fixed_plan": best_fixed_plan,
        "eval_seeds": list(eval_seeds),
        "episodes": episodes,
        "oracle": oracle_description or {},  # its describe(): references, alternations
        "stratified": stratified,
        "oracle_window_s": oracle_window_s,
        "oracle_wall_time_s": oracle_wall_time_s,
        "wall_time_s": wall_time_s,
        "source": source,
        "git_commit": runinfo.git_commit(),
        "created": runinfo.now_iso(),
        "metrics": {k: metrics[k] for k in ("best-fixed", "oracle")},
    }


def record_headroom(entries: dict[str, dict[str, Any]], out: Path = HEADROOM_FILE) -> None:
    """Merge ``entries`` (scenario -> :func:`headroom_entry`) into ``out``; others are kept."""
    previous = load_headroom(out)
    merged = dict(previous.get("scenarios", {}))
    merged.update(entries)
    doc = {
        "kind": HEADROOM_KIND,
        "definition": __doc__,
        "target": TARGET_HEADROOM,
        "scenarios": dict(sorted(merged.items())),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def run_headroom(cfg: HeadroomConfig) -> dict[str, Any]:
    """Measure every scenario and merge each result into ``cfg.out`` as soon as it is done."""
    from edgerl.envs.config import list_scenarios

    names = cfg.scenarios or tuple(list_scenarios())
    for name in names:
        res = measure_headroom(cfg, name)
        record_headroom({name: res}, cfg.out)
        print(
            f"{name}: best fixed {res['utility_best_fixed']:.4f}, oracle "
            f"{res['utility_oracle']:.4f}, headroom "
            + (f"{100 * res['headroom']:+.1f} %" if res["headroom"] is not None else "n/a")
            + f" ({res['headroom_abs_utility']:+.4f} utility/request)"
            + f" ({res['wall_time_s']:.0f} s)"
        )
    print(f"wrote {cfg.out}")
    return load_headroom(cfg.out)


def load_headroom(path: Path = HEADROOM_FILE) -> dict[str, Any]:
    """The measured headroom file, or an empty document if there is none (or it is unreadable)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) and doc.get("kind") == HEADROOM_KIND else {}


def _current_entry(scenario: str, doc: dict[str, Any]) -> dict[str, Any] | str:
    """``scenario``'s entry if it was measured on the scenario as it is now, else why not."""
    entry = doc.get("scenarios", {}).get(scenario)
    if entry is None:
        return "not measured"
    model, _ = runinfo.resolve_scenario(scenario)
    if entry.get("scenario_fingerprint") != evaluation_fingerprint(model.cfg):
        return "stale"
    return dict(entry)


def headroom_of(scenario: str, doc: dict[str, Any]) -> str:
    """The table cell for ``scenario``: its (relative) headroom, or why there is none."""
    entry = _current_entry(scenario, doc)
    if isinstance(entry, str):
        return entry
    h = entry.get("headroom")
    return "n/a" if h is None else f"{100 * h:+.1f} %"


def headroom_abs_of(scenario: str, doc: dict[str, Any]) -> str:
    """The table cell for ``scenario``'s absolute headroom, oracle - best fixed (utility per
    request; derived from the two utilities for entries written before it was recorded).

    The relative headroom divides by |best fixed|, so it says little when the best fixed
    plan's utility is near zero; the absolute one stays on the reward's scale."""
    entry = _current_entry(scenario, doc)
    if isinstance(entry, str):
        return entry
    diff = float(entry["utility_oracle"]) - float(entry["utility_best_fixed"])
    return f"{diff:+.3f}"
