"""``edgerl compare --ray``: the episodes as Ray tasks give the serial path's results."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import toy_model
from edgerl.agents.best_fixed import SearchConfig
from edgerl.experiments.compare import CompareConfig, compare
from edgerl.experiments.train import TrainConfig, train

#: Parts of the keys of wall-clock measurements (they differ between any two runs) and of
#: best-fixed's cache file (in each comparison's own output folder).
WALL_CLOCK = ("wall", "decision_time", "generated", "created", "cache_file")


def _without_wall_times(x: Any) -> Any:
    if isinstance(x, dict):
        return {
            k: _without_wall_times(v) for k, v in x.items() if not any(w in k for w in WALL_CLOCK)
        }
    if isinstance(x, list):
        return [_without_wall_times(v) for v in x]
    return x


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON documents differ (dotted paths), for a readable failure."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: missing on one side" for k in a.keys() ^ b.keys()]
        for k in a.keys() & b.keys():
            out += _differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b or (a != a and b != b) else [f"{path}: {a!r} != {b!r}"]


@pytest.mark.slow
def test_compare_on_ray_equals_the_serial_path(tmp_path):
    model = toy_model({"devices.count": 2, "workload.arrival.rate_per_s": 4.0, "horizon_s": 15.0})
    run = train(
        TrainConfig(
            scenario=model,
            algo="ppo",
            timesteps=128,
            out=tmp_path / "run",
            hp=("eval_freq=64", "eval_episodes=1", "eval_horizon_s=5", "n_steps=64"),
            progress_bar=False,
            tensorboard=False,
        )
    )
    policies = (
        str(run.run_dir),
        "baseline:device-only",
        "baseline:random",
        "baseline:edgent",
        "baseline:best-fixed",
    )
    docs = []
    for on_ray in (False, True):
        res = compare(
            CompareConfig(
                scenario=model,
                policies=policies,
                seeds=(0, 1),
                episodes=1,
                out=tmp_path / f"cmp-{on_ray}",
                search=SearchConfig(episodes=1, horizon_s=15.0),
                plots=False,
                ray=on_ray,
            )
        )
        docs.append(res.doc)
    assert docs[0].pop("episodes_ran_on") == "this process"
    assert docs[1].pop("episodes_ran_on").startswith("ray (10 tasks")
    serial, on_ray = (_without_wall_times(d) for d in docs)
    assert _differences(serial, on_ray) == []
    assert serial == on_ray
    import ray

    assert not ray.is_initialized()
