"""How a policy uses each knob against the state: shares of decisions per tercile.

For one policy's evaluation episodes, every decision is binned into terciles of a state
feature observed at that decision (the uplink bandwidth estimate, the device's recent request
rate), with tercile edges from the decisions themselves; within each bin, the share of
decisions taking each value of each knob (variant, exit, placement, device-edge cut, batch
size, cache policy) is reported. A policy that adapts has different rows in different bins;
a fixed plan has identical ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from edgerl.agents.evaluation import DECISION_STATE_FEATURES, EpisodeLog
from edgerl.envs.plans import Plan
from edgerl.experiments.compare import PLAN_DIMENSIONS, plan_dimension

#: State features to bin by, and how they read in tables.
BY_FEATURES = {"uplink_mbps": "bandwidth", "arrival_rate_per_s": "load"}
TERCILES = ("low", "mid", "high")


def knob_usage(logs: Sequence[EpisodeLog], plans: Sequence[Plan]) -> dict[str, Any]:
    """``{feature: {"edges": [q1, q2], "bins": {tercile: {dim: {value: share}}}}}``."""
    acts = np.concatenate([lg.decision_plan for lg in logs])
    states = np.concatenate([lg.decision_state for lg in logs])
    out: dict[str, Any] = {}
    for feature in BY_FEATURES:
        col = states[:, DECISION_STATE_FEATURES.index(feature)]
        edges = np.quantile(col, [1 / 3, 2 / 3]) if col.size else np.zeros(2)
        which = np.searchsorted(edges, col, side="right")
        bins: dict[str, Any] = {}
        for t, name in enumerate(TERCILES):
            sel = acts[which == t].tolist()
            bins[name] = {"decisions": len(sel)}
            for dim in PLAN_DIMENSIONS:
                c = Counter(plan_dimension(plans[a], dim) for a in sel)
                n = max(sum(c.values()), 1)
                bins[name][dim] = {v: k / n for v, k in sorted(c.items())}
        out[feature] = {"edges": [float(e) for e in edges], "bins": bins}
    return out


def knob_usage_markdown(usage: dict[str, Any], title: str) -> str:
    """One table: rows = knob values, columns = terciles of bandwidth and of load."""
    features = list(usage)
    header = ["knob", "value"]
    for f in features:
        e = usage[f]["edges"]
        label = BY_FEATURES[f]
        header += [
            f"{label} low (< {e[0]:.3g})",
            f"{label} mid",
            f"{label} high (>= {e[1]:.3g})",
        ]
    lines = [f"**{title}** (share of decisions in each tercile)", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    for dim in PLAN_DIMENSIONS:
        values = sorted({v for f in features for t in TERCILES for v in usage[f]["bins"][t][dim]})
        for v in values:
            row = [dim, v]
            for f in features:
                for t in TERCILES:
                    share = usage[f]["bins"][t][dim].get(v, 0.0)
                    row.append(f"{share:.2f}")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
