"""Evaluation on networks a policy never saw (issue 19): `--uplink-traces` / `--downlink-traces`
on the command line, baselines built from the training traces and scored on the override,
paired links, the stratified evaluation and domain randomisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from edgerl.envs.config import SCENARIO_DIR
from edgerl.experiments.cli import app
from edgerl.experiments.cmd_agents import MULTI_VALUE_OPTIONS, expand_multi_values
from typer.testing import CliRunner

FAST_SEARCH = ["--search-episodes", "1", "--search-horizon-s", "5"]


def _pensieve(path, mbps: list[float]) -> None:
    path.write_text("".join(f"{i}.0 {b}\n" for i, b in enumerate(mbps)))


@pytest.fixture
def study(tmp_path):
    """The toy model on the user's traces: training traces at 2 and 5 Mbit/s, held out 9."""
    root = tmp_path / "study"
    (root / "traces").mkdir(parents=True)
    _pensieve(root / "traces" / "walk.log", [2.0] * 40)
    _pensieve(root / "traces" / "bus.log", [5.0] * 40)
    _pensieve(root / "traces" / "train.log", [9.0] * 40)
    data = yaml.safe_load((SCENARIO_DIR / "toy-analytic.yaml").read_text())
    data["name"] = "study"
    data["network"]["uplink"] = {
        "trace_files": ["traces/walk.log", "traces/bus.log", "traces/train.log"],
        "eval_files": ["traces/train.log"],
    }
    (root / "study.yaml").write_text(yaml.safe_dump(data))
    return root


def test_several_values_after_one_flag_are_expanded():
    args = ["--uplink-traces", "a", "b", "--seeds", "1", "--downlink-traces=c", "d"]
    assert expand_multi_values(args, MULTI_VALUE_OPTIONS) == [
        "--uplink-traces",
        "a",
        "--uplink-traces",
        "b",
        "--seeds",
        "1",
        "--downlink-traces=c",
        "--downlink-traces",
        "d",
    ]
    # a flag without a value stays one, so that the parser reports it
    assert expand_multi_values(["--uplink-traces", "--x"], MULTI_VALUE_OPTIONS) == [
        "--uplink-traces",
        "--x",
    ]


def test_compare_builds_best_fixed_and_edgent_dynamic_from_the_training_traces(study, tmp_path):
    """`--uplink-traces A B` (two files after one flag, as a shell glob expands): the episodes
    run on A and B, best-fixed and edgent-dynamic come from the scenario's training traces."""
    _pensieve(tmp_path / "slow1.log", [0.3] * 60)
    _pensieve(tmp_path / "slow2.log", [0.6] * 60)
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        app,
        [
            "compare",
            "--scenario",
            str(study / "study.yaml"),
            "--policies",
            "baseline:best-fixed,baseline:edgent-dynamic,baseline:edge-only",
            "--seeds",
            "0",
            "--episodes",
            "1",
            "--horizon-s",
            "10",
            "--uplink-traces",
            str(tmp_path / "slow1.log"),
            str(tmp_path / "slow2.log"),
            "--no-plots",
            "--out",
            str(out),
            *FAST_SEARCH,
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "comparison.json").read_text())
    assert "slow1.log" in doc["scenario"] and "slow2.log" in doc["scenario"]
    assert doc["training_scenario_fingerprint"] != doc["scenario_fingerprint"]
    assert any("slow2.log" in o for o in doc["evaluation_overrides"])
    pols = doc["policies"]
    # Edgent's bandwidth states are quantiles of the training traces (2 and 5 Mbit/s), not
    # of the override (0.3 and 0.6 Mbit/s)
    states = pols["edgent-dynamic"]["description"]["states_mbps"]
    assert min(states) >= 2.0 and max(states) <= 5.0
    cache = json.loads(next(out.glob("best_fixed*.json")).read_text())
    assert cache["scenario_fingerprint"] == doc["training_scenario_fingerprint"]
    # ... and they are scored on the override: raw uploads at <= 0.6 Mbit/s are slow
    assert pols["edge-only"]["metrics"]["latency_p50_ms"]["mean"] > 1000


def test_downlink_traces_are_paired_with_the_uplink_traces(tmp_path):
    from edgerl.experiments.cmd_agents import _trace_overrides

    ups = [tmp_path / f"u{i}.log" for i in range(2)]
    downs = [tmp_path / f"d{i}.log" for i in range(2)]
    for i, (u, d) in enumerate(zip(ups, downs, strict=True)):
        _pensieve(u, [1.0 + i] * 30)
        _pensieve(d, [10.0 + 10 * i] * 30)
    sets = _trace_overrides(ups, "auto", None, "mbps", downs)
    assert "network.paired_links=true" in sets
    from edgerl.envs.config import load_scenario
    from edgerl.envs.sim.build import ScenarioModel, build_simulator

    model = ScenarioModel.from_config(load_scenario("toy-analytic", sets))
    seen = set()
    for seed in range(12):
        sim = build_simulator(model, seed, "eval")
        dev = sim.devices[0]
        up, down = dev.uplink.bandwidth.mbps_at(1.0), dev.downlink.bandwidth.mbps_at(1.0)
        assert (up, down) in {(1.0, 10.0), (2.0, 20.0)}  # never crossed
        seen.add(up)
    assert seen == {1.0, 2.0}
    with pytest.raises(Exception, match="one downlink per uplink"):
        _trace_overrides(ups, "auto", None, "mbps", downs[:1])


def test_downlink_traces_on_the_command_line(study, tmp_path):
    _pensieve(tmp_path / "down.log", [0.05] * 60)
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--scenario",
            str(study / "study.yaml"),
            "--policy",
            "baseline:edge-only",
            "--episodes",
            "1",
            "--horizon-s",
            "10",
            "--downlink-traces",
            str(tmp_path / "down.log"),
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert "down.log" in doc["scenario"]


def test_mahimahi_up_and_down_traces_can_be_paired():
    from edgerl.envs.config import load_scenario
    from edgerl.envs.sim.build import ScenarioModel, build_simulator, link_traces

    model = ScenarioModel.from_config(load_scenario("camera-lte", ["network.paired_links=true"]))
    net = model.cfg.network
    ups, downs = link_traces(net.uplink, "eval"), link_traces(net.downlink, "eval")
    stems = [t.name.split(".")[0] for t in ups]
    assert stems == [t.name.split(".")[0] for t in downs]
    for seed in range(5):
        sim = build_simulator(model, seed, "eval")
        up, down = sim.devices[0].uplink.bandwidth, sim.devices[0].downlink.bandwidth
        up_trace = next(t for t in ups if t is up._src)
        down_trace = next(t for t in downs if t is down._src)
        assert up_trace.name.split(".")[0] == down_trace.name.split(".")[0]
        assert np.isclose(up.offset_s % down_trace.duration_s, down.offset_s)


def test_reuse_refusal_checks_configuration_and_commit(monkeypatch):
    from edgerl.experiments import bench_agents, runinfo
    from edgerl.experiments.train import TrainConfig, planned_record

    monkeypatch.setattr(runinfo, "git_commit", lambda *a: "c1")
    tcfg = TrainConfig(scenario="toy-analytic", algo="ppo", timesteps=128, n_envs=2)
    data = planned_record(tcfg) | {"git_commit": "c1"}
    assert bench_agents.reuse_refusal(data, tcfg) is None
    assert "commit c0" in str(bench_agents.reuse_refusal(data | {"git_commit": "c0"}, tcfg))
    assert bench_agents.reuse_refusal(data | {"git_commit": "c0"}, tcfg, True) is None
    for change in (
        {"hp": ("n_steps=32",)},
        {"seed": 1},
        {"scenario_set": ("reward.slo_miss=0.4",)},
        {"algo": "a2c"},
    ):
        other = TrainConfig(**{**vars(tcfg), **change})
        assert "another configuration" in str(bench_agents.reuse_refusal(data, other)), change
    monkeypatch.setattr(runinfo, "git_commit", lambda *a: "c1-dirty")
    assert "c1-dirty" in str(bench_agents.reuse_refusal(data | {"git_commit": "c1-dirty"}, tcfg))


@pytest.mark.slow
def test_bench_reuses_a_training_only_for_the_same_configuration_and_commit(tmp_path, monkeypatch):
    from edgerl.experiments import bench_agents, runinfo
    from edgerl.experiments import train as train_mod

    commit = {"now": "c1"}
    monkeypatch.setattr(runinfo, "git_commit", lambda *a: commit["now"])
    cfg = bench_agents.BenchConfig(
        timesteps=128,
        runs_dir=tmp_path / "runs",
        n_envs=2,
        hp=("eval_freq=64", "eval_episodes=1", "eval_horizon_s=10", "n_steps=64"),
        progress_bar=False,
    )
    first = bench_agents._train_or_reuse(cfg, "toy-analytic", "maskable_ppo", 0, ())
    assert not first["reused"] and first["git_commit"] == "c1"

    def no_training(_cfg):
        raise AssertionError("retrained")

    monkeypatch.setattr(train_mod, "train", no_training)
    again = bench_agents._train_or_reuse(cfg, "toy-analytic", "maskable_ppo", 0, ())
    assert again["reused"] and not again["reused_other_commit"]
    commit["now"] = "c2"  # the code moved on: not reused ...
    with pytest.raises(AssertionError, match="retrained"):
        bench_agents._train_or_reuse(cfg, "toy-analytic", "maskable_ppo", 0, ())
    cfg.reuse_other_commits = True  # ... unless asked, and then the results say so
    other = bench_agents._train_or_reuse(cfg, "toy-analytic", "maskable_ppo", 0, ())
    assert other["reused"] and other["reused_other_commit"] and other["git_commit"] == "c1"
    commit["now"] = "c1"
    cfg.hp = (*cfg.hp[:-1], "n_steps=32")  # same run directory, other hyperparameters
    with pytest.raises(AssertionError, match="retrained"):
        bench_agents._train_or_reuse(cfg, "toy-analytic", "maskable_ppo", 0, ())


# --------------------------------------------------------------------------- stratified


@pytest.fixture
def two_held_out(tmp_path):
    """The toy model on user traces: two held-out files (3 and 9 Mbit/s, 120 s each)."""
    root = tmp_path / "held"
    root.mkdir()
    for name, mbps in (("a.log", 1.0), ("b.log", 3.0), ("c.log", 9.0)):
        _pensieve(root / name, [mbps] * 120)
    data = yaml.safe_load((SCENARIO_DIR / "toy-analytic.yaml").read_text())
    data["name"] = "held"
    data["network"]["uplink"] = {
        "trace_files": ["a.log", "b.log", "c.log"],
        "eval_files": ["b.log", "c.log"],
    }
    (root / "held.yaml").write_text(yaml.safe_dump(data))
    from edgerl.envs.config import load_scenario
    from edgerl.envs.sim.build import ScenarioModel

    return ScenarioModel.from_config(load_scenario(root / "held.yaml"))


def test_strata_cover_every_held_out_trace_reproducibly():
    from edgerl.envs.sim.build import eval_strata, link_traces, scenario_model

    model = scenario_model("hsdpa-mobile")
    traces = link_traces(model.cfg.network.uplink, "eval")
    strata = eval_strata(model, 60.0, seed=100)
    assert {s.trace for s in strata} == {t.name for t in traces}
    assert strata == eval_strata(model, 60.0, seed=100)
    assert strata != eval_strata(model, 60.0, seed=101)
    for i, tr in enumerate(traces):
        offs = [s.offset_s for s in strata if s.trace_index == i]
        k = min(4, -(-int(tr.duration_s) // 60))
        assert len(offs) == max(1, k) and offs == sorted(offs)
        # one offset in each of k equal stretches of the trace
        assert [int(o // (tr.duration_s / len(offs))) for o in offs] == list(range(len(offs)))
    # a trace shorter than an episode gets one stratum; a constant uplink none
    assert len(eval_strata(model, 1e6, seed=0)) == len(traces)
    assert eval_strata(scenario_model("toy-analytic"), 60.0, seed=0) == []


def test_reset_options_pin_the_uplink_and_are_checked(two_held_out):
    from edgerl.envs.env import CollabInferenceEnv

    env = CollabInferenceEnv(two_held_out, split="eval")
    for idx, mbps in ((0, 3.0), (1, 9.0)):
        for seed in range(4):
            obs, _ = env.reset(seed=seed, options={"uplink_trace": idx, "uplink_offset_s": 5.0})
            assert env.sim.devices[0].uplink.bandwidth.mbps_at(0.0) == mbps
            assert obs.shape == env.observation_space.shape  # no trace identity in it
    with pytest.raises(ValueError, match="unknown key"):
        env.reset(seed=0, options={"trace": 0})
    with pytest.raises(ValueError, match="both"):
        env.reset(seed=0, options={"uplink_trace": 0})
    with pytest.raises(ValueError, match="outside"):
        env.reset(seed=0, options={"uplink_trace": 2, "uplink_offset_s": 0.0})


def test_stratified_evaluation_draws_every_trace_and_is_reproducible(two_held_out):
    from edgerl.agents.baselines import make_baseline
    from edgerl.agents.evaluation import evaluate

    def run(name):
        return evaluate(
            two_held_out, make_baseline(name), [0, 1], 1, horizon_s=40.0, stratified=True
        )

    a, b, c = run("edge-only"), run("edge-only"), run("device-only")
    # 120 s traces, 40 s episodes: 3 offsets per trace, 2 traces -> 6 episodes per seed
    assert a.episodes == 6 and len(a.all_logs()) == 12
    assert {lg.trace for lg in a.all_logs()} == {"b.log", "c.log"}
    for x, y in zip(a.all_logs(), b.all_logs(), strict=True):
        assert (x.trace, x.offset_s) == (y.trace, y.offset_s)
        assert np.array_equal(x.utility, y.utility)
    # common random numbers: another policy faces the same episodes
    for x, z in zip(a.all_logs(), c.all_logs(), strict=True):
        assert (x.trace, x.offset_s, x.n_arrived) == (z.trace, z.offset_s, z.n_arrived)
        assert np.array_equal(x.arrival_s, z.arrival_s)
    doc = a.to_json()
    assert doc["n_episodes"] == 12
    assert doc["by_trace"]["user/b.log"]["n_episodes"] == 6
    assert doc["by_family"]["user"]["n_episodes"] == 12
    # raw inputs to the edge are faster on the 9 Mbit/s trace
    p95 = {k: v["latency_p95_ms"]["mean"] for k, v in doc["by_trace"].items()}
    assert p95["user/c.log"] < p95["user/b.log"]


def test_compare_reports_per_trace_results(two_held_out, tmp_path):
    from edgerl.experiments.compare import CompareConfig, compare

    res = compare(
        CompareConfig(
            scenario=str(two_held_out.cfg.path),
            policies=("baseline:edge-only", "baseline:device-only"),
            seeds=(0,),
            horizon_s=40.0,
            out=tmp_path / "cmp",
            plots=False,
        )
    )
    assert res.doc["stratified"] and res.doc["episodes_per_seed"] == 6
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "per trace family" in md and "user/c.log" in md and "[3]" in md


# --------------------------------------------------------------------------- randomisation


def _uplink_source(sim):
    """(underlying trace or source, total scale) of device 0's uplink."""
    bw = sim.devices[0].uplink.bandwidth
    scale = 1.0
    while hasattr(bw, "_src"):
        scale *= bw.scale
        bw = bw._src
    return bw, scale


def test_randomization_config_is_strict():
    from edgerl.envs.config import ConfigError, load_scenario

    with pytest.raises(ConfigError, match=r"randomization\.uplink_scale: unknown key"):
        load_scenario("camera-lte", ["randomization.uplink_scale=[0.5,2]"])
    with pytest.raises(ConfigError, match="uplink_scale_range"):
        load_scenario("camera-lte", ["randomization.uplink_scale_range=[2,0.5]"])
    with pytest.raises(ConfigError, match=r"uplink_families\[0\].scal: unknown key"):
        load_scenario("camera-lte", ["randomization.uplink_families=[{family: x, scal: 1}]"])
    with pytest.raises(ConfigError, match="trace-driven"):
        load_scenario("toy-analytic", ["randomization.uplink_families=[{family: fcc-broadband}]"])


def test_uplink_scale_is_drawn_per_training_episode_from_its_own_stream():
    import dataclasses

    from edgerl.agents.rundir import evaluation_fingerprint, scenario_fingerprint
    from edgerl.envs.config import RandomizationConfig, load_scenario
    from edgerl.envs.sim.build import ScenarioModel, build_simulator

    # camera-lte ships with this randomisation (issue 19); "plain" is the scenario without it
    cfg = load_scenario("camera-lte", ["randomization.uplink_scale_range=[0.25,4.0]"])
    plain = ScenarioModel.from_config(
        dataclasses.replace(load_scenario("camera-lte"), randomization=RandomizationConfig())
    )
    assert scenario_fingerprint(cfg) != scenario_fingerprint(plain.cfg)
    # the headroom (evaluation only) does not depend on a training randomisation
    assert evaluation_fingerprint(cfg) == evaluation_fingerprint(plain.cfg)
    model = ScenarioModel.from_config(cfg)
    factors = []
    for seed in range(20):
        base, rand = build_simulator(plain, seed), build_simulator(model, seed)
        (src0, s0), (src1, s1) = _uplink_source(base), _uplink_source(rand)
        assert src0 is src1  # the same trace and offset as without randomisation ...
        assert base.devices[0].uplink.bandwidth.offset_s == pytest.approx(
            rand.devices[0].uplink.bandwidth._src.offset_s
        )
        # ... the same downlink and arrivals (common random numbers) ...
        assert base.devices[0].downlink.bandwidth.mbps_at(3.0) == rand.devices[
            0
        ].downlink.bandwidth.mbps_at(3.0)
        factors.append(s1 / s0)
        assert build_simulator(model, seed).devices[0].uplink.bandwidth.scale == s1 / s0
        # ... and held-out episodes are never randomised
        assert _uplink_source(build_simulator(model, seed, "eval"))[1] == pytest.approx(
            _uplink_source(build_simulator(plain, seed, "eval"))[1]
        )
    assert all(0.25 <= f <= 4.0 for f in factors)
    assert min(factors) < 0.5 and max(factors) > 2.0  # log-uniform over the range


def test_training_uplinks_draw_over_several_families():
    from edgerl.envs.config import load_scenario
    from edgerl.envs.sim.build import ScenarioModel, build_simulator, link_traces

    sets = [
        "randomization.uplink_families=[{family: norway-hsdpa-3g, direction: down}, "
        "{family: irish-5g, direction: down, scale: 0.17}]",
        "randomization.uplink_scale_range=[1.0,1.0]",  # off (camera-lte ships with it on)
    ]
    model = ScenarioModel.from_config(load_scenario("camera-lte", sets))
    families, scales = set(), set()
    for seed in range(30):
        src, scale = _uplink_source(build_simulator(model, seed))
        families.add(src.family)
        scales.add((src.family, round(scale, 6)))
    assert families == {"norway-hsdpa-3g", "irish-5g"}
    assert scales == {("norway-hsdpa-3g", 1.0), ("irish-5g", 0.17)}
    held_out = {t.name for t in link_traces(model.cfg.network.uplink, "eval")}
    for seed in range(5):  # evaluation stays on the scenario's own held-out uplink
        src, _ = _uplink_source(build_simulator(model, seed, "eval"))
        assert src.family == "mahimahi-cellular" and src.name in held_out


def test_the_oracle_rebuilds_the_pinned_episode(two_held_out, monkeypatch):
    """The hindsight oracle replays the episode the env runs: with the stratum's pin."""
    from edgerl.agents import oracle as oracle_mod
    from edgerl.envs.env import CollabInferenceEnv
    from edgerl.envs.sim.build import LinkPin

    calls = []

    def schedule(*args, **kwargs):
        calls.append(kwargs.get("uplink_pin"))
        return [(0,)] * 10

    monkeypatch.setattr(oracle_mod, "window_schedule", schedule)
    env = CollabInferenceEnv(two_held_out, split="eval", record=True)
    pol = oracle_mod.HindsightWindowOracle(window_s=5.0, isolate="never")
    pol.bind(env)
    for idx in (0, 1, 1):
        env.reset(seed=3, options={"uplink_trace": idx, "uplink_offset_s": 2.0})
        pol.reset(seed=3)
    # same seed, another trace: planned again; the same episode twice: planned once
    assert calls == [LinkPin(0, 2.0), LinkPin(1, 2.0)]


def test_an_episode_without_requests_is_evaluated():
    """A short stratum may see no arrival: nothing to decide, the episode still counts."""
    from edgerl.agents.baselines import make_baseline
    from edgerl.agents.evaluation import evaluate
    from edgerl.envs.config import load_scenario
    from edgerl.envs.sim.build import ScenarioModel

    cfg = load_scenario("toy-analytic", ["workload.arrival.rate_per_s=0.0001"])
    ev = evaluate(ScenarioModel.from_config(cfg), make_baseline("edge-only"), [0], 2, horizon_s=1.0)
    assert [lg.n_arrived for lg in ev.all_logs()] == [0, 0]
    assert [lg.n_decisions for lg in ev.all_logs()] == [0, 0]
