"""`edgerl bench generalise`: the sets it builds, and a tiny-budget run end to end."""

from __future__ import annotations

import json

import pytest
from edgerl.agents.best_fixed import SearchConfig
from edgerl.envs.config import load_scenario
from edgerl.experiments.bench_generalise import (
    FAMILY_UPLINKS,
    GeneraliseConfig,
    generalisation_sets,
    run_generalise,
)
from edgerl.experiments.errors import OptionError


def test_sets_leave_each_family_out_and_scale_the_held_out_traces():
    cfg = GeneraliseConfig(scenario="camera-5g", scales=(0.25, 4.0), unseen=("fcc-broadband",))
    sets = {s.name: s for s in generalisation_sets(cfg)}
    assert list(sets) == [
        "held-out",
        "scale-x0.25",
        "scale-x4",
        "family-fcc-broadband",
        *(f"lofo-{f}" for f in FAMILY_UPLINKS),
    ]
    # an unseen family: the policy trained as configured meets FCC's held-out traces
    fcc = sets["family-fcc-broadband"]
    assert fcc.train_set == () and fcc.kind == "unseen-family"
    seen = load_scenario("camera-5g", fcc.eval_set).network.uplink
    assert (seen.trace_family, seen.direction) == ("fcc-broadband", "down")
    assert sets["held-out"].eval_set == () and sets["held-out"].train_set == ()
    # camera-5g's uplink is already scaled by 0.17: the factor multiplies it
    up = load_scenario("camera-5g", sets["scale-x4"].eval_set).network.uplink
    assert up.scale == pytest.approx(0.68) and up.trace_family == "irish-5g"
    for fam in FAMILY_UPLINKS:
        s = sets[f"lofo-{fam}"]
        trained = load_scenario("camera-5g", s.train_set)
        drawn = {d.family for d in trained.randomization.uplink_families}
        assert drawn == set(FAMILY_UPLINKS) - {fam}  # never trained on the family it meets
        seen = load_scenario("camera-5g", (*s.train_set, *s.eval_set)).network.uplink
        assert seen.trace_family == fam
    with pytest.raises(OptionError, match="unknown"):
        generalisation_sets(GeneraliseConfig(families=("lte",)))
    with pytest.raises(OptionError, match="--unseen: unknown"):
        generalisation_sets(GeneraliseConfig(unseen=("5g",)))
    with pytest.raises(OptionError, match="> 0"):
        generalisation_sets(GeneraliseConfig(scales=(0.0,)))


@pytest.mark.slow
def test_bench_generalise_smoke(tmp_path):
    cfg = GeneraliseConfig(
        scenario="camera-lte",
        algos=("maskable_ppo",),
        train_seeds=(0,),
        timesteps=128,
        eval_seeds=(0,),
        horizon_s=5.0,
        families=("mahimahi-cellular", "norway-hsdpa-3g"),
        scales=(0.5,),
        unseen=("norway-hsdpa-3g",),
        out=tmp_path / "gen.json",
        runs_dir=tmp_path / "runs",
        n_envs=2,
        hp=("eval_freq=64", "eval_episodes=1", "eval_horizon_s=5", "n_steps=64"),
        search=SearchConfig(episodes=1, horizon_s=5.0, finalists=2),
        progress_bar=False,
    )
    doc = run_generalise(cfg)
    names = [s["set"] for s in doc["sets"]]
    assert names == [
        "held-out",
        "scale-x0.5",
        "family-norway-hsdpa-3g",
        "lofo-mahimahi-cellular",
        "lofo-norway-hsdpa-3g",
    ]
    assert len(doc["runs"]) == 3  # the shipped setting (also the unseen family's) + 2 lofo
    for s in doc["sets"]:
        assert set(s["references"]) == {"best-fixed", "composite", "edgent-dynamic", "clairvoyant"}
        assert s["headroom_reference"] == "clairvoyant"
        la = s["learned"]["maskable_ppo"]
        assert "gain_vs_best-fixed" in la and "met_no_loss" in la
        n = s["references"]["best-fixed"]["n_episodes"]
        assert la["n_episodes_per_run"] == [n]
    # stratified: every held-out Norway trace is evaluated in its left-out set
    for k in (2, 4):  # the unseen family and its left-out set
        norway = doc["sets"][k]["references"]["best-fixed"]["by_trace"]
        assert len(norway) == 5
        learned = doc["sets"][k]["learned"]["maskable_ppo"]["by_trace"]
        assert set(learned) == set(norway)
        assert all(len(v["per_training_seed"]) == 1 for v in learned.values())
    assert json.loads(cfg.out.read_text())["kind"] == "edgerl.bench_generalise"
    md = cfg.out.with_suffix(".md").read_text()
    assert "lofo-norway-hsdpa-3g" in md and "headroom" in md
