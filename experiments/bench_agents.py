"""``edgerl bench agents``: the quality targets of the agents issue, measured.

For each scenario (default: ``lte-dynamic`` and ``hsdpa-mobile``): train every algorithm
with every training seed (or reuse a finished run of the same configuration), evaluate each
trained policy and the reference baselines (clairvoyant greedy, Edgent, best fixed plan,
Neurosurgeon) on the same held-out seeds and episodes, and compute

- ``ratio_vs_clairvoyant`` = U(best learned) / U(clairvoyant)   (target >= 0.95)
- ``gain_vs_edgent`` = (U(best learned) - U(edgent)) / |U(edgent)|   (target >= 0.10)
- ``gain_vs_best_fixed`` likewise   (target >= 0.10)

where U is the mean utility per finished request on the held-out traces. For a learned
algorithm U is the mean over training seeds of each seed's mean over the evaluation seeds
(the CI is the Student-t interval over training seeds); the *best learned agent* is the
algorithm with the highest such mean. A ratio to a non-positive reference utility is not
meaningful and is reported as null with a note. Learned policies are evaluated with both
``best_model.zip`` (chosen by the held-out callback; a selection effect) and the final
``model.zip``; the targets use ``which`` (default ``final``, the unselected one).

Also reported per run: training wall time, the time inside the training VecEnv and its share.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgerl.agents.best_fixed import SearchConfig
from edgerl.agents.evaluation import t_interval
from edgerl.agents.rundir import RUN_JSON, RunDirError, Which, read_run
from edgerl.experiments import runinfo

REFERENCE_BASELINES = ("clairvoyant", "edgent", "best-fixed", "neurosurgeon")
TARGET_RATIO_VS_CLAIRVOYANT = 0.95  # issue 5, section 5
TARGET_GAIN = 0.10  # issue 5, section 5: beat Edgent and the best fixed plan by >= 10 %


@dataclass
class BenchConfig:
    scenarios: tuple[str, ...] = ("lte-dynamic", "hsdpa-mobile")
    algos: tuple[str, ...] = ("maskable_ppo",)
    train_seeds: tuple[int, ...] = (0, 1, 2)
    timesteps: int = 200_000
    eval_seeds: tuple[int, ...] = (100, 101, 102)
    episodes: int = 1
    horizon_s: float | None = None
    which: Which = "final"
    out: Path = Path("bench/agents.json")
    runs_dir: Path = Path("runs/bench")
    reuse: bool = True
    n_envs: int | None = None
    hp: tuple[str, ...] = ()
    search: SearchConfig = field(default_factory=SearchConfig)
    progress_bar: bool = True


def _train_or_reuse(cfg: BenchConfig, scenario: str, algo: str, seed: int) -> dict[str, Any]:
    from edgerl.experiments.train import TrainConfig, train

    run_dir = cfg.runs_dir / f"{scenario}-{algo}-s{seed}-t{cfg.timesteps}"
    if cfg.reuse and (run_dir / RUN_JSON).is_file():
        try:
            info = read_run(run_dir)
            if info.data["timesteps"] == cfg.timesteps and info.algo == algo:
                print(f"reusing {run_dir}")
                return dict(info.data) | {"run_dir": str(run_dir), "reused": True}
        except RunDirError:
            pass
    train(
        TrainConfig(
            scenario=scenario,
            algo=algo,
            timesteps=cfg.timesteps,
            seed=seed,
            out=run_dir,
            n_envs=cfg.n_envs,
            hp=cfg.hp,
            overwrite=True,
            progress_bar=cfg.progress_bar,
        )
    )
    return dict(read_run(run_dir).data) | {"run_dir": str(run_dir), "reused": False}


def _u(doc: dict[str, Any], label: str) -> float:
    return float(doc["policies"][label]["metrics"]["utility_mean"]["mean"])


def _ratio(num: float, den: float) -> tuple[float | None, str]:
    if den > 0:
        return num / den, ""
    return None, f"reference utility {den:.4f} <= 0: a ratio is not meaningful"


def _gain(u: float, ref: float) -> tuple[float | None, str]:
    if ref == 0:
        return None, "reference utility is 0"
    return (u - ref) / abs(ref), ""


def bench_scenario(cfg: BenchConfig, scenario: str) -> dict[str, Any]:
    from edgerl.experiments.evaluate import EvalConfig, run_evaluation

    runs = {a: [_train_or_reuse(cfg, scenario, a, s) for s in cfg.train_seeds] for a in cfg.algos}
    specs = [f"baseline:{b}" for b in REFERENCE_BASELINES]
    doc_base, _ = run_evaluation(
        EvalConfig(
            scenario=scenario,
            policies=tuple(specs),
            seeds=cfg.eval_seeds,
            episodes=cfg.episodes,
            horizon_s=cfg.horizon_s,
            cache_dir=cfg.runs_dir,
            search=cfg.search,
        )
    )
    base_u = {b: _u(doc_base, b) for b in REFERENCE_BASELINES}
    learned: dict[str, Any] = {}
    for algo, rs in runs.items():
        per_which: dict[str, Any] = {}
        for which in ("best", "final"):
            doc, _ = run_evaluation(
                EvalConfig(
                    scenario=scenario,
                    policies=tuple(r["run_dir"] for r in rs),
                    seeds=cfg.eval_seeds,
                    episodes=cfg.episodes,
                    horizon_s=cfg.horizon_s,
                    which=which,
                )
            )
            per_seed = [
                float(p["metrics"]["utility_mean"]["mean"]) for p in doc["policies"].values()
            ]
            mean, lo, hi = t_interval(per_seed)
            per_which[which] = {
                "utility_mean": mean,
                "ci95_over_training_seeds": [lo, hi] if lo is not None else None,
                "per_training_seed": per_seed,
                "metrics_by_run": {k: v["metrics"] for k, v in doc["policies"].items()},
            }
        learned[algo] = {
            **per_which,
            "runs": [
                {
                    "run_dir": r["run_dir"],
                    "seed": r["seed"],
                    "reused": r["reused"],
                    "wall_time_s": r["wall_time_s"],
                    "env_time_s": r["env_time_s"],
                    "env_time_share": r["env_time_s"] / r["wall_time_s"],
                    "eval_callback_time_s": r.get("eval_callback_time_s"),
                    "timesteps": r["timesteps"],
                }
                for r in rs
            ],
            "train_wall_time_s_mean": float(np.mean([r["wall_time_s"] for r in rs])),
            "env_time_share_mean": float(np.mean([r["env_time_s"] / r["wall_time_s"] for r in rs])),
        }
    best_algo = max(learned, key=lambda a: learned[a][cfg.which]["utility_mean"])
    u = learned[best_algo][cfg.which]["utility_mean"]
    ratio, ratio_note = _ratio(u, base_u["clairvoyant"])
    g_edgent, n_edgent = _gain(u, base_u["edgent"])
    g_fixed, n_fixed = _gain(u, base_u["best-fixed"])
    targets = {
        "best_learned_algo": best_algo,
        "which_model": cfg.which,
        "utility_best_learned": u,
        "ratio_vs_clairvoyant": ratio,
        "ratio_vs_clairvoyant_note": ratio_note,
        "met_ratio_vs_clairvoyant": ratio is not None and ratio >= TARGET_RATIO_VS_CLAIRVOYANT,
        "gain_vs_edgent": g_edgent,
        "gain_vs_edgent_note": n_edgent,
        "met_gain_vs_edgent": g_edgent is not None and g_edgent >= TARGET_GAIN,
        "gain_vs_best_fixed": g_fixed,
        "gain_vs_best_fixed_note": n_fixed,
        "met_gain_vs_best_fixed": g_fixed is not None and g_fixed >= TARGET_GAIN,
    }
    return {
        "scenario": scenario,
        "baselines": {b: doc_base["policies"][b]["metrics"] for b in REFERENCE_BASELINES},
        "baseline_utility": base_u,
        "learned": learned,
        "targets": targets,
    }


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    from edgerl.experiments.evaluate import write_json
    from rich.console import Console
    from rich.table import Table

    t0 = time.perf_counter()
    results = [bench_scenario(cfg, s) for s in cfg.scenarios]
    doc = {
        "kind": "edgerl.bench_agents",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "targets": {
            "ratio_vs_clairvoyant": TARGET_RATIO_VS_CLAIRVOYANT,
            "gain_vs_edgent": TARGET_GAIN,
            "gain_vs_best_fixed": TARGET_GAIN,
        },
        "definitions": __doc__,
        "results": results,
        "wall_time_s": time.perf_counter() - t0,
        "git_commit": runinfo.git_commit(),
        "versions": runinfo.versions(),
        "created": runinfo.now_iso(),
    }
    write_json(doc, cfg.out)
    t = Table(title="edgerl bench agents (utility per request, held-out traces)")
    for col in (
        "scenario",
        "best learned",
        "U learned",
        "U clairvoyant",
        "U edgent",
        "U best-fixed",
        "ratio vs clairv.",
        "gain vs edgent",
        "gain vs fixed",
        "train s",
        "env share",
    ):
        t.add_column(col, justify="right")
    for r in results:
        tg = r["targets"]
        la = r["learned"][tg["best_learned_algo"]]
        t.add_row(
            r["scenario"],
            tg["best_learned_algo"],
            f"{tg['utility_best_learned']:.4f}",
            *(f"{r['baseline_utility'][b]:.4f}" for b in ("clairvoyant", "edgent", "best-fixed")),
            *(
                f"{tg[k]:.3f}" if tg[k] is not None else "n/a"
                for k in ("ratio_vs_clairvoyant", "gain_vs_edgent", "gain_vs_best_fixed")
            ),
            f"{la['train_wall_time_s_mean']:.0f}",
            f"{100 * la['env_time_share_mean']:.0f} %",
        )
    Console(width=200).print(t)
    print(f"wrote {cfg.out}")
    return doc
