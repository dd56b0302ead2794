"""`edgerl bench agents` end to end on a tiny budget (plumbing, not quality)."""

from __future__ import annotations

import json

from edgerl.agents.best_fixed import SearchConfig
from edgerl.experiments.bench_agents import ABLATIONS, BenchConfig, run_bench
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
