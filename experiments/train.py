"""Train one agent on one scenario and write a run directory.

Reads top to bottom (cleanrl style): resolve the scenario and the hyperparameters, create
the run directory, build the vectorised training envs (timed), the SB3 model and the
callbacks (held-out evaluation + best model, checkpoints, TensorBoard), learn, save, and
write ``run.json`` last (a directory without it is an unfinished run). The run directory
layout is the contract of :mod:`edgerl.agents.rundir`. The training holds a lock on the
directory (``RUN_DIR/.lock``), so a second training into it fails instead of mixing its
files in; Ctrl-C saves the model trained so far and writes ``run.json`` with
``"interrupted": true``.

    edgerl train --scenario lte-dynamic --algo maskable_ppo --timesteps 200000 --seed 0 \\
        --out runs/lte-mppo-s0 [--n-envs 4] [--hp learning_rate=1e-4]
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerl.agents.rundir import (
    FINAL_MODEL,
    LOCK_FILE,
    RUN_JSON,
    RUN_SCHEMA_VERSION,
    SCENARIO_SOURCE_YAML,
    SCENARIO_YAML,
    RunDirError,
    scenario_fingerprint,
    scenario_yaml_text,
    source_yaml_text,
)
from edgerl.envs.sim.build import ScenarioModel
from edgerl.experiments import runinfo
from edgerl.experiments.curves import plot_learning_curves
from edgerl.experiments.errors import OptionError

DEFAULT_RUNS_DIR = Path("runs")


@dataclass
class TrainConfig:
    """What to train (every field maps to an ``edgerl train`` option)."""

    scenario: str | ScenarioModel = "lte-dynamic"
    """shipped scenario name, YAML path, or an in-memory ScenarioModel (tests)"""
    scenario_set: tuple[str, ...] = ()
    """scenario overrides, dotted.key=value (YAML values), e.g. reward.credit=finish"""
    algo: str = "maskable_ppo"
    """maskable_ppo | ppo | a2c | dqn"""
    timesteps: int | None = None
    """total environment steps; None: n_timesteps of the hyperparameter file"""
    seed: int = 0
    out: Path | None = None
    """run directory; None: runs/<run id>"""
    n_envs: int | None = None
    """parallel training envs; None: from the hyperparameter file"""
    vec_env: str | None = None
    """dummy | subproc; None: from the hyperparameter file"""
    hp: tuple[str, ...] = ()
    """hyperparameter overrides, key=value (YAML values)"""
    hyperparams_file: Path | None = None
    """another hyperparameter YAML instead of agents/hyperparams/<algo>.yaml"""
    progress_bar: bool = True
    tensorboard: bool = True
    torch_threads: int = 1
    """torch intra-op threads (small MLPs run fastest on one)"""
    overwrite: bool = False
    """replace an existing run directory"""
    verbose: int = 0
    on_eval: Callable[[dict[str, Any]], None] | None = None
    """called with each learning-curve row after each held-out evaluation (sweeps report
    it to Ray Tune)"""
    command: str | None = None
    """the command recorded in run.json; None: this process's command line"""


@dataclass
class TrainResult:
    run_dir: Path
    wall_time_s: float
    env_time_s: float
    eval_time_s: float
    best_eval_utility: float
    curve: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    """Ctrl-C stopped the training; the model so far is saved, run.json says so"""
    timesteps_done: int = 0
    timesteps: int = 0

    @property
    def env_share(self) -> float:
        return self.env_time_s / self.wall_time_s if self.wall_time_s > 0 else float("nan")


class RunExistsError(FileExistsError):
    """The run directory already holds a finished run."""


def _entries(run_dir: Path) -> list[Path]:
    """What a run directory holds besides its lock file (nothing if it does not exist)."""
    if not run_dir.is_dir():
        return []
    return [e for e in run_dir.iterdir() if e.name != LOCK_FILE]


@contextmanager
def locked_run_dir(run_dir: Path, overwrite: bool) -> Iterator[None]:
    """Create (or, with ``overwrite``, empty) ``run_dir`` and hold its lock while in the block.

    The lock is ``fcntl.flock`` on ``RUN_DIR/.lock``: the kernel releases it when the
    process ends however it ends, so a crashed training leaves no stale lock.

    Raises:
        OptionError: ``run_dir`` (or a parent) is a file.
        RunExistsError: ``run_dir`` holds files and ``overwrite`` is false.
        RunDirError: another training holds the lock.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise OptionError(f"--out {run_dir}: is a file, not a run directory")
    if _entries(run_dir) and not overwrite:  # before writing anything
        raise RunExistsError(f"{run_dir}: not empty; pass --overwrite to replace it")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OptionError(f"--out {run_dir}: cannot create the run directory: {exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise RunDirError(
                f"{run_dir}: in use by another training (pid {holder}); wait for it to end "
                "or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        entries = _entries(run_dir)  # again: another training may have ended meanwhile
        if entries and not overwrite:
            raise RunExistsError(f"{run_dir}: not empty; pass --overwrite to replace it")
        for e in entries:
            if e.is_dir() and not e.is_symlink():
                shutil.rmtree(e)
            else:
                e.unlink()
        yield
    finally:
        os.close(fd)  # releases the lock; the empty lock file stays (harmless, reused)


def _resolve(cfg: TrainConfig) -> tuple[ScenarioModel, str, Any, int]:
    """(scenario, its label, hyperparameters, timesteps) of a training configuration."""
    from edgerl.agents.hyperparams import load_hyperparams

    scenario, scenario_label = runinfo.resolve_scenario(cfg.scenario, cfg.scenario_set)
    overrides = list(cfg.hp)
    if cfg.n_envs is not None:
        overrides.append(f"n_envs={cfg.n_envs}")
    if cfg.vec_env is not None:
        overrides.append(f"vec_env={cfg.vec_env}")
    hp = load_hyperparams(cfg.algo, scenario.cfg.name, overrides, cfg.hyperparams_file)
    timesteps = cfg.timesteps if cfg.timesteps is not None else int(hp.run["n_timesteps"])
    if timesteps < 1:
        raise OptionError(f"--timesteps must be >= 1, got {timesteps}")
    return scenario, scenario_label, hp, timesteps


def config_fingerprint(record: Mapping[str, Any]) -> str:
    """sha256 of everything that determines a trained policy, read from a run record
    (``run.json``, or :func:`planned_record` before training): the scenario's fingerprint,
    the algorithm, the seed, the timesteps and the hyperparameters (their values, not the
    path of the file they came from)."""
    hp = record["hyperparams"]
    key = {
        "scenario_fingerprint": record["scenario_fingerprint"],
        "algo": record["algo"],
        "seed": record["seed"],
        "timesteps": record["timesteps"],
        "algo_kwargs": hp["algo_kwargs"],
        "run": hp["run"],
    }
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def planned_record(cfg: TrainConfig) -> dict[str, Any]:
    """The fields of ``run.json`` that :func:`config_fingerprint` reads, for a run that
    ``cfg`` would train (nothing is trained)."""
    scenario, _, hp, timesteps = _resolve(cfg)
    return {
        "scenario_fingerprint": scenario_fingerprint(scenario.cfg),
        "algo": cfg.algo,
        "seed": cfg.seed,
        "timesteps": timesteps,
        "hyperparams": hp.to_json(),
    }


def train(cfg: TrainConfig) -> TrainResult:
    """Train per ``cfg``; returns where the run directory is and how long it took."""
    # 1. scenario and hyperparameters
    scenario, scenario_label, hp, timesteps = _resolve(cfg)

    # 2. run directory (locked while we write it)
    rid = runinfo.run_id(cfg.algo, scenario_label, cfg.seed)
    run_dir = Path(cfg.out) if cfg.out is not None else DEFAULT_RUNS_DIR / rid
    with locked_run_dir(run_dir, cfg.overwrite):
        return _train_into(cfg, run_dir, rid, scenario, scenario_label, hp, timesteps)


def _train_into(
    cfg: TrainConfig,
    run_dir: Path,
    rid: str,
    scenario: ScenarioModel,
    scenario_label: str,
    hp: Any,
    timesteps: int,
) -> TrainResult:
    """Steps 2-5 of :func:`train`, in the locked, empty ``run_dir``."""
    import torch
    from edgerl.agents.learned import make_model
    from edgerl.agents.training import ClampedProgressBar, HeldOutEvalCallback, make_train_env
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback

    (run_dir / SCENARIO_YAML).write_text(scenario_yaml_text(scenario.cfg), encoding="utf-8")
    source = source_yaml_text(scenario.cfg)
    if source is not None:
        (run_dir / SCENARIO_SOURCE_YAML).write_text(source, encoding="utf-8")
    started = runinfo.now_iso()

    # 3. envs, model, callbacks
    torch.set_num_threads(cfg.torch_threads)
    n_envs = int(hp.run["n_envs"])
    venv = make_train_env(
        scenario,
        n_envs,
        cfg.seed,
        str(hp.run["vec_env"]),
        normalize_reward=bool(hp.run["normalize_reward"]),
        gamma=float(hp.algo_kwargs.get("gamma", 0.99)),
    )
    timer = venv.timer
    model = make_model(
        hp,
        venv,
        cfg.seed,
        tensorboard_log=str(run_dir / "tb") if cfg.tensorboard else None,
        verbose=cfg.verbose,
    )
    eval_cb = HeldOutEvalCallback(
        scenario,
        cfg.algo,
        run_dir,
        int(hp.run["eval_freq"]),
        int(hp.run["eval_episodes"]),
        cfg.seed,
        timed_env=timer,
        eval_horizon_s=hp.run["eval_horizon_s"],
        on_eval=cfg.on_eval,
    )
    ckpt_cb = CheckpointCallback(
        save_freq=max(int(hp.run["checkpoint_freq"]) // n_envs, 1),
        save_path=str(run_dir / "checkpoints"),
        name_prefix=cfg.algo,
    )

    # 4. learn
    t0 = time.perf_counter()
    callbacks = [eval_cb, ckpt_cb] + ([ClampedProgressBar.make()] if cfg.progress_bar else [])
    interrupted = False
    try:
        model.learn(total_timesteps=timesteps, callback=CallbackList(callbacks), tb_log_name="run")
    except KeyboardInterrupt:  # Ctrl-C: keep what was learned, and say the run is partial
        interrupted = True
        print(
            f"\ninterrupted after {model.num_timesteps:,} of {timesteps:,} steps; saving the "
            f"model so far to {run_dir / FINAL_MODEL} (run.json: interrupted)",
            file=sys.stderr,
            flush=True,
        )
    wall_s = time.perf_counter() - t0
    model.save(str(run_dir / FINAL_MODEL))
    try:
        venv.close()
    except (EOFError, OSError):  # subprocess workers may have died with the Ctrl-C
        if not interrupted:
            raise
    if eval_cb.rows:
        plot_learning_curves(
            {cfg.algo: [run_dir]},
            run_dir / "learning_curve.png",
            f"{scenario_label}, seed {cfg.seed}",
        )

    # 5. run.json (written last)
    record = {
        "schema_version": RUN_SCHEMA_VERSION,
        "run_id": rid,
        "scenario": scenario_label,
        "scenario_name": scenario.cfg.name,
        "scenario_fingerprint": scenario_fingerprint(scenario.cfg),
        "scenario_set": list(cfg.scenario_set),
        "algo": cfg.algo,
        "seed": cfg.seed,
        "timesteps": timesteps,
        "timesteps_done": int(model.num_timesteps),
        "hyperparams": hp.to_json(),
        "git_commit": runinfo.git_commit(),
        "versions": runinfo.versions(),
        "started": started,
        "finished": runinfo.now_iso(),
        "wall_time_s": wall_s,
        "env_time_s": timer.env_time_s,
        "env_time_share": timer.env_time_s / wall_s if wall_s > 0 else None,
        "eval_callback_time_s": eval_cb.eval_time_s,
        "env_time_note": (
            "env_time_s: wall time inside reset/step_async/step_wait of the training VecEnv; "
            "the held-out evaluation callback (eval_callback_time_s, its own env and policy "
            "calls) is part of wall_time_s but not of env_time_s"
        ),
        "best_eval_utility": eval_cb.best,
        "n_envs": n_envs,
        "torch_threads": cfg.torch_threads,
        "command": cfg.command if cfg.command is not None else runinfo.command_line(),
        "interrupted": interrupted,
    }
    record["config_fingerprint"] = config_fingerprint(record)
    (run_dir / RUN_JSON).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return TrainResult(
        run_dir,
        wall_s,
        timer.env_time_s,
        eval_cb.eval_time_s,
        eval_cb.best,
        eval_cb.rows,
        interrupted=interrupted,
        timesteps_done=int(model.num_timesteps),
        timesteps=timesteps,
    )
