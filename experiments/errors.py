"""User errors of the command line: one red line and exit code 2, never a traceback.

Every error a user can cause by what they type or the files they give (an unknown scenario
or baseline, a malformed file, an option out of range, a policy that does not fit the
scenario) is one of :data:`known_errors`; :func:`clear_errors` turns it into one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer


class OptionError(ValueError):
    """A command-line option is out of range or inconsistent (the message names it)."""


def known_errors() -> tuple[type[BaseException], ...]:
    from edgerl.agents.baselines import UnknownBaselineError
    from edgerl.agents.hyperparams import HyperparamError
    from edgerl.agents.learned import PolicyMismatchError
    from edgerl.agents.planner import PlannerError
    from edgerl.agents.rundir import RunDirError
    from edgerl.envs.config import ConfigError
    from edgerl.envs.traces import TraceError
    from edgerl.experiments.evaluate import PolicySpecError
    from edgerl.experiments.train import RunExistsError
    from edgerl.profiles import ProfileError

    return (
        ConfigError,
        RunDirError,
        UnknownBaselineError,
        PolicySpecError,
        PolicyMismatchError,
        PlannerError,
        HyperparamError,
        RunExistsError,
        ProfileError,
        TraceError,
        OptionError,
    )


@contextmanager
def clear_errors() -> Iterator[None]:
    """Known user errors -> one red line on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except known_errors() as exc:
        from rich.console import Console

        msg = " ".join(str(exc).split()) if "\n" in str(exc) else str(exc)
        Console(stderr=True).print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def check_positive(option: str, value: float | None) -> None:
    """``value`` (if given) must be > 0; else an :class:`OptionError` naming ``option``."""
    if value is not None and not value > 0:
        raise OptionError(f"{option} must be > 0, got {value}")
