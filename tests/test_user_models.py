"""Your own model and your own device: ``edgerl profile --model module:factory``,
``edgerl profile import FILE.csv`` and ``edgerl derive`` with a user's device table.

Models come from ``user_archs.py`` (defined here, outside the zoo); profiles are measured with
tiny timing budgets (a 1 ms ``min_run_time``, batches 1 and 2), so their latencies are rough
but real. Device tables reuse the cited figures of the shipped ``devices.yaml`` under new names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import user_archs as ua
import yaml
from edgerl.experiments.cli import app
from edgerl.profiles import graph, load_profile, profile_from_dict, profiler, save_profile
from edgerl.profiles.derive import (
    DEVICES_PATH,
    METHODS,
    DerivationError,
    DeviceTableError,
    derive_profile,
    device_template_yaml,
    load_user_device_table,
    parse_device_table,
    profile_operator_calls,
)
from edgerl.profiles.schema import LayerProfile, ProfileError
from edgerl.profiles.timing_import import (
    TimingTableError,
    import_profile,
    load_timing_table,
    map_layers,
    parse_timing_table,
)
from typer.testing import CliRunner

torch.set_num_threads(1)

ARCHS_FILE = Path(ua.__file__)
HW = "test-hw"
TINY = profiler.ProfileSettings(batch_sizes=(1, 2), min_run_time_s=0.001, warmup_runs=1,
                                min_runs=2)  # fmt: skip
TINY_ARGS = ["--batch-sizes", "1,2", "--min-run-time", "0.001", "--warmup", "1", "--min-runs", "2"]
SHAPE = ",".join(map(str, ua.INPUT_SHAPE))


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def resnet_profile() -> LayerProfile:
    data = profiler.profile_user_model(
        "user_archs:tiny_resnet", input_shape=ua.INPUT_SHAPE, hardware_name=HW, settings=TINY,
        command="pytest",
    )  # fmt: skip
    return profile_from_dict(data)


# --------------------------------------------------------------------------- profile --model


def test_user_model_profile_is_an_ordinary_layer_profile(
    resnet_profile: LayerProfile, tmp_path: Path
) -> None:
    p = resnet_profile
    split = graph.split_model(ua.tiny_resnet(), torch.rand(2, *ua.INPUT_SHAPE))
    assert [u.name for u in p.units] == [u.name for u in split.units]
    assert [x.name for x in p.exits] == ["fc"] and p.exits[0].after_unit == len(p.units) - 1
    assert [u.layers for u in p.units] == [u.layers for u in split.units]
    assert all(e.operator_calls and e.operator_calls > 0 for e in (*p.units, *p.exits))
    for u, cut in zip(p.units, split.cuts, strict=False):
        assert u.output_bytes_fp32 == cut.bytes_per_sample and u.output_shape == cut.shape
    assert p.batch_sizes == (1, 2) and p.variant_info["precision"] == "fp32"
    assert p.exits[0].accuracy is None and p.input_shape == ua.INPUT_SHAPE
    assert p.units[2].layer_type == "residual" and p.units[2].flops > 0
    path = save_profile(p, tmp_path / "p.json")
    assert load_profile(path).units[2].layers == p.units[2].layers  # optional fields survive


def test_cli_profiles_a_user_model_with_exit_heads(tmp_path: Path) -> None:
    res = run("profile", "--model", f"{ARCHS_FILE}:tiny_inception", "--input-shape", SHAPE,
              "--exit-head", "aux1", "--exit-head", "fc", "--hardware", HW, "--out",
              str(tmp_path), *TINY_ARGS)  # fmt: skip
    assert res.exit_code == 0, res.output
    prof = load_profile(tmp_path / "tiny_inception" / "fp32" / f"{HW}.json")
    assert [x.name for x in prof.exits] == ["aux1", "fc"]
    assert prof.units[prof.exits[0].after_unit].name == "maxpool"
    assert prof.provenance["factory"] == f"{ARCHS_FILE}:tiny_inception"
    assert "valid cut points" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "user_archs:tiny_resnet"], "--input-shape is required"),
        (["--model", "user_archs:tiny_resnet", "--input-shape", "3,x"], "--input-shape"),
        (["--model", "user_archs:tiny_resnet", "--input-shape", "0,16,16"], ">= 1"),
        (
            ["--model", "user_archs:tiny_resnet", "--input-shape", SHAPE, "--variant", "all"],
            "has one variant",
        ),
        (["--model", "user_archs:tiny_resnet", "--input-shape", "3,16"], "check --input-shape"),
        (
            ["--model", "user_archs:tiny_resnet", "--input-shape", SHAPE, "--exit-head", "nope"],
            "has no submodule 'nope'",
        ),
        (["--model", "user_archs:data_dependent", "--input-shape", SHAPE], "cannot trace"),
        (["--model", "user_archs:broken", "--input-shape", SHAPE], "factory raised"),
        (
            ["--model", "user_archs:tiny_resnet", "--input-shape", SHAPE, "--device", "tpu"],
            "--device",
        ),
        (
            ["--model", "user_archs:tiny_resnet", "--input-shape", SHAPE, "--batch-sizes", "2,1"],
            "--batch-sizes",
        ),
        (["--model", "alexnet_me", "--exit-head", "fc"], "are for your own model"),
        ([], "--model is required"),
    ],
)
def test_cli_profile_errors_are_one_line(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ARCHS_FILE.parent)  # dotted specs import from the working directory
    res = run("profile", *TINY_ARGS, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    error = res.output[res.output.index("error:") :]
    assert error.count("\n") == 1, error  # one line


# --------------------------------------------------------------------------- profile import


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def table_for(prof: LayerProfile, scale: float, batches: tuple[int, ...] = (1, 4)) -> str:
    """A per-layer table with one row per module of every entry (``scale`` ms each)."""
    lines = ["# generated for the test", "layer,batch_size,latency_ms,latency_ms_p95,runs"]
    for e in (*prof.units, *prof.exits):
        for m in e.layers:
            lines += [f"{m},{b},{scale * b},{scale * b * 1.5},{10 + b}" for b in batches]
    return "\n".join(lines) + "\n"


def test_import_sums_each_entrys_layers(resnet_profile: LayerProfile, tmp_path: Path) -> None:
    table = load_timing_table(write(tmp_path, table_for(resnet_profile, 0.1)))
    prof, rep = import_profile(table, resnet_profile, hardware="jetson", command="pytest")
    assert prof.batch_sizes == (1, 4) and prof.hardware.name == "jetson"
    assert not prof.hardware.derived and not rep.unmatched and not rep.empty
    for e in (*prof.units, *prof.exits):
        n = len(e.layers)
        assert e.latency_ms_median == pytest.approx((0.1 * n, 0.4 * n))
        assert e.latency_ms_p95 == pytest.approx((0.15 * n, 0.6 * n))
        assert e.runs == (11, 14)
    # structure, FLOPs and bytes are the base profile's
    assert [u.flops for u in prof.units] == [u.flops for u in resnet_profile.units]
    assert prof.provenance["layers_per_entry"]["layer1.0"][0] == "layer1.0.conv1"


def test_import_reports_unmatched_spanning_and_nested_layers(
    resnet_profile: LayerProfile, tmp_path: Path
) -> None:
    text = table_for(resnet_profile, 0.1, (1,))
    text += "layer2,1,0.5,0.5,1\nmystery,1,0.3,0.3,1\nlayer1.0,1,0.9,0.9,1\n"
    prof, rep = import_profile(parse_timing_table(text, "t.csv"), resnet_profile, hardware="jetson")
    why = dict(rep.unmatched)
    assert "spans several entries" in why["layer2"]
    assert "no unit or exit head" in why["mystery"]
    assert why["layer1.0.conv1"] == "inside layer1.0, also in the table (counted once)"
    layer1_0 = next(u for u in prof.units if u.name == "layer1.0")
    assert layer1_0.latency_ms_median == pytest.approx((0.9,))  # the parent's row, once


def test_import_onto_a_zoo_profile_uses_multiexitnet_module_names(tmp_path: Path) -> None:
    from edgerl.profiles import find_profile

    base = find_profile("digits_me", "fp32", "cpu-epyc-1t")
    rows = [f"units.{i}.0,1,0.5" for i in range(len(base.units))]
    rows += [f"exits.{e},1,0.1" for e in range(len(base.exits))]
    text = "layer,batch_size,latency_ms\n" + "\n".join(rows) + "\n"
    prof, rep = import_profile(parse_timing_table(text, "z.csv"), base, hardware="board")
    assert not rep.unmatched and not rep.empty
    assert all(u.latency_ms_median == (0.5,) for u in prof.units)
    assert "no latency_ms_p95 column" in prof.timing["p95"]


def test_entries_without_layers_fail_unless_filled(
    resnet_profile: LayerProfile, tmp_path: Path
) -> None:
    lines = table_for(resnet_profile, 0.1).splitlines()
    text = "\n".join(ln for ln in lines if not ln.startswith(("fc,", "maxpool,"))) + "\n"
    table = parse_timing_table(text, "t.csv")
    with pytest.raises(TimingTableError, match=r"2 entries of tiny_resnet/fp32: maxpool, fc"):
        import_profile(table, resnet_profile, hardware="jetson")
    prof, rep = import_profile(table, resnet_profile, hardware="jetson", fill_missing=True)
    assert rep.filled == ["maxpool", "fc"] and prof.hardware.derived
    assert "DERIVED for maxpool, fc" in prof.hardware.source
    # filled entries: base latency x (imported / base over the matched entries) per batch size
    matched = [e.name for e in (*resnet_profile.units, *resnet_profile.exits)
               if e.name not in ("maxpool", "fc")]  # fmt: skip
    new = {e.name: e for e in (*prof.units, *prof.exits)}
    old = {e.name: e for e in (*resnet_profile.units, *resnet_profile.exits)}
    ratio = sum(new[n].latency_ms_median[0] for n in matched) / sum(
        old[n].latency_ms_median[0] for n in matched
    )
    assert new["fc"].latency_ms_median[0] == pytest.approx(old["fc"].latency_ms_median[0] * ratio)


def test_a_layer_missing_a_batch_size_is_an_error(
    resnet_profile: LayerProfile, tmp_path: Path
) -> None:
    text = table_for(resnet_profile, 0.1, (1,)) + "fc,8,0.3,0.3,1\n"
    with pytest.raises(TimingTableError, match=r"t\.csv:\d+: layer 'conv1' has no row at batch"):
        import_profile(parse_timing_table(text, "t.csv"), resnet_profile, hardware="j")


def test_nothing_matching_is_an_error(resnet_profile: LayerProfile) -> None:
    table = parse_timing_table("layer,batch_size,latency_ms\nfoo,1,1\n", "t.csv")
    with pytest.raises(TimingTableError, match="none of the table's 1 layers maps"):
        import_profile(table, resnet_profile, hardware="j")


HEAD = "layer,batch_size,latency_ms\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "t.csv: no header row"),
        ("# only a comment\n\n", "t.csv: no header row"),
        ("layer,batch,latency_ms\n", "t.csv:1: unknown column 'batch'"),
        ("layer,latency_ms\n", "t.csv:1: missing column 'batch_size'"),
        ("layer,batch_size,latency_ms,layer\n", "t.csv:1: column 'layer' appears twice"),
        (HEAD, "t.csv: the table has a header but no rows"),
        (HEAD + "conv1,1\n", "t.csv:2: expected 3 fields"),
        (HEAD + " ,1,0.5\n", "t.csv:2: empty layer name"),
        (HEAD + "conv1,one,0.5\n", "t.csv:2: batch_size 'one' is not an integer"),
        (HEAD + "conv1,0,0.5\n", "t.csv:2: batch_size must be >= 1"),
        (HEAD + "conv1,1,abc\n", "t.csv:2: latency_ms 'abc' is not a number"),
        (HEAD + "conv1,1,0\n", "t.csv:2: latency_ms must be a positive finite number"),
        (HEAD + "conv1,1,-2\n", "t.csv:2: latency_ms must be a positive finite number"),
        (HEAD + "conv1,1,nan\n", "t.csv:2: latency_ms must be a positive finite number"),
        (HEAD + "conv1,1,inf\n", "t.csv:2: latency_ms must be a positive finite number"),
        (
            "# c\nlayer,batch_size,latency_ms\n\nconv1,1,1\nconv1,1,2\n",
            "t.csv:5: a second row for layer 'conv1' at batch size 1 (first on line 4)",
        ),
        (
            "layer,batch_size,latency_ms,latency_ms_p95\nconv1,1,2,1\n",
            "t.csv:2: latency_ms_p95 1.0 is below latency_ms 2.0",
        ),
        ("layer,batch_size,latency_ms,runs\nconv1,1,2,0\n", "t.csv:2: runs must be >= 1"),
    ],
)
def test_malformed_tables_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(TimingTableError) as info:
        parse_timing_table(text, "t.csv")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unreadable_table_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TimingTableError, match="cannot read timing table"):
        load_timing_table(tmp_path / "missing.csv")


def test_cli_import_writes_a_profile_and_reports(
    resnet_profile: LayerProfile, tmp_path: Path
) -> None:
    base = save_profile(resnet_profile, tmp_path / "base.json")
    csv = write(tmp_path, table_for(resnet_profile, 0.2) + "mystery,1,1,1,1\nmystery,4,1,1,1\n")
    res = run("profile", "import", str(csv), "--base", str(base), "--hardware", "jetson",
              "--out", str(tmp_path / "data"))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "mystery: no unit or exit head calls a module of that name" in res.output
    out = load_profile(tmp_path / "data" / "tiny_resnet" / "fp32" / "jetson.json")
    assert out.hardware.name == "jetson" and out.batch_sizes == (1, 4)
    # a failed import still shows what did and did not match, then a one-line error
    bad = write(tmp_path, HEAD + "conv1,1,0.1\n", "bad.csv")
    res = run("profile", "import", str(bad), "--base", str(base), "--hardware", "jetson")
    assert res.exit_code == 2 and "without layers" in res.output
    assert "error: " in res.output and "--fill-missing" in res.output
    res = run("profile", "import", str(write(tmp_path, "layer\n", "h.csv")), "--base",
              str(base), "--hardware", "j")  # fmt: skip
    assert res.exit_code == 2 and "h.csv:1: missing column 'batch_size'" in res.output
    res = run("profile", "import", str(csv), "--base", str(tmp_path / "nope.json"),
              "--hardware", "j")  # fmt: skip
    assert res.exit_code == 2 and "cannot read profile" in res.output


def test_map_layers_lists_entries_without_layers(resnet_profile: LayerProfile) -> None:
    rep = map_layers(parse_timing_table(HEAD + "fc,1,1\n", "t.csv"), resnet_profile)
    assert rep.layers_of["fc"] == ["fc"] and "conv1..relu" in rep.empty


# --------------------------------------------------------------------------- derive


def user_table(
    tmp_path: Path, entries: dict[str, str], hosts: dict[str, Any] | None = None
) -> Path:
    """A user's device table: shipped device entries copied under new names (cited figures)."""
    shipped = yaml.safe_load(DEVICES_PATH.read_text(encoding="utf-8"))
    data: dict[str, Any] = {
        "schema_version": 1,
        "kind": "edgerl.device_classes",
        "devices": {new: shipped["devices"][old] for new, old in entries.items()},
    }
    if hosts:
        data["hosts"] = hosts
    path = tmp_path / "my-devices.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_user_device_table_takes_the_shipped_hosts(tmp_path: Path) -> None:
    table = load_user_device_table(user_table(tmp_path, {"my-gpu": "edge-t4"}))
    assert list(table.devices) == ["my-gpu"]
    assert {"cpu-epyc-1t", "cpu-epyc-2t"} <= set(table.hosts)
    own = {
        "my-laptop": {
            "matmul_flops_per_s": {"value": 1.0e11, "unit": "FLOP/s", "source": "m"},
            "copy_bytes_per_s": {"value": 1.0e10, "unit": "B/s", "source": "m"},
        }
    }
    table = load_user_device_table(user_table(tmp_path, {"my-gpu": "edge-t4"}, own))
    assert table.host("my-laptop").matmul_flops_per_s.x == 1.0e11


def test_gpu_derivation_of_a_user_model_uses_its_recorded_operator_calls(
    resnet_profile: LayerProfile, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    save_profile(resnet_profile, data / "tiny_resnet" / "fp32" / f"{HW}.json")
    table = user_table(tmp_path, {"my-gpu": "edge-t4"})
    res = run("derive", "--devices", str(table), "--to", "my-gpu", "--from", HW,
              "--data-dir", str(data))  # fmt: skip
    assert res.exit_code == 0, res.output
    out = load_profile(data / "tiny_resnet" / "fp32" / "my-gpu.json")
    assert out.hardware.derived and out.hardware.device_class == "edge"
    calls = profile_operator_calls(resnet_profile)
    assert calls is not None
    assert out.hardware.extra["derivation"]["operator_calls"] == calls
    lat = [v for e in (*out.units, *out.exits) for v in e.latency_ms_median]
    assert all(math.isfinite(v) and v > 0 for v in lat)


def test_cpu_derivation_of_a_user_model_calibrates_on_the_shipped_references(
    resnet_profile: LayerProfile, tmp_path: Path
) -> None:
    # the user's model measured on this project's host: the shipped cpu-epyc-1t profiles of
    # resnet18_me and mobilenetv2_me calibrate the device's layer-type groups
    d = resnet_profile.to_dict()
    d["hardware"]["name"] = "cpu-epyc-1t"
    data = tmp_path / "data"
    save_profile(d, data / "tiny_resnet" / "fp32" / "cpu-epyc-1t.json")
    table = user_table(tmp_path, {"my-board": "device-rpi4"})
    res = run("derive", "--devices", str(table), "--to", "my-board", "--data-dir", str(data))
    assert res.exit_code == 0, res.output
    out = load_profile(data / "tiny_resnet" / "fp32" / "my-board.json")
    assert out.hardware.derived and set(out.hardware.extra["derivation"]["compute_factors"]) == {
        "dense", "depthwise",
    }  # fmt: skip
    # without a measured reference on the source host the error says how to measure it
    d["hardware"]["name"] = "my-laptop"
    src = profile_from_dict(d)
    own = {
        "my-laptop": {
            "matmul_flops_per_s": {"value": 1.0e11, "unit": "FLOP/s", "source": "m"},
            "copy_bytes_per_s": {"value": 1.0e10, "unit": "B/s", "source": "m"},
        }
    }
    t = load_user_device_table(user_table(tmp_path, {"my-board": "device-rpi4"}, own))
    with pytest.raises(DerivationError, match="edgerl profile --model resnet18_me"):
        derive_profile(src, t.device("my-board"), t, calibration_profiles={})


def test_derive_reports_a_broken_user_table(tmp_path: Path) -> None:
    text = device_template_yaml("gpu-roofline", "my-gpu")  # nulls not filled in
    path = tmp_path / "my-devices.yaml"
    path.write_text(text, encoding="utf-8")
    res = run("derive", "--devices", str(path), "--to", "my-gpu", "--data-dir", str(tmp_path))
    assert res.exit_code == 2 and res.output.startswith("error:")
    # one message (cmd_fit's console wraps long lines at 80 columns when not on a terminal)
    flat = " ".join(res.output.split())
    assert "devices.my-gpu.peak_fp32_flops_per_s.value': no value (null)" in flat
    assert "Traceback" not in res.output


@pytest.mark.parametrize("method", METHODS)
def test_device_template_parses_once_filled(method: str) -> None:
    text = device_template_yaml(method, "my-dev")
    with pytest.raises(DeviceTableError, match="no value \\(null\\)"):
        parse_device_table(yaml.safe_load(text), "t.yaml")
    filled = text.replace("value: null  # [[batch size, ms]", "value: [[1, 10.0], [8, 20.0]]  #")
    filled = filled.replace("value: null", "value: 1.0e+9")
    table = parse_device_table(yaml.safe_load(filled), "t.yaml")
    assert table.device("my-dev").method == method
    res = run("device-template", "--method", method, "--name", "my-dev")
    assert res.exit_code == 0 and res.output == text


def test_device_template_rejects_unknown_methods() -> None:
    res = run("device-template", "--method", "fpga")
    assert res.exit_code == 2 and "--method must be one of" in res.output


def test_profiles_reject_malformed_optional_fields(resnet_profile: LayerProfile) -> None:
    d = json.loads(json.dumps(resnet_profile.to_dict()))
    d["units"][0]["layers"] = "conv1"
    with pytest.raises(ProfileError, match=r"units\[0\]\.layers"):
        profile_from_dict(d)
    d["units"][0]["layers"] = ["conv1"]
    d["units"][0]["operator_calls"] = 0
    with pytest.raises(ProfileError, match=r"units\[0\]\.operator_calls"):
        profile_from_dict(d)
