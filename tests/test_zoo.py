"""The multi-exit zoo: registry, architectures, partitioned execution, int8 variants."""

from __future__ import annotations

import pytest
import torch
from edgerl.profiles import zoo

IMAGENET_MODELS = ("alexnet_me", "resnet18_me", "mobilenetv2_me")
CIFAR_MODELS = ("balexnet_c10", "resnet_c10", "mobilenetv2_c10")

# torchvision model documentation (pytorch.org/vision/stable/models.html): num_params and GFLOPS
# (GFLOPS there count multiply-adds, i.e. half of torch.utils.flop_counter's FLOPs) of the
# single-exit backbones our units + final exit rebuild.
TORCHVISION_NUM_PARAMS = {"alexnet_me": 61_100_840, "resnet18_me": 11_689_512,
                          "mobilenetv2_me": 3_504_872}  # fmt: skip
TORCHVISION_GMACS = {"alexnet_me": 0.71, "resnet18_me": 1.81, "mobilenetv2_me": 0.30}
GMACS_ROUNDING = 0.005  # the docs round to two decimals


@pytest.fixture(scope="module")
def fp32_nets() -> dict[str, zoo.MultiExitNet]:
    return {m: zoo.build_float(m, "fp32") for m in IMAGENET_MODELS}


def test_registry_lists_every_family_with_fixed_names() -> None:
    specs = {s.name: s for s in zoo.list_models()}
    assert set(specs) == {*IMAGENET_MODELS, "digits_me", *CIFAR_MODELS}
    for name in IMAGENET_MODELS:
        s = specs[name]
        assert set(s.variants) == {"fp32", "int8", "r160"}
        assert 6 <= len(s.unit_names) <= 10
        assert s.input_shape("fp32") == (3, 224, 224)
        assert s.input_shape("r160") == (3, 160, 160)
    assert set(specs["digits_me"].variants) == {"fp32", "int8", "pruned50"}
    for name in CIFAR_MODELS:
        s = specs[name]
        assert set(s.variants) == {"fp32", "int8", "pruned"}
        assert s.input_shape("fp32") == s.input_shape("pruned") == (3, 32, 32)
        assert s.shipped_weights and s.measured_accuracy
    for s in specs.values():
        assert len(s.exit_after) >= 3
        assert s.exit_after[-1] == len(s.unit_names) - 1
        assert list(s.exit_after) == sorted(set(s.exit_after))
        assert len(set(s.unit_names)) == len(s.unit_names)
        assert len(s.unit_layer_types) == len(s.unit_names)
        assert len(set(s.exit_names)) == len(s.exit_names) == len(s.exit_after)


def test_unknown_names_fail_with_the_alternatives() -> None:
    with pytest.raises(KeyError, match="resnet18_me"):
        zoo.get_spec("resnet50")
    with pytest.raises(KeyError, match="r160"):
        zoo.build("alexnet_me", "fp16")


@pytest.mark.parametrize("model", IMAGENET_MODELS)
def test_backbone_is_the_torchvision_architecture(
    model: str, fp32_nets: dict[str, zoo.MultiExitNet]
) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    net = fp32_nets[model]
    backbone = [*net.units, net.exits[-1]]
    assert sum(p.numel() for m in backbone for p in m.parameters()) == TORCHVISION_NUM_PARAMS[model]
    x = torch.rand(1, *net.input_shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.exits[-1](net.run_units(x))
    gmacs = counter.get_total_flops() / 2e9
    assert abs(gmacs - TORCHVISION_GMACS[model]) <= GMACS_ROUNDING


@pytest.mark.parametrize("model", IMAGENET_MODELS)
def test_partitioned_execution_matches_full_forward(
    model: str, fp32_nets: dict[str, zoo.MultiExitNet]
) -> None:
    net = fp32_nets[model]
    x = torch.rand(2, *net.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = net(x)
        assert len(full) == len(net.exits)
        assert all(o.shape == (2, zoo.IMAGENET_CLASSES) for o in full)
        for cut in range(len(net.units) + 1):
            device_side = net.run_units(x, 0, cut)  # device runs units before the cut
            server_side = net.run_units(device_side, cut)  # server runs the rest
            torch.testing.assert_close(net.exits[-1](server_side), full[-1])
        for e, after in enumerate(net.exit_after):
            torch.testing.assert_close(net.exits[e](net.run_units(x, 0, after + 1)), full[e])


def test_build_is_seeded() -> None:
    a = zoo.build_float("digits_me", "fp32", seed=3).state_dict()
    b = zoo.build_float("digits_me", "fp32", seed=3).state_dict()
    c = zoo.build_float("digits_me", "fp32", seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_pruned50_has_half_the_channels() -> None:
    full = zoo.build_float("digits_me", "fp32")
    half = zoo.build_float("digits_me", "pruned50")
    n_full = sum(p.numel() for p in full.parameters())
    n_half = sum(p.numel() for p in half.parameters())
    assert zoo.digits_widths(0.5) == tuple(w // 2 for w in zoo.digits_widths(1.0))
    assert n_half < n_full / 2


def _int8_checks(qnet: zoo.MultiExitNet, fnet: zoo.MultiExitNet, min_cosine: float) -> None:
    assert qnet.precision == "int8"
    for unit in qnet.units:
        weights = [t for t in unit.state_dict().values() if isinstance(t, torch.Tensor)]
        assert not any(t.dtype == torch.float32 and t.dim() == 4 for t in weights)  # no fp32 conv
    x = torch.rand(4, *fnet.input_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h = x
        for unit in qnet.units:
            h = unit(h)
            assert h.dtype == torch.quint8  # the tensors between units are really 8-bit
        q_out, f_out = qnet(x), fnet(x)
    for q, f in zip(q_out, f_out, strict=True):
        assert q.dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(q.flatten(), f.flatten(), dim=0)
        assert cos > min_cosine  # quantized, yet computing the same function


def test_int8_digits_quantizes_every_unit_and_exit() -> None:
    _int8_checks(zoo.build("digits_me", "int8"), zoo.build_float("digits_me", "int8"), 0.99)


@pytest.mark.slow
@pytest.mark.parametrize("model", IMAGENET_MODELS)
def test_int8_imagenet_quantizes_every_unit_and_exit(model: str) -> None:
    _int8_checks(zoo.build(model, "int8"), zoo.build_float(model, "int8"), 0.9)


def test_quantize_rejects_bad_input() -> None:
    net = zoo.build_float("digits_me", "fp32")
    with pytest.raises(ValueError, match="calibration"):
        zoo.quantize(net, [])
    with pytest.raises(ValueError, match="int8 variant"):
        zoo.quantize(net, [torch.rand(2, *net.input_shape)])  # fp32 is not an int8 variant
    q = zoo.quantize(net, [torch.rand(2, *net.input_shape)], variant="int8")
    assert q.variant == "int8"
    with pytest.raises(ValueError, match="float network"):
        zoo.quantize(q, [torch.rand(2, *net.input_shape)])


def test_imagenet_accuracy_is_cited_or_unknown() -> None:
    for name in IMAGENET_MODELS:
        for v in zoo.get_spec(name).variants.values():
            if v.final_accuracy is None:
                assert v.final_accuracy_source.startswith("unknown")
            else:
                assert 0 < v.final_accuracy < 1
                assert v.final_accuracy_source.startswith("cited")
                # the quoted percentage appears in the source text
                assert f"{v.final_accuracy * 100:.3f}".rstrip("0") in v.final_accuracy_source
