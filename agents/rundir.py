"""The run-directory contract (written by ``edgerl train``, read by evaluation and export).

::

    RUN_DIR/
      run.json            provenance and configuration (RUN_KEYS below)
      scenario.yaml       the scenario as used (copy of its YAML text)
      model.zip           final SB3 model
      best_model.zip      best model on the held-out evaluation callback
      learning_curve.csv  evaluation utility over training timesteps
      tb/                 TensorBoard logs
      checkpoints/        periodic SB3 checkpoints

Reading is strict: a missing directory, a missing or corrupt ``run.json``, a wrong schema
version, a missing key or an unknown algorithm raises :class:`RunDirError` naming the file and
the field. numpy/PyYAML only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from edgerl.envs.config import ExecutionConfig, RandomizationConfig, ScenarioConfig
from edgerl.envs.plans import Plan

RUN_SCHEMA_VERSION = 1
RUN_JSON = "run.json"
SCENARIO_YAML = "scenario.yaml"
SCENARIO_SOURCE_YAML = "scenario.source.yaml"  # the file trained on, comments and all
FINAL_MODEL = "model.zip"
#: Held (``fcntl.flock``) by the training that writes the directory; the lock dies with it.
LOCK_FILE = ".lock"
BEST_MODEL = "best_model.zip"
LEARNING_CURVE = "learning_curve.csv"
ALGO_NAMES = ("maskable_ppo", "ppo", "a2c", "dqn")

#: Required keys of run.json and their JSON types.
RUN_KEYS: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "run_id": str,
    "scenario": str,
    "scenario_fingerprint": str,
    "algo": str,
    "seed": int,
    "timesteps": int,
    "hyperparams": dict,
    "git_commit": str,
    "versions": dict,
    "started": str,
    "finished": str,
    "wall_time_s": (int, float),
    "env_time_s": (int, float),
    "command": str,
}

Which = Literal["best", "final"]


class RunDirError(ValueError):
    """A run directory is missing, incomplete or corrupt (the message says what and where)."""


@dataclass(frozen=True)
class RunInfo:
    """A validated run directory."""

    path: Path
    data: Mapping[str, Any]

    @property
    def algo(self) -> str:
        return str(self.data["algo"])

    @property
    def seed(self) -> int:
        return int(self.data["seed"])

    @property
    def scenario(self) -> str:
        return str(self.data["scenario"])

    @property
    def scenario_fingerprint(self) -> str:
        return str(self.data["scenario_fingerprint"])

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    def model_path(self, which: Which = "best") -> Path:
        """``best_model.zip`` (falling back to ``model.zip`` if absent) or ``model.zip``."""
        if which not in ("best", "final"):
            raise ValueError(f"which must be 'best' or 'final', got {which!r}")
        best, final = self.path / BEST_MODEL, self.path / FINAL_MODEL
        if which == "best" and best.is_file():
            return best
        if final.is_file():
            return final
        raise RunDirError(f"{self.path}: no {FINAL_MODEL} (nor {BEST_MODEL}) in the run directory")

    def scenario_yaml(self) -> Path:
        return self.path / SCENARIO_YAML

    def interrupted_note(self) -> str | None:
        """If training was interrupted (Ctrl-C), a sentence that says so; else None."""
        if not self.data.get("interrupted"):
            return None
        done, total = self.data.get("timesteps_done"), self.data.get("timesteps")
        return (
            f"{self.path}: training was interrupted after {done} of {total} steps "
            f"({RUN_JSON}: interrupted); its model is the one saved then"
        )


def read_run(run_dir: str | Path) -> RunInfo:
    """Load and validate ``RUN_DIR/run.json``.

    Raises:
        RunDirError: the directory, ``run.json`` or a required field is missing or invalid,
            or the directory holds no model file.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"{path}: run directory does not exist")
    rj = path / RUN_JSON
    if not rj.is_file():
        raise RunDirError(f"{rj}: missing (is {path} a run directory written by `edgerl train`?)")
    try:
        data = json.loads(rj.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{rj}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{rj}: corrupt JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{rj}: expected a JSON object at top level")
    for key, tp in RUN_KEYS.items():
        if key not in data:
            raise RunDirError(f"{rj}: missing field '{key}'")
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, tp):
            names = tp.__name__ if isinstance(tp, type) else "/".join(t.__name__ for t in tp)
            raise RunDirError(f"{rj}: field '{key}' must be {names}, got {value!r}")
    if data["schema_version"] != RUN_SCHEMA_VERSION:
        raise RunDirError(
            f"{rj}: field 'schema_version' is {data['schema_version']}, this edgerl reads "
            f"{RUN_SCHEMA_VERSION}"
        )
    if data["algo"] not in ALGO_NAMES:
        raise RunDirError(f"{rj}: field 'algo' is {data['algo']!r}, expected one of {ALGO_NAMES}")
    info = RunInfo(path, data)
    info.model_path("final")  # raises if no model file at all
    return info


# --------------------------------------------------------------------------- fingerprints


def scenario_yaml_text(cfg: ScenarioConfig) -> str:
    """The scenario as canonical YAML: every field (defaults included) and its file paths
    resolved, so that it means the same wherever it is loaded from (a run directory keeps a
    copy) and two scenarios that decode alike have the same text. Comments of the source file
    are not kept (:func:`source_yaml_text` has them)."""
    data = dataclasses.asdict(cfg)
    data.pop("path", None)
    # Keys added after runs were published are left out at their defaults, so that a scenario
    # that does not use them keeps its fingerprint (and its runs and best-fixed caches stay
    # valid); a scenario that sets them differs.
    for parent, key in LATER_KEYS:
        node = data[parent] if parent else data
        default = LATER_KEY_DEFAULTS[key]
        if node.get(key) == default:
            node.pop(key)
    return yaml.safe_dump(_plain(data), sort_keys=True)


#: Scenario keys added after results were published: (parent key or "", key).
LATER_KEYS: tuple[tuple[str, str], ...] = (
    ("network", "paired_links"),
    ("", "randomization"),
    ("", "execution"),
)
LATER_KEY_DEFAULTS: dict[str, Any] = {
    "paired_links": False,
    "randomization": dataclasses.asdict(RandomizationConfig()),
    "execution": dataclasses.asdict(ExecutionConfig()),
}


def source_yaml_text(cfg: ScenarioConfig) -> str | None:
    """The text of the file the scenario was read from (with its comments), if any."""
    if cfg.path == "<memory>":
        return None
    try:  # a scenario with overrides has a description for a path ("FILE with KEY=V ..."),
        # which may be longer than a file name may be
        p = Path(cfg.path)
        return p.read_text(encoding="utf-8") if p.is_file() else None
    except OSError:
        return None


def _plain(x: Any) -> Any:
    """Tuples to lists, mappings to dicts (for a stable YAML dump)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, float) and x == float("inf"):
        return "inf"
    return x


def scenario_fingerprint(cfg: ScenarioConfig) -> str:
    """sha256 of the scenario's canonical YAML (:func:`scenario_yaml_text`)."""
    return hashlib.sha256(scenario_yaml_text(cfg).encode("utf-8")).hexdigest()


def evaluation_fingerprint(cfg: ScenarioConfig) -> str:
    """:func:`scenario_fingerprint` of ``cfg`` without its ``randomization`` block.

    Domain randomisation changes training episodes only (held-out episodes always run on the
    configured links), so results that depend on evaluation alone (the measured headroom)
    stay valid when a scenario adds or changes it."""
    return scenario_fingerprint(dataclasses.replace(cfg, randomization=RandomizationConfig()))


def catalogue_fingerprint(plans: Sequence[Plan]) -> str:
    """sha256 over every plan's name and static costs (changes when profiles change)."""
    h = hashlib.sha256()
    for p in plans:
        h.update(
            json.dumps(
                [
                    p.name,
                    p.device_s,
                    list(p.edge_batch_ms),
                    p.cloud_s,
                    p.uplink_bytes,
                    p.wan_bytes,
                    p.accuracy,
                ],
                allow_nan=True,
            ).encode("utf-8")
        )
    return h.hexdigest()
