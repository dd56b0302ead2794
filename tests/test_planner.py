"""The runtime planner: light imports, decisions equal to the env's observation path, and a
clear error for every kind of bad input or damaged artefact."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_model
from edgerl.agents.base import Policy
from edgerl.agents.planner import (
    BACKENDS,
    PLANNER_SCHEMA_VERSION,
    Plan,
    Planner,
    PlannerError,
    spec_digest,
)
from edgerl.envs.env import CollabInferenceEnv
from edgerl.envs.observation import OBS_CLIP, ObservationError
from edgerl.experiments.cli import app
from test_export import MASKED, analytic_run, artefact
from typer.testing import CliRunner

HEAVY = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "simpy")


@pytest.fixture(scope="session")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("planner-artefacts")


@pytest.fixture
def planner_dir(root, tmp_path) -> Path:
    """A private copy of an exported toy planner (tests may damage it)."""
    return Path(shutil.copytree(artefact(root), tmp_path / "planner"))


@pytest.fixture
def env() -> CollabInferenceEnv:
    return CollabInferenceEnv(toy_model(MASKED), split="eval")


def write_spec(d: Path, spec: dict) -> None:
    """Write ``planner.json`` with a matching content checksum (to reach the checks behind it)."""
    spec["content_sha256"] = spec_digest(spec)
    (d / "planner.json").write_text(json.dumps(spec))


def rewrite_spec(d: Path, **changes) -> None:
    spec = json.loads((d / "planner.json").read_text())
    spec.update(changes)
    write_spec(d, spec)


def set_policy_sha(d: Path) -> None:
    spec = json.loads((d / "planner.json").read_text())
    spec["policy"]["sha256"] = hashlib.sha256((d / "policy.onnx").read_bytes()).hexdigest()
    write_spec(d, spec)


# ----------------------------------------------------------------------------- imports


def test_import_loads_no_heavy_module(planner_dir, state):
    """Importing, loading and using the planner (numpy backend) loads no heavy module, and
    not onnxruntime either; the onnx backend adds onnxruntime only."""
    code = (
        "import json, sys, edgerl.agents.planner as m\n"
        "state = json.loads(sys.argv[2])\n"
        "p = m.Planner.load(sys.argv[1])\n"
        "p.plan(state); p.plan_many([state, state])\n"
        f"heavy = [m for m in {HEAVY!r} + ('onnxruntime',) if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "m.Planner.load(sys.argv[1], backend='onnx').plan(state)\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert 'onnxruntime' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code, str(planner_dir), json.dumps(state)], check=True)


def test_the_import_check_can_fail():
    """The same probe reports a heavy module when one is imported (the check is live)."""
    code = "import edgerl.envs.env, sys; assert 'gymnasium' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- decisions


def test_plan_equals_predict_on_env_observations(planner_dir, env):
    planner = Planner.load(planner_dir)
    assert isinstance(planner, Policy)
    planner.bind(env)
    seen = set()
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        truncated = False
        while not truncated:
            state = env.raw_state_dict()
            plan = planner.plan(state)
            assert isinstance(plan, Plan)
            assert np.array_equal(planner.observe(state), obs)  # same observation, bit for bit
            assert plan.index == planner.predict(obs, env.action_masks())
            assert plan.to_dict() == env.plans[plan.index].describe()
            assert env.action_masks()[plan.index]
            seen.add(plan.index)
            obs, _, _, truncated, _ = env.step(plan.index)
    assert seen


#: Held-out states on which the numpy and onnx backends must decide alike (issue 24).
N_PARITY_STATES = 10_000


def held_out_states(env: CollabInferenceEnv, planner: Planner, n: int) -> list[dict]:
    """Raw states of held-out episodes (seeds 0, 1, ...) driven by ``planner``."""
    states: list[dict] = []
    seed = 0
    while len(states) < n:
        env.reset(seed=seed)
        seed += 1
        truncated = False
        while not truncated and len(states) < n:
            states.append(env.raw_state_dict())
            _, _, _, truncated, _ = env.step(planner.plan(states[-1]).index)
    return states


def test_numpy_and_onnx_backends_decide_alike_on_10000_held_out_states(planner_dir, env):
    """Both backends decide the same plan on 10,000 held-out states (``plan``, the runtime
    path) and, since a tiny training's policy may prefer one plan everywhere, also under
    random masks (every feasible subset ranks other plans first) on those states'
    observations and on observations spread over the whole box."""
    numpy_planner = Planner.load(planner_dir)
    onnx_planner = Planner.load(planner_dir, backend="onnx")
    assert (numpy_planner.backend, onnx_planner.backend) == ("numpy", "onnx")
    states = held_out_states(env, numpy_planner, N_PARITY_STATES)
    by_numpy = [numpy_planner.plan(s).index for s in states]
    assert by_numpy == [onnx_planner.plan(s).index for s in states]
    # The batch form equals one plan() per state, on both backends.
    for planner in (numpy_planner, onnx_planner):
        assert [p.index for p in planner.plan_many(states)] == by_numpy
    rng = np.random.default_rng(0)
    held_out = np.stack([numpy_planner.observe(s) for s in states])
    box = rng.uniform(0.0, OBS_CLIP, held_out.shape).astype(np.float32)
    for obs in (held_out, box):
        masks = rng.random((len(obs), len(numpy_planner.plans))) < 0.3
        masks[:, np.flatnonzero(numpy_planner.static_mask)[0]] = True  # never empty
        masked = numpy_planner.predict_batch(obs, masks)
        assert np.array_equal(masked, onnx_planner.predict_batch(obs, masks))
        assert len(set(masked.tolist())) > 5
    assert np.array_equal(numpy_planner.predict_batch(held_out), by_numpy)


def test_plan_many_equals_plan_also_for_edge_cases(planner_dir, env):
    import warnings

    from edgerl.agents.planner import StateOutOfRangeWarning

    planner = Planner.load(planner_dir)
    assert planner.plan_many([]) == []
    states = held_out_states(env, planner, 50)
    states[7] = {k: np.float64(v) for k, v in states[7].items()}  # the checked path
    hi = planner.spec["observation"]["training_range"]["high"]
    states[9] = dict(states[9], uplink_mbps=hi[0] * 10 + 1)  # outside the training range
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StateOutOfRangeWarning)
        single = [planner.plan(s) for s in states]
        assert planner.out_of_range == 1
        assert planner.plan_many(states) == single
        assert planner.out_of_range == 2  # counted like plan() counts
    bad = list(states)
    bad[20] = dict(bad[20], wan_mbps=math.nan)
    with pytest.raises(ObservationError, match="'wan_mbps': must be finite"):
        planner.plan_many(bad)


def test_numpy_scalars_and_ints_are_accepted(planner_dir, env):
    planner = Planner.load(planner_dir)
    env.reset(seed=0)
    state = env.raw_state_dict()
    as_numpy = {k: np.float64(v) for k, v in state.items()}
    as_int = {k: int(v) if float(v).is_integer() else v for k, v in state.items()}
    assert planner.plan(as_numpy) == planner.plan(state) == planner.plan(as_int)


def test_predict_applies_the_callers_mask_and_the_static_mask(planner_dir):
    planner = Planner.load(planner_dir)
    obs = np.full(len(planner.features), 0.3, dtype=np.float32)
    allowed = np.flatnonzero(planner.static_mask)
    forbidden = np.flatnonzero(~planner.static_mask)
    assert forbidden.size  # the tight memory makes some plans infeasible
    for only in allowed[:4]:
        mask = np.zeros(len(planner.plans), dtype=bool)
        mask[only] = True
        assert planner.predict(obs, mask) == only
        assert planner.predict(obs[None, :], mask[None, :]) == only
    with pytest.raises(PlannerError, match="allows no action"):
        mask = np.zeros(len(planner.plans), dtype=bool)
        mask[forbidden[0]] = True  # allowed by the caller, forbidden by memory
        planner.predict(obs, mask)


# ----------------------------------------------------------------------------- bad state


@pytest.fixture
def state(env) -> dict:
    env.reset(seed=0)
    return env.raw_state_dict()


def test_missing_field(planner_dir, state):
    del state["uplink_mbps"]
    with pytest.raises(ObservationError, match=r"missing \['uplink_mbps'\]"):
        Planner.load(planner_dir).plan(state)


def test_extra_field(planner_dir, state):
    state["gpu_temp_c"] = 40.0
    with pytest.raises(ObservationError, match=r"unexpected \['gpu_temp_c'\]"):
        Planner.load(planner_dir).plan(state)


@pytest.mark.parametrize("bad", ["7.5", None, True, [1.0], {"v": 1}])
def test_wrong_type(planner_dir, state, bad):
    state["deadline_ms"] = bad
    with pytest.raises(ObservationError, match="'deadline_ms': expected a number"):
        Planner.load(planner_dir).plan(state)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite(planner_dir, state, bad):
    state["wan_mbps"] = bad
    with pytest.raises(ObservationError, match="'wan_mbps': must be finite"):
        Planner.load(planner_dir).plan(state)


def test_wrong_observation_shape_and_values(planner_dir):
    planner = Planner.load(planner_dir)
    n = len(planner.features)
    with pytest.raises(PlannerError, match=rf"shape \({n + 1},\), expected \({n},\)"):
        planner.predict(np.zeros(n + 1, dtype=np.float32))
    with pytest.raises(PlannerError, match="shape"):
        planner.predict(np.zeros((2, n), dtype=np.float32))
    with pytest.raises(PlannerError, match="non-finite"):
        planner.predict(np.full(n, np.nan, dtype=np.float32))
    with pytest.raises(PlannerError, match="action_mask has shape"):
        planner.predict(np.zeros(n, dtype=np.float32), np.ones(3, dtype=bool))
    with pytest.raises(PlannerError, match="deterministic"):
        planner.predict(np.zeros(n, dtype=np.float32), deterministic=False)


# ----------------------------------------------------------------------------- bad artefact


def test_schema_version_mismatch(planner_dir):
    rewrite_spec(planner_dir, schema_version=PLANNER_SCHEMA_VERSION + 1)
    with pytest.raises(
        PlannerError, match=f"schema_version {PLANNER_SCHEMA_VERSION + 1} is not supported"
    ):
        Planner.load(planner_dir)


def test_old_schema_version_is_refused_on_both_backends(planner_dir):
    spec = json.loads((planner_dir / "planner.json").read_text())
    del spec["network"]
    spec["schema_version"] = 2  # what edgerl wrote before the weights file
    write_spec(planner_dir, spec)
    for backend in BACKENDS:
        with pytest.raises(
            PlannerError, match=r"schema_version 2 is not supported.*expects 3.*edgerl export"
        ):
            Planner.load(planner_dir, backend=backend)


def test_unknown_backend(planner_dir):
    with pytest.raises(PlannerError, match=r"backend 'torch': expected one of \['numpy', 'onnx'\]"):
        Planner.load(planner_dir, backend="torch")


def test_tampered_onnx(planner_dir):
    data = bytearray((planner_dir / "policy.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte inside the weights
    (planner_dir / "policy.onnx").write_bytes(bytes(data))
    with pytest.raises(PlannerError, match=r"policy\.onnx: checksum mismatch"):
        Planner.load(planner_dir, backend="onnx")
    Planner.load(planner_dir)  # the numpy backend does not read the graph


def test_tampered_weights(planner_dir):
    data = bytearray((planner_dir / "policy_weights.bin").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    (planner_dir / "policy_weights.bin").write_bytes(bytes(data))
    with pytest.raises(PlannerError, match=r"policy_weights\.bin: checksum mismatch"):
        Planner.load(planner_dir)
    Planner.load(planner_dir, backend="onnx")  # the onnx backend does not read the weights


def set_weights_sha(d: Path) -> None:
    spec = json.loads((d / "planner.json").read_text())
    data = (d / "policy_weights.bin").read_bytes()
    spec["network"]["sha256"] = hashlib.sha256(data).hexdigest()
    spec["network"]["bytes"] = len(data)
    write_spec(d, spec)


def test_weights_file_is_checked_against_the_layer_table(planner_dir):
    """Consistent checksums do not make a wrong weights file or layer table acceptable."""
    weights = planner_dir / "policy_weights.bin"
    original = weights.read_bytes()
    weights.write_bytes(original[:-4])  # one float short
    set_weights_sha(planner_dir)
    with pytest.raises(PlannerError, match="needs bytes up to"):
        Planner.load(planner_dir)
    weights.write_bytes(original + b"\0\0\0\0")  # one float too many
    set_weights_sha(planner_dir)
    with pytest.raises(PlannerError, match="accounts for"):
        Planner.load(planner_dir)
    nan = np.frombuffer(original, dtype="<f4").copy()
    nan[3] = np.nan
    weights.write_bytes(nan.astype("<f4").tobytes())
    set_weights_sha(planner_dir)
    with pytest.raises(PlannerError, match="non-finite"):
        Planner.load(planner_dir)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda layers: layers.__delitem__(slice(-2, None)), "the network gives 64 scores"),
        (lambda layers: layers[0].update(in_features=3), r"layers\[0\]: in_features 3"),
        (lambda layers: layers[0].update(bias_offset_bytes=0), "stored in order"),
        (lambda layers: layers.insert(1, {"op": "tanh"}), "must follow a linear layer"),
        (lambda layers: layers[1].update(op="gelu"), "unknown op 'gelu'"),
        (lambda layers: layers.append({"op": "tanh"}), "the last layer must be linear"),
    ],
)
def test_malformed_layer_table(planner_dir, edit, message):
    spec = json.loads((planner_dir / "planner.json").read_text())
    edit(spec["network"]["layers"])
    write_spec(planner_dir, spec)
    with pytest.raises(PlannerError, match=message):
        Planner.load(planner_dir)


def test_garbage_onnx_with_matching_checksum(planner_dir):
    (planner_dir / "policy.onnx").write_bytes(b"not an onnx graph")
    set_policy_sha(planner_dir)
    with pytest.raises(PlannerError, match="onnxruntime cannot load"):
        Planner.load(planner_dir, backend="onnx")


def test_graph_of_another_scenario(root, planner_dir):
    """A graph with other input/output shapes (36 plans instead of 21) is refused, even
    with a consistent checksum."""
    other = artefact_of_analytic(root)
    shutil.copy(other / "policy.onnx", planner_dir / "policy.onnx")
    set_policy_sha(planner_dir)
    with pytest.raises(PlannerError, match=r"inputs of policy\.onnx do not match planner\.json"):
        Planner.load(planner_dir, backend="onnx")


def artefact_of_analytic(root: Path) -> Path:
    run = analytic_run(root)
    out = run / "planner-for-planner-tests"
    if not out.exists():
        from edgerl.experiments.export import export_run

        export_run(run, out)
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "something-else"}, "kind is 'something-else'"),
        ({"static_mask": [True]}, "static_mask must be 21 booleans"),
        ({"static_mask": [False] * 21}, "static_mask allows no action"),
        ({"actions": []}, "decoding table is empty"),
        ({"observation": {"features": [], "clip": 10.0}}, "must be non-empty"),
    ],
)
def test_malformed_spec(planner_dir, change, message):
    rewrite_spec(planner_dir, **change)
    with pytest.raises(PlannerError, match=message):
        Planner.load(planner_dir)


def test_edited_decoding_table(planner_dir):
    """Editing planner.json (here: swapping two plans' names) breaks its content checksum."""
    spec = json.loads((planner_dir / "planner.json").read_text())
    a, b = spec["actions"][0], spec["actions"][1]
    a["name"], b["name"] = b["name"], a["name"]
    (planner_dir / "planner.json").write_text(json.dumps(spec, indent=1))
    with pytest.raises(PlannerError, match=r"content checksum mismatch.*edited after export"):
        Planner.load(planner_dir)


def test_reformatting_keeps_the_content_checksum(planner_dir):
    spec = json.loads((planner_dir / "planner.json").read_text())
    (planner_dir / "planner.json").write_text(json.dumps(spec, indent=4, sort_keys=True))
    Planner.load(planner_dir)


def test_spec_details_are_checked(planner_dir):
    spec = json.loads((planner_dir / "planner.json").read_text())
    spec["observation"]["clip"] = 5.0
    write_spec(planner_dir, spec)
    with pytest.raises(PlannerError, match=r"observation\.clip is 5\.0"):
        Planner.load(planner_dir)
    spec["observation"]["clip"] = 10.0
    spec["actions"][3]["batch_size"] = "1"
    write_spec(planner_dir, spec)
    with pytest.raises(PlannerError, match=r"actions\[3\].batch_size: expected int"):
        Planner.load(planner_dir)
    spec["actions"][3]["batch_size"] = 1
    del spec["actions"][3]["variant"]
    write_spec(planner_dir, spec)
    with pytest.raises(PlannerError, match=r"actions\[3\]: keys differ.*'variant'"):
        Planner.load(planner_dir)


def test_missing_files_and_bad_json(planner_dir, tmp_path):
    with pytest.raises(PlannerError, match=r"planner\.json is missing"):
        Planner.load(tmp_path)
    (planner_dir / "planner.json").write_text("{not json")
    with pytest.raises(PlannerError, match="cannot read JSON"):
        Planner.load(planner_dir)
    (planner_dir / "policy.onnx").unlink()
    with pytest.raises(PlannerError, match=r"policy\.onnx is missing"):
        Planner.load(planner_dir, backend="onnx")
    (planner_dir / "policy_weights.bin").unlink()
    with pytest.raises(PlannerError, match=r"policy_weights\.bin is missing"):
        Planner.load(planner_dir)


def test_bind_refuses_another_scenario(planner_dir):
    planner = Planner.load(planner_dir)
    with pytest.raises(PlannerError, match="plan catalogue differs"):
        planner.bind(CollabInferenceEnv(toy_model({"action_menu.batch_sizes": [1, 2], **MASKED})))
    two_apps = [{"name": "cam", "deadline_ms": 200.0}, {"name": "mic", "deadline_ms": 100.0}]
    with pytest.raises(PlannerError, match="observation spec differs"):
        planner.bind(CollabInferenceEnv(toy_model({"workload.apps": two_apps, **MASKED})))


# ----------------------------------------------------------------------------- CLI


def test_cli_plan(planner_dir, state, tmp_path):
    runner = CliRunner()
    f = tmp_path / "state.json"
    f.write_text(json.dumps(state))
    res = runner.invoke(app, ["plan", str(planner_dir), "--state", str(f)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == Planner.load(planner_dir).plan(state).to_dict()
    res = runner.invoke(app, ["plan", str(planner_dir), "--state", "-"], input=json.dumps(state))
    assert res.exit_code == 0 and json.loads(res.output)["index"] >= 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected a JSON object"),
        ("{", "not valid JSON"),
        ('{"uplink_mbps": 1.0}', "missing"),
    ],
)
def test_cli_plan_errors(planner_dir, tmp_path, text, message):
    f = tmp_path / "state.json"
    f.write_text(text)
    res = CliRunner().invoke(app, ["plan", str(planner_dir), "--state", str(f)])
    assert res.exit_code == 2
    assert message in res.output


def test_cli_plan_on_a_tampered_artefact(planner_dir, state, tmp_path):
    with (planner_dir / "policy_weights.bin").open("ab") as fh:
        fh.write(b"\0")
    f = tmp_path / "state.json"
    f.write_text(json.dumps(state))
    res = CliRunner().invoke(app, ["plan", str(planner_dir), "--state", str(f)])
    assert res.exit_code == 2 and "checksum mismatch" in res.output


def test_plan_warns_once_on_a_state_outside_the_training_range(planner_dir):
    import warnings

    from edgerl.agents.planner import StateOutOfRangeWarning

    planner = Planner.load(planner_dir)
    lo = planner.spec["observation"]["training_range"]["low"]
    hi = planner.spec["observation"]["training_range"]["high"]
    inside = {f.name: (a + b) / 2 for f, a, b in zip(planner.features, lo, hi, strict=True)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        planner.plan(inside)  # no warning inside the range
    far = dict(inside, uplink_mbps=hi[0] * 10 + 1)
    with pytest.warns(StateOutOfRangeWarning, match="uplink_mbps"):
        planner.plan(far)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        planner.plan(far)  # counted, not warned again
    assert planner.out_of_range == 2


def test_plan_rejects_a_negative_field(planner_dir):
    planner = Planner.load(planner_dir)
    lo = planner.spec["observation"]["training_range"]["low"]
    state = {f.name: float(v) for f, v in zip(planner.features, lo, strict=True)}
    state["uplink_mbps"] = -1.0
    with pytest.raises(ObservationError, match=r"uplink_mbps.*>= 0"):
        planner.plan(state)


def test_example_state_is_a_valid_state(planner_dir):
    from edgerl.experiments.cli import app
    from typer.testing import CliRunner

    runner = CliRunner()
    res = runner.invoke(app, ["plan", str(planner_dir), "--example-state"])
    assert res.exit_code == 0, res.output
    state = json.loads(res.stdout)
    planner = Planner.load(planner_dir)
    assert set(state) == {f.name for f in planner.features}
    planner.plan(state)  # valid, no exception
