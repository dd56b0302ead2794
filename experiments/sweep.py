"""``edgerl sweep SPEC.yaml``: hyperparameter sweeps on Ray Tune, each trial a set of ordinary
run directories.

Reads top to bottom: validate the spec (:mod:`edgerl.experiments.sweep_spec`; nothing starts on
a bad spec), create the sweep directory, start Ray (``ray.init()`` on this machine, or connect
to ``--address``/``RAY_ADDRESS``), run one Ray Tune study per (scenario, algorithm), then rank
the trials and write the results. Ray is imported inside the functions that use it, so that
``import edgerl`` stays light.

A trial is one hyperparameter configuration of one (scenario, algorithm). It trains one run per
seed, one after the other, with :func:`edgerl.experiments.train.train` (``--hp key=value``
overrides of the shipped hyperparameter file, ``budget.timesteps`` steps), so every seed is an
ordinary run directory that ``evaluate``, ``compare`` and ``export`` read unchanged. ``--resume``
restores Tune's state: finished trials are not run again, and a trial that Tune restarts
(it was running) keeps the seeds whose run finished (same configuration fingerprint,
:func:`edgerl.experiments.train.config_fingerprint`) and trains the others from scratch. After each
held-out evaluation of the training callback the trial reports to Tune the mean held-out
utility over its seeds so far (the finished seeds' final evaluations and the current seed's
latest), against the training steps summed over its seeds; ASHA compares trials on that, all
trials taking their seeds in the same order. A trial's score is the mean over its seeds of the
final held-out evaluation (the policy in ``model.zip``), with a Student-t 95 % interval over the
seeds. Search, early stopping and resume are Ray Tune's: ``BasicVariantGenerator`` (grid,
random), ``OptunaSearch`` (TPE), ``ASHAScheduler``, ``Tuner.restore`` (Ray Tune documentation,
"Tune: Scalable Hyperparameter Tuning", docs.ray.io/en/latest/tune/).

Sweep directory::

    SWEEP_DIR/
      spec.yaml                     the spec as run (paths absolute); --resume reads it
      sweep.json                    provenance: command, commit, versions, Ray address, times
      tune/<scenario>__<algo>/      Ray Tune's experiment (its state, per-trial results)
      runs/<scenario>__<algo>/<trial>/seed<k>/   edgerl run directories
      results/trials.{csv,json,md}  ranked trials (also printed)
      results/best/<scenario>__<algo>.yaml       best configuration, for --hyperparams
      results/plots/*.png           utility against each hyperparameter; top trials' curves
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from edgerl.experiments import runinfo
from edgerl.experiments.errors import OptionError
from edgerl.experiments.ray_session import ray_address, ray_init
from edgerl.experiments.sweep_spec import (
    SweepSpec,
    SweepSpecError,
    hp_override,
    load_spec,
)

SPEC_FILE = "spec.yaml"
SWEEP_JSON = "sweep.json"
TUNE_DIR = "tune"
RUNS_DIR = "runs"
RESULTS_DIR = "results"
METRIC = "utility"
#: Tune's time attribute: training steps summed over the seeds a trial has trained.
TIME_ATTR = "sweep_timesteps"
#: Learning curves of this many best trials per (scenario, algorithm) are plotted.
TOP_CURVES = 3
#: Trial states in the table, in ranking order.
STATUS_ORDER = ("ok", "stopped", "error")
#: Characters of an error message kept in the tables (the JSON keeps all of it).
ERROR_CHARS = 200


class TrialError(RuntimeError):
    """A trial's training diverged (NaN held-out utility) or its scenario failed."""


class SweepInterrupted(RuntimeError):
    """Ctrl-C stopped the sweep; Ray Tune saved its state and ``--resume DIR`` continues."""

    def __init__(self, sweep_dir: Path) -> None:
        super().__init__(
            f"sweep interrupted; finished trials are kept: continue it with "
            f"edgerl sweep --resume {sweep_dir}"
        )
        self.sweep_dir = sweep_dir


@dataclass
class SweepConfig:
    """What ``edgerl sweep`` runs."""

    spec: Path | None = None
    """the sweep spec (None with ``resume``)"""
    out: Path | None = None
    """sweep directory; None: runs/sweeps/<spec name>-<UTC time>"""
    resume: Path | None = None
    """a sweep directory to continue (its spec.yaml; finished trials are not run again)"""
    retry_errored: bool = False
    """with ``resume``: run failed trials again from scratch (a worker killed, a fixed bug);
    Tune gives each a new trial id, so a new run root"""
    address: str | None = None
    """a running Ray cluster (``ray://host:10001`` or ``host:6379``); None: RAY_ADDRESS, else a
    local Ray on this machine"""
    num_cpus: int | None = None
    """CPUs of the local Ray (None: os.cpu_count()); not with ``address``"""
    verbose: int = 1
    """Ray Tune's console output: 0 silent, 1 the live trial table, 2 everything"""


@dataclass
class TrialRow:
    """One trial in the results table."""

    scenario: str
    """the spec's entry (a shipped name or a scenario file)"""
    scenario_name: str
    """the scenario's name (its key in hyperparameter files)"""
    algo: str
    trial_id: str
    status: str
    """ok | stopped (early stopping or wall-time budget) | error"""
    utility: float
    ci_low: float | None
    ci_high: float | None
    per_seed: list[float]
    seeds_done: int
    params: dict[str, Any]
    run_dirs: list[str]
    error: str = ""
    rank: int = 0


@dataclass
class SweepResult:
    sweep_dir: Path
    rows: list[TrialRow] = field(default_factory=list)
    best_files: dict[str, Path] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    wall_time_s: float = 0.0


def scenario_label(scenario: str) -> str:
    """A spec's scenario entry as tables show it: a shipped name, or a file's stem."""
    return Path(scenario).stem if scenario.endswith((".yaml", ".yml")) else scenario


def study_name(scenario: str, algo: str) -> str:
    """``<scenario>__<algo>`` (:func:`scenario_label`), file-name safe."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in scenario_label(scenario))
    return f"{safe}__{algo}"


# ------------------------------------------------------------------------------ the trial


def _trial(config: dict[str, Any], study: dict[str, Any]) -> None:
    """One Ray Tune trial: train every seed of one configuration, report to Tune.

    ``config`` maps hyperparameter keys to this trial's values; ``study`` (plain data) says
    the scenario, algorithm, seeds, budget and where run directories go.
    """
    from edgerl.experiments.train import TrainConfig, train
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    overrides = [*study["fixed"], *(hp_override(k, v) for k, v in sorted(config.items()))]
    timesteps = int(study["timesteps"])
    root = Path(study["runs_dir"]) / trial_id
    finals: list[float] = []
    for i, seed in enumerate(study["seeds"]):

        def on_eval(row: Mapping[str, Any], i: int = i) -> None:
            u = float(row["eval_utility_mean"])
            if math.isnan(u):
                raise TrialError(f"NaN held-out utility at step {row['timesteps']}: diverged")
            if int(row["timesteps"]) < timesteps:  # the seed's last one: reported below
                tune.report(
                    {
                        METRIC: sum([*finals, u]) / (len(finals) + 1),
                        TIME_ATTR: i * timesteps + int(row["timesteps"]),
                        "complete": 0,
                    }
                )

        run_dir = root / f"seed{seed}"
        cfg = TrainConfig(
            scenario=study["scenario"],
            scenario_set=tuple(study["scenario_set"]),
            algo=study["algo"],
            timesteps=timesteps,
            seed=int(seed),
            out=run_dir,
            hp=tuple(overrides),
            hyperparams_file=(
                Path(study["hyperparams_file"]) if study["hyperparams_file"] else None
            ),
            progress_bar=False,
            tensorboard=False,
            overwrite=True,  # an unfinished run of a restarted trial is trained again
            on_eval=on_eval,
            command=f"{study['command']}  # trial {trial_id}, seed {seed}",
        )
        final = _finished_run(run_dir, cfg)  # a trial restarted by --resume keeps its seeds
        if final is None:
            res = train(cfg)
            final = float(res.curve[-1]["eval_utility_mean"]) if res.curve else math.nan
        if math.isnan(final):
            raise TrialError(f"seed {seed}: no finite held-out utility (diverged?)")
        finals.append(final)
        # Reported after the run directory is complete: where ASHA stops the trial (at a
        # report), no run is left half-written but the one being trained.
        tune.report(
            {
                METRIC: sum(finals) / len(finals),
                TIME_ATTR: (i + 1) * timesteps,
                "complete": int(i + 1 == len(study["seeds"])),
            }
        )


def _finished_run(run_dir: Path, cfg: Any) -> float | None:
    """The final held-out utility of the run in ``run_dir`` if it finished training exactly
    ``cfg`` (same configuration fingerprint, not interrupted), else None."""
    from edgerl.agents.rundir import RUN_JSON
    from edgerl.experiments.curves import read_curve
    from edgerl.experiments.train import config_fingerprint, planned_record

    try:
        record = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("interrupted") or record.get("config_fingerprint") != config_fingerprint(
        planned_record(cfg)
    ):
        return None
    return float(read_curve(run_dir)[1][-1])


def _max_t(study: Mapping[str, Any]) -> int:
    """ASHA's max_t: the training steps of all of a trial's seeds."""
    return int(study["timesteps"]) * len(study["seeds"])


# ------------------------------------------------------------------------------ Ray Tune


def _param_space(spec: SweepSpec, algo: str) -> dict[str, Any]:
    from ray import tune

    out: dict[str, Any] = {}
    for k, s in spec.spaces(algo).items():
        if s.kind == "grid":
            out[k] = tune.grid_search(list(s.values))
        elif s.kind == "choice":
            out[k] = tune.choice(list(s.values))
        elif s.kind == "uniform":
            out[k] = tune.uniform(*s.values)
        else:
            out[k] = tune.loguniform(*s.values)
    return out


def _tune_config(spec: SweepSpec, study: Mapping[str, Any], max_concurrent: int) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    search_alg: Any
    if spec.search == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(
            metric=METRIC, mode="max", sampler=optuna.samplers.TPESampler(seed=spec.search_seed)
        )
    else:
        search_alg = BasicVariantGenerator(
            random_state=spec.search_seed, max_concurrent=max_concurrent
        )
    scheduler = None
    es = spec.early_stopping
    if es is not None:
        scheduler = ASHAScheduler(
            time_attr=TIME_ATTR,
            max_t=_max_t(study),
            grace_period=es.grace_timesteps,
            reduction_factor=es.reduction_factor,
        )
    return tune.TuneConfig(
        metric=METRIC,
        mode="max",
        num_samples=spec.budget.trials if spec.budget.trials is not None else 1,
        search_alg=search_alg,
        scheduler=scheduler,
        # a generator takes its own max_concurrent (Tune ignores this one for it)
        max_concurrent_trials=max_concurrent if spec.search == "optuna" else None,
        time_budget_s=spec.budget.wall_time_s,
    )


def _trainable(study: dict[str, Any]) -> Any:
    from ray import tune

    return tune.with_resources(tune.with_parameters(_trial, study=study), {"cpu": 1})


def _run_study(
    spec: SweepSpec,
    scenario: str,
    algo: str,
    sweep_dir: Path,
    max_concurrent: int,
    verbose: int,
    command: str,
    retry_errored: bool = False,
) -> tuple[str, Any]:
    """Run (or continue) the Tune study of one (scenario, algorithm): (the scenario's name,
    Tune's ResultGrid)."""
    from edgerl.experiments.runinfo import resolve_scenario
    from ray import tune

    model, _ = resolve_scenario(scenario, spec.scenario_set)
    name = study_name(scenario, algo)
    study = {
        "scenario": scenario,
        "scenario_set": list(spec.scenario_set),
        "scenario_name": model.cfg.name,
        "algo": algo,
        "seeds": list(spec.seeds),
        "timesteps": spec.budget.timesteps,
        "fixed": spec.fixed_overrides(),
        "hyperparams_file": spec.hyperparams_file,
        "runs_dir": str(sweep_dir / RUNS_DIR / name),
        "command": command,
    }
    storage = sweep_dir / TUNE_DIR
    path = storage / name
    trainable = _trainable(study)
    if tune.Tuner.can_restore(str(path)):
        # Ray's experiment state is its own (cloudpickled) file; --resume reads only a
        # sweep directory this command wrote.
        tuner = tune.Tuner.restore(
            str(path),
            trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=retry_errored,
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=_param_space(spec, algo),
            tune_config=_tune_config(spec, study, max_concurrent),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                verbose=verbose,
            ),
        )
    t0 = time.perf_counter()
    grid, ctrl_c = _fit(tuner)
    if ctrl_c or _interrupted(spec, algo, grid, time.perf_counter() - t0):
        raise SweepInterrupted(sweep_dir)
    return model.cfg.name, grid


def _fit(tuner: Any) -> tuple[Any, bool]:
    """``tuner.fit()``, and whether Ctrl-C ended it.

    Tune catches the first SIGINT, saves its state and returns as if the study were done;
    on that signal (only) it puts back the handler it found (``_setup_signal_catching`` in
    ``ray/tune/tune.py``, Ray 2.60). So a handler of ours installed before ``fit`` and found
    again after it means Ctrl-C.
    """
    if threading.current_thread() is not threading.main_thread():
        return tuner.fit(), False  # signal handlers are the main thread's

    def ours(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, ours)
    try:
        grid = tuner.fit()
        tune_catches = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") == "0"
        return grid, tune_catches and signal.getsignal(signal.SIGINT) is ours
    finally:
        signal.signal(signal.SIGINT, previous)


def expected_trials(spec: SweepSpec, algo: str) -> int:
    """Trials of one (scenario, algorithm) study: the grid's size, or ``budget.trials``."""
    if spec.search == "grid":
        return math.prod(len(s.values) for s in spec.spaces(algo).values())
    return int(spec.budget.trials or 1)


def _interrupted(spec: SweepSpec, algo: str, grid: Any, fit_s: float) -> bool:
    """Did Ctrl-C end ``tuner.fit()`` (which then returns as if done)? Some trial is neither
    finished nor failed, or fewer trials ran than the study has, its wall-time budget unspent."""
    if grid.num_terminated + grid.num_errors < len(grid):
        return True
    budget_s = spec.budget.wall_time_s
    return len(grid) < expected_trials(spec, algo) and (budget_s is None or fit_s < budget_s)


# ------------------------------------------------------------------------------ the sweep


def _prepare(cfg: SweepConfig) -> tuple[SweepSpec, Path, dict[str, Any]]:
    """(the validated spec, the sweep directory, its provenance) before Ray starts."""
    if cfg.resume is not None:
        if cfg.spec is not None:
            raise OptionError("give SPEC.yaml or --resume DIR, not both")
        if cfg.out is not None:
            raise OptionError("--out: --resume continues in DIR itself")
    elif cfg.retry_errored:
        raise OptionError("--retry-errored: only with --resume DIR")
    if cfg.resume is not None:
        sweep_dir = cfg.resume.resolve()
        spec_path = sweep_dir / SPEC_FILE
        if not spec_path.is_file():
            raise OptionError(f"--resume {cfg.resume}: no {SPEC_FILE}; not a sweep directory")
        spec = load_spec(spec_path)
        try:
            prov = json.loads((sweep_dir / SWEEP_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OptionError(f"--resume {cfg.resume}: unreadable {SWEEP_JSON}: {exc}") from None
        prov.setdefault("resumed", []).append(runinfo.now_iso())
        return spec, sweep_dir, prov
    if cfg.spec is None:
        raise OptionError("give a sweep spec (edgerl sweep SPEC.yaml) or --resume DIR")
    spec = load_spec(cfg.spec)
    stamp = runinfo.now_iso().replace(":", "").replace("-", "").replace("+0000", "Z")
    sweep_dir = (cfg.out or Path("runs") / "sweeps" / f"{spec.name}-{stamp}").resolve()
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise OptionError(
            f"--out {sweep_dir}: not empty; continue it with --resume or choose another"
        )
    prov = {
        "spec": str(Path(cfg.spec).resolve()),
        "command": runinfo.command_line(),
        "git_commit": runinfo.git_commit(),
        "versions": runinfo.versions(),
        "started": runinfo.now_iso(),
    }
    return spec, sweep_dir, prov


def run_sweep(cfg: SweepConfig) -> SweepResult:
    """Validate, run every (scenario, algorithm) study on Ray Tune, rank and write results."""
    spec, sweep_dir, prov = _prepare(cfg)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if cfg.resume is None:
        (sweep_dir / SPEC_FILE).write_text(
            yaml.safe_dump(spec.to_json(), sort_keys=False), encoding="utf-8"
        )
    t0 = time.perf_counter()
    address = ray_address(cfg.address, cfg.num_cpus)
    import ray

    grids: dict[tuple[str, str], tuple[str, Any]] = {}  # -> (scenario name, ResultGrid)
    try:
        local = ray_init(address, cfg.num_cpus)
        prov["ray"] = {"address": local.address or "local", "num_cpus": local.num_cpus}
        prov["ray_version"] = ray.__version__
        _write_json(sweep_dir / SWEEP_JSON, prov)
        max_conc = spec.max_concurrent or local.num_cpus
        for scenario in spec.scenarios:
            for algo in spec.algorithms:
                grids[(scenario, algo)] = _run_study(
                    spec,
                    scenario,
                    algo,
                    sweep_dir,
                    max_conc,
                    cfg.verbose,
                    prov["command"],
                    cfg.retry_errored,
                )
    except SweepInterrupted:
        prov.setdefault("interrupted", []).append(runinfo.now_iso())
        _write_json(sweep_dir / SWEEP_JSON, prov)
        raise
    finally:
        ray.shutdown()
    result = SweepResult(sweep_dir, wall_time_s=time.perf_counter() - t0)
    result.rows = rank_rows(
        [
            row
            for (sc, algo), (name, g) in grids.items()
            for row in _rows(spec, sc, name, algo, g, sweep_dir / RUNS_DIR / study_name(sc, algo))
        ]
    )
    write_results(spec, result)
    prov["finished"] = runinfo.now_iso()
    prov["wall_time_s"] = result.wall_time_s
    _write_json(sweep_dir / SWEEP_JSON, prov)
    return result


def seed_results(trial_dir: Path, seeds: Sequence[int]) -> tuple[list[float], list[str]]:
    """(final held-out utility, run directory) of each seed whose run finished, read from the
    run directories (``run.json`` written and not interrupted; the last row of
    ``learning_curve.csv``)."""
    from edgerl.agents.rundir import RUN_JSON
    from edgerl.experiments.curves import read_curve

    finals, dirs = [], []
    for seed in seeds:
        d = trial_dir / f"seed{seed}"
        try:
            record = json.loads((d / RUN_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("interrupted"):
            continue
        _, util = read_curve(d)
        finals.append(float(util[-1]))
        dirs.append(str(d))
    return finals, dirs


def _trial_id_of(tune_dir_name: str, runs_dir: Path) -> str:
    """The id of a trial that reported nothing: the run root (named by trial id) whose name
    Tune's trial folder (``_trial_<id>_<index>_<params>_<date>``) contains, else that name."""
    roots = sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []
    return next((d.name for d in roots if f"_{d.name}_" in tune_dir_name), tune_dir_name)


def _error_line(error: BaseException) -> str:
    """The last line of a trial's error (Ray's carries the remote traceback before it)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


def _rows(
    spec: SweepSpec, scenario: str, scenario_name: str, algo: str, grid: Any, runs_dir: Path
) -> list[TrialRow]:
    from edgerl.agents.evaluation import t_interval

    rows = []
    for r in grid:
        m = r.metrics or {}
        trial_id = str(m.get("trial_id") or _trial_id_of(Path(r.path).name, runs_dir))
        per_seed, run_dirs = seed_results(runs_dir / trial_id, spec.seeds)
        utility, lo, hi = t_interval(per_seed)
        if r.error is not None:
            status, err = "error", _error_line(r.error)
        elif len(per_seed) == len(spec.seeds):
            status, err = "ok", ""
        else:  # stopped by ASHA or the wall-time budget: its last report
            status, err = "stopped", ""
            utility, lo, hi = float(m.get(METRIC, math.nan)), None, None
        rows.append(
            TrialRow(
                scenario=scenario,
                scenario_name=scenario_name,
                algo=algo,
                trial_id=trial_id,
                status=status,
                utility=utility,
                ci_low=lo,
                ci_high=hi,
                per_seed=per_seed,
                seeds_done=len(per_seed),
                params=dict(r.config or {}),
                run_dirs=run_dirs,
                error=err,
            )
        )
    return rows


def rank_rows(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """Per (scenario, algorithm): finished trials by utility (best first), then trials stopped
    early (by their last utility), then errors; ``rank`` numbers them from 1."""

    def key(r: TrialRow) -> tuple[Any, ...]:
        u = -r.utility if not math.isnan(r.utility) else math.inf
        return (r.scenario, r.algo, STATUS_ORDER.index(r.status), u, r.trial_id)

    out = sorted(rows, key=key)
    group: tuple[str, str] | None = None
    n = 0
    for r in out:
        n = n + 1 if (r.scenario, r.algo) == group else 1
        group = (r.scenario, r.algo)
        r.rank = n
    return out


# ------------------------------------------------------------------------------ results


def _write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")


def _fmt_u(r: TrialRow) -> str:
    if math.isnan(r.utility):
        return "-"
    if r.ci_low is None or r.ci_high is None:
        return f"{r.utility:.4f}"
    return f"{r.utility:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}]"


def _fmt_v(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else json.dumps(v)


def _param_keys(rows: Sequence[TrialRow]) -> list[str]:
    return sorted({k for r in rows for k in r.params})


def table_lines(rows: Sequence[TrialRow]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the ranked table (terminal and Markdown)."""
    keys = _param_keys(rows)
    header = ["scenario", "algo", "rank", "trial", "status", "utility [95 % CI]", "seeds", *keys]
    body = []
    for r in rows:
        status = r.status if not r.error else f"error: {r.error[:ERROR_CHARS]}"
        body.append(
            [
                scenario_label(r.scenario),
                r.algo,
                str(r.rank),
                r.trial_id,
                status,
                _fmt_u(r),
                str(r.seeds_done),
                *(_fmt_v(r.params[k]) if k in r.params else "" for k in keys),
            ]
        )
    return header, body


def print_table(rows: Sequence[TrialRow], title: str) -> None:
    from edgerl.experiments import term
    from rich.table import Table

    header, body = table_lines(rows)
    t = Table(title=title)
    for h in header:
        t.add_column(h, overflow="fold")
    for line in body:
        t.add_row(*line)
    term.console().print(t)


def write_results(spec: SweepSpec, result: SweepResult) -> None:
    """trials.csv/json/md, the best configurations as hyperparameter files, and the plots."""
    out = result.sweep_dir / RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    rows = result.rows
    keys = _param_keys(rows)
    with (out / "trials.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "scenario",
                "algo",
                "rank",
                "trial",
                "status",
                "utility",
                "ci_low",
                "ci_high",
                "seeds_done",
                *keys,
                "error",
            ]
        )
        for r in rows:
            w.writerow(
                [
                    r.scenario,
                    r.algo,
                    r.rank,
                    r.trial_id,
                    r.status,
                    r.utility,
                    r.ci_low if r.ci_low is not None else "",
                    r.ci_high if r.ci_high is not None else "",
                    r.seeds_done,
                    *(json.dumps(r.params[k]) if k in r.params else "" for k in keys),
                    r.error,
                ]
            )
    doc = {
        "spec": spec.to_json(),
        "metric": (
            "held-out utility per request: mean over the trial's seeds of the final evaluation "
            "of the training callback (learning_curve.csv, last row); ci95: Student-t over seeds"
        ),
        "trials": [r.__dict__ for r in rows],
        "git_commit": runinfo.git_commit(),
        "wall_time_s": result.wall_time_s,
    }
    _write_json(out / "trials.json", doc)
    header, body = table_lines(rows)
    md = [
        f"# Sweep {spec.name}",
        "",
        f"Trials ranked by {doc['metric']}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in body),
        "",
    ]
    (out / "trials.md").write_text("\n".join(md), encoding="utf-8")
    result.best_files = write_best(spec, rows, out / "best")
    result.plots = write_plots(spec, rows, out / "plots")


def write_best(spec: SweepSpec, rows: Sequence[TrialRow], out: Path) -> dict[str, Path]:
    """The best finished trial of each (scenario, algorithm) as a hyperparameter file:
    ``edgerl train --hyperparams FILE`` trains that configuration for ``budget.timesteps``."""
    from edgerl.agents.hyperparams import hyperparams_block

    files: dict[str, Path] = {}
    for r in rows:
        name = study_name(r.scenario, r.algo)
        if r.status != "ok" or name in files:
            continue
        overrides = [
            *spec.fixed_overrides(),
            *(hp_override(k, v) for k, v in sorted(r.params.items())),
            f"n_timesteps={spec.budget.timesteps}",
        ]
        sets = "".join(f" --set {o}" for o in spec.scenario_set)
        block = hyperparams_block(r.algo, r.scenario_name, overrides, spec.hyperparams_file)
        out.mkdir(parents=True, exist_ok=True)
        head = (
            f"# Best configuration of sweep {spec.name!r} for {r.algo} on {r.scenario}: trial "
            f"{r.trial_id}, held-out utility {_fmt_u(r)} over seeds {list(spec.seeds)}.\n"
            f"# Written by edgerl sweep (commit {runinfo.git_commit()}); use it with\n"
            f"#   edgerl train --scenario {r.scenario}{sets} --algo {r.algo} --hyperparams "
            "THIS_FILE\n"
        )
        path = out / f"{name}.yaml"
        path.write_text(
            head + yaml.safe_dump({"default": block}, sort_keys=False), encoding="utf-8"
        )
        files[name] = path
    return files


def write_plots(spec: SweepSpec, rows: Sequence[TrialRow], out: Path) -> list[Path]:
    """Per (scenario, algorithm): utility against each searched hyperparameter (finished
    trials, 95 % CI bars over seeds), and the learning curves of the best trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from edgerl.experiments.curves import FIG_DPI, plot_learning_curves

    paths: list[Path] = []
    groups: dict[tuple[str, str], list[TrialRow]] = {}
    for r in rows:
        groups.setdefault((r.scenario, r.algo), []).append(r)
    out.mkdir(parents=True, exist_ok=True)
    for (sc, algo), rs in groups.items():
        name = study_name(sc, algo)
        ok = [r for r in rs if r.status == "ok"]
        keys = sorted(spec.spaces(algo))
        if ok and keys:
            fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.0), squeeze=False)
            for ax, k in zip(axes[0], keys, strict=True):
                space = spec.spaces(algo)[k]
                xs_raw: list[Any] = [r.params.get(k) for r in ok]
                numeric = space.kind in ("uniform", "loguniform") or all(
                    isinstance(x, int | float) and not isinstance(x, bool) for x in xs_raw
                )
                labels = [json.dumps(x) for x in space.values]
                xs = [float(x) if numeric else float(labels.index(json.dumps(x))) for x in xs_raw]
                ys = [r.utility for r in ok]
                err = [
                    [r.utility - r.ci_low if r.ci_low is not None else 0.0 for r in ok],
                    [r.ci_high - r.utility if r.ci_high is not None else 0.0 for r in ok],
                ]
                ax.errorbar(xs, ys, yerr=err, fmt="o", ms=4, capsize=3)
                if space.kind == "loguniform":
                    ax.set_xscale("log")
                if not numeric:
                    ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
                ax.set_xlabel(k, fontsize=8)
                ax.grid(alpha=0.3)
            axes[0][0].set_ylabel("held-out utility per request")
            fig.suptitle(
                f"{scenario_label(sc)}, {algo}: finished trials (95 % CI over seeds)", fontsize=9
            )
            fig.tight_layout()
            p = out / f"{name}-utility-vs-hyperparams.png"
            fig.savefig(p, dpi=FIG_DPI)
            plt.close(fig)
            paths.append(p)
        top = {
            f"#{r.rank} {r.trial_id}": [d for d in r.run_dirs if (Path(d) / "run.json").is_file()]
            for r in ok[:TOP_CURVES]
        }
        top = {k: v for k, v in top.items() if v}
        if top:
            paths.append(
                plot_learning_curves(
                    top,
                    out / f"{name}-top-curves.png",
                    f"{scenario_label(sc)}, {algo}: the {len(top)} best trials (mean over seeds)",
                )
            )
    return paths


__all__ = [
    "SweepConfig",
    "SweepResult",
    "SweepSpecError",
    "TrialError",
    "TrialRow",
    "print_table",
    "rank_rows",
    "run_sweep",
]
