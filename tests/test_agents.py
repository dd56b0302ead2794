"""Learned agents: hyperparameters, tiny-budget smoke training per algorithm, run directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_model
from edgerl.agents.hyperparams import HyperparamError, load_hyperparams, parse_override
from edgerl.agents.learned import SB3Policy, load_run_policy
from edgerl.agents.rundir import ALGO_NAMES, RUN_KEYS, RunDirError, read_run
from edgerl.envs.env import CollabInferenceEnv
from edgerl.experiments.train import RunExistsError, TrainConfig, train

TINY = {
    "maskable_ppo": ("n_steps=32", "batch_size=32", "n_epochs=1"),
    "ppo": ("n_steps=32", "batch_size=32", "n_epochs=1"),
    "a2c": (),
    "dqn": ("learning_starts=50", "buffer_size=1000"),
}
STEPS = 192


@pytest.fixture(scope="module")
def small():
    return toy_model({"horizon_s": 20.0, "workload.arrival.rate_per_s": 4.0})


@pytest.fixture(scope="module")
def runs(small, tmp_path_factory):
    """One tiny training run per algorithm (a few hundred steps each)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for algo in ALGO_NAMES:
        hp = ("n_envs=2", "eval_freq=96", "eval_episodes=1", "checkpoint_freq=96", *TINY[algo])
        res = train(
            TrainConfig(
                scenario=small,
                algo=algo,
                timesteps=STEPS,
                seed=1,
                out=root / algo,
                hp=hp,
                progress_bar=False,
                tensorboard=False,
            )
        )
        out[algo] = res
    return out


# --------------------------------------------------------------------------- hyperparameters


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_shipped_hyperparameters_load_for_every_algorithm(algo):
    hp = load_hyperparams(algo, "some-unlisted-scenario")
    assert hp.source.endswith(":default")
    assert hp.run["n_envs"] >= 1 and "policy" in hp.algo_kwargs
    assert load_hyperparams(algo, "toy-analytic").source.endswith(":toy-analytic")


def test_overrides_are_yaml_values_and_reach_nested_keys():
    hp = load_hyperparams(
        "ppo", "x", ["learning_rate=1e-4", "policy_kwargs.net_arch=[128, 128]", "n_envs=2"]
    )
    assert hp.algo_kwargs["learning_rate"] == pytest.approx(1e-4)
    assert hp.algo_kwargs["policy_kwargs"]["net_arch"] == [128, 128]
    assert hp.run["n_envs"] == 2
    assert parse_override("a.b=__import__('os')") == (["a", "b"], "__import__('os')")  # no eval
    assert parse_override("x=2e-3") == (["x"], 2e-3)
    assert parse_override("x=7") == (["x"], 7)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("learning_rat=1e-4", "unknown key"),
        ("nokey", "expected key=value"),
        ("n_envs=0", "positive integer"),
        ("policy_kwargs.activation_fn=sigmoid", "activation_fn"),
        ("vec_env=threads", "vec_env"),
    ],
)
def test_bad_hyperparameters_fail_with_the_key(override, match):
    with pytest.raises(HyperparamError, match=match):
        load_hyperparams("maskable_ppo", "x", [override])


def test_unknown_algorithm_is_a_clear_error():
    with pytest.raises(HyperparamError, match="maskable_ppo, ppo, a2c, dqn"):
        load_hyperparams("sac", "x")


# --------------------------------------------------------------------------- smoke training


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_smoke_training_writes_a_complete_run_directory(runs, algo):
    res = runs[algo]
    info = read_run(res.run_dir)
    assert set(RUN_KEYS) <= set(info.data)
    assert info.algo == algo and info.seed == 1 and info.data["timesteps"] == STEPS
    for f in ("model.zip", "best_model.zip", "scenario.yaml", "learning_curve.csv"):
        assert (res.run_dir / f).is_file(), f
    assert any((res.run_dir / "checkpoints").iterdir())
    lines = (res.run_dir / "learning_curve.csv").read_text().splitlines()
    assert lines[0].startswith("timesteps,wall_time_s,env_time_s,eval_utility_mean")
    assert len(lines) >= 3  # header + at least two evaluations
    assert 0 < res.env_time_s < res.wall_time_s
    assert info.data["hyperparams"]["run"]["n_envs"] == 2
    assert len(info.data["git_commit"]) >= 7
    assert info.data["versions"]["sb3"]


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_trained_policy_respects_the_mask(runs, small, algo):
    pol = load_run_policy(runs[algo].run_dir)
    env = CollabInferenceEnv(small)
    obs, _ = env.reset(seed=0)
    pol.bind(env)
    only = np.zeros(env.action_space.n, dtype=bool)
    only[3] = True
    assert pol.predict(obs, only, deterministic=True) == 3
    pol.reset(seed=0)
    assert {pol.predict(obs, only, deterministic=False) for _ in range(10)} == {3}
    a = pol.predict(obs, env.action_masks())
    assert 0 <= a < env.action_space.n


def test_policy_trained_elsewhere_is_rejected_by_bind(runs):
    pol = load_run_policy(runs["ppo"].run_dir)
    other = CollabInferenceEnv(toy_model({"action_menu.batch_sizes": [1, 4]}))
    with pytest.raises(ValueError, match=r"was trained on scenario .* observation features"):
        pol.bind(other)


def test_existing_run_directory_is_not_overwritten(runs, small):
    with pytest.raises(RunExistsError, match="--overwrite"):
        train(
            TrainConfig(
                scenario=small,
                algo="a2c",
                timesteps=8,
                out=runs["a2c"].run_dir,
                progress_bar=False,
                tensorboard=False,
            )
        )


# --------------------------------------------------------------------------- bad run dirs


def test_missing_run_directory(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        read_run(tmp_path / "nope")
    with pytest.raises(RunDirError, match=r"run\.json: missing"):
        read_run(tmp_path)


def _copy_run(runs, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(runs["a2c"].run_dir, dst)
    return dst


def test_corrupt_run_json(runs, tmp_path):
    d = _copy_run(runs, tmp_path)
    (d / "run.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RunDirError, match="corrupt JSON"):
        read_run(d)
    data = json.loads((runs["a2c"].run_dir / "run.json").read_text())
    del data["algo"]
    (d / "run.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RunDirError, match="missing field 'algo'"):
        read_run(d)
    data["algo"], data["schema_version"] = "sac", 1
    (d / "run.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RunDirError, match="field 'algo'"):
        read_run(d)


def test_missing_or_corrupt_model_file(runs, tmp_path):
    d = _copy_run(runs, tmp_path)
    (d / "best_model.zip").write_bytes(b"not a zip")
    with pytest.raises(RunDirError, match="cannot load the a2c model"):
        load_run_policy(d)
    (d / "best_model.zip").unlink()
    (d / "model.zip").unlink()
    with pytest.raises(RunDirError, match=r"no model\.zip"):
        load_run_policy(d)


def test_sb3_policy_rejects_unknown_algorithms():
    with pytest.raises(ValueError, match="unknown algorithm"):
        SB3Policy(object(), "sac")
