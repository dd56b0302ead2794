"""Learning curves from run directories (``learning_curve.csv``, written during training).

``plot_learning_curves({"label": [run_dir, ...], ...}, path)`` draws, per label, the mean
held-out utility per request over the training seeds' runs against training steps, with the
min-max band over the seeds; a single run is one line. ``edgerl train`` writes
``learning_curve.png`` into its run directory with it; ``edgerl curves`` compares groups of
runs (e.g. the same scenario trained with two reward-credit schemes).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from edgerl.agents.rundir import RunDirError

CURVE_FILE = "learning_curve.csv"
FIG_DPI = 120


def read_curve(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps, held-out utility per request) of one run."""
    path = Path(run_dir) / CURVE_FILE
    try:
        with path.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read the learning curve: {exc}") from exc
    if not rows:
        raise RunDirError(f"{path}: the learning curve is empty")
    steps = np.array([float(r["timesteps"]) for r in rows])
    util = np.array([float(r["eval_utility_mean"]) for r in rows])
    return steps, util


def plot_learning_curves(
    groups: Mapping[str, Sequence[str | Path]], path: str | Path, title: str = ""
) -> Path:
    """One line per group: mean over its runs (interpolated onto common steps), min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, runs in groups.items():
        curves = [read_curve(r) for r in runs]
        grid = np.unique(np.concatenate([s for s, _ in curves]))
        ys = np.array([np.interp(grid, s, u) for s, u in curves])
        line = ax.plot(grid, ys.mean(axis=0), marker="o", ms=3, label=f"{label} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(
                grid, ys.min(axis=0), ys.max(axis=0), alpha=0.2, color=line[0].get_color()
            )
    ax.set_xlabel("training steps")
    ax.set_ylabel("held-out utility per request")
    ax.set_title(title or "learning curve (mean over seeds, min-max band)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out, write (folders created) and close a matplotlib figure; the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=FIG_DPI)
    plt.close(fig)
    return out
