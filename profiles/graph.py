"""Partition any traceable ``torch.nn.Module`` into units at its valid cut points (torch.fx).

A user's model need not be hand-unrolled into the zoo's chain of units: this module traces it
with :func:`torch.fx.symbolic_trace`, finds where it can be cut, and rebuilds every piece as a
:class:`torch.fx.GraphModule`, so the ordinary profiler (:mod:`edgerl.profiles.profiler`) can
measure it unit by unit.

**Cut points.** The traced graph is a list of nodes in program order. Cutting after node ``i``
splits it into what runs on one tier and what runs on the next; the values that must cross are
the *live* values: those computed at or before ``i`` and used after it. A cut is **valid**
when exactly one value is live there and it is a batch-major tensor (first dimension = batch):
then that tensor is everything the rest of the network needs. Inside a residual block the
block's input is still live for the skip connection, and inside an Inception-style block every
finished branch is live until the concatenation, so no cut ever splits a skip connection or a
branch. Parameters, buffers (``get_attr``) and values that do not depend on the input (e.g. a
``torch.arange``) are not activations: every piece that uses them gets its own copy. The cut
before the first node (the raw input) is always valid; it is the "offload everything" cut and
not counted among the returned cut points.

By default (``fuse_pointwise=True``) the cut right before a pointwise or reshape operation
that is the only user of the single live tensor (BatchNorm, an activation, dropout,
flatten/view) is not offered: it would send exactly the bytes the next cut sends, and
inference runtimes fuse a convolution with its BatchNorm and activation anyway
(``torch.ao.quantization.fuse_modules`` fuses Conv-BN-ReLU). So units are "a layer with its
normalisation and activation", as in Neurosurgeon's per-layer partitioning, instead of single
operators.

**Units** are the segments between consecutive valid cuts. Running them in sequence on the
input reproduces the model's output exactly (same operators, same parameters, same order).

**Exit heads.** Module names given as ``exit_heads`` (e.g. ``["aux1", "fc"]``) are traced as
leaves and become exits. A head's *branch* is the head module, the functions the model applies
to its output before returning it (e.g. a softmax; no further module), and, for an early exit,
the operations computed only for it (e.g. a pooling the model applies before calling it). The
branch must read exactly one tensor of the network, at a valid cut. The head read last is the
final exit; the trunk (every other node) is partitioned into units, and the final exit follows
the last unit. Without exit heads the model's single output tensor ends the trunk and the last
segment becomes the final exit head, so ``fc`` of a ResNet (with ``flatten`` before it fused
into the previous unit) is the head.

Only single-input models whose forward can be traced by torch.fx (no control flow on tensor
values) are supported; extra ``forward`` parameters with defaults are fixed to their defaults.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import operator
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.fx
from torch import Tensor, nn
from torch.fx.passes.shape_prop import ShapeProp

#: Batch size of the example input used to find batch-major tensors (a batch of one cannot tell
#: a batch dimension from a singleton dimension).
SHAPE_PROBE_BATCH = 2
ERROR_DETAIL_CHARS = 100  # of an exception's message quoted in a one-line error

#: Modules applied to one tensor that keep its size (fused into the preceding unit).
#: (Softmax is not element-wise, but as cheap and as shape-preserving for this purpose.)
POINTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU,
    nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid,
    nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.Flatten, nn.Unflatten, nn.Softmax,
    nn.LogSoftmax,
)  # fmt: skip
_F = torch.nn.functional
#: Functions applied to one tensor that keep its size (fused into the preceding unit).
POINTWISE_FUNCTIONS: frozenset[Any] = frozenset(
    {
        torch.relu, torch.relu_, _F.relu, _F.relu6, _F.leaky_relu, _F.elu, _F.selu, _F.gelu,
        _F.silu, _F.mish, _F.hardswish, _F.hardsigmoid, _F.hardtanh, _F.softplus, torch.sigmoid,
        _F.sigmoid, torch.tanh, _F.tanh, _F.dropout, _F.batch_norm, torch.flatten,
        torch.reshape, torch.squeeze, torch.unsqueeze, torch.softmax, _F.softmax,
        torch.log_softmax, _F.log_softmax,
    }
)  # fmt: skip
#: Tensor methods applied to one tensor that keep its size (fused into the preceding unit).
POINTWISE_METHODS = frozenset(
    {"relu", "relu_", "sigmoid", "tanh", "flatten", "view", "reshape", "contiguous", "squeeze",
     "unsqueeze", "clamp", "clamp_", "softmax", "log_softmax"}
)  # fmt: skip
#: Element-wise merges of two tensors: a segment holding one of them closes a skip connection.
MERGE_FUNCTIONS = frozenset({operator.add, operator.iadd, torch.add, operator.mul, torch.mul})
MERGE_METHODS = frozenset({"add", "add_", "mul", "mul_"})
POOL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CALLS = ("call_module", "call_function", "call_method")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class GraphError(ValueError):
    """The model cannot be traced or partitioned; the message says why (one line)."""


# --------------------------------------------------------------------------- loading a factory


def _import_from_file(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise GraphError(f"--model {spec}: no such file {path}")
    name = f"edgerl_user_{_SAFE_NAME.sub('_', path.stem)}"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    if mod_spec is None or mod_spec.loader is None:
        raise GraphError(f"--model {spec}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = module
    with _on_path(path.resolve().parent):
        try:
            mod_spec.loader.exec_module(module)
        except Exception as exc:
            raise GraphError(
                f"--model {spec}: importing {path} raised {type(exc).__name__}: {exc}"
            ) from exc
    return module


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    """Put ``folder`` first on ``sys.path`` for the duration (user modules import siblings)."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def load_factory(spec: str) -> Callable[[], nn.Module]:
    """The callable named by ``"package.module:factory"`` or ``"path/to/file.py:factory"``.

    A dotted module is imported as usual, with the current directory on ``sys.path`` (as
    ``python -m`` would); a path ending in ``.py`` is loaded from that file. ``factory`` may be
    a dotted attribute path (``module:Builder.small``).

    Raises:
        GraphError: malformed spec, import failure, missing attribute, not callable.
    """
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise GraphError(
            f"--model {spec}: expected 'package.module:factory' or 'file.py:factory' "
            "(a zoo name has no ':'; see `edgerl models`)"
        )
    if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
        module = _import_from_file(Path(module_part), spec)
    else:
        with _on_path(Path.cwd()):
            try:
                module = importlib.import_module(module_part)
            except Exception as exc:
                raise GraphError(
                    f"--model {spec}: cannot import module {module_part!r} "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise GraphError(f"--model {spec}: module {module_part!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise GraphError(f"--model {spec}: {attr!r} is a {type(obj).__name__}, not callable")
    return obj


def build_model(spec: str) -> nn.Module:
    """Call the factory of ``spec`` (no arguments) and return its module in eval mode."""
    factory = load_factory(spec)
    try:
        model = factory()
    except Exception as exc:
        raise GraphError(f"--model {spec}: the factory raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise GraphError(
            f"--model {spec}: the factory returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model.eval()


def model_name_of(spec: str) -> str:
    """The profile's model name for a factory spec: the factory's (last) attribute name."""
    attr = spec.rpartition(":")[2].split(".")[-1]
    return _SAFE_NAME.sub("_", attr) or "model"


# --------------------------------------------------------------------------- tracing


class _HeadTracer(torch.fx.Tracer):
    """The default tracer, with the named exit heads kept as leaf modules."""

    def __init__(self, heads: Sequence[str]) -> None:
        super().__init__()
        self.heads = frozenset(heads)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.heads or super().is_leaf_module(
            m, module_qualified_name
        )


def trace(model: nn.Module, exit_heads: Sequence[str] = ()) -> torch.fx.GraphModule:
    """Trace ``model`` with torch.fx, keeping ``exit_heads`` as leaves; one tensor input.

    ``forward`` parameters after the first must have defaults; they are fixed to them.

    Raises:
        GraphError: unknown head name, several inputs, or a forward torch.fx cannot trace.
    """
    names = dict(model.named_modules())
    for h in exit_heads:
        if h not in names or h == "":
            raise GraphError(
                f"--exit-head {h}: the model has no submodule {h!r} (submodules: "
                f"{_preview([n for n in names if n])})"
            )
    params = list(inspect.signature(model.forward).parameters.values())
    params = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not params:
        raise GraphError(f"{type(model).__name__}.forward takes no input tensor")
    extra = params[1:]
    no_default = [p.name for p in extra if p.default is inspect.Parameter.empty]
    if no_default:
        raise GraphError(
            f"{type(model).__name__}.forward takes {len(params)} inputs; only a single input "
            f"tensor is supported (parameters without a default: {', '.join(no_default)})"
        )
    concrete = {p.name: p.default for p in extra}
    tracer = _HeadTracer(exit_heads)
    try:
        graph = tracer.trace(model, concrete_args=concrete or None)
    except Exception as exc:
        msg = " ".join(str(exc).split())[:ERROR_DETAIL_CHARS]
        raise GraphError(
            f"torch.fx cannot trace {type(model).__name__} (no control flow on tensor values): "
            f"{type(exc).__name__}: {msg}"
        ) from exc
    gm = torch.fx.GraphModule(tracer.root, graph, type(model).__name__)
    _strip_concrete_arg_checks(gm)
    return gm


def _strip_concrete_arg_checks(gm: torch.fx.GraphModule) -> None:
    """Remove the ``torch._assert`` checks and placeholders torch.fx adds for concrete args."""
    graph = gm.graph
    for node in reversed(list(graph.nodes)):
        if node.op == "call_function" and node.target is torch._assert:
            graph.erase_node(node)
    for node in reversed(list(graph.nodes)):
        if node.op in _CALLS and not node.users and node.target is operator.eq:
            graph.erase_node(node)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for node in placeholders[1:]:
        if not node.users:
            graph.erase_node(node)
    gm.recompile()


def _preview(items: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


# --------------------------------------------------------------------------- the analysis


@dataclass(frozen=True)
class CutPoint:
    """A valid cut: after trunk position ``position``, the value of ``node`` alone crosses.

    Attributes:
        position: Index in :attr:`GraphPlan.trunk` of the last node before the cut.
        node: Name of the graph node whose output crosses the cut.
        shape: Per-sample shape of the crossing tensor (batch dimension removed).
        dtype: Its dtype (``float32``, ...).
        bytes_per_sample: ``numel x element_size`` of one sample of it.
    """

    position: int
    node: str
    shape: tuple[int, ...]
    dtype: str
    bytes_per_sample: int


@dataclass(frozen=True)
class HeadBranch:
    """An exit head: its nodes, and the trunk node whose output it reads."""

    name: str
    nodes: tuple[torch.fx.Node, ...]
    reads: torch.fx.Node
    output: torch.fx.Node


@dataclass
class GraphPlan:
    """Result of the cut analysis of one traced model (see the module docstring).

    Attributes:
        gm: The traced model (owns the submodules and parameters every piece refers to).
        input: The input placeholder.
        trunk: The nodes partitioned into units, in program order.
        cuts: Every valid cut inside the trunk (the raw-input cut before it is implicit).
        final: The trunk node whose value is the model's (final) result when there are no
            heads; with heads, the node the final head reads.
        heads: Exit heads in attach order; the last is the final exit. Empty without heads.
    """

    gm: torch.fx.GraphModule
    input: torch.fx.Node
    trunk: list[torch.fx.Node]
    cuts: list[CutPoint]
    final: torch.fx.Node
    heads: list[HeadBranch] = field(default_factory=list)


def _is_activation(node: torch.fx.Node, static: set[torch.fx.Node]) -> bool:
    return node.op in _CALLS and node not in static


def _static_nodes(gm: torch.fx.GraphModule) -> set[torch.fx.Node]:
    """``get_attr`` nodes and every node that does not depend on the input (recomputed)."""
    static: set[torch.fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "get_attr" or (
            node.op in _CALLS and all(a in static for a in node.all_input_nodes)
        ):
            static.add(node)
    return static


def _descendants(node: torch.fx.Node) -> set[torch.fx.Node]:
    seen: set[torch.fx.Node] = set()
    todo = [node]
    while todo:
        n = todo.pop()
        for u in n.users:
            if u.op != "output" and u not in seen:
                seen.add(u)
                todo.append(u)
    return seen


def _tensor_meta(node: torch.fx.Node) -> Any:
    return node.meta.get("tensor_meta")


def _batch_major(node: torch.fx.Node, batch: int) -> tuple[int, ...] | None:
    """Per-sample shape of ``node``'s value if it is a tensor whose first dim is ``batch``."""
    meta = _tensor_meta(node)
    shape = getattr(meta, "shape", None)
    if shape is None or len(shape) == 0 or int(shape[0]) != batch:
        return None
    return tuple(int(s) for s in shape[1:])


def _is_pointwise(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(str(node.target)), POINTWISE_MODULES)
    if node.op == "call_function":
        return node.target in POINTWISE_FUNCTIONS
    if node.op == "call_method":
        return node.target in POINTWISE_METHODS
    return False


def _head_branches(
    gm: torch.fx.GraphModule, heads: Sequence[str], static: set[torch.fx.Node]
) -> list[HeadBranch]:
    """Each named head's branch, its input node and its output node (see the module doc)."""
    if len(set(heads)) != len(heads):
        raise GraphError(f"--exit-head: a head is named twice: {list(heads)}")
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    calls: dict[str, list[torch.fx.Node]] = {h: [] for h in heads}
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target in calls:
            calls[str(node.target)].append(node)
    base: dict[str, set[torch.fx.Node]] = {}
    for h, nodes in calls.items():
        if not nodes:
            raise GraphError(
                f"--exit-head {h}: the model's forward never calls {h!r} in eval mode (traced "
                "with torch.fx); an exit head must be a submodule the forward calls on a tensor "
                "of the network and whose result it returns"
            )
        if len(nodes) > 1:
            raise GraphError(f"--exit-head {h}: the forward calls {h!r} {len(nodes)} times")
        after = _descendants(nodes[0])
        modules_after = [n for n in after if n.op == "call_module"]
        if modules_after:
            raise GraphError(
                f"--exit-head {h}: its result is used by the rest of the network (module "
                f"{modules_after[0].target!r}); an exit head must end a branch"
            )
        base[h] = {nodes[0], *after}  # every user of these is in the set (or the output)

    def reads(h: str, nodes: set[torch.fx.Node]) -> list[torch.fx.Node]:
        ins = {a for n in nodes for a in n.all_input_nodes if a not in nodes and a not in static}
        return sorted(ins, key=order.__getitem__)

    # The final head is the one whose module reads the latest tensor of the network.
    def module_input_pos(h: str) -> int:
        return max((order[a] for a in reads(h, {calls[h][0]})), default=-1)

    ranked = sorted(heads, key=module_input_pos)
    if len(ranked) > 1 and module_input_pos(ranked[-1]) == module_input_pos(ranked[-2]):
        raise GraphError(
            f"--exit-head {ranked[-2]} and {ranked[-1]}: both read the same tensor last; the "
            "final exit must be the head that reads the network's last tensor"
        )
    # Early heads also take the operations computed only for them (e.g. a pooling before them).
    for h in ranked[:-1]:
        branch = base[h]
        grew = True
        while grew:
            grew = False
            for a in reads(h, branch):
                if a.op in _CALLS and a.users and all(u in branch for u in a.users):
                    branch.add(a)
                    grew = True
    out: list[HeadBranch] = []
    for h in ranked:
        branch = base[h]
        ins = reads(h, branch)
        if len(ins) != 1:
            names = ", ".join(a.name for a in ins) or "nothing"
            raise GraphError(
                f"--exit-head {h}: its branch reads {len(ins)} tensors of the network "
                f"({names}); an exit head must read exactly one"
            )
        returned = [n for n in branch if any(u.op == "output" for u in n.users)]
        if len(returned) > 1:
            raise GraphError(f"--exit-head {h}: the model returns {len(returned)} of its values")
        output = returned[0] if returned else calls[h][0]
        ordered = tuple(sorted(branch, key=order.__getitem__))
        out.append(HeadBranch(h, ordered, ins[0], output))
    return out


def analyse(
    gm: torch.fx.GraphModule,
    example_input: Tensor | None = None,
    *,
    exit_heads: Sequence[str] = (),
    fuse_pointwise: bool = True,
) -> GraphPlan:
    """Find the trunk, the exit branches and the valid cuts of a traced model.

    Args:
        gm: A traced model (:func:`trace`, with the same ``exit_heads`` as leaves).
        example_input: A batch of inputs; when given, shapes are propagated and a cut is valid
            only where the crossing value is a batch-major tensor. Without it, any single live
            value makes a cut valid.
        exit_heads: Module names of the exit heads.
        fuse_pointwise: Drop cuts right before pointwise/reshape ops (module docstring).

    Raises:
        GraphError: several inputs, returned values no head computes, a head at a place that is
            not a valid cut, two heads after the same cut.
    """
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise GraphError(f"the traced model takes {len(placeholders)} inputs; expected one tensor")
    batch = None
    if example_input is not None:
        batch = int(example_input.shape[0])
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(example_input)
        except Exception as exc:
            msg = " ".join(str(exc).split())[:ERROR_DETAIL_CHARS]
            raise GraphError(
                f"running the traced model on an input of shape {list(example_input.shape)} "
                f"failed: {type(exc).__name__}: {msg}"
            ) from exc
    static = _static_nodes(gm)
    heads = _head_branches(gm, exit_heads, static) if exit_heads else []
    in_branch = {n for h in heads for n in h.nodes}
    output_node = next(n for n in gm.graph.nodes if n.op == "output")
    trunk = [n for n in gm.graph.nodes if _is_activation(n, static) and n not in in_branch]
    if not trunk:
        raise GraphError("the model has no operation outside its exit heads to partition")
    pos = {n: i for i, n in enumerate(trunk)}

    # The value the trunk ends with.
    if heads:
        final = heads[-1].reads
        returned = [a for a in output_node.all_input_nodes if a in pos]
        if returned:
            raise GraphError(
                f"the model returns {returned[0].name!r}, which no exit head computes; name the "
                "head of every returned value with --exit-head"
            )
    else:
        outs = output_node.all_input_nodes
        if len(outs) != 1 or not isinstance(output_node.args[0], torch.fx.Node):
            raise GraphError(
                f"the model returns {len(outs)} values; name the module of every exit head "
                "with --exit-head (one per returned value)"
            )
        final = outs[0]
        if final not in pos:
            raise GraphError(f"the model's output {final.name!r} does not depend on its input")

    # Liveness: value v (input or trunk node) is live across the cut after trunk position i
    # when it is produced at or before i and used by a trunk node after i, by a head branch
    # whose attach point is after i, or it is the trunk's final value.
    last_use: dict[torch.fx.Node, int] = {}
    producers = [placeholders[0], *trunk]
    for v in producers:
        uses = [pos[u] for u in v.users if u in pos]
        last_use[v] = max(uses, default=-1)
    for h in heads:
        last_use[h.reads] = max(last_use.get(h.reads, -1), pos.get(h.reads, -1))
    last_use[final] = len(trunk)  # needed by the head (or is the result) at the very end
    live_count = [0] * len(trunk)
    live_one: list[torch.fx.Node | None] = [None] * len(trunk)
    for v in producers:
        start = pos.get(v, -1)
        for i in range(max(start, 0), min(last_use[v], len(trunk))):
            if i >= start:
                live_count[i] += 1
                live_one[i] = v
    head_reads = {h.reads for h in heads[:-1]}
    cuts: list[CutPoint] = []
    for i, node in enumerate(trunk[:-1]):
        v = live_one[i]
        if live_count[i] != 1 or v is None or v not in pos:  # not the raw input again
            continue
        if (
            fuse_pointwise
            and v is node
            and list(node.users) == [trunk[i + 1]]
            and _is_pointwise(gm, trunk[i + 1])
            and node not in head_reads
        ):
            continue
        cut = _cut_point(i, v, batch)
        if cut is not None:
            cuts.append(cut)
    for h in heads[:-1]:
        if h.reads not in pos or not any(c.node == h.reads.name for c in cuts):
            raise GraphError(
                f"--exit-head {h.name}: it reads {h.reads.name!r}, which is not at a valid cut "
                "(inside a skip connection or a branch, or the raw input): no unit ends there"
            )
    return GraphPlan(gm=gm, input=placeholders[0], trunk=trunk, cuts=cuts, final=final, heads=heads)


def _cut_point(i: int, v: torch.fx.Node, batch: int | None) -> CutPoint | None:
    if batch is None:
        return CutPoint(i, v.name, (), "", 0)
    shape = _batch_major(v, batch)
    if shape is None:
        return None
    meta = _tensor_meta(v)
    elem = torch.empty((), dtype=meta.dtype).element_size()
    numel = 1
    for s in shape:
        numel *= s
    return CutPoint(i, v.name, shape, str(meta.dtype).removeprefix("torch."), numel * elem)


def find_cut_points(
    gm: torch.fx.GraphModule,
    example_input: Tensor | None = None,
    *,
    exit_heads: Sequence[str] = (),
    fuse_pointwise: bool = True,
) -> list[CutPoint]:
    """Every valid cut point of a traced model (see :func:`analyse` and the module doc)."""
    return analyse(gm, example_input, exit_heads=exit_heads, fuse_pointwise=fuse_pointwise).cuts


# --------------------------------------------------------------------------- building pieces


def _subgraph_module(
    gm: torch.fx.GraphModule,
    nodes: Sequence[torch.fx.Node],
    reads: torch.fx.Node,
    returns: torch.fx.Node,
    static: set[torch.fx.Node],
    class_name: str,
) -> torch.fx.GraphModule:
    """A GraphModule computing ``returns`` from ``reads`` with ``nodes`` (plus statics)."""
    graph = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {reads: graph.placeholder("x")}

    def copy_static(n: torch.fx.Node) -> torch.fx.Node:
        if n not in env:
            for a in n.all_input_nodes:
                copy_static(a)
            env[n] = graph.node_copy(n, env.__getitem__)
        return env[n]

    for n in nodes:
        for a in n.all_input_nodes:
            if a in static:
                copy_static(a)
        env[n] = graph.node_copy(n, env.__getitem__)
    graph.output(env[returns])
    return torch.fx.GraphModule(gm, graph, class_name)


def _layer_names(gm: torch.fx.GraphModule, nodes: Sequence[torch.fx.Node]) -> tuple[str, ...]:
    """Qualified names of the modules the nodes call (in order, without repeats)."""
    out: list[str] = []
    for n in nodes:
        if n.op == "call_module" and str(n.target) not in out:
            out.append(str(n.target))
    return tuple(out)


def _module_path(n: torch.fx.Node) -> str:
    if n.op == "call_module":
        return str(n.target)
    stack = n.meta.get("nn_module_stack") or {}
    if stack:
        return str(list(stack.values())[-1][0])
    return ""


def _common_prefix(paths: Sequence[list[str]]) -> list[str]:
    common: list[str] = []
    for parts in zip(*paths, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return common


def _segment_names(segments: Sequence[Sequence[torch.fx.Node]]) -> list[str]:
    """A readable, unique name per segment, from the modules its nodes belong to.

    The common module prefix of the segment (``layer1.0``); when that module is split over
    several segments, its first and last child in this one (``features.2.conv.0..2``); when
    there is no common module, the first and last module (``conv1..relu``).
    """
    paths = [[_module_path(n) for n in seg] for seg in segments]
    names: list[str] = []
    for k, seg in enumerate(segments):
        parts = [p.split(".") for p in paths[k] if p]
        common = _common_prefix(parts) if parts and len(parts) == len(seg) else []
        prefix = ".".join(common)
        if common:
            shared = any(
                p == prefix or p.startswith(prefix + ".")
                for j, other in enumerate(paths)
                if j != k
                for p in other
            )
            if not shared:
                names.append(prefix)
                continue
            first, last = parts[0][len(common) :], parts[-1][len(common) :]
            # a function called by the common module itself has no child name: use the node's
            a = first[0] if first else seg[0].name
            b = last[0] if last else seg[-1].name
            names.append(f"{prefix}.{a}" if a == b else f"{prefix}.{a}..{b}")
            continue
        first_name = paths[k][0] or seg[0].name
        last_name = paths[k][-1] or seg[-1].name
        names.append(first_name if first_name == last_name else f"{first_name}..{last_name}")
    return _unique(names)


def _segment_name(nodes: Sequence[torch.fx.Node]) -> str:
    """The name of one segment on its own (see :func:`_segment_names`)."""
    return _segment_names([nodes])[0]


def layer_type_of(gm: torch.fx.GraphModule, nodes: Sequence[torch.fx.Node]) -> str:
    """Coarse layer type of a piece, in the zoo's vocabulary (used by regressions/derive).

    ``depthwise`` (holds a grouped convolution with one group per input channel), else
    ``residual`` (holds an element-wise merge of two tensors computed from its input: a skip
    connection), else ``conv``, ``linear``, ``pool``, or ``other`` (element-wise/reshape only).
    """
    kinds: set[str] = set()
    for n in nodes:
        if n.op == "call_module":
            m = gm.get_submodule(str(n.target))
            if isinstance(m, _CONV_TYPES):
                dw = m.groups > 1 and m.groups == m.in_channels
                kinds.add("depthwise" if dw else "conv")
            elif isinstance(m, nn.Linear):
                kinds.add("linear")
            elif isinstance(m, POOL_MODULES):
                kinds.add("pool")
        elif n.op == "call_function" and n.target in (_F.conv1d, _F.conv2d, _F.conv3d):
            kinds.add("conv")
        elif n.op == "call_function" and n.target is _F.linear:
            kinds.add("linear")
        tensor_args = [a for a in n.all_input_nodes if a.op in _CALLS or a.op == "placeholder"]
        merge = (n.op == "call_function" and n.target in MERGE_FUNCTIONS) or (
            n.op == "call_method" and n.target in MERGE_METHODS
        )
        if merge and len(tensor_args) >= 2:  # noqa: PLR2004 (two operands)
            kinds.add("residual")
    for kind in ("depthwise", "residual", "conv", "linear", "pool"):
        if kind in kinds:
            return kind
    return "other"


@dataclass(frozen=True)
class Piece:
    """One unit or exit head of a split model.

    Attributes:
        name: ``layer1.0``-style name (common module prefix) or the head's module name.
        layer_type: See :func:`layer_type_of`.
        module: Runs the piece: the crossing tensor in, the next crossing tensor (or the exit's
            result) out.
        layers: Qualified names of the model's modules it calls (for ``profile import``).
        operator_calls: Operator calls it makes (torch.fx call nodes, statics excluded).
    """

    name: str
    layer_type: str
    module: torch.fx.GraphModule
    layers: tuple[str, ...]
    operator_calls: int


@dataclass(frozen=True)
class SplitModel:
    """A model as units and exit heads (the structure a layer profile describes).

    Attributes:
        units: The units in execution order.
        exits: Exit heads in attach order; ``exits[-1]`` is the final exit.
        exit_after: Index of the unit each exit follows; the last is ``len(units) - 1``.
        cuts: The cut after each unit but the last (``cuts[i]`` follows ``units[i]``).
    """

    units: tuple[Piece, ...]
    exits: tuple[Piece, ...]
    exit_after: tuple[int, ...]
    cuts: tuple[CutPoint, ...]

    def run_units(self, x: Tensor) -> Tensor:
        """Every unit in sequence (the input of the final exit)."""
        for u in self.units:
            x = u.module(x)
        return x

    def __call__(self, x: Tensor) -> list[Tensor]:
        """Every exit's result, in exit order (each head reads its unit's output)."""
        heads = dict(zip(self.exit_after, self.exits, strict=True))
        outs: list[Tensor] = []
        for i, u in enumerate(self.units):
            x = u.module(x)
            if i in heads:
                outs.append(heads[i].module(x))
        return outs


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}#{k + 1}")
    return out


def split_model(
    model: nn.Module,
    example_input: Tensor,
    *,
    exit_heads: Sequence[str] = (),
    fuse_pointwise: bool = True,
) -> SplitModel:
    """Trace ``model`` and cut it into units and exit heads at its valid cut points.

    Args:
        model: Any single-input module torch.fx can trace (put it in eval mode first).
        example_input: A batch of inputs (batch >= 2 recommended: batch-major detection).
        exit_heads: Module names of exit heads (module docstring); none: the last segment is
            the final exit head.
        fuse_pointwise: Drop cuts right before pointwise/reshape ops (module docstring).

    Raises:
        GraphError: the model cannot be traced or split (see :func:`analyse`), or it has no
            valid cut at all.
    """
    gm = trace(model, exit_heads)
    plan = analyse(gm, example_input, exit_heads=exit_heads, fuse_pointwise=fuse_pointwise)
    static = _static_nodes(gm)
    trunk = plan.trunk
    bounds = [c.position for c in plan.cuts]
    by_node = {n.name: n for n in trunk}
    starts = [0, *(b + 1 for b in bounds)]
    ends = [*bounds, len(trunk) - 1]
    reads = [plan.input, *(by_node[c.node] for c in plan.cuts)]
    returns = [*(by_node[c.node] for c in plan.cuts), plan.final]
    segments = [trunk[s : e + 1] for s, e in zip(starts, ends, strict=True)]

    exits_raw: list[tuple[str, Sequence[torch.fx.Node], torch.fx.Node, torch.fx.Node]] = []
    if plan.heads:
        exits_raw = [(h.name, h.nodes, h.reads, h.output) for h in plan.heads]
    else:
        if len(segments) < 2:  # noqa: PLR2004 (a unit and a head)
            raise GraphError(
                "the model has no valid cut point (every cut splits a skip connection or a "
                "branch), so it cannot be partitioned; name its classifier with --exit-head"
            )
        last = segments.pop()
        exits_raw = [(_segment_name(last), last, reads.pop(), returns.pop())]
    names = _segment_names(segments)
    units = tuple(
        Piece(
            name=name,
            layer_type=layer_type_of(gm, seg),
            module=_subgraph_module(gm, seg, r, o, static, f"Unit{i}"),
            layers=_layer_names(gm, seg),
            operator_calls=len(seg),
        )
        for i, (name, seg, r, o) in enumerate(zip(names, segments, reads, returns, strict=True))
    )
    unit_end = {o.name: i for i, o in enumerate(returns)}
    exits: list[Piece] = []
    exit_after: list[int] = []
    for e, (name, nodes, r, o) in enumerate(exits_raw):
        exits.append(
            Piece(
                name=name,
                layer_type="head",
                module=_subgraph_module(gm, nodes, r, o, static, f"Exit{e}"),
                layers=_layer_names(gm, nodes),
                operator_calls=sum(1 for n in nodes if n.op in _CALLS and n not in static),
            )
        )
        exit_after.append(unit_end[r.name])
    if exit_after != sorted(set(exit_after)):
        dup = [exits[i].name for i in range(1, len(exits)) if exit_after[i] == exit_after[i - 1]]
        raise GraphError(
            f"--exit-head {dup[0] if dup else ''}: two exit heads read the output of the same "
            "unit; a profile has at most one exit per cut point"
        )
    return SplitModel(
        units=units,
        exits=tuple(exits),
        exit_after=tuple(exit_after),
        cuts=tuple(plan.cuts[: len(units) - 1]),
    )


def split_units(
    model: nn.Module,
    example_input: Tensor,
    *,
    exit_heads: Sequence[str] = (),
    fuse_pointwise: bool = True,
) -> list[nn.Module]:
    """The units of ``model`` between consecutive valid cuts, in order (:func:`split_model`).

    Without ``exit_heads`` the last segment is the final exit head, not a unit; running the
    returned units in sequence and then :attr:`SplitModel.exits` ``[-1]`` gives the model's
    output.
    """
    split = split_model(model, example_input, exit_heads=exit_heads, fuse_pointwise=fuse_pointwise)
    return [u.module for u in split.units]
