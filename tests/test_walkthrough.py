"""README's own-data walk-through, step by step: a user's model, device profiles, traces and
scenario in a folder outside the package, through profile, traces check, scenarios check,
train, evaluate, compare, export and plan (tiny budgets: plumbing, not quality)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from edgerl.experiments.cli import app
from typer.testing import CliRunner

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "examples" / "my_study"
TRACES = Path(__file__).resolve().parents[1] / "envs" / "data" / "traces" / "norway-hsdpa-3g"


def _ok(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, f"edgerl {' '.join(args)}\n{res.output}\n{res.exception!r}"
    return res.stdout  # warnings (a state outside the training range, ...) go to stderr


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("home") / "my_study"
    shutil.copytree(EXAMPLE, d, ignore=shutil.ignore_patterns("__pycache__"))
    (d / "traces").mkdir()
    for name in ("norway_bus_1", "norway_car_1", "norway_tram_1"):
        shutil.copy(TRACES / name, d / "traces" / name)
    return d


def test_walkthrough(study: Path) -> None:
    d = study
    timing = ("--min-run-time", "0.01", "--rounds", "1", "--min-runs", "2", "--warmup", "1")
    for hw in ("my-camera", "my-edge"):
        out = _ok(
            "profile", "--model", f"{d}/mymodels.py:small_resnet", "--input-shape", "3,32,32",
            "--hardware", hw, "--threads", "1", "--batch-sizes", "1", "--out", f"{d}/profiles",
            *timing,
        )  # fmt: skip
        assert (d / "profiles" / "small_resnet" / "fp32" / f"{hw}.json").is_file(), out
    assert "norway_tram_1" in _ok("traces", "check", *map(str, sorted((d / "traces").iterdir())))
    assert "my-study" in _ok("scenarios", "check", f"{d}/study.yaml")
    run = d / "runs" / "a"
    _ok(
        "train", "--scenario", f"{d}/study.yaml", "--algo", "maskable_ppo", "--timesteps", "256",
        "--seed", "0", "--out", str(run), "--n-envs", "1", "--no-progress",
        "--hp", "n_steps=64", "--hp", "eval_freq=128", "--hp", "eval_episodes=1",
        "--hp", "eval_horizon_s=10",
    )  # fmt: skip
    assert (run / "model.zip").is_file() and (run / "scenario.yaml").is_file()
    _ok(
        "evaluate", "--scenario", f"{d}/study.yaml", "--policy", str(run), "--episodes", "1",
        "--seed", "100", "--horizon-s", "10", "--json", f"{d}/eval.json",
    )  # fmt: skip
    ev = json.loads((d / "eval.json").read_text())
    assert set(ev["policies"]) == {f"maskable_ppo:{run.name}"}
    out = _ok(
        "compare", "--scenario", f"{d}/study.yaml", "--policies",
        f"{run},baseline:device-only,baseline:edgent,baseline:edgent-dynamic",
        "--seeds", "100", "--episodes", "1", "--horizon-s", "10", "--out", f"{d}/cmp", "--no-plots",
    )  # fmt: skip
    assert "device-only" in out and "edgent-dynamic" in out  # its bandwidth map: the user's traces
    _ok("export", str(run), "--out", f"{d}/planner", "--parity", "200")
    state = _ok("plan", f"{d}/planner", "--example-state")
    (d / "state.json").write_text(state)
    plan = json.loads(_ok("plan", f"{d}/planner", "--state", f"{d}/state.json"))
    assert plan["variant"] == "fp32"
    # 5. other measurements, the scenario unedited (README's two Irish 5G logs)
    more = d / "more-traces"
    more.mkdir()
    for name in ("B_2020.02.13_13.03.24.csv", "B_2020.02.14_07.29.00.csv"):
        shutil.copy(TRACES.parent / "irish-5g" / name, more / name)
    _ok(
        "evaluate", "--policy", str(run), "--uplink-traces", str(more),
        "--trace-column", "UL_bitrate", "--episodes", "1", "--horizon-s", "10",
        "--json", f"{d}/eval-more.json",
    )  # fmt: skip
    ev = json.loads((d / "eval-more.json").read_text())
    base = json.loads((d / "eval.json").read_text())  # step 4, the scenario's own traces
    assert ev["policies"] and ev["scenario_fingerprint"] != base["scenario_fingerprint"]
