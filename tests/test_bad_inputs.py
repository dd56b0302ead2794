"""Every subcommand on bad input (issue 23, and the first hour's cases): exit status 2, exactly
one line on stderr naming the file or option, no traceback, and nothing written.

The table runs in-process with typer's CliRunner; every case fails before any simulation or
training starts (most of the table's time is importing torch once). Below the table: what
used to be silently accepted (a run directory in use, Ctrl-C during training, which model
file was loaded, a trace in the wrong unit).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from edgerl.agents.rundir import RUN_KEYS, RUN_SCHEMA_VERSION
from edgerl.envs.config import SCENARIO_DIR
from edgerl.experiments.cli import app
from typer.testing import CliRunner

#: (case id, argv with {d} = the folder of bad files and {out} = an output path that must
#: not appear, text the error line must contain)
CASES: list[tuple[str, list[str], str]] = [
    # scenario files and the scenario loader
    ("scenario-not-utf8", ["scenarios", "check", "{d}/latin1.yaml"], "latin1.yaml"),
    (
        "train-scenario-not-utf8",
        ["train", "--scenario", "{d}/latin1.yaml", "--out", "{out}"],
        "not UTF-8",
    ),
    ("scenario-is-a-folder", ["scenarios", "check", "{d}/folder"], "folder"),
    ("scenario-dev-null", ["scenarios", "check", "/dev/null"], "/dev/null"),
    (
        "train-scenario-is-a-folder",
        ["train", "--scenario", "{d}/folder", "--out", "{out}"],
        "is a folder",
    ),
    ("unknown-scenario", ["train", "--scenario", "nosuch", "--out", "{out}"], "'nosuch'"),
    (
        "set-unknown-key",
        ["train", "--scenario", "toy-analytic", "--set", "reward.credt=finish", "--out", "{out}"],
        "(after --set reward.credt=finish)",
    ),
    (
        "set-bad-value",
        [
            "evaluate",
            "--scenario",
            "toy-analytic",
            "--set",
            "reward.credit=bogus",
            "--policy",
            "baseline:edgent",
            "--json",
            "{out}",
        ],
        "got 'bogus'",
    ),
    ("set-no-equals", ["train", "--set", "reward.credit", "--out", "{out}"], "reward.credit"),
    (
        "bench-ray-no-spec",
        ["bench", "ray", "--spec", "{d}/nosuch.yaml", "--out", "{out}"],
        "--spec",
    ),
    (
        "bench-ray-bad-seeds",
        ["bench", "ray", "--eval-seeds", "x", "--out", "{out}"],
        "--eval-seeds",
    ),
    ("unknown-hardware", ["scenarios", "check", "{d}/hw.yaml"], "devices.hardware 'nosuch-hw'"),
    ("scenario-trace-empty-csv", ["scenarios", "check", "{d}/traced.yaml"], "network.uplink"),
    # train
    ("train-out-is-a-file", ["train", "--scenario", "toy-analytic", "--out", "{d}/afile"], "--out"),
    (
        "train-zero-timesteps",
        ["train", "--scenario", "toy-analytic", "--timesteps", "0", "--out", "{out}"],
        "--timesteps",
    ),
    ("train-unknown-algo", ["train", "--algo", "sac", "--out", "{out}"], "sac"),
    ("train-bad-hp", ["train", "--hp", "nosuch_hp=1", "--out", "{out}"], "nosuch_hp"),
    # evaluate / compare / curves
    ("compare-empty-policies", ["compare", "--policies", "", "--out", "{out}"], "--policies"),
    ("compare-commas-only", ["compare", "--policies", ",,", "--out", "{out}"], "--policies"),
    ("evaluate-empty-policies", ["evaluate", "--policies", "", "--json", "{out}"], "--policies"),
    (
        "evaluate-corrupt-model",
        [
            "evaluate",
            "--scenario",
            "toy-analytic",
            "--policy",
            "{d}/run",
            "--which",
            "final",
            "--json",
            "{out}",
        ],
        "model.zip",
    ),
    ("evaluate-no-such-run", ["evaluate", "--policy", "{d}/nosuch", "--json", "{out}"], "nosuch"),
    (
        "evaluate-unknown-baseline",
        ["evaluate", "--policy", "baseline:nosuch", "--json", "{out}"],
        "nosuch",
    ),
    (
        "evaluate-zero-episodes",
        ["evaluate", "--policy", "device-only", "--episodes", "0", "--json", "{out}"],
        "--episodes",
    ),
    (
        "evaluate-negative-horizon",
        ["evaluate", "--policy", "device-only", "--horizon-s", "-5", "--json", "{out}"],
        "--horizon-s",
    ),
    (
        "evaluate-empty-seed",
        ["evaluate", "--policy", "device-only", "--seed", "", "--json", "{out}"],
        "seed",
    ),
    (
        "evaluate-seed-not-int",
        ["evaluate", "--policy", "device-only", "--seed", "x", "--json", "{out}"],
        "--seed",
    ),
    (
        "evaluate-episodes-not-int",
        ["evaluate", "--policy", "device-only", "--episodes", "abc", "--json", "{out}"],
        "--episodes",
    ),
    (
        "evaluate-which",
        ["evaluate", "--policy", "device-only", "--which", "foo", "--json", "{out}"],
        "--which",
    ),
    ("evaluate-missing-policy", ["evaluate", "--json", "{out}"], "--policy"),
    (
        "evaluate-uplink-trace-missing",
        [
            "evaluate",
            "--scenario",
            "toy-analytic",
            "--policy",
            "device-only",
            "--uplink-traces",
            "{d}/nosuch.csv",
            "--json",
            "{out}",
        ],
        "nosuch.csv",
    ),
    ("curves-bad-group", ["curves", "--group", "nolabel", "--out", "{out}"], "--group"),
    # benchmarks
    (
        "bench-headroom-unknown-scenario",
        ["bench", "headroom", "--scenarios", "nosuch", "--out", "{out}"],
        "nosuch",
    ),
    (
        "bench-env-unknown-scenario",
        ["bench", "env", "--scenario", "nope", "--soak-steps", "0", "--out", "{out}"],
        "nope",
    ),
    (
        "bench-oracle-zero-rounds",
        ["bench", "oracle", "--rounds", "0", "--out", "{out}"],
        "--rounds",
    ),
    ("bench-planner-no-planner", ["bench", "planner", "{d}/nosuch", "--out", "{out}"], "nosuch"),
    # export / plan / profile
    (
        "export-negative-parity",
        ["export", "{d}/run", "--out", "{out}", "--parity", "-1"],
        "--parity",
    ),
    ("export-no-such-run", ["export", "{d}/nosuch", "--out", "{out}"], "nosuch"),
    ("export-out-is-a-file", ["export", "{d}/run", "--out", "{d}/afile"], "--out"),
    ("plan-no-planner", ["plan", "{d}/nosuch", "--state", "{d}/afile"], "nosuch"),
    (
        "profile-file-without-factory",
        ["profile", "--model", "{d}/net.py", "--input-shape", "3,32,32", "--out", "{out}"],
        "FACTORY",
    ),
    ("profile-unknown-model", ["profile", "--model", "nosuchmodel", "--out", "{out}"], "nosuch"),
    (
        "profile-bad-batch-sizes",
        ["profile", "--model", "digits_me", "--batch-sizes", "4,2", "--out", "{out}"],
        "--batch-sizes",
    ),
    # traces
    ("traces-check-empty-folder", ["traces", "check", "{d}/empty_dir"], "empty_dir"),
    ("traces-check-empty-csv", ["traces", "check", "{d}/empty.csv", "--column", "x"], "empty.csv"),
    ("traces-check-missing-file", ["traces", "check", "{d}/nosuch.csv"], "nosuch.csv"),
]


def _write_bad_files(d: Path) -> None:
    """The bad inputs the table refers to as {d}/..."""
    toy = yaml.safe_load((SCENARIO_DIR / "toy-analytic.yaml").read_text(encoding="utf-8"))
    (d / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (d / "folder").mkdir()
    (d / "empty_dir").mkdir()
    (d / "afile").write_text("a file, not a folder\n", encoding="utf-8")
    (d / "empty.csv").write_text("", encoding="utf-8")
    (d / "net.py").write_text("X = 1\n", encoding="utf-8")
    (d / "profiles").mkdir()
    hw = dict(toy, devices=dict(toy["devices"], hardware="nosuch-hw"))
    hw["model"] = dict(toy["model"], profiles_dir="profiles")
    (d / "hw.yaml").write_text(yaml.safe_dump(hw), encoding="utf-8")
    traced = dict(toy)
    traced["network"] = dict(
        toy["network"], uplink={"trace_files": ["empty.csv"], "format": "csv", "column": "x"}
    )
    (d / "traced.yaml").write_text(yaml.safe_dump(traced), encoding="utf-8")
    run = d / "run"  # a valid run.json with a corrupt model.zip
    run.mkdir()
    fields: dict[str, object] = {
        "schema_version": RUN_SCHEMA_VERSION,
        "algo": "maskable_ppo",
        "seed": 0,
        "timesteps": 1,
        "wall_time_s": 1.0,
        "env_time_s": 1.0,
    }
    blank = {dict: {}, int: 0, str: "x"}
    record = {
        k: fields.get(k, blank.get(tp if isinstance(tp, type) else int))
        for k, tp in RUN_KEYS.items()
    }
    (run / "run.json").write_text(json.dumps(record), encoding="utf-8")
    (run / "model.zip").write_bytes(b"not a zip file")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    _write_bad_files(d)
    return d


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(("args", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(args, needle, bad_files, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"  # commands with a default output folder would write here
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "out"
    argv = [a.format(d=bad_files, out=out) for a in args]
    before = _snapshot(bad_files)
    res = CliRunner().invoke(app, argv)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output, res.output
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert not out.exists(), f"{out} written"
    assert not any(cwd.iterdir()), f"wrote {list(cwd.iterdir())}"
    assert _snapshot(bad_files) == before, "the bad inputs were changed"


# --------------------------------------------------------------------------- silently accepted


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


TINY_TRAIN = (
    "train", "--scenario", "toy-analytic", "--timesteps", "128", "--n-envs", "2",
    "--hp", "eval_freq=64", "--hp", "eval_episodes=1", "--hp", "eval_horizon_s=20",
    "--hp", "n_steps=64", "--no-progress",
)  # fmt: skip


def test_a_run_directory_in_use_is_locked(tmp_path):
    import fcntl
    import os

    from edgerl.agents.rundir import LOCK_FILE

    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a training in progress holds it
    try:
        res = _invoke(*TINY_TRAIN, "--out", str(run), "--overwrite")
    finally:
        os.close(fd)
    assert res.exit_code == 2, res.output
    assert "in use by another training (pid 4242)" in res.stderr
    assert [p.name for p in run.iterdir()] == [LOCK_FILE]  # nothing of a second run


def test_ctrl_c_saves_the_model_and_marks_the_run(tmp_path, monkeypatch):
    from edgerl.agents.training import HeldOutEvalCallback

    def interrupt(self):  # Ctrl-C after the first evaluation
        if self.num_timesteps >= 64:
            raise KeyboardInterrupt
        return True

    monkeypatch.setattr(HeldOutEvalCallback, "_on_step", interrupt)
    run = tmp_path / "run"
    res = _invoke(*TINY_TRAIN, "--out", str(run))
    assert res.exit_code == 130, res.output
    assert "interrupted after 64 of 128 steps" in res.stderr
    record = json.loads((run / "run.json").read_text())
    assert record["interrupted"] is True and record["timesteps_done"] == 64
    assert (run / "model.zip").is_file()
    monkeypatch.undo()

    res = _invoke(
        "evaluate", "--policy", str(run), "--which", "final", "--episodes", "1", "--horizon-s", "5"
    )
    assert res.exit_code == 0, res.output
    assert f"loaded {run / 'model.zip'}" in res.stderr
    assert "training was interrupted after 64 of 128 steps" in res.stderr
    res = _invoke("export", str(run), "--out", str(tmp_path / "planner"), "--parity", "0")
    assert res.exit_code == 0, res.output
    assert "training was interrupted" in res.stderr and "model: " in res.stdout

    # plan --example-state: a real held-out state of the run's scenario, not a mid-range mix
    from edgerl.envs.sim.build import scenario_model
    from edgerl.experiments.export import example_state

    res = _invoke("plan", str(tmp_path / "planner"), "--example-state")
    assert res.exit_code == 0 and not res.stderr, res.output
    expected = example_state(scenario_model(str(run / "scenario.yaml")))
    assert json.loads(res.stdout) == pytest.approx(expected)


def test_a_bare_baseline_name_is_a_policy():
    res = _invoke(
        "evaluate", "--scenario", "toy-analytic", "--policy", "device-only",
        "--episodes", "1", "--horizon-s", "5",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "device-only" in res.stdout


def test_trace_unit_from_the_column_name_and_implausible_means(tmp_path):
    f = tmp_path / "up.csv"
    f.write_text("time_s,up_kbps\n0,2800\n1,2900\n2,2900\n", encoding="utf-8")
    res = _invoke("traces", "check", str(f), "--column", "up_kbps")
    assert res.exit_code == 0 and "unit: kbps (from the column name up_kbps" in res.stdout
    assert "   2.87 " in res.stdout and not res.stderr  # 2,866.7 kbit/s = 2.87 Mbit/s
    res = _invoke("traces", "check", str(f), "--column", "up_kbps", "--unit", "mbps")
    assert res.exit_code == 0
    assert "warning: " in res.stderr and "mean 2,867 Mbit/s is implausible" in res.stderr


def test_observation_error_is_importable_from_the_planner():
    """README's planner section names ObservationError next to edgerl.agents.planner."""
    from edgerl.agents.planner import ObservationError
    from edgerl.envs.observation import ObservationError as Defined

    assert ObservationError is Defined


def test_python_warnings_print_as_one_line_and_matplotlib_layout_noise_is_silenced():
    import warnings

    import typer
    from edgerl.experiments.errors import ClearErrorsGroup

    demo = typer.Typer(cls=ClearErrorsGroup)

    @demo.command()
    def warn() -> None:
        warnings.warn("state field 'uplink_mbps' outside the training range", stacklevel=1)
        warnings.warn("Tight layout not applied. tight_layout cannot make Axes ...", stacklevel=1)

    @demo.command()
    def other() -> None:  # two commands: `warn` is a subcommand, as in edgerl
        pass

    res = CliRunner().invoke(demo, ["warn"])
    assert res.exit_code == 0, res.output
    assert res.stderr.splitlines() == [
        "warning: state field 'uplink_mbps' outside the training range"
    ]
