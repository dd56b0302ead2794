"""Gymnasium adapter: API conformance, masks, determinism, reward parts."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import toy_model
from edgerl.envs.env import CollabInferenceEnv
from edgerl.envs.sim.simulator import REWARD_PARTS
from gymnasium.utils.env_checker import check_env


@pytest.fixture
def busy():
    return toy_model(
        {
            "devices.count": 3,
            "workload.arrival.rate_per_s": 20.0,
            "horizon_s": 10.0,
            "edge.cache_capacity": 16,
            "action_menu.cache_policies": ["none", "lru"],
            "action_menu.batch_sizes": [1, 4],
            "workload.zipf_s": 1.0,
        }
    )


def test_check_env_on_the_toy(busy):
    check_env(CollabInferenceEnv(busy), skip_render_check=True)


def rollout(env: CollabInferenceEnv, seed: int, policy_seed: int) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(policy_seed)
    out = []
    while True:
        a = int(rng.choice(np.flatnonzero(env.action_masks())))
        obs, r, term, trunc, _ = env.step(a)
        out.append((obs.tobytes(), r, term, trunc))
        if term or trunc:
            return out


def test_seeded_determinism(busy):
    env = CollabInferenceEnv(busy)
    a = rollout(env, seed=3, policy_seed=0)
    b = rollout(CollabInferenceEnv(busy), seed=3, policy_seed=0)
    assert a == b
    assert rollout(env, seed=4, policy_seed=0) != a


@pytest.mark.parametrize("credit", ["decision", "finish"])
def test_reward_is_the_sum_of_named_parts_and_the_return_of_every_request(credit):
    model = toy_model(
        {
            "devices.count": 3,
            "workload.arrival.rate_per_s": 20.0,
            "horizon_s": 10.0,
            "edge.cache_capacity": 16,
            "action_menu.cache_policies": ["none", "lru"],
            "action_menu.batch_sizes": [1, 4],
            "workload.zipf_s": 1.0,
            "reward": {"credit": credit},
        }
    )
    env = CollabInferenceEnv(model, record=True)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    total, finished, steps = 0.0, 0, 0
    while True:
        _, r, _, trunc, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        assert set(info["reward_parts"]) == set(REWARD_PARTS)
        assert r == pytest.approx(sum(info["reward_parts"].values()))
        total += r
        finished += info["finished"]
        steps += 1
        if trunc:
            break
    assert env.sim is not None
    assert finished == len(env.sim.finished) == env.sim.arrived == steps
    assert total == pytest.approx(sum(req.utility for req in env.sim.finished))


def test_invalid_action_raises_and_masked_action_drops():
    model = toy_model({"devices.memory_mb": 0.5})  # only plans with little on-device work fit
    env = CollabInferenceEnv(model)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(env.action_space.n)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(-1)
    masked = np.flatnonzero(~env.action_masks())
    assert masked.size > 0
    _, _, _, _, info = env.step(int(masked[0]))
    assert info["infeasible"] is True
    assert info["reward_parts"]["drop"] == pytest.approx(-model.cfg.reward.drop)


def test_step_before_reset_is_a_clear_error(busy):
    with pytest.raises(RuntimeError, match="reset"):
        CollabInferenceEnv(busy).step(0)


def test_observation_has_no_future_bandwidth(busy):
    """The bandwidth feature is computed from the past window only."""
    env = CollabInferenceEnv(busy)
    env.reset(seed=1)
    raw = env.raw_state_dict()
    assert raw["uplink_mbps"] == pytest.approx(8.0)
    assert raw["deadline_ms"] == pytest.approx(200.0)
    assert raw["app_cam"] == 1.0


@pytest.mark.parametrize("scenario", ["lte-dynamic", "camera-fleet-lte"])
def test_observation_is_the_normalised_raw_state_bit_for_bit(scenario):
    """The env builds its observation in Python floats (issue 24); it must equal
    :func:`normalise` of the raw state, byte for byte, at every step."""
    from edgerl.envs.observation import normalise

    env = CollabInferenceEnv(scenario)
    obs, _ = env.reset(seed=2)
    rng = np.random.default_rng(0)
    feasible = np.flatnonzero(env.action_masks())
    for _ in range(400):
        expected = normalise(env.raw_state(), env._inv_scales)
        assert obs.dtype == np.float32 and obs.tobytes() == expected.tobytes()
        obs, *_ = env.step(int(rng.choice(feasible)))
    # clipping at both ends is exercised by the same code path
    raw = [-1.0, 0.0, 5.0, 1e9] + [0.0] * (len(env.features) - 4)
    env._raw_list = lambda _req: raw  # type: ignore[method-assign]
    assert env._observe(env.pending_request).tobytes() == (
        normalise(np.array(raw), env._inv_scales).tobytes()
    )
