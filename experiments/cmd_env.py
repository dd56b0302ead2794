"""CLI: `edgerl scenarios`, `edgerl bench env`."""

from __future__ import annotations

from pathlib import Path

import typer
from edgerl.experiments import term
from edgerl.experiments.cli import app, bench_app

scenarios_app = typer.Typer(
    help="The shipped scenarios (no subcommand) or `check` your own scenario file.",
    invoke_without_command=True,
)
app.add_typer(scenarios_app, name="scenarios")


@scenarios_app.command("check")
def scenarios_check(
    files: list[Path] = typer.Argument(..., help="scenario YAML files"),
) -> None:
    """Validate scenario files: schema, profiles, plan catalogue, traces of both splits."""
    import numpy as np
    from edgerl.envs.config import ConfigError, load_scenario
    from edgerl.envs.sim.build import ScenarioModel, build_simulator
    from edgerl.profiles import ProfileError

    bad = 0
    for f in files:
        try:
            cfg = load_scenario(f)
            model = ScenarioModel.from_config(cfg)
            for split in ("train", "eval"):
                build_simulator(model, 0, split)  # loads the links' traces of that split
        except (ConfigError, ProfileError, OSError) as exc:
            bad += 1
            typer.secho(f"error: {exc}", fg="red", err=True)
            continue
        n_ok = int(np.count_nonzero(model.static_mask))
        print(
            f"{f}: ok: scenario {cfg.name!r}, model {cfg.model.name} "
            f"({', '.join(cfg.model.variants)}), {len(model.plans)} plans "
            f"({n_ok} fit memory), {cfg.devices.count} device(s), horizon {cfg.horizon_s:g} s"
        )
    if bad:
        raise typer.Exit(2)


@scenarios_app.callback()
def scenarios(ctx: typer.Context) -> None:
    """List the shipped scenarios: env ID, model, devices, measured headroom, description.

    Headroom = (oracle - best fixed) / |best fixed| on the held-out traces, measured by
    `edgerl bench headroom` (experiments/results/headroom.json); "oracle - fixed" is the same
    gap in utility per request (the relative figure says little when best fixed is near 0).
    """
    if ctx.invoked_subcommand is not None:
        return
    from edgerl.envs.config import list_scenarios, load_scenario
    from edgerl.envs.registration import scenario_env_id
    from edgerl.experiments.headroom import headroom_abs_of, headroom_of, load_headroom
    from rich.table import Table

    measured = load_headroom()
    table = Table(title="edgerl scenarios (envs/scenarios/*.yaml)")
    for col in ("scenario", "env id", "model", "variants", "dev", "headroom", "oracle - fixed"):
        table.add_column(col, no_wrap=col in ("scenario", "env id"))
    cfgs = {name: load_scenario(name) for name in list_scenarios()}
    for name, cfg in cfgs.items():
        table.add_row(
            name,
            scenario_env_id(name),
            cfg.model.name,
            ",".join(cfg.model.variants),
            str(cfg.devices.count),
            headroom_of(name, measured),
            headroom_abs_of(name, measured),
        )
    console = term.console()
    console.print(table)
    for name, cfg in cfgs.items():
        console.print(f"[bold]{name}[/bold]: {cfg.description}")
    console.print(
        "headroom = (oracle - best fixed) / |best fixed| on held-out traces "
        "(`edgerl bench headroom`); oracle - fixed: the same gap in utility per request"
    )


@bench_app.command("headroom")
def bench_headroom(
    scenarios: str = typer.Option("", help="comma-separated (default: every shipped scenario)"),
    eval_seeds: str = typer.Option("100,101,102", help="evaluation seeds, comma-separated"),
    episodes: int = typer.Option(1, help="held-out episodes per evaluation seed"),
    oracle_window_s: float = typer.Option(2.0, help="the oracle's window [s]"),
    oracle_workers: int = typer.Option(1, help="the oracle's concurrent simulator forks"),
    out: Path = typer.Option(
        Path("runs/bench/headroom.json"),
        help="JSON file (publish: --out experiments/results/headroom.json, which `edgerl "
        "scenarios` reads)",
    ),
    ray: bool = typer.Option(
        False, "--ray", help="run the episodes as Ray tasks, one per (policy, seed)"
    ),
    address: str = typer.Option(
        None, help="with --ray: a running Ray cluster (default: $RAY_ADDRESS, else local)"
    ),
) -> None:
    """Headroom of each scenario before training: oracle vs best fixed on held-out traces."""
    from edgerl.experiments.errors import OptionError, clear_errors
    from edgerl.experiments.headroom import HeadroomConfig, run_headroom

    if address is not None and not ray:
        with clear_errors():
            raise OptionError("--address: only with --ray")
    run_headroom(
        HeadroomConfig(
            scenarios=tuple(s for s in scenarios.split(",") if s),
            eval_seeds=tuple(int(s) for s in eval_seeds.split(",") if s),
            episodes=episodes,
            oracle_window_s=oracle_window_s,
            oracle_workers=oracle_workers,
            out=out,
            ray=ray,
            ray_address=address,
        )
    )


@bench_app.command("ray")
def bench_ray_cmd(
    spec: Path = typer.Option(
        None, help="sweep spec run twice (default: the shipped examples/sweep-camera-lte.yaml)"
    ),
    scenario: str = typer.Option("lte-dynamic", help="scenario of the headroom comparison"),
    eval_seeds: str = typer.Option("100,101", help="evaluation seeds of the headroom runs"),
    out: Path = typer.Option(Path("runs/bench/ray.json"), help="JSON result file"),
) -> None:
    """What Ray buys here: start-up, a sweep with 1 vs all cores, bench headroom serial vs
    --ray; wall-time ratios from one run."""
    from edgerl.experiments import runinfo
    from edgerl.experiments.bench_ray import bench_ray
    from edgerl.experiments.errors import OptionError, clear_errors

    if spec is None:
        spec = Path(__file__).parent / "examples" / "sweep-camera-lte.yaml"
    with clear_errors():
        if not spec.is_file():
            raise OptionError(f"--spec {spec}: no such file")
        try:
            seeds = tuple(int(s) for s in eval_seeds.split(",") if s.strip())
        except ValueError:
            raise OptionError(f"--eval-seeds {eval_seeds!r}: expected integers") from None
        if not seeds:
            raise OptionError("--eval-seeds: give at least one seed")
    res = bench_ray(spec, scenario, seeds)
    res.date, res.command = runinfo.now_iso(), runinfo.command_line()
    typer.echo(
        f"Ray start-up + shutdown (no work): median {res.ray_startup_median_s:.1f} s "
        f"({', '.join(f'{t:.1f}' for t in res.ray_startup_s)})"
    )
    typer.echo(
        f"sweep ({res.sweep_trials} trials): 1 CPU {res.sweep_serial_s:.0f} s, {res.cpus} CPUs "
        f"{res.sweep_parallel_s:.0f} s: {res.sweep_ratio:.2f}x (target {res.target_ratio}x)"
    )
    typer.echo(
        f"bench headroom {scenario} (seeds {eval_seeds}): serial {res.headroom_serial_s:.0f} s, "
        f"--ray {res.headroom_ray_s:.0f} s: {res.headroom_ratio:.2f}x; same results: "
        f"{res.headroom_equal}"
    )
    typer.echo(f"wrote {runinfo.write_result_json(res, out)}")


@bench_app.command("env")
def bench_env(
    scenario: str = typer.Option("lte-dynamic", help="scenario name or YAML path"),
    steps: int = typer.Option(20_000, help="decisions per timed round"),
    rounds: int = typer.Option(3, help="interleaved env/bare rounds (median reported)"),
    soak_steps: int = typer.Option(1_000_000, help="env steps for the memory check (0: skip)"),
    device_share: float = typer.Option(
        None,
        help="training-like plans: this share runs on the device alone, the rest offloads "
        "(default: uniform over the feasible plans)",
    ),
    out: Path = typer.Option(Path("runs/bench/env.json"), help="JSON result file"),
) -> None:
    """Decisions/s of the env vs the bare simulator (same run), and memory over a long soak."""
    from edgerl.experiments import runinfo
    from edgerl.experiments.bench_env import run_env_bench
    from edgerl.experiments.errors import clear_errors

    with clear_errors():
        r = run_env_bench(scenario, steps, rounds, soak_steps, device_share=device_share)
    print(
        f"env  {r.env_decisions_per_s:,.0f} decisions/s\n"
        f"bare {r.bare_decisions_per_s:,.0f} decisions/s\n"
        f"ratio env/bare {r.ratio_env_over_bare:.2f}\n"
        f"RSS {r.rss_start_mb:.1f} -> {r.rss_end_mb:.1f} MB over {r.soak_steps:,} steps "
        f"(growth {r.rss_growth_mb:+.1f} MB)"
    )
    print(f"wrote {runinfo.write_result_json(r, out)}")


@bench_app.command("oracle")
def bench_oracle(
    scenario: str = typer.Option("camera-lte", help="scenario name or YAML path"),
    horizon_s: float = typer.Option(30.0, help="episode length planned [s]"),
    window_s: float = typer.Option(2.0, help="the oracle's window [s]"),
    seed: int = typer.Option(100, help="episode seed (held-out traces)"),
    rounds: int = typer.Option(3, help="interleaved rounds of the torch-loaded modes"),
    out: Path = typer.Option(Path("runs/bench/oracle.json"), help="JSON result file"),
) -> None:
    """The hindsight oracle's planning time: lean process, torch loaded, spawned interpreter."""
    from edgerl.experiments import runinfo
    from edgerl.experiments.bench_oracle import run_oracle_bench
    from edgerl.experiments.errors import clear_errors

    with clear_errors():
        r = run_oracle_bench(scenario, horizon_s, window_s, seed, rounds)
    print(
        f"{r.scenario}: {r.windows} windows x {r.candidates} candidate plans, "
        f"same schedule in every mode: {r.same_schedule}"
    )
    for mode, wall in r.median_wall_s.items():
        print(f"{mode:13s} median {wall:7.2f} s   speed-up vs torch {r.speedup_vs_torch[mode]:.2f}")
    print(f"wrote {runinfo.write_result_json(r, out)}")


NAME_WIDTH = 40  # characters of a file name in `edgerl traces check` (a 100-column row)

traces_app = typer.Typer(
    help="Bandwidth traces: the shipped families (no subcommand) or `check` your own files.",
    invoke_without_command=True,
)
app.add_typer(traces_app, name="traces")


@traces_app.callback()
def traces(ctx: typer.Context) -> None:
    """Summarise the shipped bandwidth traces per family, split and direction."""
    if ctx.invoked_subcommand is not None:
        return
    from edgerl.envs.traces import TraceError, trace_summary

    try:
        print(trace_summary())
    except TraceError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


@traces_app.command("check")
def traces_check(
    files: list[Path] = typer.Argument(..., help="trace files (or folders of them)"),
    fmt: str = typer.Option("auto", "--format", help="auto | pensieve | mahimahi | csv | irish5g"),
    column: str = typer.Option(None, help="csv / irish5g: the bandwidth column"),
    unit: str = typer.Option(
        None, help="csv: mbps | kbps | bps (default: from a column name ending in _kbps, ...)"
    ),
) -> None:
    """Validate trace files and summarise them (format, duration, Mbit/s statistics)."""
    from edgerl.envs.traces import (
        TraceError,
        detect_format,
        load_user_trace,
        plausibility_warning,
        time_weighted_quantile,
        unit_from_column,
    )
    from edgerl.experiments.errors import fail, print_error

    paths = [x for f in files for x in (sorted(f.iterdir()) if f.is_dir() else [f])]
    if not paths:
        raise fail(f"{', '.join(map(str, files))}: no trace files (empty folder)")
    if unit is None:
        unit = unit_from_column(column) or "mbps"
        if column is not None and unit_from_column(column):
            print(f"unit: {unit} (from the column name {column}; --unit to change)")
    bad = 0
    print(f"{'file':40} {'format':9} {'dur s':>8} {'mean':>7} {'median':>7} {'p10':>7} {'p90':>7}")
    for p in paths:
        try:
            kind = detect_format(p) if fmt == "auto" else fmt
            tr = load_user_trace(p, kind, column, unit)
        except (TraceError, OSError) as exc:
            bad += 1
            typer.secho(f"error: {exc}", fg="red", err=True)
            continue
        q = [time_weighted_quantile([tr], x) for x in (0.5, 0.1, 0.9)]
        implausible = plausibility_warning(tr)
        if implausible is not None:
            print_error(implausible, prefix="warning")
        name = p.name if len(p.name) <= NAME_WIDTH else "..." + p.name[3 - NAME_WIDTH :]
        print(
            f"{name:40} {kind:9} {tr.duration_s:8.1f} {tr.mean_mbps_period():7.2f} "
            f"{q[0]:7.2f} {q[1]:7.2f} {q[2]:7.2f}"
        )
    print(f"{len(paths) - bad} of {len(paths)} file(s) valid (Mbit/s, time-weighted)")
    if bad:
        raise typer.Exit(2)
