"""``edgerl runtime edge|cloud|device|run``: the split-inference runtime (:mod:`edgerl.runtime`).

``run`` starts the three roles as processes on loopback, replays a short workload, prints the
per-stage latency table and stops everything; the other three start one role each.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from edgerl.experiments.cli import app

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
) -> None:  # fmt: skip
    """Start cloud, edge and device on loopback, run a short workload, print the stage table."""
    from edgerl.runtime.launch import read_log, run_local, stage_table

    common = ["--scenario", scenario, "--seed", str(seed), "--split", split]
    for s in set_:
        common += ["--set", s]
    dev = ["--policy", policy, "--duration-s", str(duration_s), "--timeout-s", str(timeout_s)]
    if data is not None:
        dev += ["--data", data]
    try:
        done = run_local(common, dev, log, duration_s + 4 * timeout_s, window_ms)
    except _errors() as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"runtime: {scenario} seed {seed}, policy {done.get('policy')}, inputs "
        f"{done.get('input_source')}; cores: cloud {done['cloud'].get('cpus')}, edge "
        f"{done['edge'].get('cpus')} (of {len(os.sched_getaffinity(0))}); log {log}"
    )
    typer.echo(stage_table(read_log(log)))
