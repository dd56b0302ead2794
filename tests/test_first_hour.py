"""What a newcomer types in their first hour: every mistake gets one clear line, never a
traceback, and nothing wrong is silently accepted."""

from __future__ import annotations

import json

import pytest
import yaml
from edgerl.agents.baselines import list_baselines
from edgerl.envs.config import SCENARIO_DIR, ConfigError, load_scenario
from edgerl.envs.sim.build import ScenarioModel
from edgerl.experiments.cli import app
from edgerl.experiments.cmd_agents import BASELINE_NAMES
from typer.testing import CliRunner


def run(*args: str):
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.output


def one_line_error(code: int, out: str, *needles: str) -> None:
    assert code == 2, out
    assert "Traceback" not in out
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, out
    for n in needles:
        assert n in errors[0], errors[0]


def test_bench_env_unknown_scenario():
    one_line_error(*run("bench", "env", "--scenario", "nope", "--soak-steps", "0"), "nope")


def test_bench_env_bad_device_share():
    one_line_error(
        *run("bench", "env", "--soak-steps", "0", "--device-share", "1.5"), "device_share"
    )


def test_bench_env_training_like_mix_runs():
    from edgerl.experiments.bench_env import run_env_bench

    r = run_env_bench("camera-lte", steps=300, rounds=1, device_share=0.85, progress=False)
    assert r.device_share == 0.85
    assert r.env_decisions_per_s > 0 and r.bare_decisions_per_s > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--scenario", "nope"], "nope"), (["--rounds", "0"], "--rounds")],
)
def test_bench_oracle_bad_options(args, needle):
    one_line_error(*run("bench", "oracle", *args), needle)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--episodes", "0"], "--episodes"),
        (["--horizon-s", "-5"], "--horizon-s"),
        (["--seed", ""], "seed"),
    ],
)
def test_evaluate_option_errors(args, needle):
    base = ["evaluate", "--scenario", "toy-analytic", "--policy", "baseline:edgent"]
    one_line_error(*run(*base, *args), needle)


def test_train_zero_timesteps(tmp_path):
    one_line_error(
        *run("train", "--scenario", "toy-analytic", "--timesteps", "0", "--out", str(tmp_path)),
        "--timesteps",
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    code, text = run(
        "train",
        "--scenario",
        "toy-analytic",
        "--timesteps",
        "128",
        "--n-envs",
        "2",
        "--hp",
        "eval_freq=64",
        "--hp",
        "eval_episodes=1",
        "--hp",
        "eval_horizon_s=20",
        "--hp",
        "n_steps=64",
        "--out",
        str(out),
        "--no-progress",
    )
    assert code == 0, text
    return out


def test_evaluating_a_run_on_another_scenario(tiny_run):
    code, out = run(
        "evaluate", "--scenario", "lte-dynamic", "--policy", str(tiny_run), "--episodes", "1"
    )
    one_line_error(code, out, "toy-analytic", "lte-dynamic")


def test_evaluate_without_scenario_uses_the_run_directorys(tiny_run):
    code, out = run(
        "evaluate",
        "--policy",
        str(tiny_run),
        "--policy",
        "baseline:device-only",
        "--episodes",
        "1",
        "--horizon-s",
        "20",
    )
    assert code == 0, out
    assert f"scenario: {tiny_run / 'scenario.yaml'}" in out and "toy-analytic" in out


def test_planner_prefix_given_a_run_directory(tiny_run):
    code, out = run("evaluate", "--scenario", "toy-analytic", "--policy", f"planner:{tiny_run}")
    one_line_error(code, out, "training run directory", "edgerl export")


def test_learning_curve_png_is_written(tiny_run):
    assert (tiny_run / "learning_curve.png").is_file()


def test_longer_horizon_than_the_scenario_warns():
    code, out = run(
        "evaluate",
        "--scenario",
        "toy-analytic",
        "--policy",
        "baseline:device-only",
        "--episodes",
        "1",
        "--horizon-s",
        "5000",
    )
    assert code == 0 and "warning: --horizon-s 5000 is longer" in out


def _scenario_with(tmp_path, **changes) -> str:
    data = yaml.safe_load((SCENARIO_DIR / "toy-analytic.yaml").read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_out_of_range_cut_units(tmp_path):
    path = _scenario_with(tmp_path, action_menu__cut_units=[0, 99])
    with pytest.raises(ConfigError, match=r"cut_units: \[99\] out of range"):
        ScenarioModel.from_config(load_scenario(path))


def test_inf_in_an_arrival_trace(tmp_path):
    gaps = tmp_path / "gaps.txt"
    gaps.write_text("0.1\ninf\n")
    path = _scenario_with(
        tmp_path, workload__arrival={"process": "trace", "trace_file": "gaps.txt"}
    )
    cfg = load_scenario(path)  # relative trace_file: resolved against the YAML's folder
    assert cfg.workload.arrival.trace_file == str(gaps.resolve())
    from edgerl.envs.sim.workload import load_interarrivals

    with pytest.raises(ConfigError, match="value 2: inter-arrival time must be finite"):
        load_interarrivals(cfg.workload.arrival.trace_file, "test")


def test_help_lists_the_baselines():
    assert ", ".join(list_baselines()) == BASELINE_NAMES
    code, out = run("compare", "--help")
    assert code == 0 and "composite" in out


def test_evaluate_and_compare_accept_the_same_option_names(tmp_path):
    for cmd in ("evaluate", "compare"):
        _, out = run(cmd, "--help")
        for opt in ("--policy", "--policies", "--seed", "--seeds", "--set", "--uplink-traces"):
            assert opt in out, (cmd, opt)


def test_planner_scenario_mismatch_names_the_difference(tiny_run, tmp_path):
    planner = tmp_path / "planner"
    code, out = run("export", str(tiny_run), "--out", str(planner), "--parity", "50")
    assert code == 0, out
    from edgerl.agents.planner import Planner, PlannerError
    from edgerl.envs.env import CollabInferenceEnv

    p = Planner.load(planner)
    with pytest.raises(PlannerError, match=r"the environment has 6 entries, the planner 36"):
        p.bind(CollabInferenceEnv(_other_toy(tmp_path)))
    spec = json.loads((planner / "planner.json").read_text())
    assert "training_range" in spec["observation"]


def _other_toy(tmp_path) -> ScenarioModel:
    path = _scenario_with(tmp_path, action_menu__cut_units=[0, 3])
    return ScenarioModel.from_config(load_scenario(path))


@pytest.mark.parametrize("model", ["mobilenetv2_me", "balexnet_c10", "resnet18_me"])
def test_profile_table_fits_100_columns(model, monkeypatch):
    import io

    from edgerl.experiments import cmd_profiles
    from edgerl.profiles.schema import find_profile
    from rich.console import Console

    prof = find_profile(model, "fp32", "cpu-epyc-1t")
    buf = io.StringIO()
    monkeypatch.setattr(cmd_profiles, "console", Console(width=300, file=buf))
    cmd_profiles.print_profile_table(prof)
    table = [ln for ln in buf.getvalue().splitlines() if ln.startswith(("┃", "│", "┏", "└"))]
    assert table and max(len(ln) for ln in table) <= 100
