"""CIFAR-10 families: architectures, L1 pruning, pickle-free weights, a tiny end-to-end run.

Everything here uses generated images (``cifar_fixtures``); the check against the real test
set is marked slow and skipped when the data set is absent.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_fixtures import write_dataset
from edgerl.profiles import cifar, zoo
from edgerl.profiles.accuracy import load_accuracy_table

CIFAR_MODELS = cifar.MODELS
N_CLASSES = zoo.CIFAR_CLASSES
#: The real JPEG copy for the slow check: $EDGERL_CIFAR10_DIR, else this project's machine path.
REAL_DATA = Path(
    os.environ.get(
        "EDGERL_CIFAR10_DIR", Path(__file__).resolve().parents[2] / "shared/data/cifar10"
    )
)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("model", CIFAR_MODELS)
@pytest.mark.parametrize("variant", ["fp32", "pruned"])
def test_every_exit_answers_and_partitions_agree(model: str, variant: str) -> None:
    net = zoo.build_float(model, variant)
    spec = zoo.get_spec(model)
    assert net.input_shape == (3, 32, 32) and len(net.exits) == len(spec.exit_after) >= 3
    x = _images(2)
    with torch.no_grad():
        outs = net(x)
        assert [tuple(o.shape) for o in outs] == [(2, N_CLASSES)] * len(spec.exit_after)
        for cut in range(len(net.units) + 1):
            torch.testing.assert_close(
                net.exits[-1](net.run_units(net.run_units(x, 0, cut), cut)), outs[-1]
            )
        for e, after in enumerate(net.exit_after):
            torch.testing.assert_close(net.exits[e](net.run_units(x, 0, after + 1)), outs[e])


@pytest.mark.parametrize("model", CIFAR_MODELS)
def test_pruned_variant_is_thinner(model: str) -> None:
    full = sum(p.numel() for p in zoo.build_float(model, "fp32").parameters())
    thin = sum(p.numel() for p in zoo.build_float(model, "pruned").parameters())
    assert thin < 0.75 * full


@pytest.mark.parametrize("model", CIFAR_MODELS)
def test_pruning_into_the_same_width_is_the_identity(model: str) -> None:
    net = zoo.build_float(model, "fp32", seed=3)
    copy = cifar.prune_l1(net, variant="fp32")
    x = _images(3, seed=1)
    with torch.no_grad():
        for a, b in zip(net(x), copy(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("model", CIFAR_MODELS)
def test_pruning_keeps_shapes_consistent(model: str) -> None:
    big = zoo.build_float(model, "fp32", seed=4)
    small = cifar.prune_l1(big)
    reference = zoo.build_float(model, "pruned").state_dict()
    got = small.state_dict()
    assert got.keys() == reference.keys()
    assert all(got[k].shape == reference[k].shape for k in got)
    with torch.no_grad():
        outs = small(_images(2))
    assert [tuple(o.shape) for o in outs] == [(2, N_CLASSES)] * len(big.exits)
    assert all(torch.isfinite(o).all() for o in outs)


def test_pruning_keeps_the_filters_of_largest_l1_norm() -> None:
    big = zoo.build_float("balexnet_c10", "fp32", seed=5)
    small = cifar.prune_l1(big)
    w_big = big.units[0][0].weight
    w_small = small.units[0][0].weight
    kept = torch.sort(torch.topk(w_big.abs().flatten(1).sum(1), w_small.shape[0]).indices).values
    torch.testing.assert_close(w_small, w_big[kept])
    # conv2 reads only the kept channels of conv1
    kept2 = torch.sort(
        torch.topk(
            big.units[1][0].weight.abs().flatten(1).sum(1), small.units[1][0].out_channels
        ).indices
    ).values
    torch.testing.assert_close(small.units[1][0].weight, big.units[1][0].weight[kept2][:, kept])
    # BatchNorm statistics follow their filters
    torch.testing.assert_close(small.units[0][1].running_var, big.units[0][1].running_var[kept])
    with pytest.raises(ValueError, match="float network"):
        cifar.prune_l1(zoo.build("digits_me", "int8"))


@pytest.mark.parametrize("model", CIFAR_MODELS)
def test_weights_round_trip_without_pickle(model: str, tmp_path: Path) -> None:
    fp32 = zoo.build_float(model, "fp32", seed=6)
    pruned = cifar.prune_l1(fp32)
    calib = [_images(8, seed=s) for s in range(2)]
    prepared = zoo.prepare_int8(fp32, calib[0], variant="int8")
    prepared.calibrate(calib)
    state = prepared.observer_state()
    int8 = prepared.convert()
    prov = {"note": "unit test"}
    paths = [
        cifar.save_weights(fp32, tmp_path, prov),
        cifar.save_weights(pruned, tmp_path, prov),
        cifar.save_int8_observers(model, state, tmp_path, prov),
    ]
    for p in paths:
        with np.load(p, allow_pickle=False) as data:  # every array loads without pickle
            assert "metadata" in data.files and all(data[k].dtype != object for k in data.files)
    x = _images(4, seed=9)
    with torch.no_grad():
        for variant, original in (("fp32", fp32), ("pruned", pruned), ("int8", int8)):
            rebuilt = cifar.load_trained(model, variant, root=tmp_path)
            assert rebuilt.variant == variant and rebuilt.precision == original.precision
            for a, b in zip(original(x), rebuilt(x), strict=True):
                assert torch.equal(a, b), variant  # bit for bit, int8 included


def test_weights_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(cifar.WeightsError, match=r"weights-fp32\.npz: no shipped weights"):
        cifar.load_trained("resnet_c10", "fp32", root=tmp_path)
    cifar.save_weights(zoo.build_float("balexnet_c10", "fp32"), tmp_path, {})
    wrong = cifar.weights_path("resnet_c10", "fp32", tmp_path)
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(cifar.weights_path("balexnet_c10", "fp32", tmp_path).read_bytes())
    with pytest.raises(cifar.WeightsError, match=r"metadata\.model': expected 'resnet_c10'"):
        cifar.load_trained("resnet_c10", "fp32", root=tmp_path)
    with pytest.raises(cifar.WeightsError, match="no shipped weights"):
        cifar.load_trained("digits_me", "fp32")
    with pytest.raises(ValueError, match="float network"):
        cifar.save_weights(zoo.build("digits_me", "int8"), tmp_path, {})


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    lrs = [cifar.learning_rate_at(s, 100, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1 * cifar.WARMUP_START_FRACTION)
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 25
    assert lrs[-1] < 1e-3 and all(a >= b for a, b in itertools.pairwise(lrs[25:]))
    assert cifar.learning_rate_at(0, 1, 0.1) == pytest.approx(0.1 * cifar.WARMUP_START_FRACTION)


def test_augmentation_is_seeded_crop_and_flip() -> None:
    batch = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).reshape(2, 3, 32, 32).to(torch.uint8)
    a = cifar.augment(batch, torch.Generator().manual_seed(0))
    b = cifar.augment(batch, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == batch.shape and a.dtype == torch.uint8
    # a crop never invents pixels: every output row is zeros or part of an input row
    assert int(a.max()) <= int(batch.max())


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="model"):
        cifar.CifarConfig(model="digits_me")
    with pytest.raises(ValueError, match="batch_size"):
        cifar.CifarConfig(model="resnet_c10", batch_size=0)
    cfg = cifar.CifarConfig(model="resnet_c10")
    assert (cfg.epochs, cfg.finetune_epochs) == (cifar.EPOCHS["resnet_c10"],
                                                 cifar.FINETUNE_EPOCHS["resnet_c10"])  # fmt: skip


def test_tiny_run_writes_a_table_the_weights_reproduce(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", per_class=3)
    cfg = cifar.CifarConfig(
        model="balexnet_c10", epochs=1, finetune_epochs=1, batch_size=8, calibration_images=10
    )
    result = cifar.train_and_evaluate(cfg, data)
    again = cifar.train_and_evaluate(cfg, data)
    for v in cifar.VARIANTS:  # one seed, the same answers
        assert np.array_equal(result.answers[v].prediction, again.answers[v].prediction)
        assert np.array_equal(result.answers[v].confidence, again.answers[v].confidence)
    out = tmp_path / "out"
    paths = cifar.save_run(result, out, "edgerl cifar train (unit test)", 1.0)
    assert {p.name for p in paths} == {"accuracy.npz", "weights-fp32.npz", "weights-pruned.npz",
                                       "weights-int8.npz"}  # fmt: skip
    table = load_accuracy_table("balexnet_c10", root=out)
    assert table.n_inputs == 30 and table.variants == cifar.VARIANTS
    assert table.exit_names == zoo.get_spec("balexnet_c10").exit_names
    meta = table.metadata
    assert meta["test_set"]["order_sha256"] == result.test.order_sha256
    assert meta["provenance"]["seed"] == 0 and meta["provenance"]["command"].startswith("edgerl")
    assert "lossy" in meta["test_set"]["note"]
    x = cifar.to_tensor(result.test.images)
    for v in cifar.VARIANTS:
        answers = cifar.predict(cifar.load_trained("balexnet_c10", v, root=out), x)
        for e in range(len(table.exit_names)):
            assert np.array_equal(answers.prediction[e] == table.labels, table.correct(v, e))
            assert np.array_equal(answers.confidence[e], table.confidence(v, e))


def test_cli_train_reports_a_missing_dataset_in_one_line(tmp_path: Path) -> None:
    from edgerl.experiments.cli import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(
        app, ["cifar", "train", "--model", "resnet_c10", "--data", str(tmp_path), "--out",
              str(tmp_path / "out")],
    )  # fmt: skip
    assert res.exit_code == 2
    assert "cifar10-jpeg-train.tar.gz" in res.output and "Traceback" not in res.output


@pytest.mark.slow
@pytest.mark.parametrize("model", CIFAR_MODELS)
def test_shipped_weights_reproduce_the_shipped_table_on_real_images(model: str) -> None:
    from edgerl.profiles import cifar_data

    if not (REAL_DATA / cifar_data.TARBALLS["test"]).exists():
        pytest.skip(f"CIFAR-10 JPEG copy not found in {REAL_DATA} (set EDGERL_CIFAR10_DIR)")
    test = cifar_data.load_split(REAL_DATA, "test", limit_per_class=100)
    table = load_accuracy_table(model)
    # limit_per_class keeps the first 100 images of each class: indices c * 1000 + 0..99
    idx = np.array([c * 1000 + i for c in range(10) for i in range(100)])
    assert [f"{cifar_data.CLASSES[c]}/{i:04d}.jpg" for c in range(10) for i in range(100)] == list(
        test.names
    )
    x = cifar.to_tensor(test.images)
    for v in table.variants:
        answers = cifar.predict(cifar.load_trained(model, v), x)
        for e in range(len(table.exit_names)):
            agree = np.mean(answers.prediction[e] == table.prediction(v, e)[idx])
            assert agree >= 0.99, (v, e, agree)  # exact on the machine that made the table
            mine = np.mean(answers.prediction[e] == test.labels)
            assert abs(mine - table.correct(v, e)[idx].mean()) <= 0.01
