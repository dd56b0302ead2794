"""Per-layer-type latency regression (edgerl.profiles.regression).

Profiles here are SYNTHETIC, built in memory with known coefficients, so that recovery can be
checked exactly; the real measured profiles are evaluated by `edgerl fit-report`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from edgerl.profiles import profile_from_dict
from edgerl.profiles.regression import (
    LatencyModel,
    RegressionError,
    UnknownLayerTypeError,
    choose_spill_threshold,
    feature_names,
    fit_latency_models,
    leave_one_family_out,
    nnls,
    predict_sample,
    samples_from_profile,
    unit_io_bytes,
)

BATCHES = [1, 2, 4, 8]
# true linear coefficients per layer type: ms per (b*GFLOP), per (b*act MB), per weight MB, fixed
TRUE = {
    "conv": (20.0, 0.5, 0.1, 0.05),
    "linear": (5.0, 0.0, 0.8, 0.02),
    "pool": (0.0, 0.9, 0.0, 0.01),
    "head": (8.0, 0.2, 0.3, 0.03),
}


def true_latency(lt: str, flops: float, in_b: int, out_b: int, params: int, b: int) -> float:
    c = TRUE[lt]
    return c[0] * b * flops / 1e9 + c[1] * b * (in_b + out_b) / 1e6 + c[2] * params / 1e6 + c[3]


def make_profile(
    model: str,
    family: str,
    units: list[tuple[str, float, int, int]],
    *,
    variant: str = "fp32",
    precision: str = "fp32",
    hardware: str = "synthetic-hw",
    input_bytes: int = 12_288,
    noise: float = 0.0,
    seed: int = 0,
) -> Any:
    """A schema-valid profile; units are (layer_type, flops, params_bytes, out_bytes)."""
    rng = np.random.default_rng(seed)
    prev = input_bytes
    raw_units = []
    for i, (lt, flops, params, out_b) in enumerate(units):
        lat = [
            true_latency(lt, flops, prev, out_b, params, b) * (1 + noise * rng.standard_normal())
            for b in BATCHES
        ]
        raw_units.append(
            {
                "name": f"u{i}",
                "layer_type": lt,
                "flops": flops,
                "params_bytes": params,
                "peak_activation_bytes": prev + out_b,
                "latency_ms_median": lat,
                "latency_ms_p95": [v * 1.1 for v in lat],
                "runs": [10] * len(BATCHES),
                "output_shape": [out_b // 4],
                "output_bytes_fp32": out_b,
                "output_bytes_int8": max(out_b // 4, 1),
            }
        )
        prev = out_b
    last_out = units[-1][3]
    head_flops, head_params = 2.0e5 * (seed + 1), 40_000 * (seed + 1) ** 2
    head_lat = [true_latency("head", head_flops, last_out, 0, head_params, b) for b in BATCHES]
    return profile_from_dict(
        {
            "schema_version": 1,
            "kind": "edgerl.layer_profile",
            "model": model,
            "family": family,
            "variant": variant,
            "variant_info": {"precision": precision, "input_resolution": 32, "description": "t"},
            "hardware": {
                "name": hardware,
                "device_class": "host-cpu",
                "derived": False,
                "source": "synthetic test data",
            },
            "provenance": {"command": "tests"},
            "input": {
                "shape": [3, 32, 32],
                "raw_bytes": input_bytes // 4,
                "tensor_bytes": input_bytes,
            },
            "batch_sizes": BATCHES,
            "timing": {"warmup_runs": 1},
            "units": raw_units,
            "exits": [
                {
                    "name": "exit_final",
                    "layer_type": "head",
                    "flops": head_flops,
                    "params_bytes": head_params,
                    "peak_activation_bytes": last_out,
                    "latency_ms_median": head_lat,
                    "latency_ms_p95": [v * 1.1 for v in head_lat],
                    "runs": [10] * len(BATCHES),
                    "after_unit": len(units) - 1,
                    "accuracy": None,
                    "accuracy_source": "",
                }
            ],
        },
        f"<synthetic {model}>",
    )


def zoo(noise: float = 0.0) -> list[Any]:
    """Three synthetic families whose layer types overlap (conv, linear, pool, head)."""
    return [
        make_profile(
            "a_me",
            "fam_a",
            [
                ("conv", 3e8, 90_000, 800_000),
                ("pool", 2e5, 0, 200_000),
                ("conv", 9e8, 1_200_000, 400_000),
                ("linear", 5e7, 16_000_000, 16_384),
            ],
            noise=noise,
            seed=1,
        ),
        make_profile(
            "b_me",
            "fam_b",
            [
                ("conv", 1e8, 9_000, 1_600_000),
                ("conv", 6e8, 600_000, 300_000),
                ("pool", 1e5, 0, 80_000),
                ("linear", 2e7, 4_000_000, 4_000),
            ],
            noise=noise,
            seed=2,
        ),
        make_profile(
            "c_me",
            "fam_c",
            [
                ("conv", 2e9, 2_400_000, 600_000),
                ("pool", 4e5, 0, 150_000),
                ("linear", 8e6, 1_000_000, 4_000),
                ("conv", 5e7, 50_000, 50_000),
            ],
            noise=noise,
            seed=3,
        ),
    ]


def test_io_bytes_chain_units() -> None:
    p = zoo()[0]
    io = unit_io_bytes(p)
    assert io[0] == (p.input_tensor_bytes, p.units[0].output_bytes_fp32)
    for i in range(1, len(p.units)):
        assert io[i][0] == p.units[i - 1].output_bytes_fp32


@pytest.mark.parametrize("form", ["hybrid", "linear"])
def test_recovers_known_coefficients_from_exact_data(form: str) -> None:
    model = fit_latency_models(zoo(), form=form)
    for lt, coef in TRUE.items():
        fit = model.groups[f"fp32:{lt}"]
        # hybrid: (flop, act, spill, params, 1); no activation here exceeds any cache size
        want = (coef[0], coef[1], 0.0, coef[2], coef[3]) if form == "hybrid" else coef
        np.testing.assert_allclose(fit.coef, want, rtol=1e-6, atol=1e-9)
        assert fit.train_mape < 1e-6


def test_prediction_matches_closed_form() -> None:
    model = fit_latency_models(zoo())
    got = model.predict_ms("conv", 4e8, 600_000, 300_000, 500_000, 16)
    assert got == pytest.approx(true_latency("conv", 4e8, 600_000, 300_000, 500_000, 16), rel=1e-6)


def test_nnls_matches_unconstrained_when_feasible_and_clips_otherwise() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.1, 1.0, size=(30, 3))
    x_true = np.array([1.0, 2.0, 0.5])
    np.testing.assert_allclose(nnls(a, a @ x_true), x_true, rtol=1e-9)
    # the unconstrained optimum has a negative coefficient -> NNLS must clip it to 0
    y = a @ np.array([1.0, -2.0, 0.5])
    x = nnls(a, y)
    assert (x >= 0).all() and x[1] == 0.0


def test_unknown_layer_type_error_and_fallback() -> None:
    model = fit_latency_models(zoo())
    with pytest.raises(UnknownLayerTypeError, match="no regression for layer type 'attention'"):
        model.predict_ms("attention", 1e8, 1000, 1000, 1000, 1)
    with pytest.raises(UnknownLayerTypeError, match="precision 'int8'"):
        model.predict_ms("conv", 1e8, 1000, 1000, 1000, 1, precision="int8")
    fb = model.predict_ms("attention", 1e8, 1000, 1000, 1000, 1, allow_fallback=True)
    assert math.isfinite(fb) and fb > 0


def test_bad_inputs_fail_early() -> None:
    model = fit_latency_models(zoo())
    with pytest.raises(ValueError, match="batch_size"):
        model.predict_ms("conv", 1e8, 1, 1, 1, 0)
    with pytest.raises(ValueError, match="flops"):
        model.predict_ms("conv", -1.0, 1, 1, 1, 1)
    mixed = [zoo()[0], make_profile("x", "fam_x", [("conv", 1e8, 1, 1000)], hardware="other")]
    with pytest.raises(RegressionError, match="one piece of hardware"):
        fit_latency_models(mixed)
    with pytest.raises(RegressionError, match="no profiles"):
        fit_latency_models([])


def test_missing_precision_is_rejected() -> None:
    p = zoo()[0]
    d = p.to_dict()
    del d["variant_info"]["precision"]
    with pytest.raises(RegressionError, match=r"variant_info\.precision"):
        samples_from_profile(profile_from_dict(d, "nop.json"))


@pytest.mark.parametrize("form", ["linear", "loglinear"])
def test_json_round_trip(tmp_path: Any, form: str) -> None:
    model = fit_latency_models(zoo(noise=0.05), form=form, source="unit test")
    path = model.save(tmp_path / "m.json")
    json.loads(path.read_text())  # plain JSON
    back = LatencyModel.load(path)
    assert back == model
    args = ("linear", 3e7, 5000, 4000, 2_000_000, 4)
    assert back.predict_ms(*args) == model.predict_ms(*args)


def test_load_rejects_corrupt_file(tmp_path: Any) -> None:
    model = fit_latency_models(zoo())
    d = model.to_dict()
    d["groups"]["fp32:conv"]["coef"] = [1.0, 2.0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(RegressionError, match=r"groups\.fp32:conv\.coef"):
        LatencyModel.load(bad)
    bad.write_text("{not json")
    with pytest.raises(RegressionError, match="not valid JSON"):
        LatencyModel.load(bad)


@pytest.mark.parametrize("form", ["hybrid", "linear"])
def test_held_out_report_structure_and_values(form: str) -> None:
    rep = leave_one_family_out(zoo(noise=0.02), form)
    assert rep.families == ("fam_a", "fam_b", "fam_c")
    assert {r.group for r in rep.by_group} == {f"fp32:{lt}" for lt in TRUE}
    assert [r.group for r in rep.by_family] == list(rep.families)
    n_samples = sum(len(samples_from_profile(p)) for p in zoo())
    assert rep.overall.n == n_samples == sum(r.n for r in rep.by_family)
    assert rep.whole_overall is not None and rep.whole_in_sample is not None
    n_whole = len(zoo()) * len(BATCHES)  # one whole-model point per profile and batch size
    assert rep.whole_overall.n == n_whole == sum(r.n for r in rep.whole_by_family)
    rows = (*rep.by_group, *rep.by_family, rep.overall, rep.in_sample, *rep.whole_by_family,
            rep.whole_overall, rep.whole_in_sample)  # fmt: skip
    for row in rows:
        assert math.isfinite(row.mape) and row.mape >= 0
        assert row.r2 is not None and math.isfinite(row.r2)
    # near-exact per-type data: in-sample errors are at the noise level
    assert rep.in_sample.mape < 5 and rep.whole_in_sample.mape < 5
    if form == "linear":
        # every layer type is shared and the truth is linear per type -> small held-out error;
        # hybrid predicts out-of-range entries with the pooled model, which cannot be exact
        # on these synthetic per-type coefficients
        assert rep.overall.mape < 10
    assert not any(r.fallback for r in rep.by_group)
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["overall"]["n"] == n_samples and len(d["predictions"]) == n_samples
    assert len(d["whole_model"]["predictions"]) == n_whole


def test_whole_model_row_is_the_sum_of_units_and_final_exit() -> None:
    profs = zoo()
    rep = leave_one_family_out(profs)
    held = next(p for p in profs if p.family == "fam_b")
    train = [p for p in profs if p.family != "fam_b"]
    model = fit_latency_models(train)
    samples = samples_from_profile(held)
    want = sum(
        predict_sample(model, s, allow_fallback=True)
        for s in samples
        if s.batch_size == BATCHES[-1] and (s.kind == "unit" or s.name == held.exits[-1].name)
    )
    row = next(
        w for w in rep.whole_predictions
        if w["model"] == held.model and w["batch_size"] == BATCHES[-1]
    )  # fmt: skip
    assert row["predicted_ms"] == pytest.approx(want, rel=1e-9)
    measured = (
        sum(u.latency_ms_median[-1] for u in held.units) + held.exits[-1].latency_ms_median[-1]
    )
    assert row["measured_ms"] == pytest.approx(measured, rel=1e-12)


def test_held_out_marks_fallback_for_family_only_layer_type() -> None:
    profs = [
        *zoo(),
        make_profile("d_me", "fam_d", [("conv", 1e8, 9000, 100_000), ("pool", 1e5, 0, 40_000)]),
    ]
    d = profs[-1].to_dict()
    d["units"][1]["layer_type"] = "special"
    profs[-1] = profile_from_dict(d)
    rep = leave_one_family_out(profs)
    special = next(r for r in rep.by_group if r.group == "fp32:special")
    assert special.fallback and special.held_out == ("fam_d",)


def test_held_out_needs_two_families() -> None:
    with pytest.raises(RegressionError, match="at least two model families"):
        leave_one_family_out(zoo()[:1])


def test_fit_report_cli_writes_json_and_model(tmp_path: Any) -> None:
    from edgerl.experiments.cli import app
    from edgerl.profiles import save_profile
    from typer.testing import CliRunner

    for p in zoo(noise=0.02):
        save_profile(p, tmp_path / "data" / p.model / p.variant / "synthetic-hw.json")
    out, model = tmp_path / "rep.json", tmp_path / "model.json"
    args = ["fit-report", "--hardware", "synthetic-hw", "--data-dir", str(tmp_path / "data")]
    res = CliRunner().invoke(app, [*args, "--json", str(out), "--save-model", str(model)])
    assert res.exit_code == 0, res.output
    assert "fp32:conv" in res.output and "overall" in res.output
    assert "Whole model" in res.output and "whole model" in res.output  # both errors printed
    rep = json.loads(out.read_text())
    assert rep["kind"] == "edgerl.fit_report" and rep["form"] == "hybrid"
    assert rep["whole_model"]["overall"]["n"] == len(zoo()) * len(BATCHES)
    assert LatencyModel.load(model).hardware == "synthetic-hw"
    res = CliRunner().invoke(app, [*args[:2], "nowhere", *args[3:]])
    assert res.exit_code == 2 and "no measured profiles" in res.output


def test_peak_activation_raises_activation_traffic() -> None:
    model = fit_latency_models(zoo())
    base = model.predict_ms("conv", 4e8, 600_000, 300_000, 500_000, 8)
    same = model.predict_ms("conv", 4e8, 600_000, 300_000, 500_000, 8, peak_activation_bytes=1e5)
    big = model.predict_ms("conv", 4e8, 600_000, 300_000, 500_000, 8, peak_activation_bytes=1.5e6)
    assert same == base  # a peak below in + out changes nothing
    assert big == pytest.approx(base + TRUE["conv"][1] * 8 * (1.5e6 - 9e5) / 1e6, rel=1e-6)


def test_entries_outside_a_groups_range_use_the_pooled_model() -> None:
    model = fit_latency_models(zoo())
    conv = model.groups["fp32:conv"]
    assert conv.range_lo is not None and conv.range_hi is not None
    inside = (4e8, 600_000, 300_000, 500_000)
    assert model.uses_group("conv", inside[0], inside[1] + inside[2], inside[3])
    # 100x the largest conv FLOPs of the training data: the pooled regression answers
    outside = (conv.range_hi[0] * 100, 600_000, 300_000, 500_000)
    assert not model.uses_group("conv", outside[0], outside[1] + outside[2], outside[3])
    got = model.predict_ms("conv", *outside, 4)
    pooled = model.fallback["fp32"].coef
    b, gflop, act_mb = 4, outside[0] / 1e9, (outside[1] + outside[2]) / 1e6
    spill = model.spill_threshold_bytes
    spill_mb = 0.0 if spill is None else max(0.0, b * act_mb * 1e6 - spill) / 1e6
    x = (b * gflop, b * act_mb, spill_mb, outside[3] / 1e6, 1.0, 0.0, 0.0)
    assert got == pytest.approx(float(np.dot(pooled, x)), rel=1e-9)
    assert len(pooled) == len(feature_names("hybrid", pooled=True)) == 7


def _cliff_profile(model: str, family: str, seed: int, cache: float) -> Any:
    """Exact linear data plus a spill term beyond ``cache`` bytes of batch activations."""
    p = make_profile(
        model, family, [("conv", 1e8 * (seed + 1), 9_000, 2_000_000 * (seed + 1)),
                        ("conv", 3e8, 90_000, 500_000)], seed=seed,
    )  # fmt: skip
    d = p.to_dict()
    io = unit_io_bytes(p)
    for u, (i, o) in zip(d["units"], io, strict=True):
        u["latency_ms_median"] = [
            lat + 2.0 * max(0.0, b * (i + o) - cache) / 1e6
            for lat, b in zip(u["latency_ms_median"], BATCHES, strict=True)
        ]
        u["latency_ms_p95"] = [v * 1.1 for v in u["latency_ms_median"]]
    return profile_from_dict(d)


def test_spill_threshold_is_found_and_not_invented() -> None:
    cache = 8 * 2**20
    cliff = [_cliff_profile(f"m{k}", f"f{k}", k, cache) for k in range(3)]
    assert choose_spill_threshold([s for p in cliff for s in samples_from_profile(p)]) == cache
    exact = [s for p in zoo() for s in samples_from_profile(p)]
    assert choose_spill_threshold(exact) is None  # nothing to explain: no spill term
    model = fit_latency_models(cliff)
    assert model.spill_threshold_bytes == cache
    assert model.groups["fp32:conv"].coef[2] == pytest.approx(2.0, rel=1e-6)


def test_version1_model_files_still_load(tmp_path: Any) -> None:
    d = fit_latency_models(zoo(), form="linear").to_dict()
    d["version"] = 1
    for k in ("fallback_features", "spill_threshold_bytes"):
        del d[k]
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(d))
    assert LatencyModel.load(path).predict_ms("conv", 1e8, 1000, 1000, 1000, 2) > 0
    d["spill_threshold_bytes"] = -1
    path.write_text(json.dumps(d))
    with pytest.raises(RegressionError, match="spill_threshold_bytes"):
        LatencyModel.load(path)
    d = fit_latency_models(zoo()).to_dict()
    d["groups"]["fp32:conv"]["range"] = {"flops": [0, 1]}
    path.write_text(json.dumps(d))
    with pytest.raises(RegressionError, match=r"groups\.fp32:conv\.range"):
        LatencyModel.load(path)
