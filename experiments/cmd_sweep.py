"""CLI: ``edgerl sweep SPEC.yaml`` and ``edgerl sweep --resume DIR`` (Ray Tune, imported lazily
by :mod:`edgerl.experiments.sweep`)."""

from __future__ import annotations

from pathlib import Path

import typer
from edgerl.experiments.cli import app


@app.command()
def sweep(
    spec: Path = typer.Argument(None, help="sweep spec YAML (see README: Sweeps on Ray)"),
    out: Path = typer.Option(None, help="sweep directory (default runs/sweeps/<name>-<time>)"),
    resume: Path = typer.Option(
        None, help="continue the sweep in this directory (finished trials are kept)"
    ),
    retry_errored: bool = typer.Option(
        False, help="with --resume: run failed trials again, from scratch"
    ),
    address: str = typer.Option(
        None,
        help="a running Ray cluster, e.g. ray://HEAD:10001 (default: $RAY_ADDRESS, else a "
        "local Ray on this machine)",
    ),
    num_cpus: int = typer.Option(None, help="CPUs of the local Ray (default: all)"),
    verbose: int = typer.Option(1, help="Ray Tune's output: 0 none, 1 live trial table, 2 all"),
) -> None:
    """Hyperparameter sweep on Ray Tune: every trial is a set of run directories (one per
    seed); ranked table, best hyperparameter files and plots in DIR/results."""
    from edgerl.experiments.errors import clear_errors, print_error
    from edgerl.experiments.sweep import SweepConfig, SweepInterrupted, print_table, run_sweep

    with clear_errors():
        try:
            res = run_sweep(
                SweepConfig(
                    spec=spec,
                    out=out,
                    resume=resume,
                    retry_errored=retry_errored,
                    address=address,
                    num_cpus=num_cpus,
                    verbose=verbose,
                )
            )
        except SweepInterrupted as exc:
            print_error(str(exc), prefix="interrupted")
            raise typer.Exit(130) from None  # 128 + SIGINT, as a shell reports it
    print_table(res.rows, f"sweep {res.sweep_dir.name}: trials ranked by held-out utility")
    n_err = sum(r.status == "error" for r in res.rows)
    print(f"sweep directory: {res.sweep_dir}  ({res.wall_time_s:.0f} s)")
    print(f"results: {res.sweep_dir / 'results'} (trials.csv, trials.json, trials.md, plots/)")
    for name, p in res.best_files.items():
        print(f"best {name}: {p}")
    if n_err:
        print(f"{n_err} trial(s) failed: their errors are in the table and trials.json")
