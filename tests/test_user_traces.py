"""A user's own bandwidth traces: named in a scenario (paths relative to its YAML), checked
with `edgerl traces check`, and evaluated on with `--uplink-traces`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from edgerl.envs.config import SCENARIO_DIR, ConfigError, load_scenario
from edgerl.envs.sim.build import ScenarioModel, build_simulator
from edgerl.envs.traces import TraceError, detect_format, user_trace_set
from edgerl.experiments.cli import app
from typer.testing import CliRunner

SCENARIO_DIR_NAME = "my-study"


def _pensieve(path, mbps: list[float]) -> None:
    path.write_text("".join(f"{i}.0 {b}\n" for i, b in enumerate(mbps)))


def _csv(path, kbps: list[float]) -> None:
    path.write_text("time_s,up_kbps\n" + "".join(f"{i},{b}\n" for i, b in enumerate(kbps)))


@pytest.fixture
def study(tmp_path):
    """A user's folder outside the package: traces in traces/, a scenario next to them."""
    root = tmp_path / SCENARIO_DIR_NAME
    (root / "traces").mkdir(parents=True)
    _pensieve(root / "traces" / "walk.log", [2.0] * 40)
    _pensieve(root / "traces" / "bus.log", [5.0] * 40)
    _pensieve(root / "traces" / "train.log", [9.0] * 40)
    data = yaml.safe_load(_toy_yaml().read_text())
    data["name"] = "my-study"
    data["network"]["uplink"] = {
        "trace_files": ["traces/walk.log", "traces/bus.log", "traces/train.log"],
        "eval_files": ["traces/train.log"],
    }
    (root / "study.yaml").write_text(yaml.safe_dump(data))
    return root


def _toy_yaml() -> Path:
    return SCENARIO_DIR / "toy-analytic.yaml"


def test_scenario_names_trace_files_relative_to_its_yaml(study, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not the YAML's folder: paths must still resolve
    cfg = load_scenario(study / "study.yaml")
    files = cfg.network.uplink.files()
    assert all(f.startswith(str(study)) for f in files)
    model = ScenarioModel.from_config(cfg)
    seen = {}
    for split in ("train", "eval"):
        mbps = set()
        for seed in range(8):
            sim = build_simulator(model, seed, split)
            mbps.add(sim.devices[0].uplink.bandwidth.mbps_at(0.0))
        seen[split] = mbps
    assert seen["train"] == {2.0, 5.0} and seen["eval"] == {9.0}


def test_time_share_split_and_formats(tmp_path):
    _csv(tmp_path / "a.csv", [1000.0] * 20 + [3000.0] * 20)
    assert detect_format(tmp_path / "a.csv") == "csv"
    train = user_trace_set([tmp_path / "a.csv"], "train", column="up_kbps", unit="kbps")
    held = user_trace_set([tmp_path / "a.csv"], "eval", column="up_kbps", unit="kbps")
    assert train[0].duration_s == pytest.approx(30.0) and held[0].duration_s == pytest.approx(10.0)
    assert np.allclose(held[0].mbps, 3.0)  # the last 25 % of the trace, kbit/s -> Mbit/s
    with pytest.raises(TraceError, match="needs column"):
        user_trace_set([tmp_path / "a.csv"], "train")
    with pytest.raises(TraceError, match="no train traces"):
        user_trace_set([tmp_path / "a.csv"], "train", column="up_kbps", eval_share=1.0)


def test_bad_user_traces_fail_with_file_and_line(tmp_path, study):
    bad = tmp_path / "bad.log"
    bad.write_text("0 1.0\n1 2.0\n1 3.0\n")
    with pytest.raises(TraceError, match=r"bad\.log:3: time 1\.0 s does not increase"):
        user_trace_set([bad], "train")
    data = yaml.safe_load((study / "study.yaml").read_text())
    data["network"]["uplink"]["trace_files"].append("traces/missing.log")
    (study / "broken.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"missing\.log does not exist"):
        load_scenario(study / "broken.yaml")


def test_traces_check_cli(tmp_path):
    _pensieve(tmp_path / "ok.log", [1.0, 2.0, 3.0])
    (tmp_path / "bad.log").write_text("0 1\n0 2\n")
    runner = CliRunner()
    good = runner.invoke(app, ["traces", "check", str(tmp_path / "ok.log")])
    assert good.exit_code == 0 and "pensieve" in good.output and "1 of 1" in good.output
    res = runner.invoke(
        app, ["traces", "check", str(tmp_path / "ok.log"), str(tmp_path / "bad.log")]
    )
    assert res.exit_code == 2
    assert "does not increase" in res.output


def test_evaluate_on_the_users_uplink_traces(tmp_path):
    _pensieve(tmp_path / "mine.log", [0.5] * 60)
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--scenario",
            "toy-analytic",
            "--policy",
            "baseline:edge-only",
            "--episodes",
            "1",
            "--horizon-s",
            "30",
            "--uplink-traces",
            str(tmp_path / "mine.log"),
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert "mine.log" in doc["scenario"]
    # 150 kB raw uploads at 0.5 Mbit/s take 2.4 s: far slower than on the scenario's 20 Mbit/s
    assert doc["policies"]["edge-only"]["metrics"]["latency_p50_ms"]["mean"] > 2000


def test_scenario_with_its_own_profiles_folder(tmp_path):
    """A device profile in the user's folder (a copy of a shipped one under a new hardware
    name), named by model.profiles_dir relative to the YAML; `scenarios check` accepts it."""
    from edgerl.profiles import find_profile

    shipped = find_profile("alexnet_me", "fp32", "cpu-epyc-1t")
    doc = json.loads(Path(shipped.path).read_text())
    doc["hardware"]["name"] = "my-board"
    folder = tmp_path / "study" / "profiles" / "alexnet_me" / "fp32"
    folder.mkdir(parents=True)
    (folder / "my-board.json").write_text(json.dumps(doc))
    data = yaml.safe_load(_toy_yaml().read_text())
    data["devices"]["hardware"] = "my-board"
    data["model"]["profiles_dir"] = "profiles"
    scen = tmp_path / "study" / "study.yaml"
    scen.write_text(yaml.safe_dump(data))
    model = ScenarioModel.from_config(load_scenario(scen))
    assert model.profiles.device["fp32"].path.startswith(str(tmp_path))
    assert model.profiles.edge["fp32"].hardware.name == "cpu-epyc-2t"  # shipped
    res = CliRunner().invoke(app, ["scenarios", "check", str(scen)])
    assert res.exit_code == 0 and "ok: scenario" in res.output
    data["devices"]["hardware"] = "nobody-has-this"
    scen.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["scenarios", "check", str(scen)])
    assert res.exit_code == 2 and "nobody-has-this" in res.output


def test_run_directory_copy_of_a_user_scenario_loads_anywhere(study, tmp_path):
    """A run directory keeps the scenario as canonical YAML with its trace paths resolved, so
    the copy (in another folder than the traces) decodes to the same scenario; the source file
    is kept beside it with its comments."""
    from edgerl.agents.rundir import scenario_fingerprint, scenario_yaml_text, source_yaml_text

    cfg = load_scenario(study / "study.yaml")
    copy = tmp_path / "run" / "scenario.yaml"
    copy.parent.mkdir()
    copy.write_text(scenario_yaml_text(cfg))
    again = load_scenario(copy)
    assert again.network.uplink.files() == cfg.network.uplink.files()
    assert scenario_fingerprint(again) == scenario_fingerprint(cfg)
    assert source_yaml_text(cfg) == (study / "study.yaml").read_text()
