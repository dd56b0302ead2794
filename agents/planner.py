"""The runtime planner: an exported policy deciding per request, without torch, SB3 or a simulator.

An exported planner is a directory with exactly two files (written by ``edgerl export``,
:mod:`edgerl.experiments.export`); neither is a pickle:

``policy.onnx``
    The policy network as an ONNX graph (opset :data:`ONNX_OPSET`). Inputs
    ``observation`` (float32, ``[batch, F]``, the normalised observation) and ``action_mask``
    (bool, ``[batch, N]``, True = feasible plan); output ``action`` (int64, ``[batch]``): the
    deterministic action, i.e. the argmax over the feasible plans of the policy's logits
    (MaskablePPO, PPO, A2C) or Q-values (DQN), first index on ties.
``planner.json``
    Everything needed to use the graph: ``schema_version``; ``observation`` (each feature's
    name, unit, scale and description, in input order, the clip bound and the formula
    ``float32(clip(raw * (1 / scale), 0, clip))``, computed in float64); ``actions`` (the
    decoding table: one entry per action index with variant, exit, cut points, batch size,
    cache policy and a readable name);
    ``static_mask`` (the scenario's memory-feasibility mask, ANDed into every decision);
    ``policy`` (file name, sha256, size, opset, input/output names, dtypes and shapes);
    ``content_sha256`` (sha256 of the rest of ``planner.json``, so that an edited decoding
    table is refused like an edited graph);
    ``scenario`` (name and sha256 of its YAML text), ``profiles`` (sha256 of each layer
    profile the plan catalogue was built from), ``training`` (run id, algorithm, seed, git
    commit, checkpoint) and ``export`` (tool versions).

Use::

    from edgerl.agents.planner import Planner

    planner = Planner.load("runs/demo/planner")
    plan = planner.plan({"uplink_mbps": 7.5, "wan_mbps": 80.0, ...})  # every feature, raw units
    print(plan.name, plan.cut_edge, plan.batch_size)

:meth:`Planner.plan` takes raw measured quantities by feature name, validates them with the
checks of :func:`edgerl.envs.observation.raw_from_mapping` (which also words the errors) and
builds the observation with the environment's own :func:`~edgerl.envs.observation.normalise`.
:meth:`Planner.predict` is the shared policy interface (:mod:`edgerl.agents.base`) on an
already normalised observation, so the simulator's evaluator scores the exported artefact
exactly like any other policy.

Imports: numpy, onnxruntime, the standard library and :mod:`edgerl.envs.observation`
(numpy only). Importing this module loads neither torch, stable-baselines3, Gymnasium nor
SimPy (``tests/test_planner.py`` checks this in a fresh interpreter).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from edgerl.envs.observation import (
    OBS_CLIP,
    Feature,
    feature_scales,
    normalise,
    raw_from_mapping,
    spec_from_json,
)
from edgerl.envs.observation import (
    ObservationError as ObservationError,  # re-exported: plan() raises it
)

#: Version of the artefact layout (bump when ``planner.json`` or the graph interface changes).
PLANNER_SCHEMA_VERSION = 2  # 2: actions carry exit_threshold and rule_exits
PLANNER_KIND = "edgerl.planner"
POLICY_FILE = "policy.onnx"
SPEC_FILE = "planner.json"
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

_ORT_TYPES = {"float32": "tensor(float)", "bool": "tensor(bool)", "int64": "tensor(int64)"}


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


class Planner:
    """An exported policy: raw state in, execution plan out.

    Build with :meth:`load`. One ONNX Runtime session with one intra-op thread and sequential
    execution; input buffers are preallocated, so a decision allocates only the raw vector
    that validation builds and the graph's output.

    Attributes:
        name: policy name for evaluation tables (``planner:<run id>``).
        directory: the artefact directory.
        spec: the parsed ``planner.json``.
        features: the observation spec, in input order.
        plans: the decoding table, indexed by action.
        static_mask: feasible plans of the scenario (memory limits).
    """

    def __init__(
        self,
        directory: Path,
        spec: Mapping[str, Any],
        features: list[Feature],
        plans: tuple[Plan, ...],
        static_mask: np.ndarray,
        session: ort.InferenceSession,
    ) -> None:
        self.directory = directory
        self.spec = spec
        self.features = features
        self.plans = plans
        self.static_mask = static_mask
        self._session = session
        self._inv_scales = 1.0 / feature_scales(features)  # what the env multiplies by
        self._names = tuple(f.name for f in features)
        rng = spec["observation"]["training_range"]
        self._low = np.asarray(rng["low"], dtype=np.float64)
        self._high = np.asarray(rng["high"], dtype=np.float64)
        self.out_of_range = 0  # plan() calls whose state left the training range
        run_id = spec.get("training", {}).get("run_id", directory.name)
        self.name = f"planner:{run_id}"
        n_feat, n_act = len(features), len(plans)
        # plan(): the static mask; predict(): a per-call mask buffer (caller's mask AND static).
        self._raw = np.zeros(n_feat, dtype=np.float64)
        self._obs = np.zeros((1, n_feat), dtype=np.float32)
        self._static_row = static_mask.reshape(1, n_act).copy()
        self._mask = np.zeros((1, n_act), dtype=bool)
        self._feed_predict = {OBS_INPUT: self._obs, MASK_INPUT: self._mask}
        self._outputs = [ACTION_OUTPUT]
        # plan(): inputs and output are bound once to these buffers (zero-copy), so a call is
        # one run_with_iobinding without a feed dict to parse or an output array to allocate
        # (the tail of session.run; `edgerl bench planner` measures the resulting p50/p99).
        self._action = np.zeros(1, dtype=np.int64)
        self._binding = session.io_binding()
        self._binding.bind_cpu_input(OBS_INPUT, self._obs)
        self._binding.bind_cpu_input(MASK_INPUT, self._static_row)
        self._binding.bind_output(
            ACTION_OUTPUT, "cpu", 0, np.int64, list(self._action.shape), self._action.ctypes.data
        )

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, directory: str | Path) -> Planner:
        """Load and verify an exported planner.

        Checks, in order: both files exist; ``planner.json`` is a JSON object of kind
        :data:`PLANNER_KIND` and schema version :data:`PLANNER_SCHEMA_VERSION`; its content
        hashes to its ``content_sha256`` (:func:`spec_digest`); the sha256 of ``policy.onnx``
        equals the recorded one; the observation spec, decoding table and
        static mask are well formed and consistent; the clip bound equals this package's
        ``OBS_CLIP``; the graph's input/output names, dtypes and shapes equal the declared ones.

        Raises:
            PlannerError: naming the file and field that failed.
        """
        d = Path(directory)
        spec_path, onnx_path = d / SPEC_FILE, d / POLICY_FILE
        for p in (spec_path, onnx_path):
            if not p.is_file():
                hint = ""
                if (d / "run.json").is_file():
                    hint = (
                        "; it is a training run directory: evaluate it as --policy "
                        f"{d}, or export it first (edgerl export {d} --out {d / 'planner'})"
                    )
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
                f"(expects {PLANNER_SCHEMA_VERSION}); re-export with this edgerl version"
            )
        recorded = _require(spec, "content_sha256", str, where)
        if spec_digest(spec) != recorded:
            raise PlannerError(
                f"{where}: content checksum mismatch (content_sha256 records {recorded}, the "
                f"content hashes to {spec_digest(spec)}); the file was edited after export"
            )
        policy = _require(spec, "policy", dict, where)
        expected_sha = _require(policy, "sha256", str, f"{where}: policy")
        onnx_bytes = onnx_path.read_bytes()
        actual_sha = hashlib.sha256(onnx_bytes).hexdigest()
        if actual_sha != expected_sha:
            raise PlannerError(
                f"{onnx_path}: checksum mismatch (sha256 {actual_sha}, {SPEC_FILE} records "
                f"{expected_sha}); the file was modified or belongs to another export"
            )
        features, plans, mask = cls._parse_spec(spec, where)
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
        return cls(d, spec, features, plans, mask, session)

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

    def _raw_state(self, state: Mapping[str, Any]) -> np.ndarray:
        """The raw feature vector of ``state``, validated.

        The common case (exactly the spec's keys, every value a finite built-in ``float`` or
        ``int``) is checked inline into a preallocated buffer; anything else goes through
        :func:`edgerl.envs.observation.raw_from_mapping`, which accepts what it accepts (e.g.
        numpy scalars) and raises the error naming the field otherwise. Both give the same
        vector for a valid state.
        """
        names = self._names
        if len(state) == len(names):
            try:
                values = [state[k] for k in names]
            except KeyError:
                values = None
            if values is not None:
                isfinite = math.isfinite
                for v in values:
                    t = type(v)
                    if (t is not float and t is not int) or not isfinite(v) or v < 0:
                        break
                else:
                    raw = self._raw
                    raw[:] = values
                    return raw
        return raw_from_mapping(self.features, state)

    def observe(self, state: Mapping[str, Any]) -> np.ndarray:
        """The normalised observation :meth:`plan` feeds the graph for ``state`` (a copy).

        Raises:
            ObservationError: as :meth:`plan`.
        """
        return normalise(self._raw_state(state), self._inv_scales)

    def plan(self, state: Mapping[str, Any]) -> Plan:
        """The plan for one request, from raw measurements.

        The observation is built as the environment builds it:
        :func:`edgerl.envs.observation.normalise` of the raw vector in spec order.

        Args:
            state: every feature of ``planner.json``'s observation spec by name, in its raw
                unit (e.g. ``uplink_mbps`` in Mbit/s, ``deadline_ms`` in ms, one-hot
                ``app_<name>`` indicators); no other keys.

        Raises:
            ObservationError: a field is missing, unexpected, not a number (bools and strings
                are rejected), or not finite; the message names it.
        """
        raw = self._raw_state(state)
        if (raw < self._low).any() or (raw > self._high).any():
            self._warn_out_of_range(raw)
        self._obs[0] = normalise(raw, self._inv_scales)
        self._session.run_with_iobinding(self._binding)
        return self.plans[int(self._action[0])]

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
            stacklevel=3,
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
        n_feat = self._obs.shape[1]
        if obs.shape not in ((n_feat,), (1, n_feat)):
            raise PlannerError(
                f"observation has shape {obs.shape}, expected ({n_feat},) or (1, {n_feat}) "
                f"(features: {', '.join(self._names)})"
            )
        row = self._obs[0]
        row[:] = obs.reshape(n_feat)
        if not np.isfinite(row).all():
            raise PlannerError(f"observation has non-finite values: {obs.reshape(n_feat)}")
        if action_mask is None:
            self._mask[:] = self._static_row
        else:
            m = np.asarray(action_mask)
            n_act = self._mask.shape[1]
            if m.shape not in ((n_act,), (1, n_act)):
                raise PlannerError(
                    f"action_mask has shape {m.shape}, expected ({n_act},) or (1, {n_act})"
                )
            np.logical_and(m.reshape(1, n_act), self._static_row, out=self._mask)
            if not self._mask.any():
                raise PlannerError("action_mask (AND the static mask) allows no action")
        return int(self._session.run(self._outputs, self._feed_predict)[0][0])

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
            "policy_sha256": self.spec["policy"]["sha256"],
        }
