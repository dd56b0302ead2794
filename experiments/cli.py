"""The ``edgerl`` command line. Each subcommand is a thin wrapper: the work lives in the
experiment scripts and packages it calls, imported lazily so that ``edgerl --help`` is fast."""

from __future__ import annotations

import typer
from edgerl.experiments.errors import ClearErrorsGroup

app = typer.Typer(
    cls=ClearErrorsGroup,
    name="edgerl",
    help="Plan DNN inference across device, edge and cloud with deep RL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

#: `edgerl bench <what>`: benchmarks register here (`@bench_app.command("env")`); each prints
#: ratios measured side by side in one run and writes JSON.
bench_app = typer.Typer(
    help="Benchmarks (print side-by-side ratios, write JSON).", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")

# ---- subcommands (each module registers its commands on `app` or `bench_app`) -------------
import edgerl.experiments.cmd_agents  # noqa: E402
import edgerl.experiments.cmd_env  # noqa: E402
import edgerl.experiments.cmd_fit  # noqa: E402
import edgerl.experiments.cmd_planner  # noqa: E402
import edgerl.experiments.cmd_profiles  # noqa: E402
import edgerl.experiments.cmd_runtime  # noqa: E402
import edgerl.experiments.cmd_sweep  # noqa: E402
import edgerl.experiments.cmd_user_models  # noqa: E402, F401


def main() -> None:
    from edgerl.experiments import runinfo

    runinfo.git_commit()  # the commit this process runs, before a long job may outlive it
    app()


if __name__ == "__main__":
    main()
