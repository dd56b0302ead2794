"""The what-if replay's shortcuts give bit-identical predictions (issue 24).

:class:`~edgerl.envs.sim.whatif.Replay` skips work that cannot change the predicted outcome
(events that do nothing, the copy of the whole result cache, queue round trips); the plain
replay is kept as the reference (``Snapshot(sim, full=True)``). On many random episodes of
several scenarios, every prediction the env would ask for, and a few other plans on the same
states, must be equal (``==``, not approximately) with and without the shortcuts.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import busy_toy_model
from edgerl.envs.config import load_scenario
from edgerl.envs.sim.build import ScenarioModel, build_simulator
from edgerl.envs.sim.cache import CacheEntry, ResultCache
from edgerl.envs.sim.simulator import WHATIF_MAX_IN_FLIGHT
from edgerl.envs.sim.whatif import Snapshot, _CacheView

#: Plans of a training-like policy: this share runs on the device alone, the rest offloads
#: (split or raw), uniformly within each group.
DEVICE_SHARE = 0.85


def _compare_episode(model: ScenarioModel, seed: int, decisions: int, policy: str) -> int:
    """Run one episode; at each replayed decision compare fast and full predictions for the
    plan taken and two other feasible plans. Returns how many replays were compared."""
    sim = build_simulator(model, seed, "train")
    rng = np.random.default_rng(seed)
    feasible = [int(a) for a in np.flatnonzero(model.static_mask)]
    on_device = [a for a in feasible if not model.plans[a].offloads]
    offload = [a for a in feasible if model.plans[a].offloads]
    compared = 0
    for _ in range(decisions):
        req = sim.next_decision()
        if req is None:
            break
        if policy == "uniform" or not on_device or not offload:
            a = int(rng.choice(feasible))
        else:
            group = on_device if rng.random() < DEVICE_SHARE else offload
            a = int(rng.choice(group))
        replayed = len(sim.inflight) <= WHATIF_MAX_IN_FLIGHT
        fast_snap, full_snap = Snapshot(sim), Snapshot(sim, full=True)
        for b in [a, *rng.choice(feasible, size=2).tolist()]:
            plan = model.plans[b]
            fast = sim.predict_outcome(req, plan)  # the env's call (its own snapshot)
            shared = sim.predict_outcome(req, plan, fast_snap)
            full = sim.predict_outcome(req, plan, full_snap)
            where = f"seed {seed}, t={sim.env.now:.6f}, request {req.id}, {plan.name}"
            assert fast == full, where
            assert shared == full, where
            compared += replayed
        sim.apply(a)
    return compared


@pytest.mark.parametrize(
    ("scenario", "overrides"),
    [
        ("lte-dynamic", ["horizon_s=15"]),
        # a small cache: evictions by every policy during the replays
        ("lte-dynamic", ["horizon_s=15", "edge.cache_capacity=4", "workload.catalogue_size=30"]),
        ("camera-lte", ["horizon_s=15"]),
        ("camera-fleet-lte", ["horizon_s=8"]),
        ("multi-tenant", ["horizon_s=6"]),
        ("cache-heavy", ["horizon_s=15"]),
        ("cache-heavy", ["horizon_s=15", "edge.cache_capacity=3"]),
    ],
)
@pytest.mark.parametrize("policy", ["uniform", "device-heavy"])
def test_fast_replay_equals_the_full_replay(scenario, overrides, policy):
    model = ScenarioModel.from_config(load_scenario(scenario, overrides))
    compared = sum(_compare_episode(model, seed, 250, policy) for seed in (1, 2))
    assert compared > 50  # the replay (not only the closed form or the fallback) was compared


@pytest.mark.parametrize("devices", [1, 3])
def test_fast_replay_equals_the_full_replay_in_a_busy_toy(devices):
    """Constant links and round service times: events tie in time (batch ends, windows,
    arrivals at the edge), queues everywhere, every cache policy with evictions."""
    model = busy_toy_model(devices, horizon_s=4.0)
    compared = sum(_compare_episode(model, seed, 200, "uniform") for seed in (1, 2, 3))
    assert compared > 50


def _entry(rng: np.random.Generator, t: float) -> CacheEntry:
    return CacheEntry(t, int(rng.integers(4)), float(rng.random()), bool(rng.random() < 0.5), 0.5)


@pytest.mark.parametrize("seed", range(20))
def test_cache_view_behaves_as_a_copy(seed):
    """Random lookups and admits (every policy, ties included) on the copy-on-write view and
    on a full copy: same answers, same keys in the same order, same entries; the real cache
    is left untouched."""
    rng = np.random.default_rng(seed)
    capacity = int(rng.integers(1, 6))
    real = ResultCache(capacity)
    for k in rng.permutation(12)[:capacity].tolist():
        real.entries[k] = _entry(rng, float(rng.integers(3)))  # integer times: ties
    before = {
        k: (e.last_access_s, e.hits, e.cost_s, e.correct, e.accuracy)
        for k, e in real.entries.items()
    }
    copy = ResultCache(capacity)
    copy_of: dict[int, CacheEntry] = {}
    for k, e in real.entries.items():
        copy.entries[k] = copy_of[id(e)] = CacheEntry(
            e.last_access_s, e.hits, e.cost_s, e.correct, e.accuracy
        )
    copies: dict[int, CacheEntry] = {}
    view = _CacheView(real, copies)
    for step in range(60):
        t = float(3 + step // 3)
        key = int(rng.integers(12))
        if rng.random() < 0.4:
            a, b = copy.lookup(t, key), view.lookup(t, key)
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                assert (a.hits, a.last_access_s, a.accuracy) == (
                    b.hits,
                    b.last_access_s,
                    b.accuracy,
                )
        else:
            policy = str(rng.choice(["lru", "lfu", "cost"]))
            cost, acc = float(rng.integers(1, 3)), float(rng.choice([0.4, 0.6]))
            copy.admit(t, key, policy, cost, acc > 0.5, acc)
            view.admit(t, key, policy, cost, acc > 0.5, acc)
        seen = list(view._keys())
        assert seen == list(copy.entries)
        for k in seen:
            a, b = copy.entries[k], view._entry(k)
            assert (a.last_access_s, a.hits, a.cost_s, a.correct, a.accuracy) == (
                b.last_access_s,
                b.hits,
                b.cost_s,
                b.correct,
                b.accuracy,
            )
    # what a request holding a real entry (a lookup in flight) sees: its copy if the replay
    # touched it, else the real entry; either way what the full copy holds for it
    for e in real.entries.values():
        seen_entry = copies.get(id(e), e)
        a = copy_of[id(e)]
        assert (a.last_access_s, a.hits, a.accuracy, a.correct) == (
            seen_entry.last_access_s,
            seen_entry.hits,
            seen_entry.accuracy,
            seen_entry.correct,
        )
    after = {
        k: (e.last_access_s, e.hits, e.cost_s, e.correct, e.accuracy)
        for k, e in real.entries.items()
    }
    assert after == before
