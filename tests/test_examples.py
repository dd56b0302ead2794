"""The worked examples run (short horizons) and do what they say."""

from __future__ import annotations

from edgerl.experiments.examples import own_policy


def test_own_policy_example_runs_and_compares(capsys):
    utility = own_policy.main(["--scenario", "lte-dynamic", "--seeds", "0,1", "--horizon-s", "20"])
    assert set(utility) == {"my-heuristic", "device-only", "edgent", "composite"}
    out = capsys.readouterr().out
    assert "my-heuristic" in out and "utility/req" in out
