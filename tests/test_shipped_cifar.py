"""The shipped CIFAR-10 artefacts: accuracy tables, weights and their provenance (no data set).

The check that the weights reproduce the tables on real images is in ``test_cifar.py``
(slow, skipped without the data set).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from edgerl.profiles import cifar_data, zoo
from edgerl.profiles.accuracy import accuracy_table_path, load_accuracy_table
from edgerl.profiles.schema import DATA_DIR, find_profile

CIFAR_MODELS = ("balexnet_c10", "resnet_c10", "mobilenetv2_c10")
VARIANTS = ("fp32", "int8", "pruned")
N_TEST = 10_000
PER_CLASS = 1000
#: sha256 of the JPEG tarballs, from ../shared/data/cifar10/SOURCE.md.
TRAIN_SHA256 = "e23a05ee43cf7e36fa212a9774e47d68233c1595ee3ed2b5c790b00c6767fb31"
TEST_SHA256 = "2f78efc30b2c0bb10b3c9e22a3c9a788ae74677a6e367fe5703461199ffe67e0"
MAX_FILE_BYTES = 4 * 1024 * 1024  # every shipped file stays small
INT8_MAX_DROP = 0.03  # int8 post-training quantization costs at most 3 points at any exit


@pytest.mark.parametrize("model", CIFAR_MODELS)
def test_table_covers_the_zoo_model_and_the_whole_test_set(model: str) -> None:
    t = load_accuracy_table(model)
    spec = zoo.get_spec(model)
    assert t.variants == VARIANTS == tuple(spec.variants)
    assert t.exit_names == spec.exit_names and t.exit_after == spec.exit_after
    assert t.n_inputs == N_TEST and t.class_names == cifar_data.CLASSES
    # the documented order: test image i is test/<CLASSES[i // 1000]>/<i % 1000:04d>.jpg
    assert t.labels.tolist() == [i // PER_CLASS for i in range(N_TEST)]
    names = [f"{cifar_data.CLASSES[i // PER_CLASS]}/{i % PER_CLASS:04d}.jpg" for i in range(N_TEST)]
    order = t.metadata["test_set"]
    assert order["order_sha256"] == hashlib.sha256("\n".join(names).encode()).hexdigest()
    assert order["order"] == cifar_data.ORDER_DESCRIPTION
    assert order["source_sha256"] == TEST_SHA256


@pytest.mark.parametrize("model", CIFAR_MODELS)
def test_provenance_is_recorded(model: str) -> None:
    prov = load_accuracy_table(model).metadata["provenance"]
    assert prov["command"].startswith(f"edgerl cifar train --model {model} ")
    assert prov["seed"] == 0 and prov["config"]["limit_per_class"] is None
    for key in ("git_commit", "torch_version", "date", "recipe"):
        assert prov[key], key
    assert prov["torch_threads"] == 1
    assert prov["data"]["train_source_sha256"] == TRAIN_SHA256
    assert prov["data"]["test_source_sha256"] == TEST_SHA256
    assert prov["data"]["train_images"] == 50_000
    assert "lossy" in prov["data"]["note"]
    assert len(prov["log"]["train"]) == prov["config"]["epochs"]
    assert len(prov["log"]["finetune"]) == prov["config"]["finetune_epochs"]
    assert prov["total_wall_time_s"] > 0


@pytest.mark.parametrize("model", CIFAR_MODELS)
def test_measured_accuracy_is_sane(model: str) -> None:
    t = load_accuracy_table(model)
    final = len(t.exit_names) - 1
    assert t.top1("fp32", final) > 0.7  # well above chance (0.1)
    for v in VARIANTS:
        for e in range(len(t.exit_names)):
            assert 0.3 < t.top1(v, e) <= 1.0
            conf = t.confidence(v, e)
            # confident answers are right more often than unsure ones
            sure = conf >= np.median(conf)
            assert t.correct(v, e)[sure].mean() > t.correct(v, e)[~sure].mean()
    for e in range(len(t.exit_names)):
        assert t.top1("int8", e) >= t.top1("fp32", e) - INT8_MAX_DROP


@pytest.mark.parametrize("model", CIFAR_MODELS)
def test_shipped_files_are_small_and_pickle_free(model: str) -> None:
    from edgerl.profiles import cifar

    paths = [accuracy_table_path(model)] + [cifar.weights_path(model, v) for v in VARIANTS]
    for p in paths:
        assert p.is_file() and p.stat().st_size < MAX_FILE_BYTES, p
        with np.load(p, allow_pickle=False) as data:
            assert all(data[k].dtype != object for k in data.files)
    fp32 = cifar.load_trained(model, "fp32")
    pruned = cifar.load_trained(model, "pruned")
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in fp32.parameters())


@pytest.mark.parametrize("model", CIFAR_MODELS)
@pytest.mark.parametrize("hardware", ["cpu-epyc-1t", "cpu-epyc-2t", "device-rpi4", "edge-t4",
                                      "cloud-v100"])  # fmt: skip
def test_profiles_carry_the_measured_accuracy(model: str, hardware: str) -> None:
    t = load_accuracy_table(model)
    for v in VARIANTS:
        prof = find_profile(model, v, hardware)
        assert [x.accuracy for x in prof.exits] == list(t.top1_per_exit(v))
        for x in prof.exits:
            assert x.accuracy_source.startswith("measured") and "10,000" in x.accuracy_source


def test_models_command_lists_the_families_with_per_exit_accuracy() -> None:
    from edgerl.experiments.cli import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    for model in CIFAR_MODELS:
        t = load_accuracy_table(model)
        assert model in res.output
        assert f"{t.exit_names[-1]}: {t.top1('int8', len(t.exit_names) - 1):.4f}" in res.output
    assert str(DATA_DIR) not in res.output  # no absolute paths of this machine
