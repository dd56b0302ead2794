"""`edgerl bench agents` end to end on a tiny budget (plumbing, not quality)."""

from __future__ import annotations

import json

import pytest
from edgerl.agents.best_fixed import SearchConfig
from edgerl.experiments.bench_agents import ABLATIONS, BenchConfig, ablation_overrides, run_bench
from edgerl.experiments.errors import OptionError
from edgerl.experiments.knobs import TERCILES


def test_bench_agents_smoke(tmp_path):
    cfg = BenchConfig(
        scenarios=("toy-analytic",),
        algos=("maskable_ppo",),
        train_seeds=(0,),
        timesteps=256,
        eval_seeds=(0, 1),
        horizon_s=60.0,
        out=tmp_path / "agents.json",
        runs_dir=tmp_path / "runs",
        n_envs=2,
        hp=("eval_freq=128", "eval_episodes=1", "eval_horizon_s=30", "n_steps=64"),
        references=("best-fixed", "edgent-dynamic", "composite", "oracle"),
        ablations=("device-only",),
        oracle_window_s=30.0,
        search=SearchConfig(episodes=1, horizon_s=30.0, finalists=2),
        progress_bar=False,
    )
    doc = run_bench(cfg)
    (res,) = doc["results"]
    tg = res["targets"]
    assert tg["best_learned_algo"] == "maskable_ppo"
    for key in ("headroom", "ratio_vs_oracle", "gain_vs_best-fixed", "gain_vs_composite"):
        assert key in tg
    # the oracle is never worse than the best fixed plan it could have chosen in every window
    u = res["baseline_utility"]
    assert u["oracle"] >= u["best-fixed"] - 1e-9
    usage = res["knob_usage"]
    assert set(usage) == {"uplink_mbps", "arrival_rate_per_s"}
    assert set(usage["uplink_mbps"]["bins"]) == set(TERCILES)
    abl = res["ablations"]["device-only"]
    assert abl["overrides"] == list(ABLATIONS["device-only"])
    assert json.loads(cfg.out.read_text())["kind"] == "edgerl.bench_agents"
    report = cfg.out.with_suffix(".md").read_text()
    assert "device-only" in report and "headroom" in report


def test_ablation_overrides_name_the_variant_and_fail_early(tmp_path):
    assert ablation_overrides("one-variant=int8", "camera-lte", ()) == ("model.variants=[int8]",)
    assert ablation_overrides("one-variant", "camera-lte", ()) == ("model.variants=[fp32]",)
    assert ablation_overrides("no-batching", "camera-lte", ()) == ABLATIONS["no-batching"]
    with pytest.raises(OptionError, match=r"no variant 'int4'.*fp32, int8, r160"):
        ablation_overrides("one-variant=int4", "camera-lte", ())
    for bad in ("no-exit", "device-only=int8"):
        with pytest.raises(OptionError, match="unknown ablation"):
            ablation_overrides(bad, "camera-lte", ())
    # checked before anything is trained
    cfg = BenchConfig(
        scenarios=("toy-analytic",), ablations=("no-exit",), runs_dir=tmp_path / "runs"
    )
    with pytest.raises(OptionError, match="no-exit"):
        run_bench(cfg)
    assert not (tmp_path / "runs").exists()
