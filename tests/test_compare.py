"""``compare``: output files and their schema, plan dimensions, the Pareto front."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import toy_model
from edgerl.agents.best_fixed import SearchConfig
from edgerl.agents.evaluation import METRICS
from edgerl.experiments.compare import (
    TABLE_COLUMNS,
    CompareConfig,
    _pareto_front,
    compare,
    placement,
    plan_dimension,
)

POLICIES = ("baseline:device-only", "baseline:random", "baseline:edgent", "baseline:best-fixed")
PNGS = ("latency_cdf", "pareto", "utility_over_time", "plan_mix", "plans_over_time")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    model = toy_model({"devices.count": 2, "workload.arrival.rate_per_s": 4.0, "horizon_s": 15.0})
    out = tmp_path_factory.mktemp("cmp")
    return compare(
        CompareConfig(
            scenario=model,
            policies=POLICIES,
            seeds=(0, 1),
            episodes=1,
            out=out,
            search=SearchConfig(episodes=1, horizon_s=15.0),
        )
    )


def test_compare_writes_every_file(result):
    names = {p.name for p in result.files}
    assert {"comparison.json", "comparison.csv", "comparison.md"} <= names
    for png in PNGS:
        data = (result.out / f"{png}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, png
    assert any(p.name.startswith("best_fixed-") for p in result.out.iterdir())  # cache


def test_json_schema(result):
    doc = json.loads((result.out / "comparison.json").read_text())
    assert doc["kind"] == "edgerl.evaluation" and doc["schema_version"] == 1
    assert doc["split"] == "eval" and doc["seeds"] == [0, 1]
    assert set(doc["metric_definitions"]) == set(METRICS)
    assert list(doc["policies"]) == [s.split(":", 1)[1] for s in POLICIES]
    for pd in doc["policies"].values():
        assert pd["ci_unit"] == "seed" and pd["n_units"] == 2
        for m in METRICS:
            e = pd["metrics"][m]
            assert set(e) == {"mean", "ci95", "unit", "per_unit"} and len(e["per_unit"]) == 2


def test_csv_schema(result):
    with (result.out / "comparison.csv").open() as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert header[0] == "policy"
    assert header[1:4] == ["utility_mean", "utility_mean_ci_low", "utility_mean_ci_high"]
    assert len(header) == 1 + 3 * (len(METRICS) + 1)
    assert [r[0] for r in rows[1:]] == [s.split(":", 1)[1] for s in POLICIES]
    assert all(len(r) == len(header) for r in rows)


def test_markdown_table(result):
    md = (result.out / "comparison.md").read_text().splitlines()
    table = [ln for ln in md if ln.startswith("|")]
    assert len(table) == 2 + len(POLICIES)
    assert table[0].count("|") == len(TABLE_COLUMNS) + 2  # policy + columns


def test_plan_dimensions_on_the_toy(toy):
    by_cut = {(p.cut_edge, p.cut_cloud, p.exit_index): p for p in toy.plans}
    assert placement(by_cut[(4, 4, 1)]) == "device"
    assert placement(by_cut[(0, 4, 1)]) == "edge"
    assert placement(by_cut[(0, 0, 1)]) == "cloud"
    assert placement(by_cut[(2, 3, 1)]) == "device+edge+cloud"
    assert plan_dimension(by_cut[(4, 4, 1)], "device-edge cut") == "all on device"
    assert plan_dimension(by_cut[(2, 3, 1)], "device-edge cut") == "before unit 2"
    with pytest.raises(ValueError, match="unknown plan dimension"):
        plan_dimension(by_cut[(2, 3, 1)], "colour")


def test_pareto_front():
    pts = {"a": (10.0, 0.6), "b": (20.0, 0.7), "c": (30.0, 0.65), "d": (10.0, 0.6)}
    assert _pareto_front(pts) == ["a", "d", "b"]  # c is dominated by b


@pytest.mark.slow
def test_demo_end_to_end_on_the_toy_scenario(tmp_path):
    """The demo pipeline (train, compare with every baseline, plots) at a tiny budget."""
    from edgerl.agents.baselines import list_baselines
    from edgerl.experiments.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        scenario="toy-analytic",
        timesteps=512,
        out=tmp_path,
        n_envs=2,
        train_hp=("eval_freq=256", "eval_episodes=1", "eval_horizon_s=60", "n_steps=64"),
        eval_seeds=(0, 1),
        eval_horizon_s=120.0,
        search=SearchConfig(episodes=1, horizon_s=60.0),
        progress_bar=False,
    )
    summary = run_demo(cfg)
    doc = json.loads((tmp_path / "compare" / "comparison.json").read_text())
    assert len(doc["policies"]) == 1 + len(list_baselines(include_expensive=False))
    assert summary["total_wall_time_s"] > summary["train_wall_time_s"] > 0
    parts = ("train_wall_time_s", "compare_wall_time_s", "export_wall_time_s")
    assert summary["export_wall_time_s"] > 0  # the export is part of the demo's wall time
    assert summary["total_wall_time_s"] >= sum(summary[k] for k in parts)
    assert (tmp_path / "train-maskable_ppo-s0" / "planner" / "planner.json").is_file()
    assert (tmp_path / "demo_summary.json").is_file()
    assert summary["eval_horizon_simulated_s"] == doc["horizon_s"] == 120.0


def test_the_terminal_comparison_table_fits_100_columns():
    """Issue 23: policy names of up to 28 characters stay on one line at 100 columns."""
    import io

    from edgerl.agents.evaluation import METRICS
    from edgerl.experiments.compare import TERMINAL_COLUMNS, rich_table
    from rich.console import Console

    names = ["maskable_ppo:camera-fleet-s0", "composite-rayserve", "edgent-dynamic"]
    typical = {"utility_pooled": 0.543, "latency_p95_ms": 193.4, "goodput_per_s": 71.47}
    typical |= {"dropped_per_episode": 1103.3, "in_flight_at_horizon_per_episode": 7.7}
    keys = [*METRICS, "utility_pooled"]

    def metric(k: str) -> dict:
        v = typical.get(k, 0.954)
        return {"mean": v, "ci95": [v - 0.0051, v + 0.0051]}

    doc = {
        "scenario_name": "camera-fleet-lte",
        "seeds": [100, 101, 102],
        "episodes_per_seed": 1,
        "horizon_s": 120.0,
        "policies": {n: {"metrics": {k: metric(k) for k in keys}} for n in names},
    }
    buf = io.StringIO()
    Console(file=buf, width=100, force_terminal=False).print(rich_table(doc))
    lines = buf.getvalue().splitlines()
    assert max(len(x) for x in lines) <= 100
    for n in names:  # each name whole on one line
        assert any(n in x for x in lines), n
    assert all(h in buf.getvalue() for _, h in TERMINAL_COLUMNS)
