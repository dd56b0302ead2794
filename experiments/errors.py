"""User errors of the command line: one red line and exit code 2, never a traceback.

Every error a user can cause by what they type or the files they give (an unknown scenario
or baseline, a malformed file, an option out of range, a policy that does not fit the
scenario) is one of :data:`known_errors`; :func:`clear_errors` turns it into one line.
Commands that check an input themselves end with ``raise fail("what and where")``: the
same one line on stderr and the same exit code, :data:`USAGE_EXIT` (click's own code for a
bad option). :class:`ClearErrorsGroup` wraps every subcommand in :func:`clear_errors`, so a
known error that escapes a command still ends as one line.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
import typer.core

#: Exit status of every usage or input error (click uses 2 for a bad option; we follow it).
USAGE_EXIT = 2


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
    from edgerl.experiments.sweep_spec import SweepSpecError
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
        SweepSpecError,
    )


@contextmanager
def clear_errors() -> Iterator[None]:
    """Known user errors -> one red line on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except known_errors() as exc:
        raise fail(str(exc)) from None


def print_error(msg: str, prefix: str = "error") -> None:
    """``prefix: msg`` on stderr as one line (newlines in ``msg`` become spaces)."""
    from rich.console import Console
    from rich.markup import escape

    one_line = " ".join(msg.split())
    colour = "bold red" if prefix == "error" else "yellow"
    Console(stderr=True).print(
        f"[{colour}]{prefix}:[/] {escape(one_line)}", highlight=False, soft_wrap=True
    )


def fail(msg: str) -> typer.Exit:
    """Print ``error: msg`` (one line, stderr); return the exit to raise (:data:`USAGE_EXIT`)."""
    print_error(msg)
    return typer.Exit(USAGE_EXIT)


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` of the command line: ``warning: message`` on one line, no
    source file and line of the library that warned."""
    print_error(str(message), prefix="warning")


#: Warnings that say nothing a user can act on: matplotlib gives up on tight_layout for a
#: crowded figure, and the figure is saved with bbox_inches="tight" anyway.
SILENCED_WARNINGS = (r".*[Tt]ight layout not applied.*",)


#: click's UsageError (typer >= 0.2x vendors click, older typer imports it; both raise it).
_USAGE_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


class ClearErrorsGroup(typer.core.TyperGroup):
    """The ``edgerl`` command group: every subcommand runs inside :func:`clear_errors`, and
    Python warnings print as one line each (:func:`_one_line_warning`)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            with clear_errors(), warnings.catch_warnings():
                warnings.showwarning = _one_line_warning
                for pattern in SILENCED_WARNINGS:
                    warnings.filterwarnings("ignore", message=pattern)
                return super().invoke(ctx)
        except _USAGE_ERROR as exc:  # a subcommand's option or argument: one line, not a box
            if type(exc).__name__ == "NoArgsIsHelpError":  # `edgerl bench`: the help, as asked
                raise
            err: Any = exc
            where = err.ctx.command_path if err.ctx is not None else ctx.command_path
            raise fail(f"{err.format_message()} (see `{where} --help`)") from None


def check_positive(option: str, value: float | None) -> None:
    """``value`` (if given) must be > 0; else an :class:`OptionError` naming ``option``."""
    if value is not None and not value > 0:
        raise OptionError(f"{option} must be > 0, got {value}")
