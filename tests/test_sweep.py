"""`edgerl sweep`: the spec schema and its errors (fast), and sweeps on a local Ray (slow)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from edgerl.agents.hyperparams import load_hyperparams
from edgerl.experiments.sweep import TrialRow, rank_rows, write_best
from edgerl.experiments.sweep_spec import SweepSpecError, load_spec, spec_from_dict
from typer.testing import CliRunner

EXAMPLE = Path(__file__).resolve().parent.parent / "experiments" / "examples"
#: Tiny trainings, as tests/test_bench_generalise.py builds them.
TINY_HP = {
    "eval_freq": 64,
    "eval_episodes": 1,
    "eval_horizon_s": 5,
    "n_steps": 64,
    "n_envs": 1,
    "batch_size": 64,
}


def _spec(**changes):
    base = {
        "scenarios": ["camera-lte"],
        "algorithms": ["ppo"],
        "seeds": [0],
        "search": "random",
        "hyperparams": dict(TINY_HP),
        "space": {"learning_rate": {"loguniform": [1e-4, 1e-3]}},
        "budget": {"timesteps": 128, "trials": 2},
    }
    base.update(changes)
    return base


def _write(tmp_path: Path, doc, name="spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return p


def test_shipped_example_spec_is_valid():
    spec = load_spec(EXAMPLE / "sweep-camera-lte.yaml")
    assert spec.name == "sweep-camera-lte"
    assert spec.search == "random" and spec.budget.trials == 4
    assert {s.kind for s in spec.space.values()} == {"loguniform", "choice"}
    assert spec.early_stopping is not None


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"algoritms": ["ppo"]}, r"\.algoritms: unknown key; did you mean 'algorithms'"),
        ({"budget": {"timesteps": 128, "trails": 2}}, r"budget\.trails: unknown key"),
        ({"budget": {"timesteps": "many", "trials": 2}}, r"budget\.timesteps: expected an int"),
        ({"budget": {"trials": 2}}, r"budget\.timesteps: missing required key"),
        ({"search": "bayes"}, r"\.search: expected one of"),
        ({"space": {"learning_rate": {"logunifom": [1e-4, 1e-3]}}}, r"learning_rate\.logunifom"),
        ({"space": {"learning_rate": {"loguniform": [0, 1e-3]}}}, r"low must be > 0"),
        ({"space": {"learning_rate": {"uniform": [1e-3, 1e-4]}}}, r"low must be < high"),
        ({"space": {"learning_rate": {"choice": []}}}, r"non-empty list"),
        ({"space": {"learning_rate": {"grid": [1e-4, 1e-3]}}}, r"grid spaces need search: grid"),
        ({"search": "grid"}, r"budget\.trials: grid search runs each combination once"),
        ({"budget": {"timesteps": 128}}, r"budget\.trials: random search needs"),
        ({"space": {"n_timesteps": {"choice": [1, 2]}}}, r"space\.n_timesteps: set by the sweep"),
        ({"seeds": [0, 0]}, r"seeds: repeated seed"),
        ({"algorithms": ["ppo", "sac"]}, r"algorithms\[1\]: unknown algorithm 'sac'"),
        ({"space_per_algorithm": {"a2c": {}}}, r"space_per_algorithm\.a2c: not one of"),
        ({"early_stopping": {"grace_timesteps": 64, "reduction_factor": 1}}, r"reduction_fac"),
        (
            {"space": {"learning_rate": {"choice": [1e-4]}}, "hyperparams": {"learning_rate": 1}},
            r"space\.learning_rate: also fixed",
        ),
    ],
)
def test_spec_shape_errors_name_the_key(changes, match):
    with pytest.raises(SweepSpecError, match=match):
        spec_from_dict(_spec(**changes), "s.yaml")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"scenarios": ["camera-lte", "no-such-scenario"]}, r"scenarios\[1\]: unknown scenario"),
        ({"space": {"n_stepz": {"choice": [64]}}}, r"space\.n_stepz = 64 \(ppo\): .*unknown key"),
        ({"space": {"checkpoint_freq": {"choice": [64, 0]}}}, r"checkpoint_freq = 0 .*positive"),
        ({"hyperparams": {"vec_env": "threads"}}, r"hyperparams \(ppo\): .*vec_env must be"),
        (
            {
                "algorithms": ["ppo", "dqn"],
                "space_per_algorithm": {"dqn": {"gae_lambda": {"choice": [0.9]}}},
                "hyperparams": {},
            },
            r"space_per_algorithm\.dqn\.gae_lambda = 0.9 \(dqn\)",
        ),
    ],
)
def test_spec_content_errors_name_the_key(tmp_path, changes, match):
    with pytest.raises(SweepSpecError, match=match):
        load_spec(_write(tmp_path, _spec(**changes)))


def test_bad_spec_fails_before_ray_starts(tmp_path):
    from edgerl.experiments.cli import app

    spec = _write(tmp_path, _spec(budget={"timesteps": 128, "trails": 2}))
    out = tmp_path / "sweep"
    res = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(out)])
    assert res.exit_code == 2
    assert "budget.trails: unknown key" in " ".join(res.output.split())
    assert not out.exists()


def test_inconsistent_options_fail_before_ray_starts(tmp_path):
    from edgerl.experiments.cli import app

    spec = _write(tmp_path, _spec())
    runner = CliRunner()
    for args, msg in [
        ([str(spec), "--retry-errored"], "--retry-errored: only with --resume"),
        ([str(spec), "--resume", str(tmp_path)], "not both"),
        (["--resume", str(tmp_path / "empty")], "no spec.yaml; not a sweep directory"),
        ([], "give a sweep spec"),
        ([str(spec), "--address", "10.0.0.1:6379", "--num-cpus", "2"], "only for a local Ray"),
    ]:
        res = runner.invoke(app, ["sweep", *args])
        assert res.exit_code == 2, (args, res.output)
        assert msg in " ".join(res.output.split()), (args, res.output)


def test_importing_the_sweep_does_not_import_ray():
    mods = "edgerl.experiments.sweep, edgerl.experiments.cli, edgerl.experiments.sweep_spec"
    code = f"import sys, {mods}; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _row(trial, status, utility, algo="ppo", params=None):
    return TrialRow(
        scenario="camera-lte",
        scenario_name="camera-lte",
        algo=algo,
        trial_id=trial,
        status=status,
        utility=utility,
        ci_low=None,
        ci_high=None,
        per_seed=[],
        seeds_done=0,
        params=params or {},
        run_dirs=[],
    )


def test_ranking_puts_finished_trials_first_then_stopped_then_errors():
    rows = rank_rows(
        [
            _row("e", "error", math.nan),
            _row("s", "stopped", 0.9),
            _row("b", "ok", 0.2),
            _row("a", "ok", 0.5),
            _row("x", "ok", 0.1, algo="a2c"),
        ]
    )
    assert [(r.algo, r.trial_id, r.rank) for r in rows] == [
        ("a2c", "x", 1),
        ("ppo", "a", 1),
        ("ppo", "b", 2),
        ("ppo", "s", 3),
        ("ppo", "e", 4),
    ]


def test_best_configuration_is_a_hyperparameter_file_train_accepts(tmp_path):
    spec = spec_from_dict(_spec(space={"ent_coef": {"choice": [0.0, 0.05]}}), "s.yaml")
    params = {"ent_coef": 0.05}
    rows = rank_rows([_row("t1", "ok", 0.4, params=params), _row("t0", "ok", 0.1)])
    files = write_best(spec, rows, tmp_path)
    (path,) = files.values()
    assert "trial t1" in path.read_text(encoding="utf-8")
    best = load_hyperparams("ppo", "camera-lte", path=path)
    want = load_hyperparams(
        "ppo",
        "camera-lte",
        [*spec.fixed_overrides(), "ent_coef=0.05", "n_timesteps=128"],
    )
    assert dict(best.algo_kwargs) == dict(want.algo_kwargs)
    assert dict(best.run) == dict(want.run)
    assert best.algo_kwargs["ent_coef"] == 0.05 and best.run["n_timesteps"] == 128


# ---------------------------------------------------------------------- on a local Ray (slow)


def _ray_processes() -> list[str]:
    import psutil

    names = ("raylet", "gcs_server", "default_worker")
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(n in cmd for n in names):
            out.append(cmd)
    return out


def _run(spec_path, out=None, resume=None, retry_errored=False):
    from edgerl.experiments.sweep import SweepConfig, run_sweep

    cfg = SweepConfig(
        spec=spec_path,
        out=out,
        resume=resume,
        retry_errored=retry_errored,
        num_cpus=1,
        verbose=0,
    )
    return run_sweep(cfg)


@pytest.mark.slow
def test_tiny_grid_sweep_with_a_crashing_trial(tmp_path):
    """Two configurations on a local Ray: one trains, one's loss turns NaN (a NaN gradient
    clip) and crashes; the sweep reports the error and still ranks and writes the other."""
    before = _ray_processes()
    doc = _spec(
        search="grid",
        space={"max_grad_norm": {"grid": [0.5, math.nan]}},
        budget={"timesteps": 128},
    )
    spec_path = _write(tmp_path, doc)
    res = _run(spec_path, out=tmp_path / "sweep")
    assert [r.status for r in res.rows] == ["ok", "error"]
    ok, bad = res.rows
    assert ok.params == {"max_grad_norm": 0.5} and ok.seeds_done == 1
    assert math.isfinite(ok.utility)
    assert math.isnan(bad.params["max_grad_norm"])
    assert "nan" in bad.error.lower()
    (run_dir,) = ok.run_dirs
    record = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    assert record["hyperparams"]["algo_kwargs"]["max_grad_norm"] == 0.5
    assert record["timesteps"] == 128 and not record["interrupted"]
    assert (Path(run_dir) / "model.zip").is_file()
    results = res.sweep_dir / "results"
    table = json.loads((results / "trials.json").read_text(encoding="utf-8"))
    assert [t["status"] for t in table["trials"]] == ["ok", "error"]
    assert len((results / "trials.csv").read_text(encoding="utf-8").splitlines()) == 3
    assert "| error: " in (results / "trials.md").read_text(encoding="utf-8")
    assert load_hyperparams("ppo", "camera-lte", path=res.best_files["camera-lte__ppo"])
    assert {p.name for p in res.plots} == {
        "camera-lte__ppo-utility-vs-hyperparams.png",
        "camera-lte__ppo-top-curves.png",
    }
    import ray

    assert not ray.is_initialized()
    assert _ray_processes() == before  # the local Ray is gone

    # --resume --retry-errored runs the failed trial again from scratch (Tune gives it a new
    # id: a new run root); it fails again (the NaN is in its configuration), and the finished
    # trial is left alone
    stamp = (Path(run_dir) / "run.json").stat().st_mtime_ns
    again = _run(None, resume=res.sweep_dir, retry_errored=True)
    assert [r.status for r in again.rows] == ["ok", "error"]
    assert again.rows[0].trial_id == ok.trial_id
    assert again.rows[1].trial_id != bad.trial_id
    assert math.isnan(again.rows[1].params["max_grad_norm"])
    assert (Path(run_dir) / "run.json").stat().st_mtime_ns == stamp
    runs = res.sweep_dir / "runs" / "camera-lte__ppo"
    assert (runs / again.rows[1].trial_id / "seed0" / "learning_curve.csv").is_file()


@pytest.mark.slow
def test_resume_after_interruption_keeps_finished_trials(tmp_path):
    """Ctrl-C once the first of two trials has finished (the second has started: its
    evaluations are long), then --resume: the finished trial is not trained again, the
    interrupted one is trained from scratch, and the table has both."""
    doc = _spec(
        search="grid",
        space={"eval_horizon_s": {"grid": [5, 600]}},
        hyperparams={k: v for k, v in TINY_HP.items() if k != "eval_horizon_s"},
        budget={"timesteps": 128},
        max_concurrent=1,
    )
    spec_path = _write(tmp_path, doc)
    sweep_dir = tmp_path / "sweep"
    cmd = [str(Path(sys.executable).parent / "edgerl"), "sweep", str(spec_path)]
    proc = subprocess.Popen(
        [*cmd, "--out", str(sweep_dir), "--num-cpus", "1", "--verbose", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not list(sweep_dir.glob("runs/*/*/seed0/run.json")):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the first trial did not finish in 300 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out
    assert "--resume" in out
    (done,) = sweep_dir.glob("runs/*/*/seed0/run.json")  # the second one was cut short
    stamp = done.stat().st_mtime_ns
    assert not (sweep_dir / "results").exists()

    res = _run(None, resume=sweep_dir)
    assert done.stat().st_mtime_ns == stamp  # not trained again
    assert [r.status for r in res.rows] == ["ok", "ok"]
    assert sorted(r.params["eval_horizon_s"] for r in res.rows) == [5, 600]
    assert len(list(sweep_dir.glob("runs/*/*/seed0/run.json"))) == 2
    prov = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    assert len(prov["interrupted"]) == 1 and len(prov["resumed"]) == 1


@pytest.mark.slow
def test_optuna_search_with_a_dotted_list_valued_space(tmp_path):
    """TPE through Ray Tune's OptunaSearch samples a nested key (as --hp writes it) whose
    values are lists; each trial's run trains with the value it was given."""
    doc = _spec(
        search="optuna",
        space={
            "learning_rate": {"loguniform": [1e-4, 1e-3]},
            "policy_kwargs.net_arch": {"choice": [[32], [64, 64]]},
        },
        budget={"timesteps": 128, "trials": 2},
    )
    res = _run(_write(tmp_path, doc), out=tmp_path / "sweep")
    assert [r.status for r in res.rows] == ["ok", "ok"]
    for r in res.rows:
        (run_dir,) = r.run_dirs
        record = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
        kwargs = record["hyperparams"]["algo_kwargs"]
        assert kwargs["policy_kwargs"]["net_arch"] == r.params["policy_kwargs.net_arch"]
        assert kwargs["learning_rate"] == pytest.approx(r.params["learning_rate"])
        assert 1e-4 <= r.params["learning_rate"] <= 1e-3
