"""What every role derives from (scenario, overrides, seed, split): the same episode the
simulator would run, plus the inputs, the policy and the device's observation.

:func:`build_setup` builds the scenario's simulator for the seed (without running it) and
takes from it what the simulator would use: the bandwidth source of every link (trace and
start offset, drawn from the seed's ``traces`` stream), what each input id stands for (the
``content`` stream) and the device's arrival stream, which :func:`arrivals` replays in the
simulator's own order of draws (gap, application, input id). So a runtime run and a simulator
episode of the same seed see the same arrivals, inputs and traces (``tests/test_runtime.py``).

Inputs: where the model has an accuracy table, input id ``i`` is the CIFAR-10 test image the
simulator maps it to, read from ``--data DIR`` (the JPEG copy; never shipped) and checked
against the table's recorded order. Without the data set (e.g. in CI) every input is a
seeded **synthetic** uint8 tensor of the model's input shape, labelled ``synthetic`` in every
log record, and correctness is not judged (``correct`` is ``null``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgerl.envs.config import ScenarioConfig, load_scenario
from edgerl.envs.observation import Feature, feature_scales, normalise, observation_features
from edgerl.envs.sim.build import ScenarioModel, build_simulator
from edgerl.envs.sim.network import BandwidthSource
from edgerl.envs.sim.workload import interarrival_times
from edgerl.profiles import cifar_data, zoo

INPUT_CIFAR = "cifar10-test"
INPUT_SYNTHETIC = "synthetic"


class SetupError(ValueError):
    """The run cannot be set up (names the option or file)."""


@dataclass(frozen=True)
class Arrival:
    """One request of the workload (times in trace seconds from the run's epoch)."""

    request_id: int
    time_s: float
    device: int
    app: int
    app_name: str
    input_id: int
    image: int  # test-image index (or the synthetic input's index)
    deadline_ms: float


@dataclass(frozen=True)
class Links:
    """The bandwidth sources of one device's links and the WAN (as the simulator draws them)."""

    uplink: BandwidthSource
    downlink: BandwidthSource
    wan: BandwidthSource
    access_one_way_s: float
    wan_one_way_s: float


@dataclass(frozen=True)
class Setup:
    """Everything a role needs about the run."""

    cfg: ScenarioConfig
    model: ScenarioModel
    seed: int
    split: str
    links: tuple[Links, ...]  # per device
    image_of: tuple[int, ...]  # input id -> test image (empty: latent inputs)
    features: tuple[Feature, ...]

    @property
    def n_devices(self) -> int:
        return self.cfg.devices.count


def load_config(scenario: str, overrides: Sequence[str] = ()) -> ScenarioConfig:
    return load_scenario(scenario, list(overrides))


def build_setup(scenario: str, overrides: Sequence[str], seed: int, split: str = "eval") -> Setup:
    """The run's scenario model, links and input mapping for ``seed`` (no simulation)."""
    if split not in ("train", "eval"):
        raise SetupError(f"--split must be 'train' or 'eval', got {split!r}")
    cfg = load_config(scenario, overrides)
    model = ScenarioModel.from_config(cfg)
    sim = build_simulator(model, seed, split)
    net = cfg.network
    links = tuple(
        Links(
            uplink=d.uplink.bandwidth,
            downlink=d.downlink.bandwidth,
            wan=sim.wan_up.bandwidth,
            access_one_way_s=net.access_rtt_ms / 2e3,
            wan_one_way_s=net.wan_rtt_ms / 2e3,
        )
        for d in sim.devices
    )
    feats = observation_features(
        [a.name for a in cfg.workload.apps],
        cfg.edge.queue_capacity,
        cfg.cloud.queue_capacity,
        max(a.deadline_ms for a in cfg.workload.apps),
    )
    return Setup(cfg, model, seed, split, links, tuple(sim.image_of), tuple(feats))


def arrivals(setup: Setup, device: int, duration_s: float) -> list[Arrival]:
    """Device ``device``'s requests over ``[0, duration_s)``, drawn as the simulator draws them.

    The generator is the one the simulator's arrival process of that device uses (same seed),
    and every arrival draws gap, application and input id in the simulator's order.
    """
    cfg = setup.cfg
    if not 0 <= device < cfg.devices.count:
        raise SetupError(f"--device {device}: the scenario has {cfg.devices.count} device(s)")
    sim = build_simulator(setup.model, setup.seed, setup.split)
    rng = sim.streams.arrivals[device]
    out: list[Arrival] = []
    t = 0.0
    n_catalogue = cfg.workload.catalogue_size
    for gap in interarrival_times(cfg.workload.arrival, rng):
        if t + gap >= duration_s:
            break
        t += gap
        app = sim.apps.draw(rng)
        input_id = sim.popularity.draw(rng)
        image = setup.image_of[input_id] if setup.image_of else input_id % n_catalogue
        out.append(
            Arrival(
                request_id=(device << 32) | len(out),
                time_s=t,
                device=device,
                app=app,
                app_name=cfg.workload.apps[app].name,
                input_id=input_id,
                image=image,
                deadline_ms=cfg.workload.apps[app].deadline_ms,
            )
        )
    return out


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Inputs:
    """The images requests carry: real CIFAR-10 test images or labelled synthetic tensors."""

    source: str  # INPUT_CIFAR or INPUT_SYNTHETIC
    images: dict[int, np.ndarray]  # image index -> uint8 (C, H, W)
    labels: dict[int, int]  # image index -> class (real images only)
    note: str


def load_inputs(setup: Setup, needed: Sequence[int], data_dir: str | None, seed: int) -> Inputs:
    """The images of ``needed`` indices: CIFAR-10 test images where possible, else synthetic.

    Real images need a model with an accuracy table (the CIFAR-10 families) and ``data_dir``
    holding the JPEG copy whose order matches the table (its ``order_sha256``); a directory
    that is given but does not match is an error, a missing data set falls back to synthetic
    inputs (said in ``note`` and in every log record).
    """
    spec = zoo.get_spec(setup.cfg.model.name)
    shape = spec.input_shape(setup.cfg.model.variants[0])
    reason = ""
    if not spec.shipped_weights:
        reason = f"{spec.name} has no accuracy table (random weights)"
    elif data_dir is None:
        reason = "no --data DIR given"
    else:
        try:
            cifar_data.locate(data_dir, "test")
        except cifar_data.CifarDataError as exc:
            reason = str(exc)
    if not reason and data_dir is not None:
        from edgerl.profiles.accuracy import load_accuracy_table

        table = load_accuracy_table(spec.name)
        split = cifar_data.load_split(data_dir, "test")
        want = table.metadata.get("test_set", {}).get("order_sha256")
        if split.order_sha256 != want:
            raise SetupError(
                f"--data {data_dir}: the test images' order (sha256 {split.order_sha256[:12]}) "
                f"differs from the accuracy table {table.path} ({str(want)[:12]})"
            )
        images = {i: split.images[i].transpose(2, 0, 1).copy() for i in set(needed)}
        labels = {i: int(split.labels[i]) for i in set(needed)}
        return Inputs(INPUT_CIFAR, images, labels, f"CIFAR-10 test images from {data_dir}")
    rng_images = {}
    for i in sorted(set(needed)):
        rng = np.random.default_rng([seed, i])
        rng_images[i] = rng.integers(0, 256, size=shape, dtype=np.uint8)
    return Inputs(INPUT_SYNTHETIC, rng_images, {}, f"SYNTHETIC uint8 inputs ({reason})")


# ----------------------------------------------------------------------------- observation


@dataclass
class EdgeReport:
    """The edge's state as it last reported it (piggybacked on its replies)."""

    values: dict[str, float]

    @classmethod
    def empty(cls) -> EdgeReport:
        return cls({k: 0.0 for k in EDGE_REPORT_KEYS})


#: Observation features the edge reports (the rest the device measures itself).
EDGE_REPORT_KEYS = (
    "wan_mbps",
    "edge_queue_len",
    "edge_backlog_ms",
    "edge_batch_waiting",
    "cloud_queue_len",
    "wan_queue_kb",
    "wan_drain_est_ms",
    "edge_batch_ms",
    "cache_hit_rate",
    "cache_fill",
)


def observation(setup: Setup, raw: dict[str, float]) -> np.ndarray:
    """The normalised observation of a raw state (the environment's own normalisation)."""
    missing = [f.name for f in setup.features if f.name not in raw]
    if missing:
        raise SetupError(f"observation: raw state lacks {missing}")
    vec = np.array([raw[f.name] for f in setup.features], dtype=np.float64)
    return normalise(vec, 1.0 / feature_scales(setup.features))


# ----------------------------------------------------------------------------- policies


@dataclass
class PolicyHandle:
    """A policy behind the shared ``predict`` interface, with its label."""

    label: str
    policy: Any


def load_policy(spec: str, setup: Setup) -> PolicyHandle:
    """``planner:DIR``, ``baseline:NAME`` or ``fixed:INDEX``, bound to the scenario.

    Raises:
        SetupError: an unknown kind, or a planner whose catalogue differs from the scenario's.
    """
    if spec.startswith("planner:"):
        from edgerl.agents.planner import Planner, PlannerError

        path = Path(spec[len("planner:") :])
        try:
            planner = Planner.load(path)
        except PlannerError as exc:
            raise SetupError(f"--policy {spec}: {exc}") from exc
        _check_planner(planner, setup, spec)
        return PolicyHandle(planner.name, planner)
    if spec.startswith(("baseline:", "fixed:")):
        from edgerl.agents.baselines import (
            FixedPlanPolicy,
            UnknownBaselineError,
            make_baseline,
        )
        from edgerl.envs.env import CollabInferenceEnv

        env = CollabInferenceEnv(setup.model, split=setup.split)
        if spec.startswith("fixed:"):
            raw = spec[len("fixed:") :]
            if not raw.isdigit() or int(raw) >= len(setup.model.plans):
                raise SetupError(
                    f"--policy {spec}: expected fixed:INDEX with INDEX in "
                    f"0..{len(setup.model.plans) - 1}"
                )
            pol: Any = FixedPlanPolicy(int(raw))
            label = f"fixed:{setup.model.plans[int(raw)].name}"
        else:
            try:
                pol = make_baseline(spec[len("baseline:") :])
            except UnknownBaselineError as exc:
                raise SetupError(f"--policy {spec}: {exc}") from exc
            label = spec
        try:
            pol.bind(env)
        except ValueError as exc:
            raise SetupError(f"--policy {spec}: {exc}") from exc
        return PolicyHandle(label, pol)
    raise SetupError(f"--policy {spec}: expected planner:DIR, baseline:NAME or fixed:INDEX")


def _check_planner(planner: Any, setup: Setup, spec: str) -> None:
    ours = [(f.name, f.unit, f.scale) for f in setup.features]
    theirs = [(f.name, f.unit, f.scale) for f in planner.features]
    if ours != theirs:
        raise SetupError(f"--policy {spec}: the planner's observation spec differs from the run's")
    names = [p.name for p in planner.plans]
    if names != [p.name for p in setup.model.plans]:
        raise SetupError(
            f"--policy {spec}: the planner's plan catalogue differs from scenario "
            f"{setup.cfg.name} with these overrides (export it from a run of this scenario)"
        )
