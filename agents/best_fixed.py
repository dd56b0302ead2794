"""Exhaustive search for the best single fixed plan on the training traces (cached).

Every plan that fits memory is run for ``screen_episodes`` short episodes (``horizon_s``
simulated seconds, training split); the ``finalists`` best are then run for ``episodes``
episodes in all, and the one with the highest mean utility per finished request wins.
Every plan sees the same episode seeds (common random numbers: the same traces, trace
offsets, arrivals and inputs; :mod:`edgerl.envs.sim.streams`), which makes the comparison of
plans much less noisy than independent draws would. Each episode drains after its horizon,
as evaluation does, so a plan that builds queues pays for every request it leaves waiting.

The simulator is driven directly (no Gymnasium adapter) for speed. Results are cached as
JSON under ``cache_dir``, keyed by the scenario fingerprint, the plan catalogue fingerprint
and the search budget; the file is written atomically (temporary file + rename), so
processes running the same search concurrently cannot leave a torn file. ``max_wall_s``
bounds the search: when it runs out, the best plan seen so far is returned with
``complete=False`` (a warning is printed, nothing is cached). ``workers > 1`` spreads the
plans over processes.

Short horizons favour plans whose queues grow slowly (an unstable plan looks better over
60 s than over an hour); finalists are therefore rerun and compared on more episodes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from edgerl.agents.base import derive_seeds
from edgerl.agents.rundir import catalogue_fingerprint, scenario_fingerprint
from edgerl.envs.sim.build import ScenarioModel, build_simulator

CACHE_KIND = "edgerl.best_fixed_search"
CACHE_VERSION = 2  # 2: drained episodes, common random numbers
SEED_STREAM = "best-fixed"
#: Plans per task handed to a worker process (small, so the wall-time bound is checked often).
CHUNK_PLANS = 8
CACHE_FILE_MODE = 0o644  # rw-r--r-- (mkstemp creates 0600)


@dataclass(frozen=True)
class SearchConfig:
    """Budget of the search (all of it except ``workers``/``max_wall_s`` keys the cache)."""

    screen_episodes: int = 1  # episodes for every feasible plan
    episodes: int = 3  # episodes in total for each finalist
    finalists: int = 8  # plans rerun after screening
    horizon_s: float = 60.0  # simulated seconds per search episode
    seed: int = 0
    max_wall_s: float = 600.0  # stop (incomplete) after this much wall time
    workers: int = 1

    def validate(self) -> None:
        if self.screen_episodes < 1 or self.episodes < self.screen_episodes:
            raise ValueError("need 1 <= screen_episodes <= episodes")
        if self.finalists < 1 or self.horizon_s <= 0 or self.max_wall_s <= 0 or self.workers < 1:
            raise ValueError(f"invalid search budget {self}")

    def cache_key(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("workers")
        d.pop("max_wall_s")
        return d


@dataclass
class SearchResult:
    best_index: int
    best_name: str
    best_utility: float
    utilities: dict[int, list[float]]  # plan index -> per-episode mean utility per request
    complete: bool
    wall_time_s: float
    config: SearchConfig
    cache_file: Path | None = None
    plans_evaluated: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, model: ScenarioModel) -> dict[str, Any]:
        return {
            "kind": CACHE_KIND,
            "version": CACHE_VERSION,
            "scenario": model.cfg.name,
            "scenario_fingerprint": scenario_fingerprint(model.cfg),
            "catalogue_fingerprint": catalogue_fingerprint(model.plans),
            "config": self.config.cache_key(),
            "objective": "mean utility per finished request, training split, mean over episodes",
            "best_index": self.best_index,
            "best_name": self.best_name,
            "best_utility": self.best_utility,
            "complete": self.complete,
            "wall_time_s": self.wall_time_s,
            "plans_evaluated": self.plans_evaluated,
            "utilities": {
                str(i): {"name": model.plans[i].name, "per_episode": u}
                for i, u in sorted(self.utilities.items())
            },
        }


def short_model(model: ScenarioModel, horizon_s: float) -> ScenarioModel:
    """The same scenario with episodes truncated at ``horizon_s`` (plans/profiles shared)."""
    if horizon_s >= model.cfg.horizon_s:
        return model
    return dataclasses.replace(model, cfg=dataclasses.replace(model.cfg, horizon_s=horizon_s))


def run_fixed_plan(model: ScenarioModel, plan_index: int, seed: int, split: str = "train") -> float:
    """One episode with ``plan_index`` for every request; mean utility per request (drained)."""
    sim = build_simulator(model, np.random.default_rng(seed), split)
    acc = [0.0, 0]

    def on_finish(req: Any) -> None:
        acc[0] += req.utility
        acc[1] += 1

    sim.on_finish.append(on_finish)
    while sim.next_decision() is not None:
        sim.apply(plan_index, True)
    sim.drain()  # every request counts, as in evaluation
    return acc[0] / acc[1] if acc[1] else float("nan")


def _run_chunk(
    model: ScenarioModel, plan_indices: Sequence[int], seeds: Sequence[int]
) -> dict[int, list[float]]:
    return {i: [run_fixed_plan(model, i, s) for s in seeds] for i in plan_indices}


def _cache_path(model: ScenarioModel, cfg: SearchConfig, cache_dir: Path) -> Path:
    key = json.dumps(
        [scenario_fingerprint(model.cfg), catalogue_fingerprint(model.plans), cfg.cache_key()],
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model.cfg.name)
    return cache_dir / f"best_fixed-{safe}-{digest}.json"


def _load_cached(path: Path, model: ScenarioModel, cfg: SearchConfig) -> SearchResult | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("kind") != CACHE_KIND or data.get("version") != CACHE_VERSION:
            return None
        if data["catalogue_fingerprint"] != catalogue_fingerprint(model.plans):
            return None
        utilities = {
            int(k): [float(x) for x in v["per_episode"]] for k, v in data["utilities"].items()
        }
        best = int(data["best_index"])
        if model.plans[best].name != data["best_name"]:
            return None
        return SearchResult(
            best_index=best,
            best_name=data["best_name"],
            best_utility=float(data["best_utility"]),
            utilities=utilities,
            complete=bool(data["complete"]),
            wall_time_s=float(data["wall_time_s"]),
            config=cfg,
            cache_file=path,
            plans_evaluated=int(data["plans_evaluated"]),
            extra={"from_cache": True},
        )
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None  # unreadable or stale cache: recompute


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, allow_nan=True)
            f.write("\n")
        os.chmod(tmp, CACHE_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _evaluate(
    model: ScenarioModel,
    indices: Sequence[int],
    seeds: Sequence[int],
    cfg: SearchConfig,
    deadline: float,
    out: dict[int, list[float]],
) -> bool:
    """Extend ``out[i]`` with the utilities of ``seeds`` for every plan; False if time ran out."""
    chunks = [list(indices[k : k + CHUNK_PLANS]) for k in range(0, len(indices), CHUNK_PLANS)]
    if cfg.workers == 1:
        for k, chunk in enumerate(chunks):
            for i, u in _run_chunk(model, chunk, seeds).items():
                out.setdefault(i, []).extend(u)
            if k + 1 < len(chunks) and time.perf_counter() > deadline:
                return False
        return True
    with ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_chunk, model, c, seeds) for c in chunks]
        for fut in as_completed(futures):
            for i, u in fut.result().items():
                out.setdefault(i, []).extend(u)
            if time.perf_counter() > deadline and not all(f.done() for f in futures):
                for f in futures:
                    f.cancel()
                return False
    return True


def search_best_fixed(
    model: ScenarioModel, cfg: SearchConfig | None = None, cache_dir: str | Path | None = None
) -> SearchResult:
    """The best fixed plan of ``model`` on its training traces (see the module docstring)."""
    cfg = cfg or SearchConfig()
    cfg.validate()
    cache_path = _cache_path(model, cfg, Path(cache_dir)) if cache_dir is not None else None
    if cache_path is not None and cache_path.is_file():
        cached = _load_cached(cache_path, model, cfg)
        if cached is not None:
            return cached
    t0 = time.perf_counter()
    deadline = t0 + cfg.max_wall_s
    m = short_model(model, cfg.horizon_s)
    feasible = [int(i) for i in np.flatnonzero(model.static_mask)]
    seeds = derive_seeds(cfg.seed, cfg.episodes, SEED_STREAM)
    utilities: dict[int, list[float]] = {}
    complete = _evaluate(m, feasible, seeds[: cfg.screen_episodes], cfg, deadline, utilities)
    if complete and cfg.episodes > cfg.screen_episodes:
        ranked = sorted(utilities, key=lambda i: -_mean(utilities[i]))
        finalists = ranked[: cfg.finalists]
        complete = _evaluate(m, finalists, seeds[cfg.screen_episodes :], cfg, deadline, utilities)
    if not utilities:
        raise RuntimeError(f"best-fixed search: no plan evaluated within {cfg.max_wall_s} s")
    # a plan's score is its mean over the episodes it ran; finalists ran all of them
    most = max(len(u) for u in utilities.values())
    pool = [i for i, u in utilities.items() if len(u) == most]
    best = max(pool, key=lambda i: _mean(utilities[i]))
    result = SearchResult(
        best_index=best,
        best_name=model.plans[best].name,
        best_utility=_mean(utilities[best]),
        utilities=utilities,
        complete=complete,
        wall_time_s=time.perf_counter() - t0,
        config=cfg,
        plans_evaluated=len(utilities),
    )
    if not complete:
        print(
            f"warning: best-fixed search stopped after {cfg.max_wall_s:.0f} s with "
            f"{len(utilities)}/{len(feasible)} plans screened; result not cached",
            file=sys.stderr,
        )
    elif cache_path is not None:
        _write_atomic(cache_path, result.to_json(model))
        result.cache_file = cache_path
    return result


def _mean(xs: Sequence[float]) -> float:
    vals = [x for x in xs if x == x]  # drop NaN (an episode where nothing finished)
    return float(np.mean(vals)) if vals else -float("inf")
