"""The fidelity plot: measured (runtime) against simulated end-to-end latency per request.

One point per matched request of ``edgerl fidelity``'s plan grid, coloured by plan, on log
axes, with the diagonal and the ±10 % / ±25 % bands of the issue's targets; a second panel
shows the per-stage medians (runtime against simulator) over every plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from edgerl.experiments.curves import save_figure

BANDS = (0.10, 0.25)


def plot_fidelity(res: Any, path: str | Path) -> Path:
    """Draw ``res`` (a :class:`~edgerl.runtime.fidelity.FidelityResult`) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = np.asarray(res.pairs, dtype=float).reshape(-1, 4)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    cmap = plt.get_cmap("tab10")
    markers = "os^Dv<>ph*"
    for row, plan in enumerate(res.plans):
        sel = pairs[:, 0] == row
        if not sel.any():
            continue
        label = (
            f"{plan.label.replace('/cache:none', '')} "
            f"(p50 {plan.rel_error_median:.0%}, p95 {plan.rel_error_p95:.0%})"
        )
        ax.scatter(pairs[sel, 3], pairs[sel, 2], s=12, alpha=0.7, color=cmap(row % 10),
                   marker=markers[row % len(markers)], label=label)  # fmt: skip
    if len(pairs):
        lo = max(0.1, float(np.min(pairs[:, 2:])) * 0.8)
        hi = float(np.max(pairs[:, 2:])) * 1.2
        xs = np.geomspace(lo, hi, 50)
        ax.plot(xs, xs, "k-", lw=1)
        for b, style in zip(BANDS, (":", "--"), strict=True):
            ax.plot(xs, xs * (1 + b), "k" + style, lw=0.8)
            ax.plot(xs, xs * (1 - b), "k" + style, lw=0.8, label=f"±{b:.0%}")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simulated end-to-end latency [ms]")
    ax.set_ylabel("measured (runtime) end-to-end latency [ms]")
    ax.set_title(
        f"{res.scenario}: overall relative error p50 {res.overall_rel_error_median:.1%}, "
        f"p95 {res.overall_rel_error_p95:.1%}",
        fontsize=10,
    )
    ax.legend(fontsize=6.5, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    stages = [s for s in res.stages if s.n > 0]
    y = np.arange(len(stages))
    bx.barh(y - 0.2, [s.runtime_median_ms for s in stages], 0.4, label="runtime")
    bx.barh(y + 0.2, [s.simulator_median_ms for s in stages], 0.4, label="simulator")
    bx.set_yticks(y, [f"{s.stage} (n={s.n})" for s in stages], fontsize=8)
    bx.invert_yaxis()
    bx.set_xscale("symlog", linthresh=1.0)
    bx.set_xlabel("median per stage [ms] (requests that passed it)")
    bx.legend(fontsize=8)
    bx.grid(True, axis="x", alpha=0.3)
    return save_figure(fig, path)
