"""``edgerl bench credit``: how exact is the per-request (decision-time) credit?

With ``reward.credit: decision`` the env pays each step the utility its request is predicted
to get (:meth:`Simulator.predict_outcome`) and pays the difference to the actual utility when
the request finishes (``credit_correction``). A biased prediction for one kind of plan makes
that kind look better or worse to the learner than it is: most of each correction lands on
later, unrelated decisions. This benchmark runs held-out episodes under fixed policy mixes and
reports, per plan type (on the device, split device -> edge, raw input off the device; by edge
batch size), how many predictions were wrong and the mean correction, plus the env's decision
rate. Run it on two commits to compare predictions (the file runs as a plain script, so it
also measures code that predates it: ``python experiments/bench_credit.py --out X.json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

#: The scenarios where adaptation pays (README Results), where the credit matters most.
SCENARIOS = ("camera-lte", "camera-fleet-lte", "alexnet-edgepc-lte")
#: Policy mixes: the share of decisions given to each plan type, with one natural plan per
#: type (:func:`natural_plans`); ``random`` is uniform over every feasible plan. ``ppo-like``
#: is the mix issue 18 measured for a trained PPO policy on camera-lte; ``split`` gives every
#: request the split (issue 18's first measurement: the int8 split at unit 4 on camera-lte).
MIXES: dict[str, dict[str, float] | None] = {
    "random": None,
    "ppo-like": {"device": 0.70, "split": 0.15, "raw": 0.15},
    "split": {"split": 1.0},
}
EVAL_SEEDS = (100, 101, 102)
#: A correction smaller than this is float rounding, not a misprediction.
EXACT_TOL = 1e-9


def plan_type(p: Any) -> str:
    if not p.offloads:
        return "device"
    return "raw" if p.cut_edge == 0 else "split"


def natural_plans(model: Any) -> dict[str, int]:
    """One plan per type, at batch 1 without the cache, the final exit: on the device, the
    int8 variant (else the first); the split with the fewest uplink bytes (ties: the
    earliest cut) in that variant; raw, the variant with the fewest uplink bytes."""
    variants = model.cfg.model.variants
    main = "int8" if "int8" in variants else variants[0]
    ok = [
        p
        for p in model.plans
        if model.static_mask[p.index]
        and p.batch_size == 1
        and p.cache_policy == "none"
        and p.threshold is None
        and not p.uses_cloud
    ]
    final = {v: max(p.exit_index for p in ok if p.variant == v) for v in {p.variant for p in ok}}
    ok = [p for p in ok if p.exit_index == final[p.variant]]
    out = {}
    dev = [p for p in ok if plan_type(p) == "device" and p.variant == main]
    split = [p for p in ok if plan_type(p) == "split" and p.variant == main]
    raw = [p for p in ok if plan_type(p) == "raw"]
    if dev:
        out["device"] = dev[0].index
    if split:
        out["split"] = min(split, key=lambda p: (p.uplink_bytes, p.cut_edge)).index
    if raw:
        out["raw"] = min(raw, key=lambda p: (p.uplink_bytes, p.variant)).index
    return out


def run(scenario: str, mix: str, seeds: tuple[int, ...], horizon_s: float | None) -> dict[str, Any]:
    from edgerl.envs.config import load_scenario
    from edgerl.envs.env import CollabInferenceEnv
    from edgerl.envs.sim.build import ScenarioModel

    overrides = [f"horizon_s={horizon_s}"] if horizon_s else []
    model = ScenarioModel.from_config(load_scenario(scenario, overrides))
    feasible = np.flatnonzero(model.static_mask)
    natural = natural_plans(model)
    shares = MIXES[mix]
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    steps, wall = 0, 0.0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        env = CollabInferenceEnv(model, split="eval", record=True)
        env.reset(seed=seed)
        t0 = time.perf_counter()
        while True:
            if shares is None:
                a = int(rng.choice(feasible))
            else:
                kinds = [k for k in shares if k in natural]
                w = np.array([shares[k] for k in kinds])
                a = natural[kinds[int(rng.choice(len(kinds), p=w / w.sum()))]]
            *_, trunc, _ = env.step(a)
            steps += 1
            if trunc:
                break
        wall += time.perf_counter() - t0
        assert env.sim is not None
        for r in env.sim.finished:
            if not r.predicted_parts:
                continue
            p = model.plans[r.plan_index]
            key = f"{plan_type(p)}/b{p.batch_size}" if p.uses_edge_compute else plan_type(p)
            predicted = float(sum(r.predicted_parts))
            groups[key].append((predicted, float(r.utility)))
            groups["all"].append((predicted, float(r.utility)))
    rows = {}
    for key, vals in sorted(groups.items()):
        pred = np.array([v[0] for v in vals])
        act = np.array([v[1] for v in vals])
        corr = act - pred
        rows[key] = {
            "n": len(vals),
            "mispredicted_share": float(np.mean(np.abs(corr) > EXACT_TOL)),
            "mean_correction": float(corr.mean()),
            "mean_abs_correction": float(np.abs(corr).mean()),
            "mean_predicted": float(pred.mean()),
            "mean_actual": float(act.mean()),
        }
    return {
        "per_type": rows,
        "plans": {k: model.plans[i].name for k, i in natural.items()},
        "env_steps_per_s": steps / wall if wall else None,
        "steps": steps,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--mixes", default=",".join(MIXES))
    ap.add_argument("--seeds", default=",".join(map(str, EVAL_SEEDS)))
    ap.add_argument("--horizon-s", type=float, default=None)
    ap.add_argument("--label", default="", help="what code this is (e.g. before / after)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    doc: dict[str, Any] = {
        "kind": "edgerl.bench_credit",
        "label": args.label,
        "git_commit": commit,
        "command": "python experiments/bench_credit.py " + " ".join(argv or []),
        "seeds": list(seeds),
        "results": {},
    }
    for sc in args.scenarios.split(","):
        for mix in args.mixes.split(","):
            res = run(sc, mix, seeds, args.horizon_s)
            doc["results"][f"{sc}/{mix}"] = res
            for key, row in res["per_type"].items():
                print(
                    f"{sc:20s} {mix:9s} {key:10s} n={row['n']:6d} "
                    f"wrong={row['mispredicted_share']:.3f} "
                    f"corr={row['mean_correction']:+.4f} |corr|={row['mean_abs_correction']:.4f} "
                    f"pred={row['mean_predicted']:+.4f}",
                    flush=True,
                )
            print(f"{sc:20s} {mix:9s} env steps/s {res['env_steps_per_s']:.0f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
