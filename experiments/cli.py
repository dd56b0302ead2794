"""The ``edgerl`` command line. Each subcommand is a thin wrapper: the work lives in the
experiment scripts and packages it calls, imported lazily so that ``edgerl --help`` is fast."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="edgerl",
    help="Plan DNN inference across device, edge and cloud with deep RL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# ---- subcommands (each helper module registers its commands on `app`) ----------------------


def main() -> None:
    app()


if __name__ == "__main__":
    main()
