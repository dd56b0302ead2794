"""Partitioning models outside the zoo at their valid cut points (edgerl.profiles.graph).

The architectures are defined in ``user_archs.py`` as a user would write them: a ResNet, a
MobileNetV2 (inverted residuals), an Inception network (parallel branches, an auxiliary exit)
and a DenseNet block (concatenating skips).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import user_archs as ua
from edgerl.profiles import graph
from edgerl.profiles.graph import GraphError
from torch import nn

torch.set_num_threads(1)

ARCHS: dict[str, tuple[Callable[[], nn.Module], tuple[str, ...]]] = {
    "resnet": (ua.tiny_resnet, ()),
    "mobilenetv2": (ua.tiny_mobilenetv2, ()),
    "inception": (ua.tiny_inception, ("aux1", "fc")),
    "densenet": (ua.tiny_densenet, ()),
}
#: Modules that hold a skip connection or parallel branches: none may be split by a cut.
BLOCK_TYPES = (ua.BasicBlock, ua.Inception, ua.DenseLayer)


def example(batch: int = 2) -> torch.Tensor:
    return torch.rand((batch, *ua.INPUT_SHAPE), generator=torch.Generator().manual_seed(1))


def blocks(model: nn.Module) -> list[str]:
    """Names of the modules that hold a skip connection or a branch."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, BLOCK_TYPES) or (isinstance(m, ua.InvertedResidual) and m.use_res_connect)
    ]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_units_in_sequence_reproduce_the_model(arch: str) -> None:
    factory, heads = ARCHS[arch]
    model, x = factory(), example(3)
    split = graph.split_model(model, x, exit_heads=heads)
    with torch.no_grad():
        want = model(x)
        got = split(x)
        chained = split.exits[-1].module(split.run_units(x))
    want_list = want if isinstance(want, list) else [want]
    assert len(got) == len(want_list) == len(split.exits)
    for g, w in zip(got, want_list, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)  # the very same operators
    torch.testing.assert_close(chained, want_list[-1], rtol=0, atol=0)
    assert len(split.units) >= 4  # every architecture has several cuts


@pytest.mark.parametrize("arch", list(ARCHS))
def test_no_cut_splits_a_skip_connection_or_a_branch(arch: str) -> None:
    factory, heads = ARCHS[arch]
    model = factory()
    split = graph.split_model(model, example(), exit_heads=heads)
    names = blocks(model)
    assert names, "each test architecture has skip connections or branches"
    for block in names:
        holders = {u.name for u in split.units if any(m.startswith(block + ".") for m in u.layers)}
        assert len(holders) == 1, f"{block} is split across units {sorted(holders)}"
    # each unit's module takes exactly the one tensor that crosses the cut before it
    for u in split.units:
        placeholders = [n for n in u.module.graph.nodes if n.op == "placeholder"]
        assert len(placeholders) == 1


def test_a_chain_inside_a_block_is_cut_but_a_skip_block_is_not() -> None:
    model = ua.tiny_mobilenetv2()
    split = graph.split_model(model, example())
    no_skip = "features.2"  # InvertedResidual(8, 12, stride 2): no skip connection
    inside = [u for u in split.units if any(m.startswith(no_skip + ".") for m in u.layers)]
    assert len(inside) == 3  # expand conv, depthwise conv, project conv
    assert [u.layer_type for u in inside] == ["conv", "depthwise", "conv"]
    with_skip = [u for u in split.units if any(m.startswith("features.3.") for m in u.layers)]
    assert len(with_skip) == 1 and with_skip[0].layer_type == "depthwise"
    assert with_skip[0].name == "features.3"
    assert [u.name for u in inside] == [
        "features.2.conv.0..2", "features.2.conv.3..5", "features.2.conv.6..7",
    ]  # fmt: skip


def test_cut_bytes_are_those_of_the_crossing_tensor() -> None:
    model, x = ua.tiny_resnet(), example()
    split = graph.split_model(model, x)
    h = x
    with torch.no_grad():
        for u, cut in zip(split.units, split.cuts, strict=False):
            h = u.module(h)
            assert cut.shape == tuple(h.shape[1:])
            assert cut.bytes_per_sample == h[0].numel() * h.element_size()
            assert cut.dtype == "float32"


def test_resnet_units_are_blocks_and_the_classifier_is_the_final_exit() -> None:
    split = graph.split_model(ua.tiny_resnet(), example())
    assert [u.name for u in split.units] == [
        "conv1..relu", "maxpool", "layer1.0", "layer1.1", "layer2.0", "layer2.1",
        "avgpool..flatten",
    ]  # fmt: skip
    assert [u.layer_type for u in split.units][:3] == ["conv", "pool", "residual"]
    assert [x.name for x in split.exits] == ["fc"] and split.exit_after == (6,)
    assert split.units[2].layers == (
        "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu", "layer1.0.conv2", "layer1.0.bn2",
    )  # fmt: skip
    assert split.units[2].operator_calls == 7  # 5 modules, relu twice, add


def test_without_fusion_every_single_tensor_cut_is_offered() -> None:
    fused = graph.split_model(ua.tiny_resnet(), example())
    every = graph.split_model(ua.tiny_resnet(), example(), fuse_pointwise=False)
    assert len(every.units) > len(fused.units)
    assert {"conv1", "bn1", "relu"} <= {u.name for u in every.units}


def test_exit_heads_become_exits_after_their_unit() -> None:
    split = graph.split_model(ua.tiny_inception(), example(), exit_heads=("fc", "aux1"))
    assert [x.name for x in split.exits] == ["aux1", "fc"]  # attach order, not argument order
    after = split.units[split.exit_after[0]]
    assert after.name == "maxpool"
    assert split.exit_after[-1] == len(split.units) - 1
    assert split.exits[0].layers == ("aux1",) and split.exits[0].layer_type == "head"


def test_find_cut_points_on_a_traced_model() -> None:
    gm = graph.trace(ua.tiny_densenet())
    cuts = graph.find_cut_points(gm, example())
    assert cuts[0].node == "conv0"  # the dense block's input stays live inside it
    units = graph.split_units(ua.tiny_densenet(), example())
    assert len(units) == len(cuts)  # the last segment is the final exit head


class Softmaxed(nn.Module):
    """A user's wrapper: the ResNet's logits through a softmax, and some dead code."""

    def __init__(self) -> None:
        super().__init__()
        self.net = ua.tiny_resnet()
        self.unused = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.unused(x)  # computed and dropped: must not create a cut that resends the input
        return torch.softmax(self.net(x), 1)


def test_post_ops_of_a_head_and_dead_code() -> None:
    model, x = Softmaxed().eval(), example()
    split = graph.split_model(model, x)
    assert split.exits[0].name == "net.fc..softmax"  # the softmax is fused with the classifier
    assert split.units[-1].name == "net.avgpool..flatten"
    with torch.no_grad():
        torch.testing.assert_close(split(x)[-1], model(x), rtol=0, atol=0)
    split = graph.split_model(model, x, exit_heads=("net.fc",))
    assert split.exits[0].name == "net.fc" and split.exits[0].operator_calls == 2
    with torch.no_grad():
        torch.testing.assert_close(split(x)[-1], model(x), rtol=0, atol=0)


def test_forward_parameters_with_defaults_are_fixed() -> None:
    model = ua.WithFlag().eval()
    split = graph.split_model(model, example())
    with torch.no_grad():
        torch.testing.assert_close(split(example())[-1], model(example()))


@pytest.mark.parametrize(
    ("model", "heads", "match"),
    [
        (ua.tiny_resnet, ("nope",), "has no submodule 'nope'"),
        (ua.tiny_resnet, ("layer1",), "result is used by the rest of the network"),
        (ua.tiny_inception, (), "returns 2 values; name the module of every exit head"),
        (ua.tiny_inception, ("aux1",), "returns 'fc', which no exit head computes"),
        (ua.tiny_inception, ("fc", "fc"), "named twice"),
        (lambda: ua.AuxInsideBlock().eval(), ("aux", "fc"), "not at a valid cut"),
        (ua.data_dependent, (), "torch.fx cannot trace DataDependent"),
        (lambda: ua.TwoInputs(), (), "only a single input tensor is supported"),
        (lambda: ua.NoInput(), (), "forward takes no input tensor"),
        (lambda: ua.HeadCalledTwice(), ("head",), "calls 'head' 2 times"),
        (
            lambda: ua.HeadOnHead(),
            ("head", "post"),
            "used by the rest of the network (module 'post')",
        ),
        (ua.tiny_resnet, (), "running the traced model on an input of shape [2, 3, 8]"),
        (lambda: ua.HeadFeedsTrunk(), ("aux", "fc"), "result is used by the rest of the network"),
        (lambda: ua.TwoHeads(early=False), ("h1", "h2"), "both read the same tensor last"),
        (lambda: ua.TwoHeads(early=True), ("h1", "h2", "fc"), "read the output of the same unit"),
        (lambda: ua.HeadReadsTwo(), ("aux", "fc"), "its branch reads 2 tensors"),
        (lambda: ua.ConstantOutput(), (), "does not depend on its input"),
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3)), (), "has no valid cut point"),
    ],
)
def test_models_that_cannot_be_split_get_one_line_errors(
    model: Callable[[], nn.Module], heads: tuple[str, ...], match: str
) -> None:
    x = torch.rand(2, 3, 8) if "shape [2, 3, 8]" in match else example()
    with pytest.raises(GraphError, match=re.escape(match)) as info:
        graph.split_model(model(), x, exit_heads=heads)
    assert "\n" not in str(info.value)


def test_a_head_the_forward_never_calls_is_an_error() -> None:
    model = ua.tiny_resnet()
    model.add_module("unused", nn.Linear(16, 2))
    with pytest.raises(GraphError, match="never calls 'unused'"):
        graph.split_model(model, example(), exit_heads=("unused", "fc"))


ARCHS_FILE = Path(ua.__file__)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("user_archs", "expected 'package.module:factory'"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("user_archs:nothing_here", "has no attribute 'nothing_here'"),
        ("user_archs:CLASSES", "is a int, not callable"),
        ("user_archs:not_a_module", "returned a int, not a torch.nn.Module"),
        ("user_archs:broken", "the factory raised RuntimeError: weights file missing"),
        ("missing/file.py:f", "no such file"),
    ],
)
def test_factory_errors_are_one_line(spec: str, match: str) -> None:
    with pytest.raises(GraphError, match=match):
        graph.build_model(spec)


def test_a_model_file_that_fails_to_import_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad_models.py"
    bad.write_text("import torch\nraise ImportError('needs torchvision')\n", encoding="utf-8")
    with pytest.raises(GraphError, match=r"importing .*bad_models.py raised ImportError"):
        graph.build_model(f"{bad}:net")


def test_factories_load_from_a_module_or_a_file() -> None:
    assert isinstance(graph.build_model("user_archs:tiny_resnet"), ua.TinyResNet)
    model = graph.build_model(f"{ARCHS_FILE}:tiny_resnet")
    assert type(model).__name__ == "TinyResNet" and not model.training
    assert graph.model_name_of(f"{ARCHS_FILE}:tiny_resnet") == "tiny_resnet"
