"""The runtime planner: an exported policy deciding per request, without torch, SB3 or a simulator.

An exported planner is a directory with three files (written by ``edgerl export``,
:mod:`edgerl.experiments.export`); none is a pickle:

``planner.json``
    Everything needed to use the policy: ``schema_version``; ``observation`` (each feature's
    name, unit, scale and description, in input order, the clip bound and the formula
    ``float32(clip(raw * (1 / scale), 0, clip))``, computed in float64); ``actions`` (the
    decoding table: one entry per action index with variant, exit, cut points, batch size,
    cache policy and a readable name);
    ``static_mask`` (the scenario's memory-feasibility mask, ANDed into every decision);
    ``network`` (the numpy backend's weights file: name, sha256, size, dtype and byte order,
    and the layer table, see below); ``policy`` (the ONNX file: name, sha256, size, opset,
    input/output names, dtypes and shapes);
    ``content_sha256`` (sha256 of the rest of ``planner.json``, so that an edited decoding
    table is refused like an edited graph);
    ``scenario`` (name and sha256 of its YAML text), ``profiles`` (sha256 of each layer
    profile the plan catalogue was built from), ``training`` (run id, algorithm, seed, git
    commit, checkpoint) and ``export`` (tool versions).
``policy_weights.bin``
    The policy network's parameters as raw little-endian float32, in the order of
    ``network.layers``: for each ``linear`` layer its weight (``[out_features,
    in_features]``, row-major, the layout of torch's ``nn.Linear`` and of ONNX ``Gemm`` with
    ``transB=1``) then its bias (``[out_features]``), at the byte offsets the layer table
    states. The other layers are the activations between them (``tanh``, ``relu``, ``elu``
    with ``alpha``, ``leaky_relu`` with ``negative_slope``: the ones edgerl's
    hyperparameter files may name). ``scores = layers(observation)`` are the actor logits
    (MaskablePPO, PPO, A2C) or the Q-values (DQN). Any language reads it without numpy.
``policy.onnx``
    The same network as an ONNX graph (opset :data:`ONNX_OPSET`), the portable path.
    Inputs ``observation`` (float32, ``[batch, F]``, the normalised observation) and
    ``action_mask`` (bool, ``[batch, N]``, True = feasible plan); output ``action`` (int64,
    ``[batch]``).

Both backends decide ``action = argmax over the feasible plans of scores``, first index on
ties (the graph computes ``argmax(where(action_mask, scores, -inf))``). Their scores are
float32 arithmetic in different summation orders (numpy's BLAS against ONNX Runtime's
MLAS), so they could differ only where two feasible plans' scores tie to float32 rounding;
``tests/test_planner.py`` checks identical decisions on 10,000 held-out states and ``edgerl
export`` and ``edgerl bench planner`` count any difference.

Use::

    from edgerl.agents.planner import Planner

    planner = Planner.load("runs/demo/planner")  # backend="numpy" (default) or "onnx"
    plan = planner.plan({"uplink_mbps": 7.5, "wan_mbps": 80.0, ...})  # every feature, raw units
    print(plan.name, plan.cut_edge, plan.batch_size)
    plans = planner.plan_many([state_a, state_b])  # several devices at once

:meth:`Planner.plan` takes raw measured quantities by feature name, validates them with the
checks of :func:`edgerl.envs.observation.raw_from_mapping` (which also words the errors) and
builds the observation bit for bit as the environment's
:func:`~edgerl.envs.observation.normalise` does. :meth:`Planner.predict` is the shared policy
interface (:mod:`edgerl.agents.base`) on an already normalised observation, so the
simulator's evaluator scores the exported artefact exactly like any other policy.

Backends. ``numpy`` (the default) reads the weights once at load and runs the forward pass
in numpy on preallocated buffers, with the static mask folded into the last layer (only the
feasible plans' scores are computed); it needs neither onnxruntime nor ``policy.onnx``.
``onnx`` runs ``policy.onnx`` in ONNX Runtime (one intra-op thread, sequential, inputs and
output bound once to preallocated buffers); it does not need the weights file. Each backend
checks the sha256 of the file it reads. ``edgerl bench planner`` times both against
Edgent's per-decision search in one run.

Versions. This module reads :data:`PLANNER_SCHEMA_VERSION` 3 only; an artefact of another
version (2 had no weights file) is refused with a message that says to re-export it
(``edgerl export RUN_DIR --out DIR``), for either backend.

Imports: numpy, the standard library and :mod:`edgerl.envs.observation` (numpy only);
onnxruntime only when the ``onnx`` backend is loaded. Importing this module or loading and
using a planner loads neither torch, stable-baselines3, Gymnasium nor SimPy
(``tests/test_planner.py`` checks this in a fresh interpreter).
"""

from __future__ import annotations

import hashlib
import json
import operator
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from edgerl.envs.observation import (
    OBS_CLIP,
    Feature,
    feature_scales,
    raw_from_mapping,
    spec_from_json,
)
from edgerl.envs.observation import (
    ObservationError as ObservationError,  # re-exported: plan() raises it
)

if TYPE_CHECKING:
    import onnxruntime as ort

#: Version of the artefact layout (bump when a file, ``planner.json`` or the graph interface
#: changes). 2: actions carry exit_threshold and rule_exits; 3: the numpy weights file.
PLANNER_SCHEMA_VERSION = 3
PLANNER_KIND = "edgerl.planner"
POLICY_FILE = "policy.onnx"
WEIGHTS_FILE = "policy_weights.bin"
SPEC_FILE = "planner.json"
#: ``Planner.load(backend=...)`` choices; the first is the default.
BACKENDS = ("numpy", "onnx")
#: ONNX opset and IR version of the exported graph: those of ONNX 1.13 (onnx
#: ``docs/Versioning.md``), below the exporter's defaults so that older device runtimes load
#: it (onnxruntime's version matrix: onnxruntime.ai/docs/reference/compatibility.html). The
#: graph uses only Gemm, the activation (Tanh or Relu), Shape, Expand, Where and ArgMax.
ONNX_OPSET = 18
ONNX_IR_VERSION = 8
OBS_INPUT = "observation"
MASK_INPUT = "action_mask"
ACTION_OUTPUT = "action"
#: Symbolic name of the batch dimension in the graph and in ``planner.json``.
BATCH_DIM = "batch"
#: The weights file's element type: IEEE float32, little-endian.
WEIGHTS_DTYPE = "float32"
WEIGHTS_BYTE_ORDER = "little"
_WEIGHTS_NUMPY_DTYPE = np.dtype("<f4")
#: What the network's output is, by training algorithm family.
SCORES = ("actor_logits", "q_values")
#: Activation layers of the numpy forward pass and their parameters (torch's names).
ACTIVATION_PARAMS: dict[str, tuple[str, ...]] = {
    "tanh": (),
    "relu": (),
    "elu": ("alpha",),
    "leaky_relu": ("negative_slope",),
}
LINEAR_KEYS = ("op", "in_features", "out_features", "weight_offset_bytes", "bias_offset_bytes")

_ORT_TYPES = {"float32": "tensor(float)", "bool": "tensor(bool)", "int64": "tensor(int64)"}
_NUMBER_TYPES = frozenset((float, int))  # what the fast path of plan() accepts as-is


class PlannerError(ValueError):
    """An exported planner is missing, corrupt, inconsistent, or was given invalid input."""


class StateOutOfRangeWarning(UserWarning):
    """A state given to :meth:`Planner.plan` lies outside the features' training range (the
    plan is still returned; the policy never saw such a state while training)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """One decoded decision (an entry of ``planner.json``'s ``actions`` table).

    Attributes:
        index: action index (position in the scenario's plan catalogue).
        name: readable plan name, e.g. ``fp32/exit1/dev[0:2)/edge[2:4)/cloud[4:4)/b1/cache:none``.
        variant: model variant (e.g. ``fp32``, ``int8``).
        exit: early-exit branch index.
        cut_edge: units ``[0, cut_edge)`` run on the device.
        cut_cloud: units ``[cut_edge, cut_cloud)`` run on the edge, ``[cut_cloud, n_units)``
            in the cloud.
        n_units: units the chosen exit needs.
        batch_size: edge batch size this request waits for.
        cache_policy: edge cache policy (``none`` bypasses the cache).
        raw_input_leaves_device: whether the raw input is sent off the device.
        exit_threshold: BranchyNet confidence threshold: leave at the first of
            ``rule_exits`` whose confidence reaches it (``None``: always ``exit``).
        rule_exits: the exits the threshold rule chooses from (empty without a rule).
    """

    index: int
    name: str
    variant: str
    exit: int
    cut_edge: int
    cut_cloud: int
    n_units: int
    batch_size: int
    cache_policy: str
    raw_input_leaves_device: bool
    exit_threshold: float | None = None
    rule_exits: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the keys of ``edgerl.envs.plans.Plan.describe``)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["rule_exits"] = list(self.rule_exits)
        return d


_PLAN_TYPES: dict[str, type] = {
    "index": int,
    "name": str,
    "variant": str,
    "exit": int,
    "cut_edge": int,
    "cut_cloud": int,
    "n_units": int,
    "batch_size": int,
    "cache_policy": str,
    "raw_input_leaves_device": bool,
}
_RULE_KEYS = ("exit_threshold", "rule_exits")  # checked by _plan_from_json (nullable / list)


def _first_difference(env: list[Any], ours: list[Any], what: str) -> str:
    """Where two lists first differ, in words (the environment's vs the planner's)."""
    if len(env) != len(ours):
        extra = (
            f" (first extra: {(env if len(env) > len(ours) else ours)[min(len(env), len(ours))]})"
        )
        return f"the environment has {len(env)} entries, the planner {len(ours)}{extra}"
    i = next(k for k, (a, b) in enumerate(zip(env, ours, strict=True)) if a != b)
    return f"{what} {i} is {env[i]} in the environment and {ours[i]} in the planner"


def spec_digest(spec: Mapping[str, Any]) -> str:
    """sha256 of ``planner.json``'s content: its canonical JSON (sorted keys, no spaces,
    UTF-8) without the ``content_sha256`` field that records it."""
    body = {k: v for k, v in spec.items() if k != "content_sha256"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def _plan_from_json(entry: Any, i: int, where: str) -> Plan:
    if not isinstance(entry, Mapping):
        raise PlannerError(f"{where}: actions[{i}]: expected an object, got {entry!r}")
    keys, expected = set(entry), {*_PLAN_TYPES, *_RULE_KEYS}
    if keys != expected:
        raise PlannerError(
            f"{where}: actions[{i}]: keys differ from the decoding table: missing "
            f"{sorted(expected - keys)}, unexpected {sorted(keys - expected)}"
        )
    for key, tp in _PLAN_TYPES.items():
        v = entry[key]
        ok = isinstance(v, bool) if tp is bool else isinstance(v, tp) and not isinstance(v, bool)
        if not ok:
            raise PlannerError(f"{where}: actions[{i}].{key}: expected {tp.__name__}, got {v!r}")
    if entry["index"] != i:
        raise PlannerError(f"{where}: actions[{i}].index is {entry['index']}, expected {i}")
    tau = entry["exit_threshold"]
    if tau is not None and (isinstance(tau, bool) or not isinstance(tau, int | float)):
        raise PlannerError(f"{where}: actions[{i}].exit_threshold: expected a number or null")
    rule = entry["rule_exits"]
    if not isinstance(rule, list) or not all(
        isinstance(e, int) and not isinstance(e, bool) for e in rule
    ):
        raise PlannerError(f"{where}: actions[{i}].rule_exits: expected a list of integers")
    return Plan(
        **{k: entry[k] for k in _PLAN_TYPES},
        exit_threshold=None if tau is None else float(tau),
        rule_exits=tuple(rule),
    )


def _require(spec: Mapping[str, Any], key: str, tp: type | tuple[type, ...], where: str) -> Any:
    if key not in spec:
        raise PlannerError(f"{where}: missing field {key!r}")
    v = spec[key]
    if not isinstance(v, tp):
        raise PlannerError(f"{where}: field {key!r} has the wrong type ({type(v).__name__})")
    return v


def _check_io(
    actual: Sequence[Any], declared: Sequence[Mapping[str, Any]], kind: str, where: str
) -> None:
    """Compare the graph's inputs or outputs with the ones ``planner.json`` declares."""
    got = [(a.name, a.type, list(a.shape)) for a in actual]
    want = [(d["name"], _ORT_TYPES.get(d["dtype"], d["dtype"]), list(d["shape"])) for d in declared]
    if got != want:
        raise PlannerError(
            f"{where}: the {kind} of {POLICY_FILE} do not match {SPEC_FILE}: graph has {got}, "
            f"{SPEC_FILE} declares {want}"
        )


# ---------------------------------------------------------------------------- the numpy network


@dataclass(frozen=True)
class _Linear:
    """One ``linear`` layer of ``network.layers`` and the activation after it (if any).

    Attributes:
        weight: ``[out_features, in_features]`` float32 (torch's layout).
        bias: ``[out_features]`` float32.
        activation: in-place activation applied to the layer's output, or None (the scores).
    """

    weight: np.ndarray
    bias: np.ndarray
    activation: Callable[[np.ndarray], None] | None = None


_ZERO32 = np.float32(0.0)


def _activation(op: str, params: Mapping[str, float]) -> Callable[[np.ndarray], None]:
    """The in-place numpy form of an activation layer (torch's definition of each)."""
    if op == "tanh":

        def tanh(h: np.ndarray) -> None:
            np.tanh(h, out=h)

        return tanh
    if op == "relu":

        def relu(h: np.ndarray) -> None:
            np.maximum(h, _ZERO32, out=h)

        return relu
    if op == "elu":
        alpha = np.float32(params["alpha"])

        def elu(h: np.ndarray) -> None:  # x if x > 0 else alpha * (exp(x) - 1)
            np.copyto(h, np.where(h > 0, h, alpha * np.expm1(h)))

        return elu
    slope = np.float32(params["negative_slope"])

    def leaky_relu(h: np.ndarray) -> None:  # x if x >= 0 else negative_slope * x
        np.copyto(h, np.where(h >= 0, h, slope * h))

    return leaky_relu


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _read_network(
    directory: Path, spec: Mapping[str, Any], n_features: int, n_actions: int, where: str
) -> list[_Linear]:
    """Read and check ``network`` of ``planner.json`` and the weights file it describes.

    Raises:
        PlannerError: a malformed layer table, a weights file that is missing, of another
            checksum or size, with non-finite values, or a network whose input or output
            size differs from the observation spec or the decoding table.
    """
    net = _require(spec, "network", dict, where)
    w = f"{where}: network"
    expected = {
        "file": WEIGHTS_FILE,
        "dtype": WEIGHTS_DTYPE,
        "byte_order": WEIGHTS_BYTE_ORDER,
    }
    for key, want in expected.items():
        if net.get(key) != want:
            raise PlannerError(f"{w}.{key} is {net.get(key)!r}, expected {want!r}")
    if net.get("scores") not in SCORES:
        raise PlannerError(f"{w}.scores is {net.get('scores')!r}, expected one of {SCORES}")
    layers_json = _require(net, "layers", list, w)
    expected_sha = _require(net, "sha256", str, w)
    n_bytes = _require(net, "bytes", int, w)
    path = directory / WEIGHTS_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlannerError(f"{path}: cannot read the weights: {exc}") from exc
    actual_sha = hashlib.sha256(data).hexdigest()
    if actual_sha != expected_sha:
        raise PlannerError(
            f"{path}: checksum mismatch (sha256 {actual_sha}, {SPEC_FILE} records "
            f"{expected_sha}); the file was modified or belongs to another export"
        )
    if len(data) != n_bytes:
        raise PlannerError(f"{path}: {len(data)} bytes, {SPEC_FILE} network.bytes is {n_bytes}")
    item = _WEIGHTS_NUMPY_DTYPE.itemsize
    linears: list[_Linear] = []
    offset, width = 0, n_features
    for i, layer in enumerate(layers_json):
        lw = f"{w}.layers[{i}]"
        if not isinstance(layer, Mapping):
            raise PlannerError(f"{lw}: expected an object, got {layer!r}")
        op = layer.get("op")
        if op == "linear":
            if set(layer) != set(LINEAR_KEYS) or not all(
                isinstance(layer[k], int) and not isinstance(layer[k], bool) and layer[k] >= 0
                for k in LINEAR_KEYS[1:]
            ):
                raise PlannerError(
                    f"{lw}: a linear layer has exactly the keys {list(LINEAR_KEYS)}, with "
                    f"non-negative integers; got {dict(layer)!r}"
                )
            n_in, n_out = layer["in_features"], layer["out_features"]
            if n_in != width or n_out < 1:
                raise PlannerError(
                    f"{lw}: in_features {n_in}, out_features {n_out}; the layer before gives "
                    f"{width} values and a layer needs at least one output"
                )
            bias_at = offset + item * n_in * n_out
            end = bias_at + item * n_out
            if (layer["weight_offset_bytes"], layer["bias_offset_bytes"]) != (offset, bias_at):
                raise PlannerError(
                    f"{lw}: weight_offset_bytes {layer['weight_offset_bytes']}, "
                    f"bias_offset_bytes {layer['bias_offset_bytes']}; the layers' tensors are "
                    f"stored in order, so they must be {offset} and {bias_at}"
                )
            if end > len(data):
                raise PlannerError(f"{path}: {len(data)} bytes, {lw} needs bytes up to {end}")
            weight = np.frombuffer(data, _WEIGHTS_NUMPY_DTYPE, n_in * n_out, offset)
            bias = np.frombuffer(data, _WEIGHTS_NUMPY_DTYPE, n_out, bias_at)
            linears.append(
                _Linear(
                    weight.reshape(n_out, n_in).astype(np.float32),  # native order, own copy
                    bias.astype(np.float32),
                )
            )
            offset, width = end, n_out
        elif op in ACTIVATION_PARAMS:
            names = ACTIVATION_PARAMS[op]
            if not linears or linears[-1].activation is not None:
                raise PlannerError(f"{lw}: an activation ({op}) must follow a linear layer")
            if set(layer) != {"op", *names} or not all(
                _is_number(layer[k]) and np.isfinite(layer[k]) for k in names
            ):
                raise PlannerError(
                    f"{lw}: {op} has exactly the keys {['op', *names]} (finite numbers); got "
                    f"{dict(layer)!r}"
                )
            act = _activation(op, {k: float(layer[k]) for k in names})
            linears[-1] = _Linear(linears[-1].weight, linears[-1].bias, act)
        else:
            raise PlannerError(
                f"{lw}: unknown op {op!r}; expected 'linear' or one of {list(ACTIVATION_PARAMS)}"
            )
    if not linears or linears[-1].activation is not None:
        raise PlannerError(f"{w}.layers: the last layer must be linear (it gives the scores)")
    if width != n_actions:
        raise PlannerError(
            f"{w}.layers: the network gives {width} scores, the decoding table has "
            f"{n_actions} actions"
        )
    if offset != len(data):
        raise PlannerError(
            f"{path}: {len(data)} bytes, the layer table of {SPEC_FILE} accounts for {offset}"
        )
    if not all(np.isfinite(t).all() for lin in linears for t in (lin.weight, lin.bias)):
        raise PlannerError(f"{path}: the weights hold non-finite values")
    return linears


# ---------------------------------------------------------------------------- backends


class _NumpyBackend:
    """The forward pass in numpy, on weights read once at load.

    :meth:`decide` (``plan``) runs on the preallocated observation row with the static mask
    folded into the last layer: it computes only the feasible plans' scores (``feasible``,
    in index order, so the first maximum is the graph's first index on ties). Each layer is
    one vector-matrix product into a preallocated buffer: the weights are stored transposed
    with the bias as an extra last row (``[in + 1, out]``, C-contiguous), and every input
    buffer ends with a constant 1, so ``h @ [W.T; b]`` is ``h @ W.T + b``; then the
    activation in place. :meth:`decide_batch` and :meth:`decide_masked` (``plan_many``,
    ``predict``) multiply and add the bias separately.
    """

    name = "numpy"

    def __init__(self, linears: list[_Linear], static_mask: np.ndarray) -> None:
        n_feat = linears[0].weight.shape[1]
        x = np.ones((1, n_feat + 1), dtype=np.float32)  # [observation, 1]
        self.obs = x[:, :n_feat]  # what the planner writes: [1, F], C-contiguous
        feasible = np.flatnonzero(static_mask)
        self._feasible = feasible
        self._feasible_list = feasible.tolist()
        *hidden, last = linears
        folded = [*hidden, _Linear(last.weight[feasible], last.bias[feasible])]
        steps = []
        h = x[0]
        for lin in folded:
            w_aug = np.ascontiguousarray(np.vstack([lin.weight.T, lin.bias[None, :]]))
            buf = np.ones(len(lin.bias) + 1, dtype=np.float32)  # [layer output, 1]
            out = buf[:-1]
            steps.append((h, w_aug, out, lin.activation))
            h = buf
        self._steps = tuple(steps)
        self._scores = out
        self._batch = tuple(
            (np.ascontiguousarray(lin.weight.T), lin.bias, lin.activation) for lin in folded
        )
        self._full = tuple(
            (np.ascontiguousarray(lin.weight.T), lin.bias, lin.activation) for lin in linears
        )

    def decide(self) -> int:
        """The action for ``obs`` under the static mask."""
        for h, w_aug, out, act in self._steps:
            np.dot(h, w_aug, out=out)
            if act is not None:
                act(out)
        return self._feasible_list[self._scores.argmax()]

    def decide_batch(self, obs: np.ndarray) -> np.ndarray:
        """The actions for ``[B, F]`` observations under the static mask."""
        h = obs
        for w_t, b, act in self._batch:
            h = h @ w_t
            h += b
            if act is not None:
                act(h)
        return self._feasible[h.argmax(axis=1)]

    def decide_masked(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """The actions for ``[B, F]`` observations under ``[B, N]`` masks (static ANDed in)."""
        h = obs
        for w_t, b, act in self._full:
            h = h @ w_t
            h += b
            if act is not None:
                act(h)
        return np.where(masks, h, -np.inf).argmax(axis=1)


def _onnx_session(directory: Path, spec: Mapping[str, Any], where: str) -> ort.InferenceSession:
    """Check ``policy.onnx``'s sha256 and open it in ONNX Runtime (1 thread, sequential)."""
    import onnxruntime as ort

    onnx_path = directory / POLICY_FILE
    policy = spec["policy"]
    expected_sha = _require(policy, "sha256", str, f"{where}: policy")
    onnx_bytes = onnx_path.read_bytes()
    actual_sha = hashlib.sha256(onnx_bytes).hexdigest()
    if actual_sha != expected_sha:
        raise PlannerError(
            f"{onnx_path}: checksum mismatch (sha256 {actual_sha}, {SPEC_FILE} records "
            f"{expected_sha}); the file was modified or belongs to another export"
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(
            onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise PlannerError(f"{onnx_path}: onnxruntime cannot load the graph: {exc}") from exc
    _check_io(session.get_inputs(), policy["inputs"], "inputs", str(onnx_path))
    _check_io(session.get_outputs(), policy["outputs"], "outputs", str(onnx_path))
    return session


class _OnnxBackend:
    """``policy.onnx`` in ONNX Runtime. :meth:`decide` runs with the inputs (observation
    row, static mask) and the output bound once to preallocated buffers (zero-copy), so a
    call is one ``run_with_iobinding`` without a feed dict to parse or an output to
    allocate."""

    name = "onnx"

    def __init__(self, session: ort.InferenceSession, static_mask: np.ndarray) -> None:
        n_feat = session.get_inputs()[0].shape[1]
        self.obs = np.zeros((1, n_feat), dtype=np.float32)
        self._session = session
        self._static_row = static_mask.reshape(1, -1).copy()
        self._action = np.zeros(1, dtype=np.int64)
        self._outputs = [ACTION_OUTPUT]
        self._binding = session.io_binding()
        self._binding.bind_cpu_input(OBS_INPUT, self.obs)
        self._binding.bind_cpu_input(MASK_INPUT, self._static_row)
        self._binding.bind_output(
            ACTION_OUTPUT, "cpu", 0, np.int64, list(self._action.shape), self._action.ctypes.data
        )

    def decide(self) -> int:
        self._session.run_with_iobinding(self._binding)
        return int(self._action[0])

    def decide_batch(self, obs: np.ndarray) -> np.ndarray:
        masks = np.repeat(self._static_row, len(obs), axis=0)
        return self.decide_masked(obs, masks)

    def decide_masked(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        feed = {OBS_INPUT: np.ascontiguousarray(obs), MASK_INPUT: np.ascontiguousarray(masks)}
        return self._session.run(self._outputs, feed)[0]


# ---------------------------------------------------------------------------- the planner


class Planner:
    """An exported policy: raw state in, execution plan out.

    Build with :meth:`load`. A decision validates the state into a preallocated raw vector
    (one pass over the state: an ``operator.itemgetter`` compiled from the spec's feature
    order, a type check and a vectorised range check), scales and clips it into the
    backend's preallocated float32 input and runs the backend.

    Attributes:
        name: policy name for evaluation tables (``planner:<run id>``).
        directory: the artefact directory.
        backend: ``numpy`` or ``onnx`` (:data:`BACKENDS`).
        spec: the parsed ``planner.json``.
        features: the observation spec, in input order.
        plans: the decoding table, indexed by action.
        static_mask: feasible plans of the scenario (memory limits).
        out_of_range: decided states (``plan``, ``plan_many``) outside the training range.
    """

    def __init__(
        self,
        directory: Path,
        spec: Mapping[str, Any],
        features: list[Feature],
        plans: tuple[Plan, ...],
        static_mask: np.ndarray,
        backend: _NumpyBackend | _OnnxBackend,
    ) -> None:
        self.directory = directory
        self.spec = spec
        self.features = features
        self.plans = plans
        self.static_mask = static_mask
        self.backend = backend.name
        self._backend = backend
        self._decide = backend.decide
        n_feat, n_act = len(features), len(plans)
        self._n_feat = n_feat
        self._inv_scales = 1.0 / feature_scales(features)  # what the env multiplies by
        self._names = tuple(f.name for f in features)
        names = self._names
        self._values: Callable[[Mapping[str, Any]], tuple[Any, ...]] = (
            operator.itemgetter(*names) if n_feat > 1 else lambda s: (s[names[0]],)
        )
        rng = spec["observation"]["training_range"]
        self._low = np.asarray(rng["low"], dtype=np.float64)
        self._high = np.asarray(rng["high"], dtype=np.float64)
        # The fast path accepts a state only inside [max(low, 0), high]: valid (finite, not
        # negative) and in the training range; anything else takes the checked path.
        self._signs = np.array([[1.0], [-1.0]])
        self._bounds = np.stack([np.maximum(self._low, 0.0), -self._high])
        self._pair = np.zeros((2, n_feat), dtype=np.float64)
        self._in_bounds = np.zeros((2, n_feat), dtype=bool)
        self._n_bounds = 2 * n_feat
        self.out_of_range = 0
        run_id = spec.get("training", {}).get("run_id", directory.name)
        self.name = f"planner:{run_id}"
        self._raw = self._pair[0]  # plan()'s raw vector: the first row of the range check
        self._scaled = np.zeros(n_feat, dtype=np.float64)
        self._obs = backend.obs  # [1, F] float32: the backend's input buffer
        self._obs_row = self._obs[0]
        self._static_row = static_mask.reshape(1, n_act).copy()
        self._mask = np.zeros((1, n_act), dtype=bool)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, directory: str | Path, backend: str = BACKENDS[0]) -> Planner:
        """Load and verify an exported planner.

        Checks, in order: ``planner.json`` and the backend's file (``policy_weights.bin``
        for ``numpy``, ``policy.onnx`` for ``onnx``) exist; ``planner.json`` is a JSON
        object of kind :data:`PLANNER_KIND` and schema version
        :data:`PLANNER_SCHEMA_VERSION`; its content hashes to its ``content_sha256``
        (:func:`spec_digest`); the observation spec, decoding table and static mask are
        well formed and consistent; the clip bound equals this package's ``OBS_CLIP``; the
        backend's file has the recorded sha256; ``numpy``: the layer table is consistent
        with the file, the features and the actions, the weights are finite; ``onnx``: the
        graph's input/output names, dtypes and shapes equal the declared ones.

        Args:
            directory: the artefact directory.
            backend: ``numpy`` (default; no onnxruntime import) or ``onnx``.

        Raises:
            PlannerError: naming the file and field that failed.
        """
        if backend not in BACKENDS:
            raise PlannerError(f"backend {backend!r}: expected one of {list(BACKENDS)}")
        d = Path(directory)
        spec_path = d / SPEC_FILE
        needed = WEIGHTS_FILE if backend == "numpy" else POLICY_FILE
        for p in (spec_path, d / needed):
            if not p.is_file():
                hint = ""
                if (d / "run.json").is_file():
                    hint = (
                        "; it is a training run directory: evaluate it as --policy "
                        f"{d}, or export it first (edgerl export {d} --out {d / 'planner'})"
                    )
                elif p.name == WEIGHTS_FILE and spec_path.is_file():
                    hint = f" (the {backend} backend reads it; an older export? re-export)"
                raise PlannerError(f"{d}: not an exported planner ({p.name} is missing){hint}")
        where = str(spec_path)
        try:
            spec = json.loads(spec_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PlannerError(f"{where}: cannot read JSON: {exc}") from exc
        if not isinstance(spec, dict):
            raise PlannerError(f"{where}: expected a JSON object at top level")
        if spec.get("kind") != PLANNER_KIND:
            raise PlannerError(f"{where}: kind is {spec.get('kind')!r}, expected {PLANNER_KIND!r}")
        version = spec.get("schema_version")
        if version != PLANNER_SCHEMA_VERSION:
            raise PlannerError(
                f"{where}: schema_version {version!r} is not supported by this planner "
                f"(expects {PLANNER_SCHEMA_VERSION}); re-export with this edgerl version "
                "(edgerl export RUN_DIR --out DIR)"
            )
        recorded = _require(spec, "content_sha256", str, where)
        if spec_digest(spec) != recorded:
            raise PlannerError(
                f"{where}: content checksum mismatch (content_sha256 records {recorded}, the "
                f"content hashes to {spec_digest(spec)}); the file was edited after export"
            )
        _require(spec, "policy", dict, where)
        features, plans, mask = cls._parse_spec(spec, where)
        impl: _NumpyBackend | _OnnxBackend
        if backend == "numpy":
            impl = _NumpyBackend(_read_network(d, spec, len(features), len(plans), where), mask)
        else:
            impl = _OnnxBackend(_onnx_session(d, spec, where), mask)
        return cls(d, spec, features, plans, mask, impl)

    @staticmethod
    def _parse_spec(
        spec: Mapping[str, Any], where: str
    ) -> tuple[list[Feature], tuple[Plan, ...], np.ndarray]:
        obs = _require(spec, "observation", dict, where)
        feats_json = _require(obs, "features", list, f"{where}: observation")
        try:
            features = spec_from_json(feats_json)
        except (KeyError, TypeError, ValueError) as exc:
            raise PlannerError(f"{where}: observation.features: malformed entry ({exc})") from exc
        names = [f.name for f in features]
        if not features or len(set(names)) != len(names):
            raise PlannerError(f"{where}: observation.features must be non-empty and unique")
        bad_scale = [f.name for f in features if not (np.isfinite(f.scale) and f.scale > 0)]
        if bad_scale:
            raise PlannerError(f"{where}: observation.features {bad_scale}: scale must be > 0")
        clip = _require(obs, "clip", (int, float), f"{where}: observation")
        if float(clip) != OBS_CLIP:
            raise PlannerError(
                f"{where}: observation.clip is {clip}, this edgerl normalises with OBS_CLIP = "
                f"{OBS_CLIP}; the planner would build different observations"
            )
        rng = _require(obs, "training_range", dict, f"{where}: observation")
        for key in ("low", "high"):
            vals = rng.get(key)
            if not (
                isinstance(vals, list)
                and len(vals) == len(features)
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals)
            ):
                raise PlannerError(
                    f"{where}: observation.training_range.{key} must be {len(features)} numbers"
                )
        if any(lo > hi for lo, hi in zip(rng["low"], rng["high"], strict=True)):
            raise PlannerError(f"{where}: observation.training_range: a low exceeds its high")
        actions = _require(spec, "actions", list, where)
        plans = tuple(_plan_from_json(a, i, where) for i, a in enumerate(actions))
        if not plans:
            raise PlannerError(f"{where}: actions: the decoding table is empty")
        mask_json = _require(spec, "static_mask", list, where)
        if len(mask_json) != len(plans) or not all(isinstance(m, bool) for m in mask_json):
            raise PlannerError(
                f"{where}: static_mask must be {len(plans)} booleans (one per action)"
            )
        mask = np.array(mask_json, dtype=bool)
        if not mask.any():
            raise PlannerError(f"{where}: static_mask allows no action")
        policy = spec["policy"]
        expected_io = {
            "inputs": [
                {"name": OBS_INPUT, "dtype": "float32", "shape": [BATCH_DIM, len(features)]},
                {"name": MASK_INPUT, "dtype": "bool", "shape": [BATCH_DIM, len(plans)]},
            ],
            "outputs": [{"name": ACTION_OUTPUT, "dtype": "int64", "shape": [BATCH_DIM]}],
        }
        for key, want in expected_io.items():
            if policy.get(key) != want:
                raise PlannerError(
                    f"{where}: policy.{key} is {policy.get(key)!r}; for {len(features)} features "
                    f"and {len(plans)} actions it must be {want!r}"
                )
        return features, plans, mask

    # ------------------------------------------------------------------ deciding

    def _fill(self, state: Mapping[str, Any], raw: np.ndarray) -> None:
        """Validate ``state`` into ``raw`` (float64, spec order); count and warn if it lies
        outside the training range.

        The common case (exactly the spec's keys, every value a built-in ``float`` or
        ``int``, all inside ``[max(low, 0), high]``) costs one itemgetter call, one type
        check, one product and one comparison; anything else goes through
        :func:`edgerl.envs.observation.raw_from_mapping`, which accepts what it accepts (e.g.
        numpy scalars) and raises the error naming the field otherwise. Both give the same
        vector for a valid state.
        """
        if len(state) == self._n_feat:
            try:
                values = self._values(state)
            except (KeyError, TypeError):
                values = None
            if values is not None and _NUMBER_TYPES.issuperset(map(type, values)):
                # pair = [raw; -raw] >= [max(low, 0); -high]: the range check in one ufunc.
                pair = self._pair
                try:
                    np.multiply(values, self._signs, out=pair)
                except (TypeError, ValueError, OverflowError):  # e.g. an int beyond float64
                    pass
                else:
                    np.greater_equal(pair, self._bounds, out=self._in_bounds)
                    if np.count_nonzero(self._in_bounds) == self._n_bounds:
                        if raw is not self._raw:  # plan() decides on pair[0] itself
                            raw[:] = pair[0]
                        return
        raw[:] = raw_from_mapping(self.features, state)
        if (raw < self._low).any() or (raw > self._high).any():
            self._warn_out_of_range(raw)

    def _scale(self, raw: np.ndarray, out: np.ndarray) -> None:
        """``out = float32(min(raw * (1 / scale), clip))`` for a validated ``raw``.

        Bit for bit :func:`edgerl.envs.observation.normalise`: the same float64 product, and
        its ``max(x, 0)`` returns ``x`` unchanged for a validated ``raw`` (never negative;
        numpy's maximum keeps its first argument on ``-0.0 >= 0.0``).
        """
        scaled = self._scaled if raw.ndim == 1 else np.empty_like(raw)
        np.multiply(raw, self._inv_scales, out=scaled)
        np.minimum(scaled, OBS_CLIP, out=out)  # in float64, cast to out's float32

    def observe(self, state: Mapping[str, Any]) -> np.ndarray:
        """The normalised observation :meth:`plan` decides on for ``state`` (a copy).

        Raises:
            ObservationError: as :meth:`plan`.
        """
        raw = np.empty(self._n_feat, dtype=np.float64)
        self._fill(state, raw)
        out = np.empty(self._n_feat, dtype=np.float32)
        self._scale(raw, out)
        return out

    def plan(self, state: Mapping[str, Any]) -> Plan:
        """The plan for one request, from raw measurements.

        The observation is the environment's (bit for bit
        :func:`edgerl.envs.observation.normalise` of the raw vector in spec order).

        Args:
            state: every feature of ``planner.json``'s observation spec by name, in its raw
                unit (e.g. ``uplink_mbps`` in Mbit/s, ``deadline_ms`` in ms, one-hot
                ``app_<name>`` indicators); no other keys.

        Raises:
            ObservationError: a field is missing, unexpected, not a number (bools and strings
                are rejected), negative or not finite; the message names it.
        """
        raw = self._raw
        self._fill(state, raw)
        self._scale(raw, self._obs_row)
        return self.plans[self._decide()]

    def plan_many(self, states: Sequence[Mapping[str, Any]]) -> list[Plan]:
        """The plans for several requests at once (e.g. one per device), in order.

        Equal to ``[self.plan(s) for s in states]`` (the same validation, warnings and
        counting), with one batched forward pass.

        Raises:
            ObservationError: as :meth:`plan`, for the first invalid state (nothing decided).
        """
        if not states:
            return []
        raw = np.empty((len(states), self._n_feat), dtype=np.float64)
        for i, state in enumerate(states):
            self._fill(state, raw[i])
        obs = np.empty(raw.shape, dtype=np.float32)
        self._scale(raw, obs)
        plans = self.plans
        return [plans[a] for a in self._backend.decide_batch(obs).tolist()]

    def _warn_out_of_range(self, raw: np.ndarray) -> None:
        """Count every out-of-range state; warn on the first (with the fields and ranges)."""
        self.out_of_range += 1
        if self.out_of_range > 1:
            return
        out = [
            f"{n}={v:g} (trained on [{lo:g}, {hi:g}])"
            for n, v, lo, hi in zip(self._names, raw, self._low, self._high, strict=True)
            if not lo <= v <= hi
        ]
        warnings.warn(
            StateOutOfRangeWarning(
                f"{self.directory}: state outside the policy's training range: "
                f"{', '.join(out)} (further ones are counted in Planner.out_of_range)"
            ),
            stacklevel=4,  # the caller of plan() / plan_many()
        )

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        """The shared policy interface (:mod:`edgerl.agents.base`): a normalised observation in,
        an action index out.

        Args:
            observation: ``[F]`` or ``[1, F]`` normalised observation (what the env returns).
            action_mask: optional ``[N]`` or ``[1, N]`` feasibility mask; it is ANDed with the
                static mask of the artefact.
            deterministic: must be True (the exported policy is the deterministic one).

        Raises:
            PlannerError: wrong shape, non-finite values, a mask that allows nothing, or
                ``deterministic=False``.
        """
        if not deterministic:
            raise PlannerError(
                "the exported planner is deterministic; deterministic=False is unsupported"
            )
        obs = np.asarray(observation)
        n_feat = self._n_feat
        if obs.shape not in ((n_feat,), (1, n_feat)):
            raise PlannerError(
                f"observation has shape {obs.shape}, expected ({n_feat},) or (1, {n_feat}) "
                f"(features: {', '.join(self._names)})"
            )
        row = self._obs_row
        row[:] = obs.reshape(n_feat)
        if not np.isfinite(row).all():
            raise PlannerError(f"observation has non-finite values: {obs.reshape(n_feat)}")
        if action_mask is None:
            return self._decide()
        m = np.asarray(action_mask)
        n_act = self._mask.shape[1]
        if m.shape not in ((n_act,), (1, n_act)):
            raise PlannerError(
                f"action_mask has shape {m.shape}, expected ({n_act},) or (1, {n_act})"
            )
        np.logical_and(m.reshape(1, n_act), self._static_row, out=self._mask)
        if not self._mask.any():
            raise PlannerError("action_mask (AND the static mask) allows no action")
        return int(self._backend.decide_masked(self._obs, self._mask)[0])

    def predict_batch(
        self, observations: np.ndarray, action_masks: np.ndarray | None = None
    ) -> np.ndarray:
        """:meth:`predict` for ``[B, F]`` observations and optional ``[B, N]`` masks.

        Returns:
            ``[B]`` int64 action indices.

        Raises:
            PlannerError: wrong shapes, non-finite values or a row whose mask (AND the static
                mask) allows no action.
        """
        obs = np.asarray(observations, dtype=np.float32)
        n_feat, n_act = self._n_feat, len(self.plans)
        if obs.ndim != 2 or obs.shape[1] != n_feat:  # noqa: PLR2004 (a matrix)
            raise PlannerError(f"observations have shape {obs.shape}, expected (B, {n_feat})")
        if not np.isfinite(obs).all():
            raise PlannerError("observations hold non-finite values")
        if action_masks is None:
            masks = np.repeat(self._static_row, len(obs), axis=0)
        else:
            m = np.asarray(action_masks, dtype=bool)
            if m.shape != (len(obs), n_act):
                raise PlannerError(
                    f"action_masks have shape {m.shape}, expected ({len(obs)}, {n_act})"
                )
            masks = m & self._static_row
            if not masks.any(axis=1).all():
                raise PlannerError("a row of action_masks (AND the static mask) allows no action")
        return np.asarray(self._backend.decide_masked(obs, masks), dtype=np.int64)

    # ------------------------------------------------------------------ policy hooks

    def bind(self, env: Any) -> None:
        """Check that an environment matches the artefact (same features and plan catalogue).

        Duck-typed on ``env.unwrapped.features`` and ``.plans`` so that this module needs no
        Gymnasium import.

        Raises:
            PlannerError: the env's observation spec or plan decoding differs.
        """
        inner = getattr(env, "unwrapped", env)
        env_feats = list(getattr(inner, "features", []))
        ours = [(f.name, f.unit, f.scale) for f in self.features]
        theirs = [(f.name, f.unit, f.scale) for f in env_feats]
        if theirs != ours:
            raise PlannerError(
                f"{self.directory}: the environment's observation spec differs from the "
                f"planner's: {_first_difference(theirs, ours, 'feature (name, unit, scale)')}"
            )
        env_plans = [p.describe() for p in getattr(inner, "plans", ())]
        our_plans = [p.to_dict() for p in self.plans]
        if env_plans != our_plans:
            raise PlannerError(
                f"{self.directory}: the environment's plan catalogue differs from the planner's "
                f"decoding table: {_first_difference(env_plans, our_plans, 'plan')}"
            )

    def reset(self, seed: int | None = None) -> None:
        """Episode start: the planner is stateless, nothing to do."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for evaluation reports."""
        return {
            "name": self.name,
            "class": type(self).__name__,
            "directory": str(self.directory),
            "scenario": self.spec.get("scenario", {}),
            "training": self.spec.get("training", {}),
            "backend": self.backend,
            "policy_sha256": self.spec["policy"]["sha256"],
            "weights_sha256": self.spec["network"]["sha256"],
        }
