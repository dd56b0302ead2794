"""CLI: `edgerl scenarios`, `edgerl bench env`."""

from __future__ import annotations

from pathlib import Path

import typer
from edgerl.experiments.cli import app, bench_app


@app.command()
def scenarios() -> None:
    """List the shipped scenarios with a one-line description."""
    from edgerl.envs.config import list_scenarios, load_scenario
    from edgerl.envs.registration import scenario_env_id
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgerl scenarios (envs/scenarios/*.yaml)")
    for col in ("scenario", "env id", "model / variants", "devices", "description"):
        table.add_column(col)
    for name in list_scenarios():
        cfg = load_scenario(name)
        table.add_row(
            name,
            scenario_env_id(name),
            f"{cfg.model.name} / {', '.join(cfg.model.variants)}",
            str(cfg.devices.count),
            cfg.description,
        )
    Console().print(table)


@bench_app.command("env")
def bench_env(
    scenario: str = typer.Option("lte-dynamic", help="scenario name or YAML path"),
    steps: int = typer.Option(20_000, help="decisions per timed round"),
    rounds: int = typer.Option(3, help="interleaved env/bare rounds (median reported)"),
    soak_steps: int = typer.Option(1_000_000, help="env steps for the memory check (0: skip)"),
    out: Path = typer.Option(Path("bench/env.json"), help="JSON result file"),
) -> None:
    """Decisions/s of the env vs the bare simulator (same run), and memory over a long soak."""
    from edgerl.experiments.bench_env import run_env_bench, write_json

    r = run_env_bench(scenario, steps, rounds, soak_steps)
    print(
        f"env  {r.env_decisions_per_s:,.0f} decisions/s\n"
        f"bare {r.bare_decisions_per_s:,.0f} decisions/s\n"
        f"ratio env/bare {r.ratio_env_over_bare:.2f}\n"
        f"RSS {r.rss_start_mb:.1f} -> {r.rss_end_mb:.1f} MB over {r.soak_steps:,} steps "
        f"(growth {r.rss_growth_mb:+.1f} MB)"
    )
    print(f"wrote {write_json(r, out)}")


@app.command()
def traces() -> None:
    """Summarise the shipped bandwidth traces per family, split and direction."""
    from edgerl.envs.traces import trace_summary

    print(trace_summary())
