"""Provenance of a run: git commit, package versions, run ids, timestamps, the command line."""

from __future__ import annotations

import functools
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from edgerl.envs.config import load_scenario
from edgerl.envs.sim.build import ScenarioModel, scenario_model

#: Distribution names whose versions every run records (run.json "versions").
PACKAGES = {
    "torch": "torch",
    "sb3": "stable-baselines3",
    "sb3_contrib": "sb3-contrib",
    "gymnasium": "gymnasium",
    "numpy": "numpy",
    "edgerl": "edgerl",
}
REPO_ROOT = Path(__file__).resolve().parent.parent
GIT_TIMEOUT_S = 10.0


@functools.cache
def git_commit(repo: Path = REPO_ROOT) -> str:
    """``<sha>`` of HEAD, ``<sha>-dirty`` with uncommitted changes, ``unknown`` without git.

    Read once per process (the ``edgerl`` command reads it at start-up): results written at
    the end of a long run name the code the run started with, even if the checkout has
    moved on meanwhile.
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def versions() -> dict[str, str]:
    """Python and the key package versions (``"not installed"`` when absent)."""
    out = {"python": platform.python_version()}
    for key, dist in PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    return out


def machine_info() -> dict[str, Any]:
    """What a benchmark result records of the machine it ran on (load: it is shared)."""
    return {
        "python": platform.python_version(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }


def write_result_json(result: Any, path: str | Path) -> Path:
    """Write a benchmark's result dataclass as indented JSON (folders created); the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(asdict(result), indent=1) + "\n", encoding="utf-8")
    return p


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_id(algo: str, scenario: str, seed: int) -> str:
    """``<UTC timestamp>-<scenario>-<algo>-s<seed>`` (sortable, unique per second)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(scenario).stem)
    return f"{stamp}-{safe}-{algo}-s{seed}"


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])


def resolve_scenario(spec: object, overrides: Sequence[str] = ()) -> tuple[ScenarioModel, str]:
    """A scenario name, YAML path or in-memory :class:`ScenarioModel` -> (model, its label).

    ``overrides`` (``dotted.key=value``, see :func:`edgerl.envs.config.load_scenario`) change
    a named or file scenario; the label then names them too.

    Raises:
        edgerl.envs.config.ConfigError: unknown scenario name (the message lists the shipped
            ones), an invalid scenario file or override.
    """
    if isinstance(spec, ScenarioModel):
        if overrides:
            raise ValueError("overrides apply to a scenario name or file, not a ScenarioModel")
        return spec, spec.cfg.name
    if not isinstance(spec, str | Path):
        raise TypeError(f"scenario must be a name, a path or a ScenarioModel, got {spec!r}")
    if not overrides:
        return scenario_model(str(spec)), str(spec)
    cfg = load_scenario(str(spec), overrides)
    return ScenarioModel.from_config(cfg), f"{spec}[{','.join(overrides)}]"
