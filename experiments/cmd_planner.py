"""``edgerl export``, ``edgerl plan`` and ``edgerl bench planner``: the runtime planner.

- ``export RUN_DIR --out DIR``: the run's policy -> ``DIR/planner.json``,
  ``DIR/policy_weights.bin`` and ``DIR/policy.onnx``
  (:mod:`edgerl.experiments.export`), then a parity check against the SB3 policy on held-out
  observations.
- ``plan DIR --state state.json``: one decision from raw measurements, printed as JSON.
- ``bench planner DIR``: decision latency of ``Planner.plan`` per call on both backends
  (numpy, onnx) and, in the same run, the per-decision search time of an online baseline
  (Edgent by default); ratios and JSON.

Heavy imports (torch, SB3, the simulator) stay inside the functions that need them.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer
from edgerl.experiments import runinfo
from edgerl.experiments.cli import app, bench_app
from edgerl.experiments.errors import fail

if TYPE_CHECKING:
    from edgerl.agents.planner import Planner
    from edgerl.envs.sim.build import ScenarioModel

#: Issue 24 targets: decision latency p99 per plan() call [us] (issue 6 had 100) and the
#: in-loop p50 speed-up over the baseline's per-decision search; issue 6: artefact size [bytes].
TARGET_P99_US = 50.0
TARGET_SPEEDUP_P50 = 3.0
TARGET_ARTEFACT_BYTES = 1_000_000
NS_PER_US = 1e3
PERCENTILES = (50, 90, 99)
#: Round r of the benchmark starts at episode seed ``seed + stride * r`` (fresh episodes).
EPISODES_PER_ROUND_SEED_STRIDE = 1000


def _fail(msg: str) -> typer.Exit:
    """One line on stderr; the exit (status 2) to raise (:func:`edgerl.experiments.errors.fail`)."""
    return fail(msg)


# ---------------------------------------------------------------------------- export / plan


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="training run directory (run.json, model.zip, ...)"),
    out: Path = typer.Option(
        ..., "--out", help="artefact directory (planner.json, policy_weights.bin, policy.onnx)"
    ),
    checkpoint: str = typer.Option(
        "best", help="'best' (best_model.zip, else model.zip) or 'final' (model.zip)"
    ),
    parity: int = typer.Option(
        10_000, help="held-out observations compared with the SB3 policy after export (0: skip)"
    ),
    seed: int = typer.Option(0, help="first seed of the held-out parity episodes"),
) -> None:
    """Export a trained policy to a runtime planner (JSON spec, raw float32 weights and an
    ONNX graph; no pickle)."""
    from edgerl.agents.planner import PlannerError
    from edgerl.agents.rundir import read_run
    from edgerl.experiments.errors import print_error
    from edgerl.experiments.export import export_run, parity_check

    if parity < 0:
        raise _fail(f"--parity must be >= 0 (0 skips the check), got {parity}")
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out}: is a file; give a directory for policy.onnx and planner.json")
    try:
        info = read_run(run_dir)
        typer.echo(f"model: {info.model_path('final' if checkpoint == 'final' else 'best')}")
        note = info.interrupted_note()
        if note is not None:
            print_error(note, prefix="warning")
        res = export_run(run_dir, out, checkpoint=checkpoint)
    except (ValueError, OSError) as exc:  # ExportError, RunDirError, PlannerError, ConfigError
        raise _fail(str(exc)) from exc
    typer.echo(f"wrote {res.out_dir}/policy.onnx and planner.json")
    typer.echo(
        f"wrote {res.out_dir}/policy.onnx ({res.policy_bytes:,} B, sha256 {res.sha256[:16]}...), "
        f"policy_weights.bin ({res.weights_bytes:,} B) and planner.json; "
        f"artefact {res.artefact_bytes:,} B; "
        f"{res.n_features} features, {res.n_actions} plans"
    )
    if parity <= 0:
        return
    try:
        rep = parity_check(run_dir, out, parity, seed=seed, checkpoint=checkpoint)
    except (ValueError, PlannerError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(
        f"parity on {rep.n_observations:,} observations of {rep.n_episodes} held-out episodes: "
        f"plan(raw state) == SB3 on {rep.n_equal_plan:,} (numpy) / {rep.n_equal_plan_onnx:,} "
        f"(onnx), predict(obs) == SB3 on "
        f"{rep.n_equal_predict:,}, observation rebuilt bit-exactly on {rep.n_obs_identical:,}; "
        f"SB3 chose {rep.n_distinct_actions} distinct plan(s)"
    )
    if not rep.ok:
        raise _fail(f"parity check failed; first mismatches (obs, sb3, planner): {rep.mismatches}")


def read_state(path: Path) -> dict[str, Any]:
    """A raw state from a JSON file ('-' = stdin): an object of feature name -> number."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the state file: {exc}") from exc
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(
            f"{path}: expected a JSON object of feature name -> number, got {type(state).__name__}"
        )
    return state


@app.command("plan")
def plan_cmd(
    planner_dir: Path = typer.Argument(..., help="exported planner directory"),
    state: Path = typer.Option(
        None, "--state", help="JSON object with every observation feature in raw units ('-': stdin)"
    ),
    example_state: bool = typer.Option(
        False,
        "--example-state",
        help="print a valid state file (a real held-out state of the planner's scenario) and exit",
    ),
) -> None:
    """Decide one request with an exported planner; prints the plan as JSON."""
    from edgerl.agents.planner import Planner, StateOutOfRangeWarning

    try:
        planner = Planner.load(planner_dir)
        if example_state:
            typer.echo(json.dumps(example_state_of(planner), indent=2))
            return
        if state is None:
            raise _fail("give --state FILE (or --example-state to print one)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StateOutOfRangeWarning)
            plan = planner.plan(read_state(state))
    except ValueError as exc:  # PlannerError, ObservationError
        raise _fail(str(exc)) from exc
    for w in caught:
        typer.secho(f"warning: {w.message}", fg="yellow", err=True)
    typer.echo(json.dumps(plan.to_dict(), indent=2))


def example_state_of(planner: Any) -> dict[str, float]:
    """A real state: what the device measured at the first request of a held-out episode
    (seed 0) of the scenario recorded in ``planner.json`` (fingerprint-checked), so every
    feature is consistent with the others. If that scenario cannot be rebuilt here, each
    feature at the middle of its training range (with a warning)."""
    from edgerl.envs.config import ConfigError
    from edgerl.experiments.errors import print_error
    from edgerl.experiments.export import example_state

    try:
        return example_state(_scenario_of(planner, None))
    except (ValueError, ConfigError) as exc:  # PlannerError, ProfileError: not rebuildable
        print_error(
            f"{exc}; the example state is the middle of the training range instead of a real state",
            prefix="warning",
        )
    rng = planner.spec["observation"]["training_range"]
    state = {
        f.name: float(lo) if f.unit == "indicator" else (lo + hi) / 2
        for f, lo, hi in zip(planner.features, rng["low"], rng["high"], strict=True)
    }
    apps = [f.name for f in planner.features if f.unit == "indicator" and f.name.startswith("app_")]
    for i, name in enumerate(apps):
        state[name] = 1.0 if i == 0 else 0.0
    return state


# ---------------------------------------------------------------------------- bench


@dataclass(frozen=True)
class LatencyStats:
    """Per-call wall time of one decision function [us]."""

    calls: int
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    max_us: float

    @classmethod
    def of(cls, ns: np.ndarray) -> LatencyStats:
        us = ns / NS_PER_US
        p50, p90, p99 = (float(v) for v in np.percentile(us, PERCENTILES))
        return cls(len(us), p50, p90, p99, float(us.mean()), float(us.max()))


@dataclass(frozen=True)
class PlannerBenchResult:
    """``edgerl bench planner`` output (also written as JSON).

    *In-loop* times are taken while the policy drives held-out episodes (the simulator runs
    between two decisions, as other work would on a device); *hot* times call the decision
    function back to back on the states recorded in the planner's episodes. ``*_cpu`` is the
    thread's CPU time over the same calls. ``planner_*`` is the numpy backend (the
    default), ``planner_onnx_*`` the onnx backend, both ``Planner.plan(raw state dict)``.
    The baseline's hot loop is only measured for deployable baselines (they decide from the
    observation alone, so replaying recorded observations is valid). ``ratio_*`` are
    baseline time / planner time (numpy), ``ratio_onnx_*`` baseline / planner (onnx) and
    ``speedup_numpy_over_onnx_*`` onnx / numpy, all from the same run.
    """

    planner_dir: str
    scenario: str
    baseline: str
    baseline_deployable: bool
    rounds: int
    warmup_calls: int
    planner_in_loop: LatencyStats
    planner_onnx_in_loop: LatencyStats
    baseline_in_loop: LatencyStats
    planner_in_loop_cpu: LatencyStats
    planner_onnx_in_loop_cpu: LatencyStats
    baseline_in_loop_cpu: LatencyStats
    planner_hot: LatencyStats
    planner_onnx_hot: LatencyStats
    baseline_hot: LatencyStats | None
    ratio_p50_in_loop: float
    ratio_p99_in_loop: float
    ratio_mean_in_loop: float
    ratio_p50_hot: float | None
    ratio_p99_hot: float | None
    ratio_onnx_p50_in_loop: float
    ratio_onnx_p99_in_loop: float
    ratio_onnx_p50_hot: float | None
    speedup_numpy_over_onnx_p50_in_loop: float
    speedup_numpy_over_onnx_p50_hot: float
    decisions_compared: int
    decisions_equal_numpy_onnx: int
    policy_bytes: int
    weights_bytes: int
    artefact_bytes: int
    target_p99_us: float
    target_speedup_p50: float
    target_artefact_bytes: int
    p99_target_met_in_loop: bool
    p99_target_met_hot: bool
    speedup_target_met_in_loop: bool
    size_target_met: bool
    method: str
    command: str
    git_commit: str
    machine: dict[str, Any]


def _scenario_of(planner: Planner, scenario: str | None) -> ScenarioModel:
    """The scenario to benchmark on: ``scenario`` or the one recorded in ``planner.json``,
    checked against the recorded fingerprint."""
    from edgerl.agents.planner import PlannerError
    from edgerl.agents.rundir import scenario_fingerprint
    from edgerl.envs.sim.build import scenario_model

    rec = planner.spec.get("scenario", {})
    name = scenario or rec.get("source") or rec.get("name")
    if not name:
        raise PlannerError(f"{planner.directory}: planner.json names no scenario; pass --scenario")
    model = scenario_model(str(name))
    fp = scenario_fingerprint(model.cfg)
    if fp != rec.get("fingerprint_sha256"):
        raise PlannerError(
            f"scenario {name!r} (sha256 {fp}) is not the one the planner was trained on "
            f"(sha256 {rec.get('fingerprint_sha256')}); pass --scenario RUN_DIR/scenario.yaml"
        )
    return model


def _timed_rollout(
    env: Any,
    prepare: Callable[[np.ndarray], Any],
    decide: Callable[[Any], int],
    n_calls: int,
    warmup: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Run held-out episodes (seeds ``seed, seed + 1, ...``) deciding with
    ``decide(prepare(observation))``; only ``decide`` is timed, and the first ``warmup`` calls
    are not kept.

    Returns:
        Wall time (``perf_counter_ns``) and CPU time of this thread (``thread_time_ns``, not
        counting time the thread is preempted by other processes) of every kept call [ns].
    """
    wall = np.empty(n_calls, dtype=np.int64)
    cpu = np.empty(n_calls, dtype=np.int64)
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    n = -warmup
    episode = 0
    while n < n_calls:
        obs, _ = env.reset(seed=seed + episode)
        episode += 1
        truncated = False
        while not truncated and n < n_calls:
            arg = prepare(obs)
            c0 = cpu_clock()
            t0 = clock()
            a = decide(arg)
            t1 = clock()
            c1 = cpu_clock()
            if n >= 0:
                wall[n] = t1 - t0
                cpu[n] = c1 - c0
            n += 1
            obs, _, _, truncated, _ = env.step(a)
    return wall, cpu


def bench_planner(
    planner_dir: str | Path,
    *,
    scenario: str | None = None,
    model: ScenarioModel | None = None,
    calls: int = 20_000,
    warmup: int = 1_000,
    rounds: int = 3,
    baseline: str = "edgent",
    seed: int = 0,
) -> PlannerBenchResult:
    """Time ``Planner.plan`` (numpy and onnx backends) and a baseline's ``predict`` per
    decision, in one process.

    All three policies drive the held-out episodes of the planner's scenario (the same
    seeds); only the decision call is timed (``plan(raw state dict)`` for the planner: the
    runtime path, validation included; ``predict(observation, mask)`` for the baseline,
    whose ``bind`` set-up is not timed). ``rounds`` alternate the three so background load
    on a shared machine hits them alike; every round starts with ``warmup`` untimed calls.
    """
    from edgerl.agents.baselines import BASELINES, make_baseline
    from edgerl.agents.planner import (
        POLICY_FILE,
        SPEC_FILE,
        WEIGHTS_FILE,
        Planner,
        StateOutOfRangeWarning,
    )
    from edgerl.envs.env import CollabInferenceEnv

    if calls < rounds or rounds < 1 or warmup < 0:
        raise ValueError("need rounds >= 1, calls >= rounds and warmup >= 0")
    planner = Planner.load(planner_dir)
    planner_onnx = Planner.load(planner_dir, backend="onnx")
    model = model if model is not None else _scenario_of(planner, scenario)
    env = CollabInferenceEnv(model, split="eval")
    planner.bind(env)
    base = make_baseline(baseline)
    base.bind(env)
    inner = env.unwrapped
    plan, plan_onnx, raw_state_dict = planner.plan, planner_onnx.plan, inner.raw_state_dict
    predict, masks = base.predict, inner.action_masks

    def planner_input(_obs: np.ndarray) -> dict[str, float]:
        return raw_state_dict()  # what the device measured (gathering it is not timed)

    def planner_decide(state: dict[str, float]) -> int:
        return plan(state).index

    def planner_onnx_decide(state: dict[str, float]) -> int:
        return plan_onnx(state).index

    def baseline_input(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return obs, masks()

    def baseline_decide(arg: tuple[np.ndarray, np.ndarray]) -> int:
        return predict(arg[0], arg[1])

    recorded: list[tuple[dict[str, float], np.ndarray, np.ndarray]] = []

    def planner_recording_input(obs: np.ndarray) -> dict[str, float]:
        state = raw_state_dict()
        recorded.append((state, obs.copy(), masks().copy()))
        return state

    load_start = os.getloadavg()
    per_round = calls // rounds
    loops: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"np": [], "onnx": [], "base": []}
    hot: dict[str, list[np.ndarray]] = {"np": [], "onnx": [], "base": []}
    with warnings.catch_warnings():
        # A held-out state outside the training range is decided (and counted) as usual.
        warnings.simplefilter("ignore", StateOutOfRangeWarning)
        for r in range(rounds):
            round_seed = seed + EPISODES_PER_ROUND_SEED_STRIDE * r
            prep = planner_recording_input if r == 0 else planner_input
            loops["np"].append(
                _timed_rollout(env, prep, planner_decide, per_round, warmup, round_seed)
            )
            loops["onnx"].append(
                _timed_rollout(
                    env, planner_input, planner_onnx_decide, per_round, warmup, round_seed
                )
            )
            base.reset(seed=round_seed)
            loops["base"].append(
                _timed_rollout(env, baseline_input, baseline_decide, per_round, warmup, round_seed)
            )
            kept = recorded[warmup:]  # the timed decisions of round 0
            states = [st for st, _, _ in kept]
            hot["np"].append(_hot_loop(planner_decide, states, warmup))
            hot["onnx"].append(_hot_loop(planner_onnx_decide, states, warmup))
            if BASELINES[baseline].deployable:
                hot["base"].append(_hot_loop(baseline_decide, [(o, m) for _, o, m in kept], warmup))
        states = [st for st, _, _ in recorded]
        equal = sum(
            a.index == b.index
            for a, b in zip(planner.plan_many(states), planner_onnx.plan_many(states), strict=True)
        )
    load_end = os.getloadavg()

    def stats(parts: list[np.ndarray]) -> LatencyStats:
        return LatencyStats.of(np.concatenate(parts))

    wall = {k: stats([w for w, _ in v]) for k, v in loops.items()}
    cpu = {k: stats([c for _, c in v]) for k, v in loops.items()}
    p_hot, o_hot = stats(hot["np"]), stats(hot["onnx"])
    b_hot = stats(hot["base"]) if hot["base"] else None
    p_loop, o_loop, b_loop = wall["np"], wall["onnx"], wall["base"]
    d = Path(planner_dir)
    policy_bytes = (d / POLICY_FILE).stat().st_size
    weights_bytes = (d / WEIGHTS_FILE).stat().st_size
    artefact_bytes = policy_bytes + weights_bytes + (d / SPEC_FILE).stat().st_size
    import onnxruntime

    return PlannerBenchResult(
        planner_dir=str(d),
        scenario=model.cfg.name,
        baseline=baseline,
        baseline_deployable=BASELINES[baseline].deployable,
        rounds=rounds,
        warmup_calls=warmup,
        planner_in_loop=p_loop,
        planner_onnx_in_loop=o_loop,
        baseline_in_loop=b_loop,
        planner_in_loop_cpu=cpu["np"],
        planner_onnx_in_loop_cpu=cpu["onnx"],
        baseline_in_loop_cpu=cpu["base"],
        planner_hot=p_hot,
        planner_onnx_hot=o_hot,
        baseline_hot=b_hot,
        ratio_p50_in_loop=b_loop.p50_us / p_loop.p50_us,
        ratio_p99_in_loop=b_loop.p99_us / p_loop.p99_us,
        ratio_mean_in_loop=b_loop.mean_us / p_loop.mean_us,
        ratio_p50_hot=b_hot.p50_us / p_hot.p50_us if b_hot is not None else None,
        ratio_p99_hot=b_hot.p99_us / p_hot.p99_us if b_hot is not None else None,
        ratio_onnx_p50_in_loop=b_loop.p50_us / o_loop.p50_us,
        ratio_onnx_p99_in_loop=b_loop.p99_us / o_loop.p99_us,
        ratio_onnx_p50_hot=b_hot.p50_us / o_hot.p50_us if b_hot is not None else None,
        speedup_numpy_over_onnx_p50_in_loop=o_loop.p50_us / p_loop.p50_us,
        speedup_numpy_over_onnx_p50_hot=o_hot.p50_us / p_hot.p50_us,
        decisions_compared=len(states),
        decisions_equal_numpy_onnx=int(equal),
        policy_bytes=policy_bytes,
        weights_bytes=weights_bytes,
        artefact_bytes=artefact_bytes,
        target_p99_us=TARGET_P99_US,
        target_speedup_p50=TARGET_SPEEDUP_P50,
        target_artefact_bytes=TARGET_ARTEFACT_BYTES,
        p99_target_met_in_loop=p_loop.p99_us <= TARGET_P99_US,
        p99_target_met_hot=p_hot.p99_us <= TARGET_P99_US,
        speedup_target_met_in_loop=b_loop.p50_us / p_loop.p50_us >= TARGET_SPEEDUP_P50,
        size_target_met=artefact_bytes <= TARGET_ARTEFACT_BYTES,
        method=(
            "per-call wall time (time.perf_counter_ns) and thread CPU time "
            "(time.thread_time_ns) around Planner.plan(raw state dict) on the numpy and the "
            f"onnx backend and {baseline}.predict(observation, mask); in-loop: each policy "
            "drives held-out episodes (split='eval'), the simulator running between "
            "decisions; hot: back-to-back calls on the states of the numpy planner's first "
            f"round; {rounds} alternating rounds (numpy, onnx, {baseline}), {warmup} untimed "
            "warm-up calls each; onnxruntime: 1 intra-op thread, sequential; "
            "decisions_equal_numpy_onnx: plan_many on every state of the first round, both "
            "backends"
        ),
        command=runinfo.command_line(),
        git_commit=runinfo.git_commit(),
        machine={
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "loadavg_1min_start": load_start[0],
            "loadavg_1min_end": load_end[0],
            "python": platform.python_version(),
            "numpy": np.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    )


def _hot_loop(decide: Callable[[Any], int], args: list[Any], warmup: int) -> np.ndarray:
    """Wall time of ``decide(a)`` for each ``a`` of ``args``, back to back, after ``warmup``
    untimed calls (cycling through ``args``) [ns]."""
    for i in range(warmup):
        decide(args[i % len(args)])
    out = np.empty(len(args), dtype=np.int64)
    clock = time.perf_counter_ns
    for i, a in enumerate(args):
        t0 = clock()
        decide(a)
        out[i] = clock() - t0
    return out


@bench_app.command("planner")
def bench_planner_cmd(
    planner_dir: Path = typer.Argument(..., help="exported planner directory"),
    scenario: str = typer.Option(
        None, help="scenario name or YAML (default: the one in planner.json, fingerprint-checked)"
    ),
    calls: int = typer.Option(20_000, help="timed decisions per policy (split over the rounds)"),
    warmup: int = typer.Option(1_000, help="untimed decisions at the start of every round"),
    rounds: int = typer.Option(3, help="alternating planner/baseline rounds"),
    baseline: str = typer.Option("edgent", help="baseline whose per-decision search is timed"),
    seed: int = typer.Option(0, help="first held-out episode seed"),
    out: Path = typer.Option(Path("runs/bench/planner.json"), help="JSON result file"),
) -> None:
    """Planner decision latency (numpy and onnx backends, p50/p99 per plan() call) vs a
    baseline's online search."""
    try:
        r = bench_planner(
            planner_dir,
            scenario=scenario,
            calls=calls,
            warmup=warmup,
            rounds=rounds,
            baseline=baseline,
            seed=seed,
        )
    except (ValueError, KeyError) as exc:  # PlannerError, UnknownBaselineError, ConfigError
        raise _fail(str(exc)) from exc
    p = r.planner_in_loop
    typer.echo(
        f"scenario {r.scenario}, {p.calls:,} timed decisions per policy and measure, "
        f"{r.rounds} rounds, load average {r.machine['loadavg_1min_start']:.2f} -> "
        f"{r.machine['loadavg_1min_end']:.2f} on {r.machine['cpu_count']} CPUs"
    )
    rows: list[tuple[str, LatencyStats | None]] = [
        ("planner numpy plan() in-loop wall", p),
        ("planner onnx  plan() in-loop wall", r.planner_onnx_in_loop),
        (f"{r.baseline} predict() in-loop wall", r.baseline_in_loop),
        ("planner numpy plan() in-loop cpu", r.planner_in_loop_cpu),
        ("planner onnx  plan() in-loop cpu", r.planner_onnx_in_loop_cpu),
        (f"{r.baseline} predict() in-loop cpu", r.baseline_in_loop_cpu),
        ("planner numpy plan() hot wall", r.planner_hot),
        ("planner onnx  plan() hot wall", r.planner_onnx_hot),
        (f"{r.baseline} predict() hot wall", r.baseline_hot),
    ]
    for label, st in rows:
        if st is not None:
            typer.echo(
                f"{label:<36} p50 {st.p50_us:7.1f} us  p90 {st.p90_us:7.1f} us  "
                f"p99 {st.p99_us:7.1f} us  mean {st.mean_us:7.1f} us"
            )

    def hot(x: float | None) -> str:
        return f"{x:.2f}x" if x is not None else "n/a"

    typer.echo(
        f"ratio {r.baseline}/planner numpy: in-loop p50 {r.ratio_p50_in_loop:.2f}x, "
        f"p99 {r.ratio_p99_in_loop:.2f}x; hot p50 {hot(r.ratio_p50_hot)}, "
        f"p99 {hot(r.ratio_p99_hot)}"
    )
    typer.echo(
        f"ratio {r.baseline}/planner onnx: in-loop p50 {r.ratio_onnx_p50_in_loop:.2f}x, "
        f"p99 {r.ratio_onnx_p99_in_loop:.2f}x; hot p50 {hot(r.ratio_onnx_p50_hot)}"
    )
    typer.echo(
        f"planner numpy vs onnx: {r.speedup_numpy_over_onnx_p50_in_loop:.2f}x faster in-loop "
        f"p50, {r.speedup_numpy_over_onnx_p50_hot:.2f}x hot p50; same decision on "
        f"{r.decisions_equal_numpy_onnx:,}/{r.decisions_compared:,} states"
    )

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    typer.echo(
        f"targets (numpy): in-loop p50 >= {TARGET_SPEEDUP_P50:.0f}x {r.baseline} "
        f"{verdict(r.speedup_target_met_in_loop)}; p99 <= {TARGET_P99_US:.0f} us in-loop "
        f"{verdict(r.p99_target_met_in_loop)}, hot {verdict(r.p99_target_met_hot)} (on an "
        f"otherwise idle machine); artefact {r.artefact_bytes:,} B <= "
        f"{TARGET_ARTEFACT_BYTES:,} B {verdict(r.size_target_met)}"
    )
    typer.echo(f"wrote {runinfo.write_result_json(r, out)}")
