"""Derived device-class profiles (edgerl.profiles.derive) and the cited device table.

Source profiles and the small device tables built here are SYNTHETIC test data (in memory);
the shipped table (profiles/devices.yaml) is only parsed and checked, never edited.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import numpy as np
import pytest
from edgerl.profiles import LayerProfile, profile_from_dict
from edgerl.profiles.derive import (
    DEVICE_CLASSES,
    DerivationError,
    DeviceTableError,
    EntryCost,
    GpuParams,
    UnknownDeviceError,
    calibrate_gpu,
    derive_profile,
    load_device_table,
    main_path,
    main_path_latency_ms,
    parse_device_table,
    resnet50_v15_costs,
)

BATCHES = [1, 2, 4, 8, 16]
HOST = "synthetic-host-1t"


def make_profile(
    model: str = "net_me",
    variant: str = "fp32",
    precision: str = "fp32",
    hardware: str = HOST,
    derived: bool = False,
    scale: float = 1.0,
    dw: bool = True,
    dw_scale: float = 1.0,
) -> LayerProfile:
    """A 3-unit, 2-exit schema-valid profile with host-like latencies (linear in batch)."""
    units = []
    spec = [("conv", 4e8, 40_000, 800_000), ("depthwise" if dw else "conv", 2e7, 5_000, 400_000),
            ("linear", 8e7, 40_000_000, 16_000)]  # fmt: skip
    for i, (lt, flops, params, out_b) in enumerate(spec):
        k = scale * (dw_scale if lt == "depthwise" else 1.0)
        lat = [k * (0.05 + b * (flops / 4e10 + out_b / 1e10) * 1e3 + params / 1e10 * 1e3)
               for b in BATCHES]  # fmt: skip
        units.append({
            "name": f"u{i}", "layer_type": lt, "flops": flops, "params_bytes": params,
            "peak_activation_bytes": 2 * out_b, "latency_ms_median": lat,
            "latency_ms_p95": [v * 1.2 for v in lat], "runs": [20] * len(BATCHES),
            "output_shape": [out_b // 4], "output_bytes_fp32": out_b,
            "output_bytes_int8": out_b // 4,
        })  # fmt: skip

    def exit_(name: str, after: int) -> dict[str, Any]:
        lat = [scale * (0.02 + b * 0.01) for b in BATCHES]
        return {"name": name, "layer_type": "exit", "flops": 2e6, "params_bytes": 500_000,
                "peak_activation_bytes": 1000, "latency_ms_median": lat,
                "latency_ms_p95": [v * 1.1 for v in lat], "runs": [20] * len(BATCHES),
                "after_unit": after, "accuracy": None, "accuracy_source": ""}  # fmt: skip

    return profile_from_dict({
        "schema_version": 1, "kind": "edgerl.layer_profile", "model": model,
        "family": model.split("_")[0], "variant": variant,
        "variant_info": {"precision": precision, "input_resolution": 224, "description": "t"},
        "hardware": {"name": hardware, "device_class": "host-cpu", "derived": derived,
                     "source": "synthetic test data"},
        "provenance": {"command": "tests"},
        "input": {"shape": [3, 224, 224], "raw_bytes": 150528, "tensor_bytes": 602112},
        "batch_sizes": BATCHES, "timing": {"warmup_runs": 1},
        "units": units, "exits": [exit_("exit_after_u0", 0), exit_("exit_final", 2)],
    }, f"<synthetic {model}/{variant}>")  # fmt: skip


def fig(value: Any, source: str = "test figure") -> dict[str, Any]:
    return {"value": value, "unit": "", "source": source}


def power() -> dict[str, Any]:
    return {"active_power_w": fig(5.0), "idle_power_w": fig(2.0), "memory_bytes": fig(4e9)}


def cpu_device(cited_ms: float, stream: float = 5e9, dw_ms: float | None = None) -> dict[str, Any]:
    groups = [
        {"name": "dense", "layer_types": "default", "reference_model": "net_me",
         "reference_variant": "fp32", "cited_model": "t", "cited_flops": fig(5.02e8),
         "latency_ms": fig(cited_ms)},
    ]  # fmt: skip
    if dw_ms is not None:
        groups.append(
            {"name": "dw", "layer_types": ["depthwise"], "reference_model": "net_me",
             "reference_variant": "fp32", "cited_model": "t", "cited_flops": fig(5.02e8),
             "latency_ms": fig(dw_ms)}
        )  # fmt: skip
    return {"device_class": "device", "method": "cpu-scaled", "derive_from": HOST,
            "stream_bytes_per_s": fig(stream), **power(),
            "calibration": {"fp32": {"groups": groups}}}  # fmt: skip


def gpu_device(table_scale: float, peak: float = 8e12, bw: float = 3e11) -> dict[str, Any]:
    tab = [[1, 10.0], [4, 11.0], [16, 30.0], [64, 110.0], [256, 430.0]]
    tab = [[b, ms * table_scale] for b, ms in tab]
    return {"device_class": "edge", "method": "gpu-roofline", "derive_from": HOST,
            "peak_fp32_flops_per_s": fig(peak), "mem_bytes_per_s": fig(bw),
            "sm_count": fig(40), "max_threads_per_sm": fig(1024), **power(),
            "calibration": {"fp32": {"reference": "resnet50_v1.5",
                                     "peak": "peak_fp32_flops_per_s",
                                     "latency_ms_by_batch": fig(tab)}}}  # fmt: skip


def table(**devices: dict[str, Any]) -> Any:
    return parse_device_table({
        "schema_version": 1, "kind": "edgerl.device_classes",
        "hosts": {HOST: {"matmul_flops_per_s": fig(4e10), "copy_bytes_per_s": fig(1.4e10)}},
        "devices": devices,
    }, "<test table>")  # fmt: skip


def REFS(*profiles: LayerProfile) -> dict[tuple[str, str], LayerProfile]:
    return {(p.model, p.variant): p for p in profiles}


OPS = {"u0": 4, "u1": 9, "u2": 3, "exit_after_u0": 6, "exit_final": 3}


# --------------------------------------------------------------------------- the shipped table


def test_shipped_table_parses_and_cites_every_figure() -> None:
    t = load_device_table()
    assert {d.device_class for d in t.devices.values()} == set(DEVICE_CLASSES)
    assert {"device-rpi4", "edge-t4", "cloud-v100"} <= set(t.devices)
    for d in t.devices.values():
        assert d.figures["active_power_w"].x > d.figures["idle_power_w"].x > 0
        for f in d.figures.values():
            assert len(f.source) > 20  # a real citation, not a placeholder
    assert t.sha256 and len(t.sha256) == 64


def test_unknown_hardware_name_is_a_clear_error() -> None:
    t = load_device_table()
    with pytest.raises(
        UnknownDeviceError, match=r"unknown derived hardware 'device-rpi5'.*device-rpi4"
    ):
        t.device("device-rpi5")
    with pytest.raises(UnknownDeviceError, match="no measured host figures for 'laptop'"):
        t.host("laptop")


def test_table_rejects_uncited_or_non_numeric_figures() -> None:
    bad = cpu_device(100.0)
    bad["stream_bytes_per_s"] = {"value": 5e9, "unit": "B/s", "source": ""}
    with pytest.raises(DeviceTableError, match=r"devices\.x\.stream_bytes_per_s\.source"):
        table(x=bad)
    bad = cpu_device(100.0)
    bad["stream_bytes_per_s"] = fig("5.5e9")  # what YAML makes of 5.5e9
    with pytest.raises(DeviceTableError, match=r"8\.1e\+12"):
        table(x=bad)
    bad = cpu_device(100.0)
    del bad["idle_power_w"]
    with pytest.raises(DeviceTableError, match="idle_power_w"):
        table(x=bad)


def test_resnet50_reference_matches_known_size() -> None:
    costs = resnet50_v15_costs()
    # torchvision ResNet50: 25,557,032 parameters + 2 BN running stats per channel (53,120)
    assert sum(c.params_bytes for c in costs) == (25_557_032 + 53_120) * 4
    # ResNet-50 v1.5: 4.09 GMAC (torchvision docs, ResNet50_Weights.IMAGENET1K_V2: 4.09 GFLOPS)
    assert sum(c.flops for c in costs) == pytest.approx(2 * 4.09e9, rel=0.005)
    assert sum(c.n_ops for c in costs) == 4 + 16 * 10 + 4 * 2 + 3


@pytest.mark.parametrize("name", ["edge-t4", "cloud-v100"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_gpu_calibration_fits_cited_table(name: str, precision: str) -> None:
    gp = calibrate_gpu(load_device_table().device(name), precision)
    assert 0 < gp.eff <= 1 and 0 < gp.t_op_ms < 1
    assert gp.fit_mape_pct < 10


# --------------------------------------------------------------------------- GPU model


def test_gpu_batches_are_sublinear_then_linear() -> None:
    gp = GpuParams(8e12, 3e11, 40 * 1024, t_op_ms=0.05, eff=0.5)
    small = EntryCost("s", 2e7, 1e5, 1e5, 1e4, work_items=5e3, n_ops=3)
    big = EntryCost("b", 2e9, 3e6, 3e6, 1e6, work_items=8e5, n_ops=3)
    for c in (small, big):
        lat = [gp.latency_ms(c, b) for b in (1, 2, 4, 256, 512)]
        assert all(x <= y for x, y in itertools.pairwise(lat))  # monotone in batch
        assert lat[4] / lat[3] == pytest.approx(2.0, rel=0.02)  # linear once saturated
    # the small entry is dispatch/occupancy bound at small batches: sub-linear there
    assert gp.latency_ms(small, 4) < 2 * gp.latency_ms(small, 1)
    # the big one fills the GPU at batch 1 and is compute bound: already linear
    assert gp.latency_ms(big, 2) == pytest.approx(2 * gp.latency_ms(big, 1), rel=1e-9)
    faster = GpuParams(16e12, 9e11, 80 * 2048, t_op_ms=0.05, eff=0.5)
    for b in (1, 8, 256):
        assert faster.latency_ms(big, b) <= gp.latency_ms(big, b)
    assert faster.latency_ms(big, 256) < gp.latency_ms(big, 256)


# --------------------------------------------------------------------------- derivation


def check_derived(src: LayerProfile, out: LayerProfile, name: str, cls: str) -> None:
    again = profile_from_dict(out.to_dict(), "<round trip>")  # passes the loader
    assert again.hardware.derived and again.hardware.name == name
    assert again.hardware.device_class == cls
    assert "DERIVED" in again.hardware.source
    for k in ("active_power_w", "idle_power_w", "power_source", "memory_bytes", "derivation"):
        assert k in again.hardware.extra
    assert (out.model, out.variant, out.batch_sizes) == (src.model, src.variant, src.batch_sizes)
    assert out.input_tensor_bytes == src.input_tensor_bytes
    for a, b in zip([*src.units, *src.exits], [*out.units, *out.exits], strict=True):
        assert (a.name, a.layer_type, a.flops, a.params_bytes) == (
            b.name,
            b.layer_type,
            b.flops,
            b.params_bytes,
        )
        assert a.peak_activation_bytes == b.peak_activation_bytes and a.runs == b.runs
        assert all(p >= m for p, m in zip(b.latency_ms_p95, b.latency_ms_median, strict=True))
    for a, b in zip(src.units, out.units, strict=True):
        assert (a.output_bytes_fp32, a.output_bytes_int8, a.output_shape) == (
            b.output_bytes_fp32,
            b.output_bytes_int8,
            b.output_shape,
        )
    assert [x.after_unit for x in out.exits] == [x.after_unit for x in src.exits]


def test_cpu_scaled_derivation_hits_its_calibration_target() -> None:
    t = table(slow=cpu_device(100.0))
    src = make_profile()
    out = derive_profile(src, t.device("slow"), t, calibration_profiles=REFS(src))
    check_derived(src, out, "slow", "device")
    flops = sum(e.flops for e in main_path(src))
    assert main_path_latency_ms(out) == pytest.approx(100.0 * flops / 5.02e8, rel=1e-9)


def test_layer_type_groups_get_their_own_compute_factor() -> None:
    src = make_profile()
    dense = make_profile("dense_me", dw=False)
    devs = {k: cpu_device(100.0, dw_ms=v) for k, v in (("one", None), ("two", 400.0))}
    for d in devs.values():
        d["calibration"]["fp32"]["groups"][0]["reference_model"] = "dense_me"
    t = table(**devs)
    refs = REFS(src, dense)
    one = derive_profile(src, t.device("one"), t, calibration_profiles=refs)
    two = derive_profile(src, t.device("two"), t, calibration_profiles=refs)
    f1 = one.hardware.extra["derivation"]["compute_factors"]
    f2 = two.hardware.extra["derivation"]["compute_factors"]
    assert set(f1) == {"dense"} and set(f2) == {"dense", "dw"}
    assert f2["dw"] > f2["dense"] and f2["dense"] == pytest.approx(f1["dense"])
    # the depthwise group is solved to hit its own (slower) target on the same path
    flops = sum(e.flops for e in main_path(src))
    assert main_path_latency_ms(two) == pytest.approx(400.0 * flops / 5.02e8, rel=1e-9)
    by_name = {e.name: e for e in two.units}
    assert by_name["u1"].latency_ms_median[0] > one.units[1].latency_ms_median[0]
    assert by_name["u0"].latency_ms_median == one.units[0].latency_ms_median


def test_group_reference_with_unsolved_layer_type_is_rejected() -> None:
    t = table(c=cpu_device(100.0, dw_ms=300.0))  # dense group calibrates on net_me (depthwise)
    src = make_profile()
    with pytest.raises(DerivationError, match=r"layer types \['depthwise'\] of a group solved"):
        derive_profile(src, t.device("c"), t, calibration_profiles=REFS(src))


def test_table_rejects_cpu_calibration_without_default_group() -> None:
    bad = cpu_device(100.0, dw_ms=200.0)
    bad["calibration"]["fp32"]["groups"][0]["layer_types"] = ["conv"]
    with pytest.raises(DeviceTableError, match="exactly one group must have layer_types: default"):
        table(x=bad)


def test_faster_device_yields_lower_latency_per_layer() -> None:
    t = table(slow=cpu_device(100.0), fast=cpu_device(40.0),
              gslow=gpu_device(1.0), gfast=gpu_device(0.5, peak=16e12, bw=6e11))  # fmt: skip
    src = make_profile()
    slow = derive_profile(src, t.device("slow"), t, calibration_profiles=REFS(src))
    fast = derive_profile(src, t.device("fast"), t, calibration_profiles=REFS(src))
    gslow = derive_profile(src, t.device("gslow"), t, op_counts=OPS)
    gfast = derive_profile(src, t.device("gfast"), t, op_counts=OPS)
    check_derived(src, gslow, "gslow", "edge")
    for lo, hi in ((fast, slow), (gfast, gslow)):
        for a, b in zip([*lo.units, *lo.exits], [*hi.units, *hi.exits], strict=True):
            assert all(x < y for x, y in zip(a.latency_ms_median, b.latency_ms_median, strict=True))


def test_gpu_derivation_is_sublinear_in_batch_for_small_batches() -> None:
    t = table(g=gpu_device(1.0))
    out = derive_profile(make_profile(), t.device("g"), t, op_counts=OPS)
    for e in [*out.units, *out.exits]:
        lat = dict(zip(out.batch_sizes, e.latency_ms_median, strict=True))
        assert lat[2] < 2 * lat[1] and lat[16] >= lat[1]


def test_derivation_refuses_bad_inputs() -> None:
    t = table(c=cpu_device(100.0), g=gpu_device(1.0))
    src = make_profile()
    with pytest.raises(DerivationError, match="itself derived"):
        derive_profile(make_profile(derived=True), t.device("c"), t, calibration_profiles=REFS(src))
    with pytest.raises(DerivationError, match="needs calibration profiles"):
        derive_profile(src, t.device("c"), t)
    with pytest.raises(DerivationError, match=r"calibrates on the measured .* net_me/fp32"):
        derive_profile(src, t.device("c"), t, calibration_profiles=REFS(make_profile("other_me")))
    ops = dict(OPS)
    del ops["u1"]
    with pytest.raises(DerivationError, match="no operator count for entry 'u1'"):
        derive_profile(src, t.device("g"), t, op_counts=ops)
    with pytest.raises(DerivationError, match="no 'int8' calibration"):
        derive_profile(make_profile(variant="int8", precision="int8"), t.device("g"), t,
                       op_counts=OPS)  # fmt: skip
    with pytest.raises(UnknownDeviceError, match="no measured host figures"):
        derive_profile(make_profile(hardware="elsewhere"), t.device("c"), t,
                       calibration_profiles=REFS(make_profile(hardware="elsewhere")))  # fmt: skip


def test_impossible_cpu_calibration_is_reported() -> None:
    # a target faster than the memory share alone allows cannot be met with S_c > 0
    t = table(c=cpu_device(0.001, stream=1e6))
    src = make_profile()
    with pytest.raises(DerivationError, match="cannot calibrate"):
        derive_profile(src, t.device("c"), t, calibration_profiles=REFS(src))


def test_real_gpu_devices_give_finite_positive_latencies() -> None:
    t = load_device_table()
    src = make_profile()
    src_d = copy.deepcopy(src.to_dict())
    src_d["hardware"]["name"] = "cpu-epyc-2t"
    src2 = profile_from_dict(src_d)
    for name in ("edge-t4", "cloud-v100"):
        out = derive_profile(src2, t.device(name), t, op_counts=OPS)
        vals = np.array([v for e in [*out.units, *out.exits] for v in e.latency_ms_median])
        assert np.isfinite(vals).all() and (vals > 0).all()
        assert math.isclose(out.hardware.extra["active_power_w"],
                            t.device(name).figures["active_power_w"].x)  # fmt: skip


def test_derive_cli_writes_rpi_profiles_and_keeps_measured_ones(tmp_path: Any) -> None:
    from edgerl.experiments.cli import app
    from edgerl.profiles import load_profile, save_profile
    from typer.testing import CliRunner

    data = tmp_path / "data"
    src = make_profile(model="resnet18_me", hardware="cpu-epyc-1t", dw=False, scale=0.2)
    save_profile(src, data / "resnet18_me" / "fp32" / "cpu-epyc-1t.json")
    # depthwise-heavy, like the real one, so its group can be calibrated on the real table
    mbv2 = make_profile(model="mobilenetv2_me", hardware="cpu-epyc-1t", scale=0.2, dw_scale=100.0)
    save_profile(mbv2, data / "mobilenetv2_me" / "fp32" / "cpu-epyc-1t.json")
    args = ["derive", "--to", "device-rpi4", "--data-dir", str(data)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = load_profile(data / "resnet18_me" / "fp32" / "device-rpi4.json")
    assert out.hardware.derived and out.hardware.device_class == "device"
    # the cited Raspberry Pi 4 time of torchvision resnet18 (100.3 ms), scaled by FLOPs
    flops = sum(e.flops for e in main_path(src))
    assert main_path_latency_ms(out) == pytest.approx(100.3 * flops / 3.628e9, rel=1e-6)
    # a measured device-rpi4 profile is never overwritten by a derivation
    measured = make_profile(model="resnet18_me", hardware="device-rpi4", dw=False)
    save_profile(measured, data / "resnet18_me" / "fp32" / "device-rpi4.json")
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "kept" in res.output
    assert not load_profile(data / "resnet18_me" / "fp32" / "device-rpi4.json").hardware.derived
    res = CliRunner().invoke(app, ["derive", "--to", "device-rpi9", "--data-dir", str(data)])
    assert res.exit_code == 2 and "unknown derived hardware 'device-rpi9'" in res.output
