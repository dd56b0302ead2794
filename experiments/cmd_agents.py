"""CLI: ``edgerl train``, ``edgerl evaluate``, ``edgerl compare``, ``edgerl demo``,
``edgerl bench agents``. Thin wrappers over the experiment scripts (heavy imports inside)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from edgerl.experiments import term
from edgerl.experiments.cli import app, bench_app
from edgerl.experiments.errors import OptionError
from typer.core import TyperCommand

#: Token of --policies that expands to every baseline.
ALL_BASELINES = "baselines"
#: The baseline names for --help (kept equal to edgerl.agents.baselines.list_baselines() by
#: tests/test_first_hour.py; not imported here so that `edgerl --help` stays fast).
BASELINE_NAMES = (
    "device-only, edge-only, cloud-only, random, neurosurgeon, neurosurgeon-energy, edgent, "
    "edgent-fp32, edgent-dynamic, composite, composite-triton, composite-rayserve, proteus, "
    "best-fixed, clairvoyant, oracle"
)


def _clear_errors() -> Any:
    from edgerl.experiments.errors import clear_errors

    return clear_errors()


def _split(values: Sequence[str]) -> list[str]:
    return [v.strip() for s in values for v in s.split(",") if v.strip()]


def _policy_specs(values: Sequence[str]) -> tuple[str, ...]:
    """The policy specs of ``--policy``/``--policies``: ``baselines`` expands to every
    baseline but the oracle, and a bare baseline name (``device-only``, as ``--help`` lists
    them) means ``baseline:NAME`` unless a run directory of that name exists."""
    from edgerl.agents.baselines import list_baselines

    out: list[str] = []
    known = list_baselines()
    for v in _split(values):
        expand = [f"baseline:{b}" for b in list_baselines(include_expensive=False)]
        if v == ALL_BASELINES:
            out += expand
        elif v in known and not Path(v).exists():
            out.append(f"baseline:{v}")
        else:
            out.append(v)
    if not out:
        given = ", ".join(repr(v) for v in values)
        raise OptionError(f"--policy/--policies: no policy named (got {given})")
    return tuple(out)


DEFAULT_SCENARIO = "lte-dynamic"


def _scenario_or_runs(scenario: str | None, policies: Sequence[str]) -> str:
    """``--scenario`` if given; else the scenario the first run directory among the policies
    was trained on (its ``scenario.yaml``); else the default scenario."""
    if scenario is not None:
        return scenario
    from edgerl.agents.rundir import SCENARIO_YAML

    for p in policies:
        run_scenario = Path(p) / SCENARIO_YAML
        if not p.startswith(("baseline:", "planner:")) and run_scenario.is_file():
            print(f"scenario: {run_scenario} (the one {p} was trained on)")
            return str(run_scenario)
    return DEFAULT_SCENARIO


#: Options that take several values after one flag (``--uplink-traces a.csv b.csv``, or a
#: shell glob that expands to several files): :class:`MultiValueCommand` rewrites them.
MULTI_VALUE_OPTIONS = ("--uplink-traces", "--downlink-traces")


def expand_multi_values(args: Sequence[str], options: Sequence[str]) -> list[str]:
    """``--opt a b --x`` -> ``--opt a --opt b --x``: every bare token after one of
    ``options`` (up to the next token starting with ``-``) is another value of it."""
    out: list[str] = []
    current: str | None = None
    pending = False  # `current` was given without a value so far
    for tok in args:
        if tok.startswith("-"):
            if pending:
                out.append(str(current))  # a flag without a value: let the parser say so
            name, eq, _ = tok.partition("=")
            current = name if name in options and tok != "--" else None
            pending = current is not None and not eq
            if not pending:
                out.append(tok)
        elif current is not None:
            out += [current, tok]
            pending = False
        else:
            out.append(tok)
    if pending:
        out.append(str(current))
    return out


class MultiValueCommand(TyperCommand):
    """A command whose :data:`MULTI_VALUE_OPTIONS` accept several values after one flag."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_values(args, MULTI_VALUE_OPTIONS))


def _link_override(
    key: str, files: Sequence[Path], fmt: str, column: str | None, unit: str | None
) -> dict[str, Any]:
    """One link's evaluation-only override: these files or folders of them (all held out);
    the unit defaults to the column name's (``up_kbps``), else Mbit/s."""
    from edgerl.envs.traces import unit_from_column

    for f in files:
        if not f.exists():
            raise typer.BadParameter(f"--{key}-traces: {f} does not exist")
    unit = unit or unit_from_column(column) or "mbps"
    files = [x for f in files for x in (sorted(f.iterdir()) if f.is_dir() else [f])]
    if not files:
        raise OptionError(f"--{key}-traces: the folder holds no trace files")
    link: dict[str, Any] = {
        "trace_files": [str(f.resolve()) for f in files],
        "format": fmt,
        "unit": unit,
        "eval_share": 1.0,
    }
    if column:
        link["column"] = column
    return link


def _trace_overrides(
    files: Sequence[Path],
    fmt: str,
    column: str | None,
    unit: str | None,
    down_files: Sequence[Path] = (),
    down_column: str | None = None,
) -> tuple[str, ...]:
    """``--uplink-traces`` / ``--downlink-traces``: evaluation-only scenario overrides that put
    these files (all held out) on every device's uplink / downlink. With both, given in the
    same order and as many of each, device d's downlink is the file paired with its uplink
    (``network.paired_links``), at the same offset."""
    out: list[str] = []
    if files:
        up = _link_override("uplink", files, fmt, column, unit)
        out.append(f"network.uplink={json.dumps(up)}")
    if down_files:
        down = _link_override("downlink", down_files, fmt, down_column or column, unit)
        out.append(f"network.downlink={json.dumps(down)}")
    if files and down_files:
        if len(files) != len(down_files):
            raise typer.BadParameter(
                f"--uplink-traces gives {len(files)} file(s), --downlink-traces "
                f"{len(down_files)}: give one downlink per uplink, in the same order (pairs)"
            )
        out.append("network.paired_links=true")
    return tuple(out)


def _seeds(values: Sequence[str]) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _split(values))
    except ValueError as exc:
        raise OptionError(f"--seed/--seeds must be integers: {exc}") from exc


def _search(episodes: int, horizon_s: float, max_wall_s: float, workers: int, seed: int) -> Any:
    from edgerl.agents.best_fixed import SearchConfig

    return SearchConfig(
        episodes=episodes,
        screen_episodes=1,
        horizon_s=horizon_s,
        max_wall_s=max_wall_s,
        workers=workers,
        seed=seed,
    )


def _progress_printer() -> Callable[[str], None]:
    def show(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    return show


# --------------------------------------------------------------------------- train


@contextmanager
def _interrupted_before_training() -> Iterator[None]:
    """Ctrl-C before the training loop (it handles its own): say so, exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        from edgerl.experiments.errors import print_error

        print_error(
            "before any model was trained (a run directory already created has no run.json: "
            "train into it again with --overwrite)",
            prefix="interrupted",
        )
        raise typer.Exit(130) from None


@app.command()
def train(
    scenario: str = typer.Option("lte-dynamic", help="scenario name or YAML path"),
    scenario_set: list[str] = typer.Option(
        [], "--set", help="scenario override dotted.key=value (repeat), e.g. reward.credit=finish"
    ),
    algo: str = typer.Option("maskable_ppo", help="maskable_ppo | ppo | a2c | dqn"),
    timesteps: int = typer.Option(None, help="total env steps (default: the hyperparameter file)"),
    seed: int = typer.Option(0, help="training seed"),
    out: Path = typer.Option(None, help="run directory (default runs/<run id>)"),
    n_envs: int = typer.Option(None, help="parallel envs (default: the hyperparameter file)"),
    vec_env: str = typer.Option(None, help="dummy | subproc"),
    hp: list[str] = typer.Option([], "--hp", help="hyperparameter override key=value (repeat)"),
    hyperparams: Path = typer.Option(None, help="hyperparameter YAML instead of the shipped one"),
    overwrite: bool = typer.Option(False, help="replace an existing run directory"),
    progress: bool = typer.Option(True, help="rich progress bar"),
) -> None:
    """Train an agent; writes RUN_DIR (run.json, model.zip, best_model.zip, curves, tb/)."""
    from edgerl.experiments.train import TrainConfig
    from edgerl.experiments.train import train as run_train

    with _clear_errors(), _interrupted_before_training():
        res = run_train(
            TrainConfig(
                scenario=scenario,
                scenario_set=tuple(scenario_set),
                algo=algo,
                timesteps=timesteps,
                seed=seed,
                out=out,
                n_envs=n_envs,
                vec_env=vec_env,
                hp=tuple(hp),
                hyperparams_file=hyperparams,
                overwrite=overwrite,
                progress_bar=progress,
            )
        )
    print(f"run directory: {res.run_dir}")
    if res.interrupted:
        from edgerl.experiments.errors import print_error

        print_error(
            f"{res.run_dir}: run.json marks the run as interrupted "
            f"({res.timesteps_done:,} of {res.timesteps:,} steps); evaluate and export say so",
            prefix="interrupted",
        )
        raise typer.Exit(130)  # 128 + SIGINT, as a shell reports an interrupted command
    print(
        f"wall time {res.wall_time_s:.1f} s, env {res.env_time_s:.1f} s "
        f"({100 * res.env_share:.0f} %), held-out evaluations {res.eval_time_s:.1f} s; "
        f"best held-out utility/request {res.best_eval_utility:.4f}"
    )


@app.command()
def curves(
    group: list[str] = typer.Option(
        ..., help="LABEL=RUN_DIR,RUN_DIR,... (repeat): runs averaged under one label"
    ),
    out: Path = typer.Option(Path("learning_curves.png"), help="PNG file"),
    title: str = typer.Option("", help="plot title"),
) -> None:
    """Plot held-out learning curves of run directories, grouped (mean, min-max band)."""
    from edgerl.experiments.curves import plot_learning_curves

    groups: dict[str, list[str]] = {}
    for g in group:
        label, sep, dirs = g.partition("=")
        if not sep or not label or not dirs:
            raise OptionError(f"--group {g!r}: expected LABEL=RUN_DIR[,RUN_DIR...]")
        groups[label] = [d for d in dirs.split(",") if d]
    with _clear_errors():
        print(f"wrote {plot_learning_curves(groups, out, title)}")


# --------------------------------------------------------------------------- evaluate

# Options evaluate and compare share (one definition each: the same names, defaults and help).
_SCENARIO_OPT = typer.Option(
    None,
    help="scenario name or YAML path (default: the first run directory's scenario, "
    f"else {DEFAULT_SCENARIO})",
)
_SET_OPT = typer.Option(
    [], "--set", help="scenario override dotted.key=value (repeat), e.g. reward.credit=finish"
)
_UPLINK_TRACES_OPT = typer.Option(
    [],
    "--uplink-traces",
    help="evaluate on these uplink trace files or folders (several after one flag, or repeat; "
    "all held out), not the scenario's; best-fixed and edgent-dynamic are still built from the "
    "scenario's training traces",
)
_DOWNLINK_TRACES_OPT = typer.Option(
    [],
    "--downlink-traces",
    help="the same for the downlink; with --uplink-traces, one per uplink file in the same "
    "order: each device's downlink is then the file paired with its uplink",
)
_TRACE_FORMAT_OPT = typer.Option(
    "auto", help="--uplink/--downlink-traces format: auto | pensieve | mahimahi | csv | irish5g"
)
_TRACE_COLUMN_OPT = typer.Option(None, help="--uplink-traces csv/irish5g column")
_DOWN_COLUMN_OPT = typer.Option(
    None, help="--downlink-traces csv/irish5g column (default: --trace-column)"
)
_TRACE_UNIT_OPT = typer.Option(
    None, help="--uplink-traces csv unit: mbps | kbps | bps (default: from a _kbps/_mbps column)"
)
_WHICH_OPT = typer.Option("best", help="best | final model of run directories")
_STRATIFIED_OPT = typer.Option(
    True,
    "--stratified/--no-strata",
    help="every seed covers every held-out uplink trace (several offsets in long ones), "
    "--episodes times; results also per trace family and trace",
)
_HORIZON_OPT = typer.Option(None, help="shorter episodes than the scenario's horizon")
_LATENCY_SOURCE_OPT = typer.Option("regression", help="Neurosurgeon/Edgent: regression | profile")
_SEARCH_EPISODES_OPT = typer.Option(3, help="best-fixed: episodes per finalist")
_SEARCH_HORIZON_OPT = typer.Option(60.0, help="best-fixed: simulated s per episode")
_SEARCH_MAX_WALL_OPT = typer.Option(600.0, help="best-fixed: wall-time bound")
_SEARCH_WORKERS_OPT = typer.Option(1, help="best-fixed: worker processes")


@app.command(cls=MultiValueCommand)
def evaluate(
    scenario: str = _SCENARIO_OPT,
    scenario_set: list[str] = _SET_OPT,
    uplink_traces: list[Path] = _UPLINK_TRACES_OPT,
    downlink_traces: list[Path] = _DOWNLINK_TRACES_OPT,
    trace_format: str = _TRACE_FORMAT_OPT,
    trace_column: str = _TRACE_COLUMN_OPT,
    downlink_column: str = _DOWN_COLUMN_OPT,
    trace_unit: str = _TRACE_UNIT_OPT,
    policy: list[str] = typer.Option(
        ...,
        "--policy",
        "--policies",
        help="RUN_DIR | baseline:NAME | planner:DIR (repeat or comma-separate); "
        f"'{ALL_BASELINES}' = all but the oracle. Baselines: {BASELINE_NAMES}",
    ),
    episodes: int = typer.Option(
        3, help="episodes per seed (stratified: per seed and held-out stratum)"
    ),
    stratified: bool = _STRATIFIED_OPT,
    seed: list[str] = typer.Option(
        ["0"], "--seed", "--seeds", help="evaluation seed(s) (repeat or comma-separate)"
    ),
    json_out: Path = typer.Option(None, "--json", help="write the metrics here"),
    which: str = _WHICH_OPT,
    horizon_s: float = _HORIZON_OPT,
    latency_source: str = _LATENCY_SOURCE_OPT,
    cache_dir: Path = typer.Option(None, help="best-fixed search cache (default: next to --json)"),
    search_episodes: int = _SEARCH_EPISODES_OPT,
    search_horizon_s: float = _SEARCH_HORIZON_OPT,
    search_max_wall_s: float = _SEARCH_MAX_WALL_OPT,
    search_workers: int = _SEARCH_WORKERS_OPT,
) -> None:
    """Evaluate policies on the held-out traces; print a table, write JSON."""
    from edgerl.experiments.compare import rich_table
    from edgerl.experiments.evaluate import EvalConfig, run_evaluation, write_json

    if which not in ("best", "final"):
        raise OptionError(f"--which must be best or final, got {which!r}")
    with _clear_errors():
        specs = _policy_specs(policy)
        cfg = EvalConfig(
            scenario=_scenario_or_runs(scenario, specs),
            scenario_set=tuple(scenario_set),
            eval_set=_trace_overrides(
                uplink_traces,
                trace_format,
                trace_column,
                trace_unit,
                downlink_traces,
                downlink_column,
            ),
            policies=specs,
            seeds=_seeds(seed),
            episodes=episodes,
            stratified=stratified,
            horizon_s=horizon_s,
            which=which,
            cache_dir=cache_dir or (json_out.parent if json_out else None),
            search=_search(search_episodes, search_horizon_s, search_max_wall_s, search_workers, 0),
            latency_source=latency_source,
        )
        doc, _ = run_evaluation(cfg, _progress_printer())
    term.console().print(rich_table(doc))
    if json_out is not None:
        print(f"wrote {write_json(doc, json_out)}")


# --------------------------------------------------------------------------- compare


@app.command(cls=MultiValueCommand)
def compare(
    scenario: str = _SCENARIO_OPT,
    scenario_set: list[str] = _SET_OPT,
    uplink_traces: list[Path] = _UPLINK_TRACES_OPT,
    downlink_traces: list[Path] = _DOWNLINK_TRACES_OPT,
    trace_format: str = _TRACE_FORMAT_OPT,
    trace_column: str = _TRACE_COLUMN_OPT,
    downlink_column: str = _DOWN_COLUMN_OPT,
    trace_unit: str = _TRACE_UNIT_OPT,
    policies: list[str] = typer.Option(
        [ALL_BASELINES],
        "--policies",
        "--policy",
        help="RUN_DIR | baseline:NAME | planner:DIR (repeat or comma-separate); "
        f"'{ALL_BASELINES}' = all but the oracle. Baselines: {BASELINE_NAMES}",
    ),
    seeds: list[str] = typer.Option(
        ["0,1,2"], "--seeds", "--seed", help="evaluation seeds (repeat or comma-separate)"
    ),
    episodes: int = typer.Option(
        1, help="episodes per seed (stratified: per seed and held-out stratum)"
    ),
    stratified: bool = _STRATIFIED_OPT,
    horizon_s: float = _HORIZON_OPT,
    out: Path = typer.Option(
        None, help="output directory (default runs/compare/<scenario>-<time>)"
    ),
    which: str = _WHICH_OPT,
    latency_source: str = _LATENCY_SOURCE_OPT,
    search_episodes: int = _SEARCH_EPISODES_OPT,
    search_horizon_s: float = _SEARCH_HORIZON_OPT,
    search_max_wall_s: float = _SEARCH_MAX_WALL_OPT,
    search_workers: int = _SEARCH_WORKERS_OPT,
    plots: bool = typer.Option(True, help="write the PNG plots"),
    ray: bool = typer.Option(
        False, "--ray", help="run the episodes as Ray tasks, one per (policy, seed)"
    ),
    address: str = typer.Option(
        None, help="with --ray: a running Ray cluster (default: $RAY_ADDRESS, else local)"
    ),
) -> None:
    """Compare policies on held-out traces: table (rich/CSV/JSON/Markdown) and PNG plots."""
    from edgerl.experiments.compare import CompareConfig, rich_table
    from edgerl.experiments.compare import compare as run_compare

    if which not in ("best", "final"):
        raise OptionError(f"--which must be best or final, got {which!r}")
    if address is not None and not ray:
        raise OptionError("--address: only with --ray")
    with _clear_errors():
        specs = _policy_specs(policies)
        res = run_compare(
            CompareConfig(
                scenario=_scenario_or_runs(scenario, specs),
                scenario_set=tuple(scenario_set),
                eval_set=_trace_overrides(
                    uplink_traces,
                    trace_format,
                    trace_column,
                    trace_unit,
                    downlink_traces,
                    downlink_column,
                ),
                policies=specs,
                seeds=_seeds(seeds),
                episodes=episodes,
                stratified=stratified,
                horizon_s=horizon_s,
                out=out,
                which=which,
                search=_search(
                    search_episodes, search_horizon_s, search_max_wall_s, search_workers, 0
                ),
                latency_source=latency_source,
                plots=plots,
                ray=ray,
                ray_address=address,
            ),
            _progress_printer(),
        )
    term.console().print(rich_table(res.doc))
    print(f"wrote {len(res.files)} files to {res.out} in {res.wall_time_s:.1f} s")


# --------------------------------------------------------------------------- demo / bench


@app.command()
def demo(
    timesteps: int = typer.Option(None, help="training steps (default: the demo's budget)"),
    out: Path = typer.Option(Path("runs/demo"), help="where the demo writes its runs"),
    seed: int = typer.Option(0, help="training seed"),
) -> None:
    """Train MaskablePPO on lte-dynamic briefly, compare with every baseline, plot, export."""
    from edgerl.experiments.demo import DemoConfig, run_demo

    with _clear_errors():
        cfg = DemoConfig(out=out, seed=seed)
        if timesteps is not None:
            cfg.timesteps = timesteps
        run_demo(cfg)


@bench_app.command("agents")
def bench_agents(
    scenarios: str = typer.Option("lte-dynamic,hsdpa-mobile", help="comma-separated"),
    algos: str = typer.Option("maskable_ppo", help="learned algorithms, comma-separated"),
    train_seeds: str = typer.Option("0,1,2", help="training seeds, comma-separated"),
    timesteps: int = typer.Option(200_000, help="training steps per run"),
    eval_seeds: str = typer.Option("100,101,102", help="evaluation seeds, comma-separated"),
    episodes: int = typer.Option(
        1, help="held-out episodes per evaluation seed (stratified: per seed and stratum)"
    ),
    stratified: bool = _STRATIFIED_OPT,
    horizon_s: float = typer.Option(None, help="shorter evaluation episodes"),
    out: Path = typer.Option(
        Path("runs/bench/agents.json"), help="JSON result file (+ .md report next to it)"
    ),
    headroom_out: Path = typer.Option(
        None,
        help="where the scenario's headroom is recorded (default: headroom.json next to --out; "
        "publish: experiments/results/headroom.json)",
    ),
    runs_dir: Path = typer.Option(Path("runs/bench"), help="where the training runs go"),
    reuse: bool = typer.Option(
        True, help="reuse finished runs of the same configuration and code commit"
    ),
    reuse_other_commits: bool = typer.Option(
        False, help="also reuse runs of the same configuration from other commits (recorded)"
    ),
    which: str = typer.Option("final", help="model used for the targets: final | best"),
    scenario_set: list[str] = typer.Option(
        [], "--set", help="scenario override dotted.key=value for every scenario (repeat)"
    ),
    references: str = typer.Option(
        "",
        help="reference baselines, comma-separated (default: best-fixed, edgent-dynamic, "
        "composite, proteus, edgent, neurosurgeon, clairvoyant, oracle)",
    ),
    ablations: str = typer.Option(
        "",
        help="retrain with one knob frozen: no-exits,no-batching,no-cache,one-variant,"
        "device-only, or one-variant=VARIANT (comma-separated)",
    ),
    oracle_window_s: float = typer.Option(2.0, help="the hindsight oracle's window [s]"),
    oracle_workers: int = typer.Option(1, help="the oracle's concurrent simulator forks"),
    search_max_wall_s: float = typer.Option(600.0, help="best-fixed: wall-time bound"),
) -> None:
    """Does adaptation pay? Learned agents vs best fixed, Edgent, composite and the oracle."""
    from edgerl.experiments.bench_agents import BenchConfig, run_bench

    if which not in ("best", "final"):
        raise OptionError(f"--which must be best or final, got {which!r}")
    with _clear_errors():
        run_bench(
            BenchConfig(
                scenarios=tuple(_split([scenarios])),
                algos=tuple(_split([algos])),
                train_seeds=_seeds([train_seeds]),
                timesteps=timesteps,
                eval_seeds=_seeds([eval_seeds]),
                episodes=episodes,
                stratified=stratified,
                horizon_s=horizon_s,
                out=out,
                runs_dir=runs_dir,
                reuse=reuse,
                reuse_other_commits=reuse_other_commits,
                which=which,
                scenario_set=tuple(scenario_set),
                **({"references": tuple(_split([references]))} if references else {}),
                ablations=tuple(_split([ablations])) if ablations else (),
                oracle_window_s=oracle_window_s,
                oracle_workers=oracle_workers,
                search=_search(3, 60.0, search_max_wall_s, 1, 0),
                headroom_out=headroom_out or out.parent / "headroom.json",
            )
        )


@bench_app.command("generalise")
def bench_generalise(
    scenario: str = typer.Option("camera-lte", help="scenario trained on"),
    algos: str = typer.Option("maskable_ppo,ppo", help="learned algorithms, comma-separated"),
    train_seeds: str = typer.Option("0,1,2", help="training seeds, comma-separated"),
    timesteps: int = typer.Option(200_000, help="training steps per run"),
    eval_seeds: str = typer.Option("100", help="evaluation seeds, comma-separated"),
    episodes: int = typer.Option(1, help="passes over each set's strata per evaluation seed"),
    horizon_s: float = typer.Option(None, help="shorter evaluation episodes"),
    families: str = typer.Option(
        "mahimahi-cellular,irish-5g,norway-hsdpa-3g,fcc-broadband",
        help="families left out one at a time (trained on the others; '' = none)",
    ),
    scales: str = typer.Option("0.25,0.5,2,4", help="bandwidth factors of the scaled sets"),
    unseen: str = typer.Option(
        "",
        help="families met as uplink by the policy trained as configured (no retraining), "
        "e.g. fcc-broadband,norway-hsdpa-3g",
    ),
    oracle: bool = typer.Option(False, help="also run the hindsight oracle (slow)"),
    scenario_set: list[str] = typer.Option(
        [], "--set", help="override of the trained setting, dotted.key=value (repeat)"
    ),
    out: Path = typer.Option(None, help="JSON result (+ .md); default runs/generalise/<scenario>"),
    runs_dir: Path = typer.Option(Path("runs/bench"), help="where the training runs go"),
    reuse: bool = typer.Option(True, help="reuse runs of the same configuration and commit"),
    reuse_other_commits: bool = typer.Option(
        False, help="also reuse runs of the same configuration from other commits (recorded)"
    ),
    which: str = typer.Option("final", help="final | best model of each run"),
    oracle_window_s: float = typer.Option(2.0, help="the hindsight oracle's window [s]"),
    oracle_workers: int = typer.Option(1, help="the oracle's concurrent simulator forks"),
    search_max_wall_s: float = typer.Option(600.0, help="best-fixed: wall-time bound"),
) -> None:
    """Robust on networks it never saw? Learned vs references on unseen trace sets."""
    from edgerl.experiments.bench_generalise import GeneraliseConfig, run_generalise

    if which not in ("best", "final"):
        raise typer.BadParameter("--which must be best or final")
    try:
        factors = tuple(float(x) for x in _split([scales]))
    except ValueError as exc:
        raise typer.BadParameter(f"--scales must be numbers: {exc}") from exc
    with _clear_errors():
        run_generalise(
            GeneraliseConfig(
                scenario=scenario,
                algos=tuple(_split([algos])),
                train_seeds=_seeds([train_seeds]),
                timesteps=timesteps,
                eval_seeds=_seeds([eval_seeds]),
                episodes=episodes,
                horizon_s=horizon_s,
                which=which,
                families=tuple(_split([families])),
                unseen=tuple(_split([unseen])),
                scales=factors,
                oracle=oracle,
                train_set=tuple(scenario_set),
                out=out,
                runs_dir=runs_dir,
                reuse=reuse,
                reuse_other_commits=reuse_other_commits,
                oracle_window_s=oracle_window_s,
                oracle_workers=oracle_workers,
                search=_search(3, 60.0, search_max_wall_s, 1, 0),
            )
        )
