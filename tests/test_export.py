"""Export of trained SB3 policies to the runtime planner: artefact content, parity with SB3,
identical evaluation metrics, provenance and the export's own error checks.

Run directories are made here by tiny trainings (a few hundred steps) on the toy fixture and
on the shipped ``toy-analytic`` scenario, with a ``run.json`` as ``edgerl train`` writes it
(the contract in ``edgerl.agents.rundir``). ``test_planner.py`` reuses :func:`artefact`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from conftest import TOY_SCENARIO, toy_model
from edgerl.agents.planner import PLANNER_SCHEMA_VERSION, Planner, spec_digest
from edgerl.agents.rundir import RunDirError, scenario_yaml_text
from edgerl.envs.config import ScenarioConfig
from edgerl.envs.env import CollabInferenceEnv
from edgerl.envs.observation import OBS_CLIP, spec_to_json
from edgerl.experiments.cli import app
from edgerl.experiments.export import (
    ExportError,
    compare_rollouts,
    export_and_show,
    export_run,
    parity_check,
    sb3_deterministic_action,
)
from typer.testing import CliRunner

TRAIN_STEPS = 256
#: Device memory that makes the toy's memory mask partial (the plans running unit 0 on the
#: device need 800 kB of activations, see conftest.synthetic_profile).
TIGHT_DEVICE_MB = 0.5
MASKED = {"devices.memory_mb": TIGHT_DEVICE_MB}
#: PPO and A2C share MaskablePPO's actor-critic graph path; their trainings make them slow.
ALGOS = (
    "maskable_ppo",
    "dqn",
    pytest.param("ppo", marks=pytest.mark.slow),
    pytest.param("a2c", marks=pytest.mark.slow),
)

_CACHE: dict[tuple[Any, ...], Path] = {}


def toy_yaml(overrides: dict[str, Any]) -> str:
    """The YAML text of ``toy_model(overrides)``'s scenario (same dotted overrides)."""
    data = copy.deepcopy(TOY_SCENARIO)
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return yaml.safe_dump(data, sort_keys=False)


def train(env: CollabInferenceEnv, algo: str, steps: int = TRAIN_STEPS, seed: int = 0) -> Any:
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        model = MaskablePPO(
            "MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=seed, device="cpu"
        )
    elif algo == "ppo":
        from stable_baselines3 import PPO

        model = PPO(
            "MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=seed, device="cpu"
        )
    elif algo == "a2c":
        from stable_baselines3 import A2C

        model = A2C("MlpPolicy", env, n_steps=32, seed=seed, device="cpu")
    else:
        from stable_baselines3 import DQN

        model = DQN("MlpPolicy", env, learning_starts=64, buffer_size=1000, seed=seed, device="cpu")
    return model.learn(steps)


def write_run(run_dir: Path, algo: str, scenario: str, cfg: ScenarioConfig, model: Any) -> Path:
    """A run directory as ``edgerl train`` writes it (run.json keys of edgerl.agents.rundir;
    the scenario as its canonical YAML)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    yaml_text = scenario_yaml_text(cfg)
    (run_dir / "scenario.yaml").write_text(yaml_text, encoding="utf-8")
    model.save(run_dir / "model.zip")
    run = {
        "schema_version": 1,
        "run_id": f"test-{algo}",
        "scenario": scenario,
        "scenario_fingerprint": hashlib.sha256(yaml_text.encode("utf-8")).hexdigest(),
        "algo": algo,
        "seed": 0,
        "timesteps": TRAIN_STEPS,
        "hyperparams": {},
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "versions": {},
        "started": "2024-01-01T00:00:00+00:00",
        "finished": "2024-01-01T00:00:10+00:00",
        "wall_time_s": 10.0,
        "env_time_s": 5.0,
        "command": "pytest",
    }
    (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    return run_dir


def toy_run(root: Path, algo: str, overrides: dict[str, Any]) -> Path:
    """A trained toy run directory (cached per process)."""
    key = ("toy", algo, tuple(sorted(overrides.items())))
    if key not in _CACHE:
        model = toy_model(overrides)
        env = CollabInferenceEnv(model)
        d = root / f"run-{algo}-{len(_CACHE)}"
        _CACHE[key] = write_run(d, algo, "toy-test", model.cfg, train(env, algo))
    return _CACHE[key]


def artefact(
    root: Path, algo: str = "maskable_ppo", overrides: dict[str, Any] | None = None
) -> Path:
    """An exported toy planner (cached per process; copy it before modifying)."""
    overrides = MASKED if overrides is None else overrides
    key = ("artefact", algo, tuple(sorted(overrides.items())))
    if key not in _CACHE:
        run = toy_run(root, algo, overrides)
        export_run(run, run / "planner", model=toy_model(overrides))
        _CACHE[key] = run / "planner"
    return _CACHE[key]


def analytic_run(root: Path) -> Path:
    """A MaskablePPO run on the shipped ``toy-analytic`` scenario (measured profiles)."""
    key = ("analytic",)
    if key not in _CACHE:
        env = CollabInferenceEnv("toy-analytic")
        _CACHE[key] = write_run(
            root / "run-analytic",
            "maskable_ppo",
            "toy-analytic",
            env.model.cfg,
            train(env, "maskable_ppo"),
        )
    return _CACHE[key]


@pytest.fixture(scope="session")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("planner-runs")


# ----------------------------------------------------------------------------- artefact


def test_artefact_content(root):
    d = artefact(root)
    run = json.loads((d.parent / "run.json").read_text())
    model = toy_model(MASKED)
    env = CollabInferenceEnv(model)
    assert sorted(p.name for p in d.iterdir()) == [
        "planner.json",
        "policy.onnx",
        "policy_weights.bin",
    ]
    spec = json.loads((d / "planner.json").read_text())
    assert spec["schema_version"] == PLANNER_SCHEMA_VERSION and spec["kind"] == "edgerl.planner"
    assert spec["content_sha256"] == spec_digest(spec)
    assert spec["observation"]["features"] == spec_to_json(env.features)
    assert spec["observation"]["clip"] == OBS_CLIP
    assert spec["actions"] == [p.describe() for p in model.plans]
    assert spec["static_mask"] == model.static_mask.tolist()
    assert not all(spec["static_mask"])  # the tight memory makes some plans infeasible
    yaml_sha = hashlib.sha256((d.parent / "scenario.yaml").read_bytes()).hexdigest()
    assert spec["scenario"] == {
        "name": "toy-test",
        "source": "toy-test",
        "fingerprint_sha256": yaml_sha,
    }
    assert len(spec["profiles"]) == 3  # device, edge, cloud of the one variant
    for entry in spec["profiles"]:
        prof = getattr(model.profiles, entry["tier"])[entry["variant"]]
        canon = json.dumps(prof.to_dict(), sort_keys=True, separators=(",", ":"))
        assert entry["sha256"] == hashlib.sha256(canon.encode()).hexdigest()
    tr = spec["training"]
    assert (tr["run_id"], tr["algo"], tr["seed"], tr["git_commit"]) == (
        run["run_id"],
        run["algo"],
        run["seed"],
        run["git_commit"],
    )
    assert tr["checkpoint"] == "model.zip"  # no best_model.zip in this run: falls back
    onnx_bytes = (d / "policy.onnx").read_bytes()
    assert spec["policy"]["sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    assert spec["policy"]["bytes"] == len(onnx_bytes)
    # One self-contained protobuf graph (no pickle, no external data) that passes the checker.
    proto = onnx.load_from_string(onnx_bytes)
    onnx.checker.check_model(proto, full_check=True)
    assert (proto.ir_version, proto.opset_import[0].version) == (8, 18)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert [i.name for i in proto.graph.input] == ["observation", "action_mask"]
    assert [o.name for o in proto.graph.output] == ["action"]
    for f in d.iterdir():
        assert not f.read_bytes().startswith(b"\x80"), f"{f} looks like a pickle"
    assert sum(f.stat().st_size for f in d.iterdir()) <= 1_000_000
    # The weights file: the SB3 actor's Linear layers, raw little-endian float32, in order.
    from sb3_contrib import MaskablePPO

    net = spec["network"]
    weights = (d / "policy_weights.bin").read_bytes()
    assert net["sha256"] == hashlib.sha256(weights).hexdigest() and net["bytes"] == len(weights)
    assert (net["dtype"], net["byte_order"], net["scores"]) == ("float32", "little", "actor_logits")
    assert [layer["op"] for layer in net["layers"]] == ["linear", "tanh"] * 2 + ["linear"]
    policy = MaskablePPO.load(d.parent / "model.zip", device="cpu").policy
    torch_linears = [*policy.mlp_extractor.policy_net[::2], policy.action_net]
    linear_layers = [layer for layer in net["layers"] if layer["op"] == "linear"]
    for layer, lin in zip(linear_layers, torch_linears, strict=True):
        n_in, n_out = layer["in_features"], layer["out_features"]
        w = np.frombuffer(weights, "<f4", n_in * n_out, layer["weight_offset_bytes"])
        b = np.frombuffer(weights, "<f4", n_out, layer["bias_offset_bytes"])
        assert np.array_equal(w.reshape(n_out, n_in), lin.weight.detach().numpy())
        assert np.array_equal(b, lin.bias.detach().numpy())


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("algo", ALGOS)
def test_parity_with_sb3_under_a_partial_mask(root, algo):
    model = toy_model(MASKED)
    d = artefact(root, algo)
    rep = parity_check(d.parent, d, 1_000, model=model)
    assert rep.n_observations == 1_000 and rep.n_episodes > 1
    assert rep.ok, rep
    # The planner never picks a plan the memory mask forbids, whatever the policy prefers.
    planner = Planner.load(d)
    rng = np.random.default_rng(0)
    obs = rng.uniform(0, OBS_CLIP, (300, len(planner.features))).astype(np.float32)
    picks = {planner.predict(o) for o in obs}
    assert all(model.static_mask[a] for a in picks)


def test_sb3_reference_is_masked_for_unmasked_algorithms(root):
    """For DQN (no masks in SB3) the reference is SB3's own argmax restricted to the mask;
    with a mask that allows one plan only, both the reference and the planner return it."""
    from stable_baselines3 import DQN

    d = artefact(root, "dqn")
    sb3 = DQN.load(d.parent / "model.zip", device="cpu")
    planner = Planner.load(d)
    obs = np.full(len(planner.features), 0.5, dtype=np.float32)
    for only in np.flatnonzero(planner.static_mask)[:5]:
        mask = np.zeros(len(planner.plans), dtype=bool)
        mask[only] = True
        assert sb3_deterministic_action(sb3, "dqn", obs, mask) == only
        assert planner.predict(obs, mask) == only


@pytest.mark.parametrize("algo", ["maskable_ppo", "dqn"])
def test_evaluated_metrics_identical(root, algo):
    model = toy_model(MASKED)
    d = artefact(root, algo)
    cmp = compare_rollouts(d.parent, d, n_episodes=3, seed=7, model=model)
    assert cmp.n_decisions > 100
    assert cmp.identical_actions and cmp.identical_metrics
    for k, v in cmp.metrics_sb3.items():
        if k != "decision_time_us":
            assert v == cmp.metrics_planner[k] or (np.isnan(v) and np.isnan(cmp.metrics_planner[k]))


def test_parity_check_detects_a_different_policy(root):
    """The check can fail: a planner exported from another training disagrees somewhere."""
    model = toy_model(MASKED)
    other = artefact(root, "dqn")
    rep = parity_check(toy_run(root, "maskable_ppo", MASKED), other, 500, model=model)
    assert not rep.ok and rep.n_equal_plan < 500 and rep.mismatches


# ----------------------------------------------------------------------------- errors


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("planner"))
    return dst


def test_missing_run_dir_and_run_json(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        export_run(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match=r"run\.json"):
        export_run(tmp_path / "empty", tmp_path / "out")


def test_edited_scenario_is_rejected(root, tmp_path):
    run = copy_run(toy_run(root, "maskable_ppo", MASKED), tmp_path / "run")
    with (run / "scenario.yaml").open("a") as f:
        f.write("# edited\n")
    with pytest.raises(ExportError, match="scenario_fingerprint"):
        export_run(run, tmp_path / "out", model=toy_model(MASKED))
    assert not (tmp_path / "out").exists()


def test_vecnormalize_is_rejected(root, tmp_path):
    run = copy_run(toy_run(root, "maskable_ppo", MASKED), tmp_path / "run")
    (run / "vecnormalize.pkl").write_bytes(b"")
    with pytest.raises(ExportError, match="VecNormalize"):
        export_run(run, tmp_path / "out", model=toy_model(MASKED))


def test_model_of_another_scenario_is_rejected(root, tmp_path):
    run = toy_run(root, "maskable_ppo", MASKED)
    with pytest.raises(ExportError, match="not this run's scenario"):
        export_run(run, tmp_path / "out", model=toy_model())


def test_policy_spaces_must_match_the_scenario(root, tmp_path):
    """A model trained with one plan catalogue cannot be exported for another."""
    run = copy_run(toy_run(root, "maskable_ppo", MASKED), tmp_path / "run")
    other = {"action_menu.batch_sizes": [1, 2], **MASKED}
    text = toy_yaml(other)
    (run / "scenario.yaml").write_text(text)
    meta = json.loads((run / "run.json").read_text())
    meta["scenario_fingerprint"] = hashlib.sha256(text.encode()).hexdigest()
    (run / "run.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="actions"):
        export_run(run, tmp_path / "out", model=toy_model(other))


def test_unknown_checkpoint(root, tmp_path):
    with pytest.raises(ExportError, match="checkpoint"):
        export_run(
            toy_run(root, "maskable_ppo", MASKED),
            tmp_path / "out",
            checkpoint="latest",
            model=toy_model(MASKED),
        )


# ----------------------------------------------------------------------------- CLI, shipped


def test_cli_export_plan_and_bench_on_a_shipped_scenario(root, tmp_path):
    run = analytic_run(root)
    out = tmp_path / "planner"
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(run), "--out", str(out), "--parity", "300"])
    assert res.exit_code == 0, res.output
    assert "parity on 300 observations" in res.output and "SB3 on 300," in res.output
    spec = json.loads((out / "planner.json").read_text())
    model = CollabInferenceEnv("toy-analytic").model
    for entry in spec["profiles"]:  # measured profile files, hashed as files
        prof = getattr(model.profiles, entry["tier"])[entry["variant"]]
        assert entry["sha256"] == hashlib.sha256(Path(prof.path).read_bytes()).hexdigest()
        assert entry["source"] == (
            f"profiles/data/{entry['model']}/{entry['variant']}/{entry['hardware']}.json"
        )

    env = CollabInferenceEnv("toy-analytic", split="eval")
    obs, _ = env.reset(seed=3)
    state = env.raw_state_dict()
    (tmp_path / "state.json").write_text(json.dumps(state))
    res = runner.invoke(app, ["plan", str(out), "--state", str(tmp_path / "state.json")])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown == Planner.load(out).plan(state).to_dict()
    assert shown["index"] == Planner.load(out).predict(obs, env.action_masks())

    bench_json = tmp_path / "bench.json"
    res = runner.invoke(
        app,
        [
            "bench",
            "planner",
            str(out),
            "--calls",
            "600",
            "--warmup",
            "50",
            "--rounds",
            "2",
            "--out",
            str(bench_json),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "ratio edgent/planner numpy: in-loop p50" in res.output and "hot p50" in res.output
    assert "ratio edgent/planner onnx: in-loop p50" in res.output
    b = json.loads(bench_json.read_text())
    assert b["scenario"] == "toy-analytic" and b["baseline"] == "edgent"
    loops = ("planner_in_loop", "planner_onnx_in_loop", "baseline_in_loop")
    assert [b[k]["calls"] for k in loops] == [600] * 3
    assert b["planner_in_loop_cpu"]["calls"] == b["planner_onnx_in_loop_cpu"]["calls"] == 600
    hot = ("planner_hot", "planner_onnx_hot", "baseline_hot")
    assert [b[k]["calls"] for k in hot] == [2 * 300] * 3  # the states of round 1, twice
    assert b["decisions_equal_numpy_onnx"] == b["decisions_compared"] == 350  # warm-up too
    assert (
        b["ratio_p50_in_loop"] == b["baseline_in_loop"]["p50_us"] / b["planner_in_loop"]["p50_us"]
    )
    for key in (*loops, "planner_in_loop_cpu", *hot):
        st = b[key]
        assert 0 < st["p50_us"] <= st["p90_us"] <= st["p99_us"] <= st["max_us"], key
    assert b["artefact_bytes"] == sum(f.stat().st_size for f in out.iterdir())


def test_cli_export_reports_errors(tmp_path):
    res = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "does not exist" in res.output


def test_export_and_show_prints_a_plan(root, capsys):
    run = analytic_run(root)
    export_and_show(run, parity_observations=200)
    out = capsys.readouterr().out
    assert (run / "planner" / "policy.onnx").is_file()
    assert "parity on 200 held-out observations: planner == SB3 on 200 (plan)" in out
    plan = json.loads(out.split("plan:", 1)[1])
    assert plan["name"] == Planner.load(run / "planner").plans[plan["index"]].name
