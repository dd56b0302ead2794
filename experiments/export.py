"""Export a trained SB3 policy to a runtime planner, and check the export against the original.

Reads a run directory (the contract of :mod:`edgerl.agents.rundir`: ``run.json``,
``scenario.yaml``, ``best_model.zip``, ``model.zip``) and writes the three-file artefact that
:class:`edgerl.agents.planner.Planner` loads (format in that module's docstring)::

    RUN_DIR/best_model.zip (or model.zip) --torch.onnx.export--> OUT/policy.onnx
                                          --layer weights------> OUT/policy_weights.bin
    run.json + scenario.yaml + plan catalogue + profiles ------> OUT/planner.json

Only the policy network is exported (SB3's export guide: ``docs/guide/export.md``); the
pre-processing (``clip(raw * (1 / scale), 0, OBS_CLIP)``) and post-processing (action index ->
plan) are stated in ``planner.json``. The deterministic action is computed inside the graph:
``argmax(where(action_mask, scores, -inf))`` with ``scores`` the actor logits (MaskablePPO,
PPO, A2C) or the Q-values (DQN). For MaskablePPO this is what ``model.predict(obs,
action_masks=m, deterministic=True)`` returns (its masked logits are ``-1e8`` instead of
``-inf``, its argmax is over softmax probabilities: both monotone, so the same index except
on float ties; :func:`parity_check` counts any difference).

The weights file holds the same network for the planner's numpy backend: the Linear layers
and activations the graph runs (:func:`network_layers`; SB3's ``MlpPolicy`` passes a
``Box`` observation through ``preprocess_obs`` (a float cast) and ``FlattenExtractor``
unchanged, so the layers see the observation as given).

Checks, all run by :func:`export_run`: the scenario YAML's sha256 equals ``run.json``'s
fingerprint; the SB3 model's spaces equal the scenario's (features, plans); ``onnx.checker``
(full check) on the graph; onnxruntime and the torch module agree on seeded probe inputs;
the written artefact loads with :meth:`Planner.load` on both backends, and both decide the
probe inputs as the torch module does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from edgerl.agents import rundir
from edgerl.agents.planner import (
    ACTION_OUTPUT,
    BACKENDS,
    BATCH_DIM,
    MASK_INPUT,
    OBS_INPUT,
    ONNX_IR_VERSION,
    ONNX_OPSET,
    PLANNER_KIND,
    PLANNER_SCHEMA_VERSION,
    POLICY_FILE,
    SPEC_FILE,
    WEIGHTS_BYTE_ORDER,
    WEIGHTS_DTYPE,
    WEIGHTS_FILE,
    Planner,
    spec_digest,
)
from edgerl.envs.config import ConfigError, load_scenario, scenario_from_dict
from edgerl.envs.observation import OBS_CLIP, spec_to_json

if TYPE_CHECKING:
    import torch
    from edgerl.agents.rundir import RunInfo
    from edgerl.envs.sim.build import ScenarioModel
    from stable_baselines3.common.base_class import BaseAlgorithm

#: ``--checkpoint`` choices (:meth:`edgerl.agents.rundir.RunInfo.model_path`: ``best`` falls
#: back to ``model.zip`` when the run has no ``best_model.zip``).
CHECKPOINTS = ("best", "final")
#: Seeded probe inputs on which onnxruntime must reproduce the torch module exactly.
N_PROBES = 2048
PROBE_SEED = 20240611
PROBE_KEEP_PROB = 0.5  # share of feasible actions kept in the random probe masks
#: Held-out observations the parity check compares by default (issue 6: at least 10,000).
DEFAULT_PARITY_OBSERVATIONS = 10_000


class ExportError(ValueError):
    """A run directory cannot be exported (the message names the file and field)."""


# ---------------------------------------------------------------------------- the run


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_run(run_dir: str | Path) -> RunInfo:
    """Read ``RUN_DIR/run.json`` (:func:`edgerl.agents.rundir.read_run`) and check what the
    export relies on beyond it.

    Raises:
        RunDirError: as :func:`edgerl.agents.rundir.read_run` (missing directory or file,
            corrupt JSON, missing field, unknown algorithm).
        ExportError: no ``scenario.yaml``, a ``scenario.yaml`` whose sha256 differs from
            ``run.json``'s ``scenario_fingerprint``, or VecNormalize statistics (the planner
            format has no place for them).
    """
    run = rundir.read_run(run_dir)
    scen = run.scenario_yaml()
    if not scen.is_file():
        raise ExportError(f"{scen}: missing (the run directory keeps the scenario it used)")
    actual = sha256_bytes(scen.read_bytes())
    if actual != run.scenario_fingerprint:
        raise ExportError(
            f"{scen}: sha256 {actual} differs from {rundir.RUN_JSON} scenario_fingerprint "
            f"{run.scenario_fingerprint} (edited after training?)"
        )
    stray = sorted(run.path.glob("vecnormalize*"))
    if stray:
        raise ExportError(
            f"{stray[0]}: observation normalisation statistics (VecNormalize) are not part of "
            "the planner format; export supports policies trained on the env's own observations"
        )
    return run


def scenario_model_for(run: RunInfo, model: ScenarioModel | None = None) -> ScenarioModel:
    """The scenario model of a run, built from its ``scenario.yaml`` and the shipped profiles.

    ``model`` lets a caller supply its own profiles (e.g. synthetic test profiles); it must
    decode from the same YAML (same :class:`ScenarioConfig` apart from the file path).

    Raises:
        ExportError: the YAML does not load, or ``model`` is of another scenario.
    """
    from edgerl.envs.sim.build import ScenarioModel

    scen = run.scenario_yaml()
    if model is None:
        try:
            return ScenarioModel.from_config(load_scenario(scen))
        except (ConfigError, ValueError) as exc:
            raise ExportError(f"{scen}: cannot build the scenario: {exc}") from exc
    try:
        cfg = scenario_from_dict(yaml.safe_load(scen.read_text(encoding="utf-8")))
    except (ConfigError, yaml.YAMLError) as exc:
        raise ExportError(f"{scen}: cannot decode the scenario: {exc}") from exc
    if cfg != dataclasses.replace(model.cfg, path=cfg.path):
        raise ExportError(f"{scen}: the supplied scenario model is not this run's scenario")
    return model


def load_sb3_model(run: RunInfo, checkpoint: str = "best") -> tuple[BaseAlgorithm, Path]:
    """Load the run's SB3 model on the CPU (training-side code only; the planner never does).

    Returns:
        The model and the checkpoint file it came from.
    """
    if checkpoint not in CHECKPOINTS:
        raise ExportError(f"checkpoint {checkpoint!r}: expected one of {CHECKPOINTS}")
    path = run.model_path(checkpoint)
    if run.algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        cls: Any = MaskablePPO
    else:
        import stable_baselines3 as sb3

        cls = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}[run.algo]
    try:
        return cls.load(path, device="cpu"), path
    except Exception as exc:  # SB3 raises many types for a corrupt zip
        raise ExportError(f"{path}: cannot load as {run.algo}: {exc}") from exc


# ---------------------------------------------------------------------------- the graph


def _greedy_module(sb3_model: BaseAlgorithm) -> torch.nn.Module:
    """The torch module exported to ONNX: (observation, action_mask) -> deterministic action."""
    import torch
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.dqn.policies import DQNPolicy

    policy = sb3_model.policy

    class GreedyMaskedPolicy(torch.nn.Module):
        """argmax over feasible actions of the policy's logits or Q-values."""

        def __init__(self) -> None:
            super().__init__()
            self.policy = policy

        def scores(self, obs: torch.Tensor) -> torch.Tensor:
            p: Any = self.policy
            if isinstance(p, DQNPolicy):
                return p.q_net(obs)
            feats = p.extract_features(obs, p.pi_features_extractor)
            return p.action_net(p.mlp_extractor.forward_actor(feats))

        def forward(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            s = self.scores(obs)
            s = torch.where(mask, s, torch.full_like(s, -math.inf))
            return torch.argmax(s, dim=1)

    if not isinstance(policy, DQNPolicy | ActorCriticPolicy | MaskableActorCriticPolicy):
        raise ExportError(f"unsupported SB3 policy class {type(policy).__name__}")
    return GreedyMaskedPolicy().eval()


def network_layers(sb3_model: BaseAlgorithm) -> tuple[list[dict[str, Any]], bytes, str]:
    """The policy network the planner's numpy backend runs: layer table, weights, scores.

    The modules are those :func:`_greedy_module` calls: ``q_net.q_net`` (DQN) or
    ``mlp_extractor.policy_net`` then ``action_net`` (actor-critic), after a
    ``FlattenExtractor`` (the identity on the env's flat observation).

    Returns:
        ``network.layers`` of ``planner.json`` (byte offsets into the weights), the weights
        file's bytes (little-endian float32: each linear layer's ``[out, in]`` weight then its
        bias; a layer without bias stores zeros) and ``network.scores``.

    Raises:
        ExportError: another features extractor, or a layer type the numpy forward pass does
            not implement.
    """
    import torch
    from stable_baselines3.common.torch_layers import FlattenExtractor
    from stable_baselines3.dqn.policies import DQNPolicy

    policy: Any = sb3_model.policy
    if isinstance(policy, DQNPolicy):
        extractor = policy.q_net.features_extractor
        modules = list(policy.q_net.q_net)
        scores = "q_values"
    else:
        extractor = policy.pi_features_extractor
        modules = [*policy.mlp_extractor.policy_net, policy.action_net]
        scores = "actor_logits"
    if type(extractor) is not FlattenExtractor:
        raise ExportError(
            f"features extractor {type(extractor).__name__}: the planner's numpy network "
            "supports SB3's FlattenExtractor (MlpPolicy) only"
        )
    dtype = np.dtype("<f4")
    layers: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    offset = 0
    for m in modules:
        if isinstance(m, torch.nn.Linear):
            weight = m.weight.detach().cpu().numpy().astype(dtype)
            bias = (
                m.bias.detach().cpu().numpy().astype(dtype)
                if m.bias is not None
                else np.zeros(m.out_features, dtype=dtype)
            )
            layers.append(
                {
                    "op": "linear",
                    "in_features": m.in_features,
                    "out_features": m.out_features,
                    "weight_offset_bytes": offset,
                    "bias_offset_bytes": offset + weight.nbytes,
                }
            )
            chunks += [weight.tobytes(order="C"), bias.tobytes()]
            offset += weight.nbytes + bias.nbytes
        elif isinstance(m, torch.nn.Tanh):
            layers.append({"op": "tanh"})
        elif isinstance(m, torch.nn.ReLU):
            layers.append({"op": "relu"})
        elif isinstance(m, torch.nn.ELU):
            layers.append({"op": "elu", "alpha": float(m.alpha)})
        elif isinstance(m, torch.nn.LeakyReLU):
            layers.append({"op": "leaky_relu", "negative_slope": float(m.negative_slope)})
        else:
            raise ExportError(
                f"policy layer {type(m).__name__}: the planner's numpy network implements "
                "Linear, Tanh, ReLU, ELU and LeakyReLU"
            )
    return layers, b"".join(chunks), scores


def _onnx_graph(module: torch.nn.Module, n_features: int, n_actions: int) -> bytes:
    """Export ``module`` with a dynamic batch dimension; returns the serialised ModelProto."""
    import onnx
    import torch

    obs = torch.zeros((2, n_features), dtype=torch.float32)
    mask = torch.ones((2, n_actions), dtype=torch.bool)
    batch = torch.export.Dim(BATCH_DIM)
    # The exporter logs a warning per torchvision op it cannot register (torchvision is not a
    # dependency and the policy uses none of them).
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Both dynamic dims share one symbol on purpose; the exporter says so, harmlessly.
            warnings.filterwarnings("ignore", message=".*axis name", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
            program = torch.onnx.export(
                module,
                (obs, mask),
                None,
                input_names=[OBS_INPUT, MASK_INPUT],
                output_names=[ACTION_OUTPUT],
                opset_version=ONNX_OPSET,
                dynamo=True,
                external_data=False,
                dynamic_shapes={"obs": {0: batch}, "mask": {0: batch}},
                verbose=False,
            )
    finally:
        registration_log.setLevel(level)
    assert program is not None
    proto = program.model_proto
    # Name the batch dimension the same everywhere (the exporter may pick its own symbol).
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    proto.ir_version = ONNX_IR_VERSION
    proto.doc_string = (
        "edgerl planner policy: action = argmax(where(action_mask, scores, -inf), axis=1); "
        "observation = clip(raw * (1 / scale), 0, clip) per planner.json"
    )
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise ExportError("the exported graph refers to external data; expected one file")
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def _probe_inputs(
    n_features: int, n_actions: int, static_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded observations over the whole box and masks (static, and random subsets of it)."""
    rng = np.random.default_rng(PROBE_SEED)
    obs = rng.uniform(0.0, OBS_CLIP, (N_PROBES, n_features)).astype(np.float32)
    obs[: N_PROBES // 4] = rng.uniform(0.0, 1.0, (N_PROBES // 4, n_features))  # typical range
    masks = np.repeat(static_mask[None, :], N_PROBES, axis=0)
    half = N_PROBES // 2
    masks[half:] &= rng.random((N_PROBES - half, n_actions)) < PROBE_KEEP_PROB
    masks[~masks.any(axis=1)] = static_mask
    return obs, masks


def _verify_graph(
    onnx_bytes: bytes, module: torch.nn.Module, n_features: int, static_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """onnxruntime and torch decide the probe inputs alike.

    Returns:
        The probe observations, masks and torch's actions on them.
    """
    import onnxruntime as ort
    import torch

    obs, masks = _probe_inputs(n_features, len(static_mask), static_mask)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = sess.run([ACTION_OUTPUT], {OBS_INPUT: obs, MASK_INPUT: masks})[0]
    with torch.no_grad():
        want = module(torch.as_tensor(obs), torch.as_tensor(masks)).numpy()
    bad = np.flatnonzero(got != want)
    if bad.size:
        raise ExportError(
            f"onnxruntime and torch disagree on {bad.size}/{N_PROBES} probe inputs "
            f"(first at probe {bad[0]}: {got[bad[0]]} vs {want[bad[0]]})"
        )
    return obs, masks, want


def _verify_backends(out: Path, obs: np.ndarray, masks: np.ndarray, want: np.ndarray) -> None:
    """The written artefact loads on every backend, which decides the probes as torch does."""
    for backend in BACKENDS:
        got = Planner.load(out, backend=backend).predict_batch(obs, masks)
        bad = np.flatnonzero(got != want)
        if bad.size:
            raise ExportError(
                f"{out}: the planner's {backend} backend and torch disagree on "
                f"{bad.size}/{len(want)} probe inputs (first at probe {bad[0]}: "
                f"{got[bad[0]]} vs {want[bad[0]]})"
            )


# ---------------------------------------------------------------------------- provenance


def profile_fingerprints(model: ScenarioModel) -> list[dict[str, Any]]:
    """sha256 of every layer profile the plan catalogue was built from.

    A profile loaded from a file is hashed as the file's bytes (its ``source`` is the path
    below ``profiles/data`` for shipped profiles); one built in memory (e.g. a synthetic test
    profile) as its canonical JSON (sorted keys, no spaces).
    """
    from edgerl.profiles import DATA_DIR

    out = []
    for tier in ("device", "edge", "cloud"):
        for variant, prof in sorted(getattr(model.profiles, tier).items()):
            p = Path(prof.path)
            if prof.path != "<memory>" and p.is_file():
                digest = sha256_bytes(p.read_bytes())
                shipped = p.resolve().is_relative_to(DATA_DIR.resolve())
                source = (
                    f"profiles/data/{p.resolve().relative_to(DATA_DIR.resolve())}"
                    if shipped
                    else str(p)
                )
            else:
                canon = json.dumps(prof.to_dict(), sort_keys=True, separators=(",", ":"))
                digest, source = sha256_bytes(canon.encode("utf-8")), "<memory> (canonical JSON)"
            out.append(
                {
                    "tier": tier,
                    "model": prof.model,
                    "variant": variant,
                    "hardware": prof.hardware.name,
                    "source": source,
                    "sha256": digest,
                }
            )
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in (
        "edgerl",
        "torch",
        "onnx",
        "onnxscript",
        "onnxruntime",
        "stable-baselines3",
        "sb3-contrib",
        "numpy",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# ---------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote.

    Attributes:
        out_dir: the artefact directory.
        policy_bytes: size of ``policy.onnx`` [bytes].
        weights_bytes: size of ``policy_weights.bin`` [bytes].
        artefact_bytes: size of the three files [bytes].
        sha256: sha256 of ``policy.onnx``.
        n_features: observation size F.
        n_actions: number of plans N.
    """

    out_dir: Path
    policy_bytes: int
    weights_bytes: int
    artefact_bytes: int
    sha256: str
    n_features: int
    n_actions: int


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str = "best",
    model: ScenarioModel | None = None,
) -> ExportResult:
    """Export ``RUN_DIR``'s policy to ``OUT_DIR``: ``policy.onnx``, ``policy_weights.bin``
    and ``planner.json``.

    Args:
        run_dir: a training run directory (``run.json``, ``scenario.yaml``, checkpoints).
        out_dir: created if missing; only the three artefact files are written.
        checkpoint: ``final`` (``model.zip``) or ``best`` (``best_model.zip``).
        model: the scenario model, if it cannot be rebuilt from ``scenario.yaml`` and the
            shipped profiles (tests with synthetic profiles); it is checked against the YAML.

    Raises:
        ExportError: an invalid run, mismatched spaces, or a graph that fails verification.
    """
    from edgerl.envs.observation import observation_features

    run = read_run(run_dir)
    scen = scenario_model_for(run, model)
    cfg = scen.cfg
    features = observation_features(
        [a.name for a in cfg.workload.apps],
        cfg.edge.queue_capacity,
        cfg.cloud.queue_capacity,
        max(a.deadline_ms for a in cfg.workload.apps),
    )
    n_feat, n_act = len(features), len(scen.plans)
    sb3_model, ckpt_path = load_sb3_model(run, checkpoint)
    obs_shape = getattr(sb3_model.observation_space, "shape", None)
    n_sb3 = getattr(sb3_model.action_space, "n", None)
    if obs_shape != (n_feat,) or n_sb3 != n_act:
        raise ExportError(
            f"{ckpt_path}: the policy has observation shape "
            f"{obs_shape} and {n_sb3} actions; scenario {cfg.name!r} has ({n_feat},) and {n_act}"
        )
    low, high, n_seen = training_range(scen, sb3_model, run.algo)
    module = _greedy_module(sb3_model)
    onnx_bytes = _onnx_graph(module, n_feat, n_act)
    static_mask = np.asarray(scen.static_mask, dtype=bool)
    probes = _verify_graph(onnx_bytes, module, n_feat, static_mask)
    layers, weights, scores = network_layers(sb3_model)
    digest = sha256_bytes(onnx_bytes)
    spec: dict[str, Any] = {
        "schema_version": PLANNER_SCHEMA_VERSION,
        "kind": PLANNER_KIND,
        "policy": {
            "file": POLICY_FILE,
            "sha256": digest,
            "bytes": len(onnx_bytes),
            "format": "ONNX",
            "opset": ONNX_OPSET,
            "ir_version": ONNX_IR_VERSION,
            "inputs": [
                {"name": OBS_INPUT, "dtype": "float32", "shape": [BATCH_DIM, n_feat]},
                {"name": MASK_INPUT, "dtype": "bool", "shape": [BATCH_DIM, n_act]},
            ],
            "outputs": [{"name": ACTION_OUTPUT, "dtype": "int64", "shape": [BATCH_DIM]}],
            "decision": (
                "action = argmax over a where action_mask[a] of scores[a], first index on ties; "
                + ("scores = Q-values" if run.algo == "dqn" else "scores = actor logits")
            ),
        },
        "network": {
            "file": WEIGHTS_FILE,
            "sha256": sha256_bytes(weights),
            "bytes": len(weights),
            "dtype": WEIGHTS_DTYPE,
            "byte_order": WEIGHTS_BYTE_ORDER,
            "scores": scores,
            "layers": layers,
            "formula": (
                "h = observation; for each layer: linear: h = h @ weight.T + bias (weight "
                "[out_features, in_features] row-major at weight_offset_bytes, bias at "
                "bias_offset_bytes); activation: h = act(h); scores = h; action = argmax over "
                "a where static_mask[a] (and the caller's mask) of scores[a], first index on ties"
            ),
        },
        "observation": {
            "features": spec_to_json(features),
            "clip": OBS_CLIP,
            "dtype": "float32",
            "formula": (
                "observation[i] = float32(min(max(raw[i] * (1 / features[i].scale), 0), clip)), "
                "computed in float64 (edgerl.envs.observation.normalise)"
            ),
            "training_range": {
                "low": low,
                "high": high,
                "decisions": n_seen,
                "source": (
                    "raw features over the exported policy's own decisions on the scenario's "
                    f"training traces (episode seeds 0..{TRAINING_RANGE_EPISODES - 1}); "
                    "Planner.plan warns on a state outside [low, high]"
                ),
            },
        },
        "actions": [p.describe() for p in scen.plans],
        "static_mask": [bool(m) for m in static_mask],
        "scenario": {
            "name": cfg.name,
            "source": run.scenario,
            "fingerprint_sha256": run.scenario_fingerprint,
        },
        "profiles": profile_fingerprints(scen),
        "training": {
            "run_id": run.run_id,
            "algo": run.algo,
            "seed": run.seed,
            "git_commit": run.data["git_commit"],
            "timesteps": run.data["timesteps"],
            "checkpoint": ckpt_path.name,
            "checkpoint_sha256": sha256_bytes(ckpt_path.read_bytes()),
        },
        "export": {
            "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "exporter": "torch.onnx.export (dynamo)",
            "versions": _versions(),
        },
    }
    spec["content_sha256"] = spec_digest(spec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / POLICY_FILE).write_bytes(onnx_bytes)
    (out / WEIGHTS_FILE).write_bytes(weights)
    text = json.dumps(spec, indent=2) + "\n"
    (out / SPEC_FILE).write_text(text, encoding="utf-8")
    _verify_backends(out, *probes)  # loads with the runtime's own checks, decides as torch
    return ExportResult(
        out_dir=out,
        policy_bytes=len(onnx_bytes),
        weights_bytes=len(weights),
        artefact_bytes=len(onnx_bytes) + len(weights) + len(text.encode("utf-8")),
        sha256=digest,
        n_features=n_feat,
        n_actions=n_act,
    )


# ---------------------------------------------------------------------------- parity


def sb3_deterministic_action(
    sb3_model: BaseAlgorithm, algo: str, obs: np.ndarray, mask: np.ndarray
) -> int:
    """The original policy's deterministic action under ``mask``, computed with SB3's code.

    MaskablePPO: ``model.predict(obs, action_masks=mask, deterministic=True)``. PPO, A2C and
    DQN have no masks in SB3: with an all-feasible mask their own ``model.predict``; otherwise
    the masked argmax of SB3's action probabilities (``policy.get_distribution``) or
    Q-values (``policy.q_net``).
    """
    import torch

    if algo == "maskable_ppo":
        action, _ = sb3_model.predict(obs, action_masks=mask, deterministic=True)  # type: ignore[call-arg]
        return int(action)
    if mask.all():
        action, _ = sb3_model.predict(obs, deterministic=True)
        return int(action)
    policy: Any = sb3_model.policy
    with torch.no_grad():
        t, _ = policy.obs_to_tensor(obs)
        scores = policy.q_net(t) if algo == "dqn" else policy.get_distribution(t).distribution.probs
    s = scores.numpy().reshape(-1)
    return int(np.argmax(np.where(mask, s, -np.inf)))


@dataclass(frozen=True)
class ParityReport:
    """Planner vs SB3 on held-out observations.

    Attributes:
        n_observations: observations compared.
        n_episodes: held-out episodes they came from.
        n_equal_predict: ``Planner.predict(obs, mask)`` equal to SB3's action.
        n_equal_plan: ``Planner.plan(raw_state)`` (numpy backend) equal to SB3's action.
        n_equal_plan_onnx: the same with the ``onnx`` backend.
        n_obs_identical: observations the planner built from the raw state that equal the
            env's observation bit for bit.
        mismatches: up to 10 ``(observation index, sb3 action, planner action)`` triples.
        n_distinct_actions: distinct plans SB3 chose (a policy that always picks one plan
            makes a weak parity test).
    """

    n_observations: int
    n_episodes: int
    n_equal_predict: int
    n_equal_plan: int
    n_equal_plan_onnx: int
    n_obs_identical: int
    mismatches: tuple[tuple[int, int, int], ...]
    n_distinct_actions: int

    @property
    def ok(self) -> bool:
        n = self.n_observations
        return (
            self.n_equal_predict == n
            and self.n_equal_plan == n
            and self.n_equal_plan_onnx == n
            and self.n_obs_identical == n
        )


#: Training-split episodes rolled out at export to record each feature's training range.
TRAINING_RANGE_EPISODES = 3


def training_range(
    scen: ScenarioModel, sb3_model: Any, algo: str
) -> tuple[list[float], list[float], int]:
    """Per-feature (low, high) of the raw state over the policy's own decisions on the
    training traces, and how many decisions that is."""
    from edgerl.envs.env import CollabInferenceEnv

    env = CollabInferenceEnv(scen, split="train")
    rows = []
    for episode in range(TRAINING_RANGE_EPISODES):
        obs, _ = env.reset(seed=episode)
        truncated = False
        while not truncated:
            rows.append(env.raw_state())
            a = sb3_deterministic_action(sb3_model, algo, obs, env.action_masks())
            obs, _, _, truncated, _ = env.step(a)
    raw = np.array(rows)
    return raw.min(axis=0).tolist(), raw.max(axis=0).tolist(), len(rows)


def parity_check(
    run_dir: str | Path,
    planner_dir: str | Path,
    n_observations: int = DEFAULT_PARITY_OBSERVATIONS,
    *,
    seed: int = 0,
    checkpoint: str = "best",
    model: ScenarioModel | None = None,
) -> ParityReport:
    """Compare planner and SB3 policy on held-out (``split="eval"``) episodes.

    Episodes are seeded ``seed, seed + 1, ...`` and driven by the SB3 policy's actions, so the
    observations are the ones the trained policy meets; each one is decided four ways: by
    SB3, by ``Planner.predict`` on the env's observation and by ``Planner.plan`` on the env's
    raw state (the runtime path) with the numpy and the onnx backend.
    """
    from edgerl.envs.env import CollabInferenceEnv

    run = read_run(run_dir)
    scen = scenario_model_for(run, model)
    sb3_model, _ = load_sb3_model(run, checkpoint)
    planner = Planner.load(planner_dir)
    planner_onnx = Planner.load(planner_dir, backend="onnx")
    env = CollabInferenceEnv(scen, split="eval")
    planner.bind(env)
    n = eq_pred = eq_plan = eq_onnx = same_obs = episodes = 0
    mismatches: list[tuple[int, int, int]] = []
    chosen: set[int] = set()
    while n < n_observations:
        obs, _ = env.reset(seed=seed + episodes)
        episodes += 1
        truncated = False
        while not truncated and n < n_observations:
            mask = env.action_masks()
            a_ref = sb3_deterministic_action(sb3_model, run.algo, obs, mask)
            chosen.add(a_ref)
            a_pred = planner.predict(obs, mask)
            state = env.raw_state_dict()
            a_plan = planner.plan(state).index
            a_onnx = planner_onnx.plan(state).index
            same_obs += bool(np.array_equal(planner.observe(state), obs))
            eq_pred += a_pred == a_ref
            eq_plan += a_plan == a_ref
            eq_onnx += a_onnx == a_ref
            wrong = [a for a in (a_plan, a_onnx, a_pred) if a != a_ref]
            if wrong and len(mismatches) < 10:  # noqa: PLR2004
                mismatches.append((n, a_ref, wrong[0]))
            n += 1
            obs, _, _, truncated, _ = env.step(a_ref)
    return ParityReport(
        n, episodes, eq_pred, eq_plan, eq_onnx, same_obs, tuple(mismatches), len(chosen)
    )


#: Metrics that measure the policy's wall time, not its decisions (excluded from agreement).
TIMING_METRICS = ("decision_time_us",)


@dataclass(frozen=True)
class RolloutComparison:
    """The run's policy as ``edgerl evaluate RUN_DIR`` loads it
    (:func:`edgerl.agents.learned.load_run_policy`) and the planner as ``edgerl evaluate
    planner:DIR`` loads it, both evaluated by :func:`edgerl.agents.evaluation.evaluate` with
    the same seeds on the held-out traces.

    Attributes:
        n_episodes: episodes per policy.
        n_decisions: decisions per policy (summed over episodes).
        identical_actions: every episode's decision sequence equal.
        identical_metrics: every per-episode metric (except :data:`TIMING_METRICS`) equal,
            NaN equal to NaN.
        metrics_sb3: mean of each metric over episodes, SB3.
        metrics_planner: the same, planner.
    """

    n_episodes: int
    n_decisions: int
    identical_actions: bool
    identical_metrics: bool
    metrics_sb3: dict[str, float]
    metrics_planner: dict[str, float]


def compare_rollouts(
    run_dir: str | Path,
    planner_dir: str | Path,
    n_episodes: int = 5,
    *,
    seed: int = 0,
    checkpoint: str = "best",
    model: ScenarioModel | None = None,
) -> RolloutComparison:
    """Evaluate the SB3 policy and the planner on the same held-out episodes and compare."""
    from edgerl.agents.evaluation import evaluate
    from edgerl.agents.learned import load_run_policy

    run = read_run(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise ExportError(f"checkpoint {checkpoint!r}: expected one of {CHECKPOINTS}")
    scen = scenario_model_for(run, model)
    sb3_policy = load_run_policy(run.path, checkpoint)
    planner = Planner.load(planner_dir)
    evals = {
        "sb3": evaluate(scen, sb3_policy, [seed], n_episodes),
        "planner": evaluate(scen, planner, [seed], n_episodes),
    }
    logs = {k: e.all_logs() for k, e in evals.items()}
    metrics = {k: e.metrics() for k, e in evals.items()}
    same_actions = all(
        np.array_equal(a.decision_plan, b.decision_plan)
        for a, b in zip(logs["sb3"], logs["planner"], strict=True)
    )
    same_metrics = all(
        np.array_equal(
            metrics["sb3"][k]["per_unit"], metrics["planner"][k]["per_unit"], equal_nan=True
        )
        for k in metrics["sb3"]
        if k not in TIMING_METRICS
    )
    means = {w: {k: float(v["mean"]) for k, v in m.items()} for w, m in metrics.items()}
    return RolloutComparison(
        n_episodes,
        sum(lg.n_decisions for lg in logs["sb3"]),
        same_actions,
        same_metrics,
        means["sb3"],
        means["planner"],
    )


# ---------------------------------------------------------------------------- demo hook


def example_state(model: ScenarioModel, seed: int = 0) -> dict[str, float]:
    """The raw state of the first request of a held-out episode (an input for ``plan``)."""
    from edgerl.envs.env import CollabInferenceEnv

    env = CollabInferenceEnv(model, split="eval")
    env.reset(seed=seed)
    return env.raw_state_dict()


def export_and_show(run_dir: str | Path, parity_observations: int = 1_000) -> None:
    """Export ``RUN_DIR``'s final policy to ``RUN_DIR/planner`` and print one example plan
    (what ``edgerl demo`` ends with); also a quick parity check on held-out observations."""
    run_dir = Path(run_dir)
    out = run_dir / "planner"
    res = export_run(run_dir, out)
    print(f"exported planner -> {out}")
    print(
        f"exported planner -> {out} ({res.policy_bytes:,} B policy.onnx, "
        f"{res.weights_bytes:,} B policy_weights.bin, {res.artefact_bytes:,} B in total; "
        f"{res.n_features} features, {res.n_actions} plans)"
    )
    if parity_observations > 0:
        rep = parity_check(run_dir, out, parity_observations)
        print(
            f"parity on {rep.n_observations:,} held-out observations: planner == SB3 on "
            f"{rep.n_equal_plan:,} (plan) / {rep.n_equal_predict:,} (predict)"
        )
    planner = Planner.load(out)
    state = example_state(scenario_model_for(read_run(run_dir)))
    plan = planner.plan(state)
    print("example request state (held-out episode, seed 0):", json.dumps(state, indent=2))
    print("plan:", json.dumps(plan.to_dict(), indent=2))
