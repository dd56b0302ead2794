"""Registered, versioned environment IDs.

Importing this module registers ``edgerl/CollabInference-v2`` (takes ``scenario=``) and one
ID per shipped scenario (``edgerl/LteDynamic-v2`` for ``lte-dynamic.yaml``, ...). It is kept
out of ``edgerl.envs/__init__`` so that numpy-only users of ``edgerl.envs`` (the runtime
planner) never import Gymnasium.
"""

from __future__ import annotations

import gymnasium as gym
from edgerl.envs.config import list_scenarios

ENTRY_POINT = "edgerl.envs.env:CollabInferenceEnv"
VERSION = 2


def scenario_env_id(scenario: str) -> str:
    """``lte-dynamic`` -> ``edgerl/LteDynamic-v2``."""
    camel = "".join(part.capitalize() for part in scenario.replace("_", "-").split("-"))
    return f"edgerl/{camel}-v{VERSION}"


def register_envs() -> list[str]:
    ids = [f"edgerl/CollabInference-v{VERSION}"]
    if ids[0] not in gym.registry:
        gym.register(id=ids[0], entry_point=ENTRY_POINT)
    for name in list_scenarios():
        env_id = scenario_env_id(name)
        ids.append(env_id)
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs={"scenario": name})
    return ids


ENV_IDS = register_envs()
