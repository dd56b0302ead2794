"""digits_me trained for real: split, reproducibility, pruning, shipped accuracies."""

from __future__ import annotations

import collections

import pytest
import torch
from edgerl.profiles import digits, zoo
from edgerl.profiles.schema import find_profile

N_IMAGES = 1797  # sklearn.datasets.load_digits
CHANCE = 0.1  # ten balanced classes
QUICK = digits.DigitsConfig(seed=0, epochs=3, finetune_epochs=2)


def test_split_is_stratified_and_seeded() -> None:
    a, b, c = digits.load_split(0), digits.load_split(0), digits.load_split(1)
    assert len(a.y_train) + len(a.y_test) == N_IMAGES
    assert len(a.y_test) == 450
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_test, c.x_test)
    test_counts = collections.Counter(a.y_test.tolist())
    all_counts = collections.Counter([*a.y_test.tolist(), *a.y_train.tolist()])
    for label, n in all_counts.items():  # stratified: every class keeps its 25 % share
        assert abs(test_counts[label] - digits.TEST_FRACTION * n) <= 1
    assert float(a.x_train.max()) <= 1.0 and float(a.x_train.min()) >= 0.0


def test_accuracy_per_exit_is_reproducible_and_above_chance() -> None:
    r1 = digits.train_and_evaluate(QUICK)
    r2 = digits.train_and_evaluate(QUICK)
    assert r1.accuracy == r2.accuracy  # same seed, same numbers, exactly
    assert set(r1.accuracy) == set(digits.VARIANTS)
    for accs in r1.accuracy.values():
        assert len(accs) == len(zoo.get_spec("digits_me").exit_after)
        assert all(a > 3 * CHANCE for a in accs)
    assert r1.accuracy["fp32"][-1] > 0.8  # the final exit learns fast on digits
    assert (r1.n_train, r1.n_test) == (N_IMAGES - 450, 450)


def test_joint_loss_is_the_weighted_sum() -> None:
    target = torch.tensor([1, 0])
    outs = [torch.tensor([[0.0, 2.0], [1.0, 0.0]]), torch.tensor([[3.0, 0.0], [0.0, 0.0]])]
    ce = [torch.nn.functional.cross_entropy(o, target) for o in outs]
    torch.testing.assert_close(digits.joint_loss(outs, target, (1.0, 0.5)), ce[0] + 0.5 * ce[1])
    with pytest.raises(ValueError, match="loss weights"):
        digits.joint_loss(outs, target, (1.0,))


def _first_conv(net: zoo.MultiExitNet) -> torch.nn.Conv2d:
    return next(m for m in net.units[0].modules() if isinstance(m, torch.nn.Conv2d))


def test_prune_l1_keeps_the_largest_filters() -> None:
    big = zoo.build_float("digits_me", "fp32", seed=5)
    small = digits.prune_l1(big)
    conv1_big = _first_conv(big).weight
    conv1_small = _first_conv(small).weight
    assert conv1_small.shape[0] == conv1_big.shape[0] // 2
    norms = conv1_big.abs().flatten(1).sum(1)
    kept = torch.sort(torch.topk(norms, conv1_small.shape[0]).indices).values
    torch.testing.assert_close(conv1_small, conv1_big[kept])
    assert conv1_small.abs().sum() >= conv1_big.abs().sum() / 2  # the heavier half
    with torch.no_grad():
        outs = small(torch.rand(3, *small.input_shape))
    assert [o.shape for o in outs] == [(3, zoo.DIGITS_CLASSES)] * 3
    with pytest.raises(ValueError, match="float digits_me"):
        digits.prune_l1(zoo.build_float("alexnet_me", "r160"))


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="epochs"):
        digits.DigitsConfig(epochs=0)


@pytest.mark.slow
def test_shipped_digits_accuracies_are_reproduced_from_the_seed() -> None:
    result = digits.train_and_evaluate(digits.DigitsConfig(seed=0))
    for variant, accs in result.accuracy.items():
        for hw in ("cpu-epyc-1t", "cpu-epyc-2t"):
            shipped = [x.accuracy for x in find_profile("digits_me", variant, hw).exits]
            assert shipped == list(accs), (variant, hw)
