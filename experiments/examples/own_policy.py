"""Write your own policy and compare it with the baselines.

A policy is any object with ``predict(observation, action_mask) -> int`` (the index of a plan
in ``env.unwrapped.plans``); :class:`~edgerl.agents.base.BasePolicy` adds ``bind(env)``, called
once before the first decision, where a policy may read *static* scenario data. This one is a
two-line heuristic: run the fastest plan on the device while the device's queue is short;
when the queue grows (a burst) and the uplink estimate is good, send the request to the edge.

Run it::

    .venv/bin/python -m edgerl.experiments.examples.own_policy --scenario lte-dynamic

It prints the held-out comparison with three baselines (same seeds, hence the same workload
for every policy).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from edgerl.agents.base import BasePolicy, masked_argmax
from edgerl.agents.baselines import make_baseline
from edgerl.agents.evaluation import evaluate
from edgerl.envs.sim.build import scenario_model

GOOD_UPLINK_MBPS = 5.0  # design choices of this example
LONG_QUEUE_MS = 50.0


class QueueAwareOffload(BasePolicy):
    """Fastest local plan; the edge when the device queue is long and the uplink good."""

    name = "my-heuristic"

    def bind(self, env: Any) -> None:
        super().bind(env)
        plans, ok = self.env.plans, self.env.action_masks()
        names = [f.name for f in self.env.features]
        self.i_uplink = names.index("uplink_mbps")
        self.i_queue = names.index("device_backlog_ms")
        self.scales = [self.env.features[i].scale for i in (self.i_uplink, self.i_queue)]
        no_extras = [p for p in plans if p.cache_policy == "none" and p.threshold is None]
        edge = [p for p in no_extras if p.offloads and not p.uses_cloud and ok[p.index]]
        local = [p for p in no_extras if not p.offloads and ok[p.index]]
        # the edge plan sending the fewest bytes (ties: the most accurate); the fastest local one
        self.offload = min(edge, key=lambda p: (p.uplink_bytes, -p.accuracy, p.batch_size)).index
        self.local = min(local, key=lambda p: p.device_s).index

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        # observations are raw values divided by each feature's scale
        uplink_mbps = float(observation[self.i_uplink]) * self.scales[0]
        queue_ms = float(observation[self.i_queue]) * self.scales[1]
        busy = queue_ms >= LONG_QUEUE_MS and uplink_mbps >= GOOD_UPLINK_MBPS
        choice = self.offload if busy else self.local
        if action_mask is not None and not action_mask[choice]:
            return masked_argmax(np.zeros(len(action_mask)), action_mask)
        return choice


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="lte-dynamic")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--horizon-s", type=float, default=None)
    args = ap.parse_args(argv)
    model = scenario_model(args.scenario)
    seeds = [int(s) for s in args.seeds.split(",")]
    policies = [
        QueueAwareOffload(),
        *(make_baseline(b) for b in ("device-only", "edgent", "composite")),
    ]
    utility = {}
    print(f"{'policy':14} {'utility/req':>11} {'SLO hit':>8} {'p95 ms':>8}")
    for pol in policies:
        m = evaluate(model, pol, seeds, episodes=1, horizon_s=args.horizon_s).metrics()
        utility[pol.name] = m["utility_mean"]["mean"]
        print(
            f"{pol.name:14} {m['utility_mean']['mean']:11.3f} {m['slo_hit_rate']['mean']:8.3f} "
            f"{m['latency_p95_ms']['mean']:8.0f}"
        )
    return utility


if __name__ == "__main__":
    main()
