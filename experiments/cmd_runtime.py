"""``edgerl runtime edge|cloud|device|run``: the split-inference runtime (:mod:`edgerl.runtime`).

``run`` starts the three roles as processes on loopback, replays a short workload, prints the
per-stage latency table and stops everything; the other three start one role each.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from edgerl.experiments.cli import app, bench_app

runtime_app = typer.Typer(
    help="Split-inference runtime: device, edge and cloud processes running real model segments.",
    no_args_is_help=True,
)
app.add_typer(runtime_app, name="runtime")

_SCENARIO = typer.Option("edgent-rpi", "--scenario", help="scenario name or YAML file")
_SET = typer.Option([], "--set", help="scenario override KEY=VALUE (repeatable)")
_SEED = typer.Option(0, "--seed", help="seed of the episode (traces, arrivals, inputs)")
_SPLIT = typer.Option("eval", "--split", help="trace split: train | eval")
_HOST = typer.Option("127.0.0.1", "--host", help="bind address (non-loopback needs --token)")
_TOKEN = typer.Option(
    None, "--token", envvar="EDGERL_RUNTIME_TOKEN", help="shared token peers must present"
)
_CPUS = typer.Option(None, "--cpus", help="cores to pin to, e.g. 0,1 (default: per role)")


def _fail(msg: str) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code=1)


def _cpus(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(c) for c in value.split(",") if c.strip()]
    except ValueError:
        raise _fail(f"--cpus {value!r}: expected comma-separated core numbers") from None


def _errors() -> tuple[type[Exception], ...]:
    from edgerl.envs.config import ConfigError
    from edgerl.runtime.common import RoleError
    from edgerl.runtime.workload import SetupError

    return (ConfigError, RoleError, SetupError, OSError, ConnectionError)


@runtime_app.command("cloud")
def cloud_cmd(
    scenario: str = _SCENARIO, set_: list[str] = _SET, seed: int = _SEED, split: str = _SPLIT,
    host: str = _HOST, port: int = typer.Option(7002, "--port", help="port (0: any free)"),
    token: str | None = _TOKEN, cpus: str | None = _CPUS,
) -> None:  # fmt: skip
    """Serve the cloud role (the last segment of forwarded requests)."""
    from edgerl.runtime.roles import serve_cloud

    try:
        serve_cloud(scenario, set_, seed, split, host, port, token, _cpus(cpus))
    except _errors() as exc:
        raise _fail(str(exc)) from None


@runtime_app.command("edge")
def edge_cmd(
    scenario: str = _SCENARIO, set_: list[str] = _SET, seed: int = _SEED, split: str = _SPLIT,
    host: str = _HOST, port: int = typer.Option(7001, "--port", help="port (0: any free)"),
    token: str | None = _TOKEN, cpus: str | None = _CPUS,
    cloud: str | None = typer.Option(None, "--cloud", help="cloud server HOST:PORT"),
    window_ms: float | None = typer.Option(
        None, "--window-ms", help="batching window [ms] (default: edge.max_batch_wait_ms)"
    ),
) -> None:  # fmt: skip
    """Serve the edge role (batching, cache, the middle segment, relay to the cloud)."""
    from edgerl.runtime.roles import serve_edge

    try:
        serve_edge(scenario, set_, seed, split, host, port, token, _cpus(cpus), cloud, window_ms)
    except _errors() as exc:
        raise _fail(str(exc)) from None


_POLICY = typer.Option(
    "baseline:edgent", "--policy", help="planner:DIR | baseline:NAME | fixed:PLAN_INDEX"
)
_DURATION = typer.Option(3.0, "--duration-s", help="seconds of workload to replay")
_DATA = typer.Option(
    None, "--data", help="CIFAR-10 JPEG copy (e.g. ../shared/data/cifar10); absent: synthetic"
)
_TIMEOUT = typer.Option(10.0, "--timeout-s", help="longest wait for one request's answer [s]")


@runtime_app.command("device")
def device_cmd(
    scenario: str = _SCENARIO, set_: list[str] = _SET, seed: int = _SEED, split: str = _SPLIT,
    edge: str = typer.Option("127.0.0.1:7001", "--edge", help="edge server HOST:PORT"),
    token: str | None = _TOKEN, cpus: str | None = _CPUS, policy: str = _POLICY,
    duration_s: float = _DURATION, device: int = typer.Option(0, "--device"),
    log: Path = typer.Option(Path("runs/runtime/requests.jsonl"), "--log"),
    data: str | None = _DATA, timeout_s: float = _TIMEOUT,
) -> None:  # fmt: skip
    """Replay a device's workload against the edge; one JSON-lines record per request."""
    from edgerl.runtime.roles import run_device

    try:
        run_device(
            scenario, set_, seed, split, edge, token, _cpus(cpus), policy, duration_s, device,
            str(log), data, timeout_s,
        )  # fmt: skip
    except _errors() as exc:
        raise _fail(str(exc)) from None


@runtime_app.command("run")
def run_cmd(
    scenario: str = _SCENARIO, set_: list[str] = _SET, seed: int = _SEED, split: str = _SPLIT,
    policy: str = _POLICY, duration_s: float = _DURATION, data: str | None = _DATA,
    log: Path = typer.Option(Path("runs/runtime/requests.jsonl"), "--log"),
    timeout_s: float = _TIMEOUT,
    window_ms: float | None = typer.Option(None, "--window-ms", help="edge batching window [ms]"),
    placement: str | None = typer.Option(
        None, "--placement",
        help="cores of device, edge and cloud, e.g. 0,1,0 (default: one per role, or on 2 cores "
        "0,1,1)",
    ),
) -> None:  # fmt: skip
    """Start cloud, edge and device on loopback, run a short workload, print the stage table."""
    from edgerl.runtime.launch import read_log, run_local, stage_table

    roles = ("device", "edge", "cloud")
    where = None
    if placement is not None:
        parts = [c.strip() for c in placement.split(",")]
        if len(parts) != len(roles) or not all(c.isdigit() for c in parts):
            raise _fail(f"--placement {placement!r}: expected three core numbers, e.g. 0,1,0")
        where = dict(zip(roles, parts, strict=True))

    common = ["--scenario", scenario, "--seed", str(seed), "--split", split]
    for s in set_:
        common += ["--set", s]
    dev = ["--policy", policy, "--duration-s", str(duration_s), "--timeout-s", str(timeout_s)]
    if data is not None:
        dev += ["--data", data]
    try:
        done = run_local(common, dev, log, duration_s + 4 * timeout_s, window_ms, where)
    except _errors() as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"runtime: {scenario} seed {seed}, policy {done.get('policy')}, inputs "
        f"{done.get('input_source')}; cores: cloud {done['cloud'].get('cpus')}, edge "
        f"{done['edge'].get('cpus')}, device {done.get('cpus')} (of "
        f"{len(os.sched_getaffinity(0))}); log {log}"
    )
    typer.echo(stage_table(read_log(log)))


@bench_app.command("runtime")
def bench_runtime_cmd(
    scenario: str = _SCENARIO, set_: list[str] = _SET, seed: int = _SEED,
    variant: str = typer.Option("fp32", "--variant"),
    rates: str = typer.Option("50,100,200,400", "--rates", help="offered loads [requests/s]"),
    duration_s: float = typer.Option(3.0, "--duration-s", help="seconds per offered load"),
    budget_ms: float = typer.Option(100.0, "--budget-ms", help="latency budget [ms]"),
    batch: int = typer.Option(8, "--batch", help="batch size with batching on"),
    window_ms: float = typer.Option(10.0, "--window-ms", help="batching window with it on [ms]"),
    out: Path = typer.Option(Path("runs/bench/runtime.json"), "--out"),
) -> None:  # fmt: skip
    """Edge server requests/s within a latency budget, batching off vs on, in one run."""
    from edgerl.experiments import runinfo
    from edgerl.runtime.bench import bench_runtime

    try:
        rate_list = tuple(float(r) for r in rates.split(","))
    except ValueError:
        raise _fail(f"--rates {rates!r}: expected comma-separated numbers") from None
    try:
        res = bench_runtime(scenario, tuple(set_), variant, rate_list, duration_s, budget_ms,
                            batch, window_ms, seed)  # fmt: skip
    except _errors() as exc:
        raise _fail(str(exc)) from None
    res.date = runinfo.now_iso()
    res.command = runinfo.command_line()
    typer.echo(f"{'batching':<9} {'offered/s':>9} {'done':>6} {'p50 ms':>8} {'p95 ms':>8} "
               f"{'good/s':>8}")  # fmt: skip
    for label, points in res.points.items():
        for p in points:
            typer.echo(
                f"{label:<9} {p.offered_per_s:>9.0f} {p.completed:>6} {p.p50_ms:>8.1f} "
                f"{p.p95_ms:>8.1f} {p.goodput_per_s:>8.1f}"
            )
    ratio = "n/a" if res.ratio_on_off is None else f"{res.ratio_on_off:.2f}x"
    typer.echo(
        f"goodput within {budget_ms:g} ms (p95 within budget): off {res.goodput_per_s['off']:.1f}"
        f"/s, on (b{batch}, {window_ms:g} ms) {res.goodput_per_s['on']:.1f}/s; on/off {ratio}"
    )
    typer.echo(f"wrote {runinfo.write_result_json(res, out)}")


@app.command("fidelity")
def fidelity_cmd(
    scenario: str = _SCENARIO, set_: list[str] = _SET, split: str = _SPLIT,
    seeds: str = typer.Option("0,1", "--seeds", help="episode seeds: each draws its traces"),
    rates: str | None = typer.Option(
        None, "--rates", help="arrival rates per s, comma-separated (default: the scenario's)"
    ),
    plans: str | None = typer.Option(None, "--plans", help="plan indices (default: a grid)"),
    policies: str = typer.Option(
        "", "--policies",
        help="policies to rank in both, comma-separated: planner:DIR, baseline:NAME, fixed:I",
    ),
    duration_s: float = typer.Option(5.0, "--duration-s"), data: str | None = _DATA,
    out: Path = typer.Option(Path("runs/fidelity/fidelity.json"), "--out"),
    plot: Path | None = typer.Option(None, "--plot", help="plot file (default: --out as .png)"),
    calibrate_seed: int | None = typer.Option(
        None, "--calibrate-seed",
        help="fit the simulator's execution block on a run of the grid with this seed first",
    ),
) -> None:  # fmt: skip
    """The same workload through the runtime and the simulator: per-plan and per-stage latency
    errors, a plot, and whether both rank the given policies alike."""
    from edgerl.experiments import runinfo
    from edgerl.experiments.fidelity_plot import plot_fidelity
    from edgerl.runtime.fidelity import fidelity

    def ints(value: str, opt: str) -> list[int]:
        try:
            return [int(p) for p in value.split(",") if p.strip()]
        except ValueError:
            raise _fail(f"{opt} {value!r}: expected comma-separated integers") from None

    try:
        rate_list = [float(r) for r in rates.split(",") if r.strip()] if rates else None
    except ValueError:
        raise _fail(f"--rates {rates!r}: expected comma-separated numbers") from None
    idx = ints(plans, "--plans") if plans else None
    seed_list = ints(seeds, "--seeds")
    if not seed_list:
        raise _fail("--seeds: give at least one seed")
    pols = [p.strip() for p in policies.split(",") if p.strip()]
    failures: tuple[type[Exception], ...] = (*_errors(), ValueError)
    try:
        res = fidelity(
            scenario,
            list(set_),
            idx,
            seed_list,
            duration_s,
            split,
            data,
            rate_list,
            pols,
            calibrate_seed,
            progress=lambda m: typer.echo(m, err=True),
        )
    except failures as exc:
        raise _fail(str(exc)) from None
    res.date, res.command = runinfo.now_iso(), runinfo.command_line()
    res.git_commit, res.versions = runinfo.git_commit(), runinfo.versions()
    res.machine = runinfo.machine_info()
    if res.calibration is not None:
        cal = res.calibration
        typer.echo(
            f"calibration (seed {cal.seed}, {cal.rate_per_s:g} req/s): decide "
            f"{cal.decide_median_ms:.2f} ms, unaccounted {cal.unaccounted_median_ms:.2f} ms; "
            + ", ".join(
                f"{t.tier} x{t.compute_scale:.2f} + {t.overhead_ms:.2f} ms" for t in cal.tiers
            )
        )
        if res.uncalibrated is not None:
            typer.echo(
                "uncalibrated simulator: relative error median "
                f"{res.uncalibrated.overall_rel_error_median:.1%}, p95 "
                f"{res.uncalibrated.overall_rel_error_p95:.1%}"
            )
    for i, c in enumerate(res.conditions):
        typer.echo(
            f"condition {i}: seed {c.seed}, {c.rate_per_s:g} req/s, uplink {c.uplink} "
            f"(mean {c.uplink_mean_mbps:.1f} Mbit/s)"
        )
    typer.echo(f"{'plan':<62} {'n':>4} {'rt ms':>7} {'sim ms':>7} {'err p50':>8} {'err p95':>8}")
    for p in res.plans:
        label = p.label.replace("/cache:none", "")
        typer.echo(
            f"{label[:62]:<62} {p.n_matched:>4} {p.runtime_median_ms:>7.1f} "
            f"{p.simulator_median_ms:>7.1f} {p.rel_error_median:>8.1%} {p.rel_error_p95:>8.1%}"
        )
    typer.echo(
        f"overall relative error of end-to-end latency: median "
        f"{res.overall_rel_error_median:.1%}, p95 {res.overall_rel_error_p95:.1%}"
    )
    typer.echo(f"{'stage':<14} {'n':>5} {'rt p50 ms':>10} {'sim p50 ms':>11} {'|err| p50':>10}")
    for s in res.stages:
        typer.echo(
            f"{s.stage:<14} {s.n:>5} {s.runtime_median_ms:>10.2f} {s.simulator_median_ms:>11.2f}"
            f" {s.abs_error_median_ms:>10.2f}"
        )
    if res.ranking:
        typer.echo(f"{'policy':<32} {'cond':>4} {'U runtime':>10} {'U simulator':>12}")
        for r in res.ranking:
            typer.echo(
                f"{r.policy[:32]:<32} {r.condition:>4} {r.runtime_utility:>10.3f} "
                f"{r.simulator_utility:>12.3f}"
            )
        agree = sum(res.ranking_agrees)
        typer.echo(f"ranking agrees on {agree} of {len(res.ranking_agrees)} conditions")
    path = runinfo.write_result_json(res, out)
    typer.echo(f"wrote {path}")
    typer.echo(f"wrote {plot_fidelity(res, plot or out.with_suffix('.png'))}")
