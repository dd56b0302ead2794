"""Does the planner's training-range check catch a camera-lte policy on slow links?

For a trained run: the features' training range as ``edgerl export`` records it
(:func:`edgerl.experiments.export.training_range`), then held-out episodes (seeds 100-102) with
the uplink scaled by 0.25, 0.5 and 1; per factor, the share of decisions that offload, the
share outside the training range, and how many offloads were outside it.

    .venv/bin/python experiments/examples/range_check_slow_links.py RUN_DIR

Issue 19's diagnosis (README, Results: generalisation) is this script's output for PPO seed 0.
"""

from __future__ import annotations

import sys

import numpy as np
from edgerl.agents.learned import load_run_policy
from edgerl.envs.env import CollabInferenceEnv
from edgerl.experiments import runinfo
from edgerl.experiments.export import training_range


def main(run: str) -> None:
    pol = load_run_policy(run, which="final")
    base, _ = runinfo.resolve_scenario("camera-lte", ())
    lo, hi, n = training_range(base, pol.model, pol.algo)
    low, high = np.array(lo), np.array(hi)
    print(f"training range from {n} decisions; uplink_mbps in [{low[0]:g}, {high[0]:g}]")
    for factor in (0.25, 0.5, 1.0):
        model, _ = runinfo.resolve_scenario("camera-lte", (f"network.uplink.scale={factor}",))
        env = CollabInferenceEnv(model, split="eval")
        pol.bind(env)
        decisions = offloads = outside = outside_offloads = 0
        for seed in (100, 101, 102):
            obs, _ = env.reset(seed=seed)
            done = False
            while not done:
                raw = env.raw_state()
                a = pol.predict(obs, env.action_masks())
                plan = env.plans[a]
                off = plan.cut_edge < plan.n_units
                out = bool(((raw < low) | (raw > high)).any())
                decisions += 1
                offloads += off
                outside += out
                outside_offloads += off and out
                obs, _, terminated, truncated, _ = env.step(a)
                done = terminated or truncated
        print(
            f"uplink x{factor:g}: {decisions} decisions, offload {offloads / decisions:.3f}, "
            f"outside the training range {outside / decisions:.3f}, "
            f"offloads outside it {outside_offloads}/{offloads}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
