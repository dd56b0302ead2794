"""The evaluation episodes of ``edgerl compare --ray``: one Ray task per (policy, seed).

Each task rebuilds the scenario and the policy from the evaluation config (as
:func:`edgerl.experiments.evaluate.run_evaluation` does) and runs
:func:`edgerl.agents.evaluation.evaluate` on its one seed. A seed's episodes, their episode
seeds (derived from the evaluation seed), strata and bandwidth recording are exactly those of
the serial path, and every episode starts from ``env.reset(seed)`` and ``policy.reset(seed)``,
so the episodes are the same wherever they run (tests/test_compare.py checks the documents are
equal). Ray moves the episode logs back to this process with its own serialisation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from edgerl.agents.evaluation import EpisodeLog

#: What one task returns: the episode logs, episodes per seed, the policy's description after
#: its episodes (as the serial path describes it), wall time [s].
SeedResult = tuple[list[EpisodeLog], int, dict[str, Any], float]


def _seed_episodes(cfg: Any, spec: str, seed: int) -> SeedResult:
    """One policy on one seed (see :data:`SeedResult`)."""
    import torch
    from edgerl.agents.evaluation import evaluate
    from edgerl.experiments import runinfo
    from edgerl.experiments.evaluate import load_policy

    torch.set_num_threads(cfg.torch_threads)
    training, _ = runinfo.resolve_scenario(cfg.scenario, cfg.scenario_set)
    scenario = training
    if cfg.eval_set:
        scenario, _ = runinfo.resolve_scenario(cfg.scenario, (*cfg.scenario_set, *cfg.eval_set))
    label, pol, _ = load_policy(spec, cfg)
    use = getattr(pol, "use_training_scenario", None)
    if training is not scenario and use is not None:
        use(training)
    t0 = time.perf_counter()
    ev = evaluate(
        scenario,
        pol,
        [seed],
        cfg.episodes,
        label=label,
        horizon_s=cfg.horizon_s,
        record_bandwidth=cfg.record_bandwidth,
        stratified=cfg.stratified,
    )
    return ev.logs[seed], ev.episodes, ev.description, time.perf_counter() - t0


def evaluate_on_ray(
    cfg: Any,
    specs: Sequence[str],
    progress: Callable[[str], None] | None = None,
) -> dict[str, tuple[dict[int, list[EpisodeLog]], int, dict[str, Any], float]]:
    """Per policy spec: (episode logs by seed, episodes per seed, the description after its
    first seed's episodes, summed task wall time [s]).

    Ray must be initialised (:func:`edgerl.experiments.ray_session.ray_session`).
    """
    import ray

    task = ray.remote(num_cpus=1, max_retries=0)(_seed_episodes)
    refs = {(spec, s): task.remote(cfg, spec, s) for spec in specs for s in cfg.seeds}
    out: dict[str, tuple[dict[int, list[EpisodeLog]], int, dict[str, Any], float]] = {}
    pending = {ref: key for key, ref in refs.items()}
    done: dict[tuple[str, int], SeedResult] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ready[0])
        done[key] = ray.get(ready[0])
        if progress is not None:
            progress(f"{key[0]}: seed {key[1]} ({len(done)}/{len(refs)} tasks)")
    for spec in specs:
        logs = {s: done[(spec, s)][0] for s in cfg.seeds}
        _, n, description, _ = done[(spec, cfg.seeds[0])]
        out[spec] = (logs, n, description, sum(done[(spec, s)][3] for s in cfg.seeds))
    return out
