"""The headroom file: entries, merging, and what `edgerl scenarios` shows for each."""

from __future__ import annotations

import json

from edgerl.experiments.headroom import (
    HEADROOM_KIND,
    headroom_abs_of,
    headroom_entry,
    headroom_of,
    load_headroom,
    record_headroom,
)


def _metrics(fixed: float, oracle: float) -> dict:
    return {
        "best-fixed": {"utility_pooled": {"mean": fixed}},
        "oracle": {"utility_pooled": {"mean": oracle}},
    }


def _entry(scenario: str, fixed: float, oracle: float) -> dict:
    return headroom_entry(
        scenario,
        _metrics(fixed, oracle),
        best_fixed_plan="p",
        oracle_wall_time_s=1.0,
        wall_time_s=2.0,
        eval_seeds=(100, 101),
        episodes=1,
        oracle_window_s=2.0,
        source="test",
    )


def test_headroom_is_relative_to_the_magnitude_of_best_fixed():
    assert abs(_entry("toy-analytic", -0.5, -0.4)["headroom"] - 0.2) < 1e-12
    assert abs(_entry("toy-analytic", 0.5, 0.6)["headroom"] - 0.2) < 1e-12
    assert _entry("toy-analytic", 0.0, 0.1)["headroom"] is None


def test_absolute_headroom_stays_on_the_reward_scale(tmp_path):
    """Near a best-fixed utility of 0 the relative figure explodes; the absolute one does not."""
    e = _entry("toy-analytic", 0.002, 0.074)
    assert e["headroom"] > 30 and abs(e["headroom_abs_utility"] - 0.072) < 1e-12
    doc = {"scenarios": {"toy-analytic": e}}
    assert headroom_abs_of("toy-analytic", doc) == "+0.072"
    old = {k: v for k, v in e.items() if k != "headroom_abs_utility"}  # written before the key
    assert headroom_abs_of("toy-analytic", {"scenarios": {"toy-analytic": old}}) == "+0.072"
    assert headroom_abs_of("hsdpa-mobile", doc) == "not measured"


def test_record_merges_and_each_entry_keeps_its_protocol(tmp_path):
    out = tmp_path / "headroom.json"
    record_headroom({"toy-analytic": _entry("toy-analytic", 0.5, 0.6)}, out)
    record_headroom({"lte-dynamic": _entry("lte-dynamic", 0.4, 0.4)}, out)
    doc = load_headroom(out)
    assert doc["kind"] == HEADROOM_KIND
    assert set(doc["scenarios"]) == {"toy-analytic", "lte-dynamic"}
    e = doc["scenarios"]["toy-analytic"]
    assert e["eval_seeds"] == [100, 101] and e["oracle_window_s"] == 2.0 and e["source"] == "test"
    assert headroom_of("toy-analytic", doc) == "+20.0 %"
    assert headroom_of("lte-dynamic", doc) == "+0.0 %"
    assert headroom_of("hsdpa-mobile", doc) == "not measured"


def test_an_entry_for_a_changed_scenario_is_stale(tmp_path):
    out = tmp_path / "headroom.json"
    record_headroom({"toy-analytic": _entry("toy-analytic", 0.5, 0.6)}, out)
    doc = json.loads(out.read_text())
    doc["scenarios"]["toy-analytic"]["scenario_fingerprint"] = "0" * 64
    assert headroom_of("toy-analytic", doc) == "stale"


def test_an_unreadable_file_reads_as_empty(tmp_path):
    bad = tmp_path / "headroom.json"
    bad.write_text("{not json")
    assert load_headroom(bad) == {}
    assert headroom_of("toy-analytic", load_headroom(bad)) == "not measured"


def test_the_commit_is_read_once_per_process(tmp_path):
    """Results written at the end of a long run name the code it started with."""
    import subprocess

    from edgerl.experiments import runinfo

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "a")
    first = runinfo.git_commit(tmp_path)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "b")
    assert runinfo.git_commit(tmp_path) == first
    runinfo.git_commit.cache_clear()
    assert runinfo.git_commit(tmp_path) != first
