"""The profiler: bytes, FLOPs, memory, timing, and a tiny end-to-end profile."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from edgerl.profiles import digits, profiler, zoo
from edgerl.profiles.schema import load_profile, profile_from_dict, save_profile
from torch import nn

TINY = profiler.ProfileSettings(
    batch_sizes=(1, 3), threads=1, min_run_time_s=0.002, warmup_runs=1, min_runs=3
)


@pytest.fixture(scope="module")
def quick_digits() -> digits.DigitsResult:
    """A briefly trained digits_me (networks are real, accuracy is not the point here)."""
    return digits.train_and_evaluate(digits.DigitsConfig(seed=0, epochs=1, finetune_epochs=1))


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "stride", "pad", "hw"),
    [(3, 8, 3, 1, 1, 10), (16, 32, 5, 2, 2, 17), (4, 4, 1, 1, 0, 7)],
)
def test_flops_of_a_conv_equal_the_closed_form(
    c_in: int, c_out: int, k: int, stride: int, pad: int, hw: int
) -> None:
    conv = nn.Conv2d(c_in, c_out, k, stride, pad, bias=False)
    x = torch.rand(1, c_in, hw, hw)
    h_out = (hw + 2 * pad - k) // stride + 1
    assert profiler.count_flops(conv, x) == 2 * c_in * k * k * c_out * h_out * h_out


def test_flops_are_per_sample_when_given_one_sample() -> None:
    lin = nn.Linear(20, 30)
    assert profiler.count_flops(lin, torch.rand(1, 20)) == 2 * 20 * 30
    assert profiler.count_flops(lin, torch.rand(4, 20)) == 4 * 2 * 20 * 30


def test_tensor_bytes_is_numel_times_itemsize() -> None:
    x = torch.rand(2, 3, 5)
    assert profiler.tensor_bytes(x) == 30 * 4
    with zoo.quiet_quantization_warnings():
        q = torch.quantize_per_tensor(x, 0.1, 0, torch.quint8)
    assert profiler.tensor_bytes(q) == 30
    assert profiler.tensor_bytes(x.double()) == 30 * 8


def test_params_bytes_fp32_and_packed_int8() -> None:
    lin = nn.Linear(64, 10).eval()
    assert profiler.params_bytes(lin) == (64 * 10 + 10) * 4
    net = zoo.build_float("digits_me", "fp32")
    qnet = zoo.quantize(net, [torch.rand(8, *net.input_shape)], variant="int8")
    fc_fp32 = profiler.params_bytes(net.units[3])
    fc_int8 = profiler.params_bytes(qnet.units[3])
    n_weights = 256 * 64
    assert fc_fp32 == (n_weights + 64) * 4
    assert n_weights <= fc_int8 < n_weights + 64 * 4 + 64  # 1 byte per weight + float bias
    # the final exit is a bare linear in FX: its packed weight is still counted
    assert profiler.params_bytes(qnet.exits[-1]) >= 64 * 10


def test_peak_activation_covers_input_and_outputs() -> None:
    m = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()).eval()
    x = torch.rand(1, 8, 20, 20)
    out_bytes = 16 * 20 * 20 * 4
    peak = profiler.peak_activation_bytes(m, x)
    # conv output and (not in-place) ReLU output are alive together, plus the input
    assert peak >= profiler.tensor_bytes(x) + 2 * out_bytes
    assert peak < profiler.tensor_bytes(x) + 4 * out_bytes


def test_time_module_reports_min_runs() -> None:
    t = profiler.time_module(
        nn.Linear(32, 32), torch.rand(4, 32), threads=1, min_run_time_s=0.001, warmup_runs=2,
        min_runs=7,
    )  # fmt: skip
    assert t.runs >= 7
    assert 0 < t.median_ms <= t.p95_ms
    assert t.calls_per_run >= 1


def test_rounds_keep_the_least_disturbed_measurement() -> None:
    entry = profiler.EntryCost("u", "conv", 0.0, 0, 0)
    slow, fast = profiler.Timing(5.0, 9.0, 5, 1), profiler.Timing(2.0, 2.5, 6, 1)
    entry.add_round(0, slow)
    entry.add_round(1, fast)
    entry.add_round(0, fast)  # round 2 of batch 0 was less disturbed
    entry.add_round(1, slow)
    assert entry.timings == [fast, fast]
    assert entry.round_medians_ms == [[5.0, 2.0], [2.0, 5.0]]
    net = zoo.build("digits_me", "fp32")
    two = profiler.ProfileSettings(batch_sizes=(1, 2), min_run_time_s=0.001, min_runs=2, rounds=2)
    units, _ = profiler.measure_network(
        net, float_net=net, settings=two, device=torch.device("cpu")
    )
    for u in units:
        assert [len(r) for r in u.round_medians_ms] == [2, 2]
        assert [t.median_ms for t in u.timings] == [min(r) for r in u.round_medians_ms]


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="batch_sizes"):
        profiler.ProfileSettings(batch_sizes=(4, 2))
    with pytest.raises(ValueError, match="threads"):
        profiler.ProfileSettings(threads=0)
    with pytest.raises(ValueError, match="min_run_time_s"):
        profiler.ProfileSettings(min_run_time_s=0)
    with pytest.raises(ValueError, match="device"):
        profiler.ProfileSettings(device="tpu")
    with pytest.raises(ValueError, match="rounds"):
        profiler.ProfileSettings(rounds=0)


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_output_bytes_are_those_of_the_real_tensor(variant: str) -> None:
    net = zoo.build("digits_me", variant)
    float_net = zoo.build_float("digits_me", variant)
    units, exits = profiler.measure_network(
        net, float_net=float_net, settings=TINY, device=torch.device("cpu")
    )
    x = torch.rand(1, *net.input_shape)
    with torch.no_grad():
        h = x
        for u, unit in zip(units, net.units, strict=True):
            h = unit(h)
            assert u.output_bytes_real == h.numel() * h.element_size()
            assert u.output_shape == tuple(h.shape[1:])
            assert u.output_dtype == str(h.dtype).removeprefix("torch.")
    accs = [(None, "unknown: not measured in this test")] * len(exits)
    data = profiler.build_profile_dict(
        net, units, exits, accs, settings=TINY,
        hardware={"name": "t", "device_class": "host-cpu", "derived": False, "source": "test"},
        provenance_info={"command": "test"},
    )  # fmt: skip
    for u, d in zip(units, data["units"], strict=True):
        n = u.output_bytes_real // (4 if variant == "fp32" else 1)
        assert d["output_bytes_fp32"] == 4 * n
        assert d["output_bytes_int8"] == n
    assert data["input"] == {"shape": [1, 8, 8], "raw_bytes": 64, "tensor_bytes": 256}


def test_tiny_model_profiles_in_seconds_and_loads(
    quick_digits: digits.DigitsResult, tmp_path: Path
) -> None:
    start = time.perf_counter()
    data = profiler.profile_model(
        "digits_me", "int8", hardware_name="test-cpu", settings=TINY, command="pytest",
        digits_result=quick_digits,
    )  # fmt: skip
    assert time.perf_counter() - start < 30
    path = save_profile(data, tmp_path / "p.json")
    prof = load_profile(path)
    spec = zoo.get_spec("digits_me")
    assert [u.name for u in prof.units] == list(spec.unit_names)
    assert [x.after_unit for x in prof.exits] == list(spec.exit_after)
    assert prof.batch_sizes == TINY.batch_sizes
    assert (prof.model, prof.variant, prof.variant_info["precision"]) == (
        "digits_me",
        "int8",
        "int8",
    )
    assert all(len(u.latency_ms_median) == 2 and min(u.runs) >= 3 for u in prof.units)
    assert [x.accuracy for x in prof.exits] == list(quick_digits.accuracy["int8"])
    assert prof.hardware.extra["threads"] == 1
    assert prof.hardware.extra["load_avg_at_start"] is not None
    assert prof.provenance["command"] == "pytest"
    # FLOPs of the int8 variant are counted on its float twin, so they equal the fp32 ones
    f32 = profile_from_dict(
        profiler.profile_model("digits_me", "fp32", hardware_name="test-cpu", settings=TINY,
                               command="pytest", digits_result=quick_digits)
    )  # fmt: skip
    assert [u.flops for u in f32.units] == [u.flops for u in prof.units]


def test_imagenet_exit_accuracies_are_cited_or_unknown() -> None:
    accs = profiler.exit_accuracies("resnet18_me", "int8")
    assert all(a is None and s == zoo.UNKNOWN_ACCURACY for a, s in accs[:-1])
    assert accs[-1] == (zoo.RESNET18_INT8_TOP1, zoo.get_spec("resnet18_me").variants["int8"]
                        .final_accuracy_source)  # fmt: skip
    with pytest.raises(ValueError, match="digits_result"):
        profiler.exit_accuracies("digits_me", "fp32")


def test_cli_models_lists_every_model_variant_and_exit() -> None:
    from edgerl.experiments.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for spec in zoo.list_models():
        assert spec.name in result.output
        for name in (*spec.exit_names, *spec.unit_names, *spec.variants):
            assert name in result.output


def test_cli_profile_rejects_unknown_model_and_variant() -> None:
    from edgerl.experiments.cli import app
    from typer.testing import CliRunner

    r = CliRunner().invoke(app, ["profile", "--model", "vgg16"])
    assert r.exit_code == 2 and "unknown model" in r.output
    r = CliRunner().invoke(app, ["profile", "--model", "alexnet_me", "--variant", "fp16"])
    assert r.exit_code == 2 and "no variant" in r.output
    r = CliRunner().invoke(app, ["profile", "--model", "alexnet_me", "--batch-sizes", "4,2"])
    assert r.exit_code == 2 and "batch-sizes" in r.output
