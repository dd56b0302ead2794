"""Compare policies side by side: a table (rich, CSV, JSON, Markdown) and plots (PNG).

Runs :func:`edgerl.experiments.evaluate.run_evaluation` for all policies on the same
held-out seeds and episodes, then writes into ``out``:

- ``comparison.json`` (the evaluation document), ``comparison.csv`` (every metric: mean and
  95 % CI bounds), ``comparison.md`` (the main columns);
- ``latency_cdf.png``: empirical CDF of the latency of completed requests, all episodes;
- ``pareto.png``: accuracy against mean and p95 latency, per policy with 95 % CIs, and the
  Pareto front (no other policy is both faster and more accurate);
- ``utility_over_time.png``: utility per finished request over simulated time in the first
  episode of the first seed, above the true uplink bandwidth of device 0 in that episode
  (all policies see the same trace for a seed);
- ``plan_mix.png``: share of decisions per plan dimension (variant, exit, placement,
  device-edge cut, batch size, cache policy), per policy;
- ``plans_over_time.png``: the same shares over time, for the policies that vary their plan.

    edgerl compare --scenario lte-dynamic --policies runs/lte-mppo-s0,baseline:edgent \\
        --seeds 0,1,2 --episodes 2 --out runs/compare/lte
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgerl.agents.baselines import list_baselines
from edgerl.agents.best_fixed import SearchConfig
from edgerl.agents.evaluation import METRICS, PolicyEvaluation
from edgerl.agents.rundir import Which
from edgerl.envs.plans import Plan
from edgerl.envs.sim.build import ScenarioModel
from edgerl.experiments import runinfo
from edgerl.experiments.evaluate import EvalConfig, run_evaluation, write_json

#: Columns of the printed / Markdown table: metric, header, scale, decimals.
TABLE_COLUMNS: tuple[tuple[str, str, float, int], ...] = (
    ("utility_pooled", "U pooled/req", 1.0, 3),
    ("latency_mean_ms", "lat mean ms", 1.0, 1),
    ("latency_p95_ms", "p95 ms", 1.0, 1),
    ("latency_p99_ms", "p99 ms", 1.0, 1),
    ("slo_hit_rate", "SLO hit", 1.0, 3),
    ("goodput_per_s", "goodput/s", 1.0, 2),
    ("slo_p99_attained", "p99 SLO met", 1.0, 2),
    ("accuracy", "accuracy", 1.0, 3),
    ("energy_mj_per_request", "energy mJ", 1.0, 1),
    ("bytes_per_request", "kB/req", 1e-3, 1),
    ("cache_hit_rate", "cache hit", 1.0, 3),
    ("raw_input_left_fraction", "raw left", 1.0, 3),
    ("arrived_per_episode", "arr/ep", 1.0, 0),
    ("dropped_per_episode", "drop/ep", 1.0, 1),
    # in flight when arrivals stopped; drained afterwards and counted in every column
    ("in_flight_at_horizon_per_episode", "unfin@h", 1.0, 1),
)
#: The terminal table (about 125 columns): metric and a short header; utility with its CI,
#: the other metrics as means.
TERMINAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("utility_pooled", "U/req"),
    ("latency_p95_ms", "p95 ms"),
    ("slo_hit_rate", "SLO"),
    ("goodput_per_s", "good/s"),
    ("slo_p99_attained", "p99 met"),
    ("accuracy", "acc"),
    ("dropped_per_episode", "drop/ep"),
    ("in_flight_at_horizon_per_episode", "unfin@h"),
)
#: Policy names up to this long get a line of their own in the terminal table [characters].
POLICY_COLUMN_MAX = 28
#: In the CSV, JSON and Markdown outputs only (the terminal table fits 100 columns).
FILE_ONLY_COLUMNS = ("energy_mj_per_request", "bytes_per_request", "raw_input_left_fraction")
PLAN_DIMENSIONS = ("variant", "exit", "placement", "device-edge cut", "batch", "cache")
MAX_TIMELINE_POLICIES = 6
TIME_BINS = 30
FIG_DPI = 120
#: Pareto labels: points closer than this (log10 latency, accuracy) share one label.
LABEL_LOG_DECIMALS = 1
LABEL_DECIMALS = 3
POINTS_PER_INCH = 72
AXES_HEIGHT_SHARE = 0.75  # rough share of the figure height taken by axes rows
LEGEND_GAP_PT = 36  # room for tick labels and the x label under an axes [pt]
LABEL_OFFSETS_PT = (12, -18, 28, -34)  # vertical offsets of successive labels [pt]


@dataclass
class CompareConfig:
    """What to compare (every field maps to an ``edgerl compare`` option)."""

    scenario: str | ScenarioModel = "lte-dynamic"
    scenario_set: tuple[str, ...] = ()
    """scenario overrides, dotted.key=value (as for training)"""
    eval_set: tuple[str, ...] = ()
    """overrides of the evaluation episodes only (see ``EvalConfig.eval_set``)"""
    policies: tuple[str, ...] = tuple(
        f"baseline:{b}" for b in list_baselines(include_expensive=False)
    )
    seeds: tuple[int, ...] = (0, 1, 2)
    episodes: int = 1
    horizon_s: float | None = None
    out: Path | None = None
    """output directory; None: runs/compare/<scenario>-<timestamp>"""
    which: Which = "best"
    search: SearchConfig = field(default_factory=SearchConfig)
    latency_source: str = "regression"
    plots: bool = True
    stratified: bool = True
    """every seed covers every held-out uplink trace (see ``EvalConfig.stratified``)"""
    torch_threads: int = 1
    ray: bool = False
    """the evaluation episodes as Ray tasks, one per (policy, seed): same results"""
    ray_address: str | None = None
    """with ``ray``: a running Ray cluster (None: $RAY_ADDRESS, else a local Ray)"""


@dataclass
class CompareResult:
    out: Path
    doc: dict[str, Any]
    evaluations: dict[str, PolicyEvaluation]
    files: list[Path]
    wall_time_s: float


def compare(cfg: CompareConfig, progress: Callable[[str], None] | None = None) -> CompareResult:
    t0 = time.perf_counter()
    scenario, _ = runinfo.resolve_scenario(cfg.scenario, (*cfg.scenario_set, *cfg.eval_set))
    out = cfg.out or Path("runs") / "compare" / (
        f"{scenario.cfg.name}-{runinfo.now_iso().replace(':', '').replace('+0000', 'Z')}"
    )
    out.mkdir(parents=True, exist_ok=True)
    ecfg = EvalConfig(
        scenario=scenario if not isinstance(cfg.scenario, str) else cfg.scenario,
        scenario_set=cfg.scenario_set if isinstance(cfg.scenario, str) else (),
        eval_set=cfg.eval_set,
        policies=cfg.policies,
        seeds=cfg.seeds,
        episodes=cfg.episodes,
        horizon_s=cfg.horizon_s,
        which=cfg.which,
        cache_dir=out,
        search=cfg.search,
        latency_source=cfg.latency_source,
        record_bandwidth=True,
        stratified=cfg.stratified,
        torch_threads=cfg.torch_threads,
        ray=cfg.ray,
        ray_address=cfg.ray_address,
    )
    doc, evals = run_evaluation(ecfg, progress)
    files = [
        write_json(doc, out / "comparison.json"),
        write_csv(doc, out / "comparison.csv"),
        write_markdown(doc, out / "comparison.md"),
    ]
    if cfg.plots:
        files += make_plots(evals, scenario, out)
    return CompareResult(out, doc, evals, files, time.perf_counter() - t0)


# --------------------------------------------------------------------------- tables


def _fmt(mean: float | None, ci: Sequence[float | None] | None, scale: float, dec: int) -> str:
    if mean is None or not np.isfinite(mean):
        return "n/a"
    s = f"{mean * scale:.{dec}f}"
    if ci and ci[0] is not None and ci[1] is not None:
        half = (ci[1] - ci[0]) / 2 * scale
        s += f"±{half:.{dec}f}"
    return s


def table_cells(
    doc: dict[str, Any], metrics: Sequence[str] | None = None, ci_for: Sequence[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and rows (strings, ``mean ± CI half-width``) of the main table: every metric of
    :data:`TABLE_COLUMNS` by default, else those named in ``metrics``; the CI for all of them,
    or for those named in ``ci_for``."""
    cols = [c for c in TABLE_COLUMNS if metrics is None or c[0] in metrics]
    header = ["policy", *[h for _, h, _, _ in cols]]
    rows = []
    for lbl, pd in doc["policies"].items():
        m = pd["metrics"]
        cells = [lbl]
        for k, _, sc, d in cols:
            ci = m[k]["ci95"] if ci_for is None or k in ci_for else None
            cells.append(_fmt(m[k]["mean"], ci, sc, d))
        rows.append(cells)
    return header, rows


def rich_table(doc: dict[str, Any]) -> Any:
    """The terminal table (:data:`TERMINAL_COLUMNS`, at most 100 characters wide with policy
    names of up to 28 characters); energy, bytes and raw-input share
    (:data:`FILE_ONLY_COLUMNS`) and every CI are in the JSON, CSV and Markdown outputs."""
    from rich import box
    from rich.table import Table

    _, rows = table_cells(doc, [m for m, _ in TERMINAL_COLUMNS], ci_for=("utility_pooled",))
    header = ["policy", *[h for _, h in TERMINAL_COLUMNS]]
    t = Table(
        title=(
            f"{doc['scenario_name']}: held-out traces, seeds {doc['seeds']}, "
            f"{doc['episodes_per_seed']} episode(s)/seed of {doc['horizon_s']:.0f} s; "
            "U = utility per request pooled over every request ± 95% CI, other columns means"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    longest = max((len(r[0]) for r in rows), default=len(header[0]))
    for i, h in enumerate(header):
        if i == 0:  # names up to POLICY_COLUMN_MAX characters stay on one line
            t.add_column(h, overflow="fold", min_width=min(longest, POLICY_COLUMN_MAX))
        else:
            t.add_column(h, justify="right", no_wrap=True, min_width=len(h))
    for r in rows:
        t.add_row(*r)
    return t


def write_csv(doc: dict[str, Any], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        names = [*METRICS, "utility_pooled"]
        w.writerow(["policy", *[f"{m}{s}" for m in names for s in ("", "_ci_low", "_ci_high")]])
        for lbl, pd in doc["policies"].items():
            row: list[Any] = [lbl]
            for m in names:
                e = pd["metrics"][m]
                ci = e["ci95"] or [None, None]
                row += [e["mean"], ci[0], ci[1]]
            w.writerow(["" if v is None else v for v in row])
    return path


def write_markdown(doc: dict[str, Any], path: Path) -> Path:
    header, rows = table_cells(doc)
    lines = [
        f"Scenario `{doc['scenario_name']}`, held-out traces, seeds {doc['seeds']}, "
        f"{doc['episodes_per_seed']} episode(s) per seed of {doc['horizon_s']:.0f} s simulated"
        + (" (stratified: every held-out uplink trace)" if doc.get("stratified") else "")
        + "; "
        "mean ± half-width of the 95% Student-t interval over evaluation seeds "
        "(over episodes when there is one seed).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        *breakdown_markdown(doc),
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def breakdown_markdown(doc: dict[str, Any], metric: str = "utility_mean") -> list[str]:
    """Lines of the per-family and per-trace tables of a stratified evaluation (``metric``
    mean ± 95 % CI half-width, each episode a unit; the number of episodes in brackets)."""
    pols = {k: v for k, v in doc["policies"].items() if v.get("by_trace")}
    if not pols:
        return []
    lines: list[str] = []
    for key, what in (("by_family", "trace family"), ("by_trace", "trace")):
        names = sorted({n for v in pols.values() for n in v[key]})
        lines += [
            f"`{metric}` per {what} (stratified episodes; mean ± 95 % CI half-width over "
            "episodes, [episodes]):",
            "",
            "| policy | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for lbl, pd in pols.items():
            cells = []
            for n in names:
                e = pd[key].get(n)
                cells.append(
                    "n/a"
                    if e is None
                    else f"{_fmt(e[metric]['mean'], e[metric]['ci95'], 1.0, 3)} [{e['n_episodes']}]"
                )
            lines.append(f"| {lbl} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


# --------------------------------------------------------------------------- plan dimensions


def placement(p: Plan) -> str:
    """Which tiers compute: e.g. ``device+edge``."""
    tiers = []
    if p.cut_edge > 0 or p.head_tier == "device":
        tiers.append("device")
    if p.cut_edge < p.cut_cloud or p.head_tier == "edge":
        tiers.append("edge")
    if p.cut_cloud < p.n_units or p.head_tier == "cloud":
        tiers.append("cloud")
    return "+".join(tiers)


def plan_dimension(p: Plan, dim: str) -> str:
    if dim == "variant":
        return p.variant
    if dim == "exit":
        return f"exit {p.exit_index}"
    if dim == "placement":
        return placement(p)
    if dim == "device-edge cut":
        return "all on device" if p.cut_edge == p.n_units else f"before unit {p.cut_edge}"
    if dim == "batch":
        return f"b{p.batch_size}"
    if dim == "cache":
        return p.cache_policy
    raise ValueError(f"unknown plan dimension {dim!r}")


# --------------------------------------------------------------------------- plots


def make_plots(
    evals: dict[str, PolicyEvaluation], scenario: ScenarioModel, out: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    evals = merge_identical(evals)
    return [
        plot_latency_cdf(evals, scenario, out / "latency_cdf.png"),
        plot_pareto(evals, out / "pareto.png"),
        plot_utility_over_time(evals, out / "utility_over_time.png"),
        plot_plan_mix(evals, scenario, out / "plan_mix.png"),
        plot_plans_over_time(evals, scenario, out / "plans_over_time.png"),
    ]


def merge_identical(evals: dict[str, PolicyEvaluation]) -> dict[str, PolicyEvaluation]:
    """Policies that took the same decisions in every episode share one curve, labelled
    ``a = b`` (their curves would coincide and hide each other otherwise)."""
    groups: list[tuple[list[str], PolicyEvaluation]] = []
    for lbl, ev in evals.items():
        acts = [lg.decision_plan for lg in ev.all_logs()]
        for names, rep in groups:
            other = [lg.decision_plan for lg in rep.all_logs()]
            if len(acts) == len(other) and all(
                np.array_equal(a, b) for a, b in zip(acts, other, strict=True)
            ):
                names.append(lbl)
                break
        else:
            groups.append(([lbl], ev))
    return {" = ".join(names): ev for names, ev in groups}


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")  # noqa: PLR2004
    return {lbl: cmap(i % cmap.N) for i, lbl in enumerate(labels)}


def _style(lbl: str) -> str:
    """Learned agents solid, the oracle dotted, baselines dashed."""
    if lbl == "clairvoyant":
        return ":"
    return "-" if ":" in lbl else "--"


def plot_latency_cdf(
    evals: dict[str, PolicyEvaluation], scenario: ScenarioModel, path: Path
) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = _colors(list(evals))
    for lbl, ev in evals.items():
        lat = np.concatenate([lg.latency_s[lg.completed] for lg in ev.all_logs()]) * 1e3
        if lat.size == 0:
            continue
        x = np.sort(lat)
        y = np.arange(1, x.size + 1) / x.size
        ax.step(x, y, where="post", label=lbl, color=colors[lbl], ls=_style(lbl), lw=1.6)
    for app in scenario.cfg.workload.apps:
        ax.axvline(app.deadline_ms, color="grey", lw=0.8, ls="-.")
        ax.text(
            app.deadline_ms,
            0.02,
            f" deadline {app.name}",
            rotation=90,
            fontsize=7,
            color="grey",
            va="bottom",
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency of completed requests [ms] (log scale)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_ylim(0, 1.01)
    ax.set_title(f"{scenario.cfg.name}: latency CDF, held-out traces")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)
    return path


def _pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Labels not dominated (lower latency and higher accuracy), sorted by latency."""
    front = [
        a
        for a, (la, aa) in points.items()
        if not any(
            (lb <= la and ab >= aa) and (lb < la or ab > aa)
            for b, (lb, ab) in points.items()
            if b != a
        )
    ]
    return sorted(front, key=lambda k: points[k][0])


def plot_pareto(evals: dict[str, PolicyEvaluation], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    colors = _colors(list(evals))
    metrics = {lbl: ev.metrics() for lbl, ev in evals.items()}
    for ax, key, name in ((axes[0], "latency_mean_ms", "mean"), (axes[1], "latency_p95_ms", "p95")):
        pts = {}
        for lbl, m in metrics.items():
            x, y = m[key]["mean"], m["accuracy"]["mean"]
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            pts[lbl] = (x, y)
            xe = _err(m[key])
            ye = _err(m["accuracy"])
            ax.errorbar(
                x, y, xerr=xe, yerr=ye, fmt="o", color=colors[lbl], ms=7, capsize=3, label=lbl
            )
        _annotate_groups(ax, pts)
        front = _pareto_front(pts)
        if len(front) > 1:
            ax.plot(
                [pts[k][0] for k in front],
                [pts[k][1] for k in front],
                color="black",
                lw=0.8,
                ls="--",
                label="Pareto front",
            )
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.25)  # room for the labels
        ax.set_xlabel(f"{name} latency [ms] (log scale)")
        ax.grid(alpha=0.3, which="both")
        ax.set_title(f"accuracy vs {name} latency")
    axes[0].set_ylabel("expected accuracy of completed requests")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(len(labels), 6))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)
    return path


def _annotate_groups(ax: Any, pts: dict[str, tuple[float, float]]) -> None:
    """One label per cluster of (nearly) coincident points, staggered vertically."""
    groups: dict[tuple[float, float], list[str]] = {}
    for lbl, (x, y) in pts.items():
        key = (round(float(np.log10(max(x, 1e-9))), LABEL_LOG_DECIMALS), round(y, LABEL_DECIMALS))
        groups.setdefault(key, []).append(lbl)
    for k, (_, lbls) in enumerate(sorted(groups.items())):
        x, y = pts[lbls[0]]
        dy = LABEL_OFFSETS_PT[k % len(LABEL_OFFSETS_PT)]
        ax.annotate(
            "\n".join(lbls),
            (x, y),
            textcoords="offset points",
            xytext=(6, dy),
            fontsize=7,
            va="center",
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey"},
        )


def _err(entry: dict[str, Any]) -> Any:
    ci = entry["ci95"]
    if not ci or ci[0] is None:
        return None
    m = entry["mean"]
    return np.array([[m - ci[0]], [ci[1] - m]])


def plot_utility_over_time(evals: dict[str, PolicyEvaluation], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, (ax_u, ax_b) = plt.subplots(
        2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    colors = _colors(list(evals))
    bw_t: np.ndarray | None = None
    bw: np.ndarray | None = None
    horizon = 0.0
    for lbl, ev in evals.items():
        lg = ev.logs[ev.seeds[0]][0]
        if lg.finish_s.size == 0:
            continue
        horizon = max(
            horizon,
            float(lg.bandwidth_t_s[-1]) + 1 if lg.bandwidth_t_s.size else float(lg.finish_s.max()),
        )
        edges = np.linspace(0.0, horizon, TIME_BINS + 1)
        idx = np.clip(np.digitize(lg.finish_s, edges) - 1, 0, TIME_BINS - 1)
        sums = np.bincount(idx, weights=lg.utility, minlength=TIME_BINS)
        counts = np.bincount(idx, minlength=TIME_BINS)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        centers = (edges[:-1] + edges[1:]) / 2
        ax_u.plot(
            centers, mean, color=colors[lbl], ls=_style(lbl), lw=1.5, label=lbl, marker="o", ms=2.5
        )
        if bw is None and lg.bandwidth_t_s.size:
            bw_t, bw = lg.bandwidth_t_s, lg.bandwidth_mbps
    ax_u.set_ylabel(f"mean utility per request\n(bins of {horizon / TIME_BINS:.0f} s)")
    ax_u.grid(alpha=0.3)
    ax_u.legend(fontsize=7, ncol=3, loc="lower left")
    first = next(iter(evals.values()))
    ax_u.set_title(f"utility over time, held-out episode (seed {first.seeds[0]}, episode 1)")
    if bw is not None and bw_t is not None:
        ax_b.plot(bw_t, bw, color="black", lw=1.0)
        ax_b.fill_between(bw_t, 0, bw, color="grey", alpha=0.3)
    ax_b.set_ylabel("true uplink bandwidth\nof device 0 [Mbit/s]")
    ax_b.set_xlabel("simulated time [s]")
    ax_b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)
    return path


def _dimension_values(plans: Sequence[Plan], dim: str) -> list[str]:
    vals = sorted({plan_dimension(p, dim) for p in plans}, key=_natural)
    return vals


def _natural(s: str) -> tuple[Any, ...]:
    digits = "".join(c for c in s if c.isdigit())
    return (s.rstrip("0123456789 "), int(digits) if digits else -1, s)


def _below_axes(fig_height_in: float, n_rows: int) -> float:
    """A legend offset below an axes' x label, as a fraction of the axes height."""
    axes_height_pt = fig_height_in * POINTS_PER_INCH * AXES_HEIGHT_SHARE / n_rows
    return LEGEND_GAP_PT / axes_height_pt


def plot_plan_mix(evals: dict[str, PolicyEvaluation], scenario: ScenarioModel, path: Path) -> Path:
    import matplotlib.pyplot as plt

    plans = scenario.plans
    labels = list(evals)
    fig, axes = plt.subplots(
        1,
        len(PLAN_DIMENSIONS),
        figsize=(3.2 * len(PLAN_DIMENSIONS), 0.45 * len(labels) + 2.2),
        sharey=True,
    )
    for ax, dim in zip(axes, PLAN_DIMENSIONS, strict=True):
        vals = _dimension_values(plans, dim)
        cmap = plt.get_cmap("tab20")
        left = np.zeros(len(labels))
        shares = np.zeros((len(labels), len(vals)))
        for i, lbl in enumerate(labels):
            acts = np.concatenate([lg.decision_plan for lg in evals[lbl].all_logs()])
            c = Counter(plan_dimension(plans[a], dim) for a in acts.tolist())
            total = max(sum(c.values()), 1)
            shares[i] = [c[v] / total for v in vals]
        for j, v in enumerate(vals):
            ax.barh(
                range(len(labels)),
                shares[:, j],
                left=left,
                color=cmap(j % cmap.N),
                label=v,
                edgecolor="white",
                lw=0.5,
            )
            left += shares[:, j]
        ax.set_title(dim, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of decisions", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(
            fontsize=6,
            loc="upper center",
            ncol=2,
            frameon=False,
            bbox_to_anchor=(0.5, -_below_axes(fig.get_figheight(), 1)),
        )
    axes[0].set_yticks(range(len(labels)))
    axes[0].set_yticklabels(labels, fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle(f"{scenario.cfg.name}: chosen plans by dimension (all held-out decisions)")
    fig.tight_layout()
    fig.savefig(path, dpi=FIG_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_plans_over_time(
    evals: dict[str, PolicyEvaluation], scenario: ScenarioModel, path: Path
) -> Path:
    import matplotlib.pyplot as plt

    plans = scenario.plans
    varying = [
        lbl
        for lbl, ev in evals.items()
        if len({int(a) for lg in ev.all_logs() for a in lg.decision_plan}) > 1
    ]
    learned = [v for v in varying if ":" in v]
    chosen = (learned + [v for v in varying if v not in learned])[:MAX_TIMELINE_POLICIES]
    if not chosen:
        chosen = list(evals)[:1]
    fig, axes = plt.subplots(
        len(chosen),
        len(PLAN_DIMENSIONS),
        figsize=(3.0 * len(PLAN_DIMENSIONS), 2.0 * len(chosen) + 1.2),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    cmap = plt.get_cmap("tab20")
    for r, lbl in enumerate(chosen):
        lg = evals[lbl].logs[evals[lbl].seeds[0]][0]
        horizon = float(lg.decision_s.max()) if lg.decision_s.size else 1.0
        edges = np.linspace(0.0, horizon, TIME_BINS + 1)
        centers = (edges[:-1] + edges[1:]) / 2
        idx = np.clip(np.digitize(lg.decision_s, edges) - 1, 0, TIME_BINS - 1)
        for c, dim in enumerate(PLAN_DIMENSIONS):
            ax = axes[r][c]
            vals = _dimension_values(plans, dim)
            cats = np.array(
                [vals.index(plan_dimension(plans[a], dim)) for a in lg.decision_plan.tolist()],
                dtype=np.int64,
            )
            counts = np.zeros((len(vals), TIME_BINS))
            np.add.at(counts, (cats, idx), 1.0)
            share = counts / np.maximum(counts.sum(axis=0), 1.0)
            ax.stackplot(
                centers, share, colors=[cmap(j % cmap.N) for j in range(len(vals))], labels=vals
            )
            ax.set_ylim(0, 1)
            if r == 0:
                ax.set_title(dim, fontsize=9)
            if c == 0:
                ax.set_ylabel(lbl, fontsize=7)
            if r == len(chosen) - 1:
                ax.set_xlabel("simulated time [s]", fontsize=8)
                ax.legend(
                    fontsize=6,
                    loc="upper center",
                    ncol=2,
                    frameon=False,
                    bbox_to_anchor=(0.5, -_below_axes(fig.get_figheight(), len(chosen))),
                )
            ax.tick_params(labelsize=7)
    fig.suptitle(
        f"{scenario.cfg.name}: share of decisions over time, first held-out episode "
        "(policies that vary their plan)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=FIG_DPI, bbox_inches="tight")
    plt.close(fig)
    return path
