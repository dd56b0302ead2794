"""Every shipped profile loads and covers its zoo model; every zoo variant is measured here."""

from __future__ import annotations

import pytest
from edgerl.profiles import zoo
from edgerl.profiles.accuracy import load_accuracy_table
from edgerl.profiles.schema import LayerProfile, find_profile, load_all

MEASURED_HARDWARE = {"cpu-epyc-1t": 1, "cpu-epyc-2t": 2}  # hardware name -> threads
BATCH_SIZES = (1, 2, 4, 8, 16)
ZOO_KEYS = [(s.name, v) for s in zoo.list_models() for v in s.variants]


@pytest.fixture(scope="module")
def shipped() -> dict[tuple[str, str, str], LayerProfile]:
    return load_all()


def _assert_covers_zoo_model(prof: LayerProfile) -> None:
    spec = zoo.get_spec(prof.model)
    assert prof.family == spec.family
    assert prof.variant in spec.variants, prof.path
    assert prof.input_shape == spec.input_shape(prof.variant), prof.path
    assert [u.name for u in prof.units] == list(spec.unit_names), prof.path
    assert [u.layer_type for u in prof.units] == list(spec.unit_layer_types), prof.path
    assert [x.name for x in prof.exits] == list(spec.exit_names), prof.path
    assert [x.after_unit for x in prof.exits] == list(spec.exit_after), prof.path
    n = len(prof.batch_sizes)
    for e in (*prof.units, *prof.exits):
        assert len(e.latency_ms_median) == len(e.latency_ms_p95) == len(e.runs) == n, prof.path
    for u in prof.units:
        numel = 1
        for d in u.output_shape:
            numel *= d
        assert u.output_bytes_fp32 == 4 * numel and u.output_bytes_int8 == numel, prof.path


def test_every_shipped_profile_loads_and_covers_its_zoo_model(
    shipped: dict[tuple[str, str, str], LayerProfile],
) -> None:
    assert shipped, "no profiles shipped under profiles/data"
    for prof in shipped.values():
        _assert_covers_zoo_model(prof)


@pytest.mark.parametrize(("model", "variant"), ZOO_KEYS)
@pytest.mark.parametrize("hardware", sorted(MEASURED_HARDWARE))
def test_every_zoo_variant_is_measured_on_this_machine(
    model: str, variant: str, hardware: str
) -> None:
    prof = find_profile(model, variant, hardware)
    _assert_covers_zoo_model(prof)
    assert prof.batch_sizes == BATCH_SIZES
    assert prof.hardware.derived is False
    assert prof.hardware.device_class == "host-cpu"
    assert prof.hardware.extra["threads"] == MEASURED_HARDWARE[hardware]
    for key in ("cpu_model", "cores", "load_avg_at_start", "load_avg_at_end"):
        assert prof.hardware.extra.get(key) is not None, key
    prov = prof.provenance
    assert prov["command"].startswith(f"edgerl profile --model {model}")
    assert f"--threads {MEASURED_HARDWARE[hardware]}" in prov["command"]
    for key in ("torch_version", "python", "date", "git_commit"):
        assert prov.get(key), key
    assert prof.timing["warmup_runs"] >= 1 and prof.timing["min_run_time_s"] > 0
    spec = zoo.get_spec(model)
    assert prof.variant_info["precision"] == spec.variants[variant].precision
    first, last = 0, len(prof.batch_sizes) - 1
    total = [sum(u.latency_ms_median[i] for u in prof.units) for i in (first, last)]
    assert total[1] > total[0]  # a batch of 16 costs more than a batch of 1


@pytest.mark.parametrize(("model", "variant"), ZOO_KEYS)
def test_shipped_accuracy_is_measured_cited_or_unknown(model: str, variant: str) -> None:
    prof = find_profile(model, variant, "cpu-epyc-1t")
    spec = zoo.get_spec(model)
    if spec.shipped_weights:  # CIFAR-10 families: from the shipped per-input table
        table = load_accuracy_table(model)
        assert [x.accuracy for x in prof.exits] == list(table.top1_per_exit(variant))
        for x in prof.exits:
            assert x.accuracy_source.startswith("measured") and "10,000" in x.accuracy_source
        return
    if spec.measured_accuracy:
        for x in prof.exits:
            assert x.accuracy is not None and x.accuracy > 0.5
            assert x.accuracy_source.startswith("measured")
            assert "seed" in x.accuracy_source and "450" in x.accuracy_source
        return
    for x in prof.exits[:-1]:
        assert x.accuracy is None and x.accuracy_source == zoo.UNKNOWN_ACCURACY
    final = prof.exits[-1]
    assert final.accuracy == spec.variants[variant].final_accuracy
    assert final.accuracy_source == spec.variants[variant].final_accuracy_source
