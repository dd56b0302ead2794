"""Baseline policies, each with the paper it comes from.

All share :class:`edgerl.agents.base.BasePolicy`: ``bind(env)`` reads what the policy may
know, ``predict(observation, action_mask)`` decides. Two kinds:

**Online baselines** (deployable): at ``bind`` they read only *static* scenario data (plan
catalogue, memory mask, profiles and the latency regressions fitted on them, link RTTs,
device and radio power); each decision uses only the observation of the pending request
(bandwidth estimates over the past window, backlogs, deadline). Device-only, edge-only,
cloud-only, random, Neurosurgeon, Edgent and the best fixed plan are of this kind.

**Clairvoyant greedy** (a reference, not deployable): reads the live simulator and asks
``sim.predict_outcome`` (true future bandwidth) for every feasible plan at every decision.

Shared conventions. The *reference variant* is ``fp32`` if the scenario offers it, else the
first listed variant; the *final exit* is that variant's deepest exit in the action menu;
baselines from the literature run at edge batch size 1 without the result cache (the
smallest batch size and ``none`` when offered; otherwise the closest offered value). Plans
the memory mask forbids are never chosen. Where a baseline's exact plan is not in the
catalogue (restricted menu, memory), the closest feasible plan is taken by the documented
rule of :func:`closest_plan` and ``describe()["exact"]`` is False.

Which knobs each baseline may turn, and why (reviewed for handicaps: a knob a baseline could
use by its own logic but was denied):

==================  ==================  ===========  ===========  ======  =====  ==============
baseline            variant             exit         cuts         batch   cache  knows
==================  ==================  ===========  ===========  ======  =====  ==============
device/edge/cloud   reference           final        one tier     1       none   nothing
neurosurgeon        reference           final        dev-edge     1       none   observation
edgent              all (accuracy lvl)  all          dev-edge     1       none   observation
edgent-fp32         reference           all          dev-edge     1       none   observation
edgent-dynamic      all (accuracy lvl)  all          dev-edge     1       none   obs + map
composite           cheapest in time    final        dev-edge     AIMD    LRU    observation
composite-triton    cheapest in time    final        dev-edge     Triton  LRU    observation
composite-rayserve  cheapest in time    final        dev-edge     <= 10   LRU    observation
proteus             all (MILP)          all          all          MILP    LRU    observation
best-fixed          all                 all          all          all     all    training runs
clairvoyant         all                 all          all          all     all    true future
oracle              all                 all          all          all     all    true future
==================  ==================  ===========  ===========  ======  =====  ==============

(``edgent-dynamic``, ``composite`` and its batching variants: :mod:`edgerl.agents.serving`;
``proteus``: :mod:`edgerl.agents.proteus`; ``oracle``: :mod:`edgerl.agents.oracle`.)

Neurosurgeon partitions one given model and has no accuracy notion: given the variants it
would always take the fastest, so it keeps the reference model. Edgent's right-sizing is
"maximal accuracy subject to the latency requirement", so every (variant, exit) of the
scenario is one of its accuracy levels (``edgent``; the single-model form is
``edgent-fp32``). Neither paper batches or caches, so both run at batch 1 without the cache;
the serving-side knobs (adaptive batching, result cache, load-aware variant choice) belong
to serving systems, not to these partitioners. Online baselines read only the observation:
the uplink and WAN backlogs they use as start delays are the *estimated* drain times of the
queued bytes at the past-window bandwidth (never the true future).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from edgerl.agents.base import BasePolicy, masked_argmax
from edgerl.agents.latency import (
    FitOn,
    LatencySource,
    ObservationDecoder,
    ObservedState,
    PlanCostModel,
)
from edgerl.envs.plans import Plan
from edgerl.envs.sim.build import ScenarioModel
from edgerl.envs.sim.whatif import Snapshot

Placement = Literal["device", "edge", "cloud"]


class UnknownBaselineError(KeyError):
    """No baseline of that name; the message lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- plan selection


def reference_variant(model: ScenarioModel) -> str:
    """``fp32`` if offered, else the first variant of the scenario (the "full model")."""
    variants = model.cfg.model.variants
    return "fp32" if "fp32" in variants else variants[0]


def literature_defaults(model: ScenarioModel) -> tuple[str, int, int, str]:
    """(reference variant, its final exit, smallest batch size, preferred cache policy)."""
    v = reference_variant(model)
    final_exit = max(p.exit_index for p in model.plans if p.variant == v)
    batch = min(p.batch_size for p in model.plans)
    caches = {p.cache_policy for p in model.plans}
    cache = "none" if "none" in caches else sorted(caches)[0]
    return v, final_exit, batch, cache


def _placement_distance(p: Plan, placement: Placement) -> int:
    """Units not where ``placement`` wants them (0 = exactly that placement)."""
    if placement == "device":
        return p.n_units - p.cut_edge
    if placement == "edge":
        return p.cut_edge + (p.n_units - p.cut_cloud)
    return p.cut_cloud  # cloud: every unit before the cloud cut runs elsewhere


def closest_plan(model: ScenarioModel, placement: Placement) -> tuple[Plan, bool]:
    """The feasible plan closest to "the full model, final exit, all on ``placement``".

    Closeness is lexicographic: first the placement (number of units running elsewhere),
    then variant (reference first), exit (final first, then the next deepest), batch size
    (smallest first), cache policy (``none`` first). Returns the plan and whether it is
    exactly the ideal one.
    """
    v, final_exit, batch, cache = literature_defaults(model)
    feasible = [p for p in model.plans if model.static_mask[p.index] and p.threshold is None]

    def key(p: Plan) -> tuple[int, int, int, int, int, int]:
        return (
            _placement_distance(p, placement),
            p.variant != v,
            final_exit - p.exit_index if p.variant == v else 0,
            -p.exit_index if p.variant != v else 0,
            p.batch_size != batch,
            p.cache_policy != cache,
        )

    best = min(feasible, key=key)
    return best, key(best) == (0, 0, 0, 0, 0, 0)


def preferred_subset(
    plans: Sequence[Plan], filters: Sequence[tuple[str, Callable[[Plan], bool]]]
) -> tuple[list[Plan], list[str]]:
    """Apply ``filters`` in order, skipping any that would leave no plan.

    Returns the remaining plans and the names of the skipped (relaxed) filters.
    """
    out, relaxed = list(plans), []
    for name, f in filters:
        kept = [p for p in out if f(p)]
        if kept:
            out = kept
        else:
            relaxed.append(name)
    return out, relaxed


# --------------------------------------------------------------------------- static baselines


class FixedPlanPolicy(BasePolicy):
    """Always the same plan (chosen at ``bind``)."""

    name = "fixed"

    def __init__(self, plan_index: int | None = None) -> None:
        super().__init__()
        self.plan_index = plan_index
        self.exact = True

    def _choose(self, model: ScenarioModel) -> int:
        if self.plan_index is None:
            raise ValueError("FixedPlanPolicy needs a plan_index")
        return self.plan_index

    def bind(self, env: Any) -> None:
        super().bind(env)
        self.plan_index = self._choose(self.env.model)
        if not self.env.model.static_mask[self.plan_index]:
            raise ValueError(
                f"{self.name}: plan {self.plan_index} ({self.env.plans[self.plan_index].name}) "
                "does not fit the memory limits of this scenario"
            )

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        if self.plan_index is None:
            raise RuntimeError(f"policy {self.name!r}: call bind(env) before predict()")
        return self.plan_index

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self._env is not None and self.plan_index is not None:
            d.update(plan=self.env.plans[self.plan_index].describe(), exact=self.exact)
        return d


class PlacementPolicy(FixedPlanPolicy):
    """Device-only, edge-only or cloud-only: the full model at its final exit on one tier.

    The classic single-tier reference points of the partitioning literature (e.g. the
    mobile-only and cloud-only status quo that Kang et al., Neurosurgeon, ASPLOS 2017,
    compare against); edge-only is the same with the edge server as the remote tier. Batch 1, no
    cache. If that plan is not in the catalogue or does not fit memory, the closest
    feasible plan (:func:`closest_plan`) is used and ``describe()["exact"]`` is False.
    """

    def __init__(self, placement: Placement) -> None:
        super().__init__()
        self.placement: Placement = placement
        self.name = f"{placement}-only"

    def _choose(self, model: ScenarioModel) -> int:
        plan, self.exact = closest_plan(model, self.placement)
        return plan.index


class RandomPolicy(BasePolicy):
    """Uniformly random among the feasible plans (the mask), from a seeded generator."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self._seed = seed
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(self._seed if seed is None else seed)

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        mask = action_mask if action_mask is not None else self.env.action_masks()
        return int(self._rng.choice(np.flatnonzero(mask)))


# --------------------------------------------------------------------------- model-based


class _CostModelPolicy(BasePolicy):
    """Shared set-up of the policies deciding from predicted costs (Neurosurgeon, Edgent)."""

    def __init__(self, latency_source: LatencySource = "regression", fit_on: FitOn = "hardware"):
        super().__init__()
        self.latency_source: LatencySource = latency_source
        self.fit_on: FitOn = fit_on
        self.costs: PlanCostModel | None = None
        self._decoder: ObservationDecoder | None = None
        self.relaxed: list[str] = []
        self._bound_model: ScenarioModel | None = None

    def bind(self, env: Any) -> None:
        super().bind(env)
        model = self.env.model
        if self._bound_model is not model:  # regressions are fitted once per scenario
            self.costs = PlanCostModel.from_scenario(model, self.latency_source, self.fit_on)
            self._bound_model = model
        self._decoder = ObservationDecoder(self.env.features)
        self._setup(model)

    def _setup(self, model: ScenarioModel) -> None:
        raise NotImplementedError

    def _filters(
        self,
        model: ScenarioModel,
        server: Literal["edge", "cloud"],
        final_only: bool,
        any_variant: bool = False,
    ) -> list[Plan]:
        v, final_exit, batch, cache = literature_defaults(model)
        two_tier = (
            (lambda p: p.cut_cloud == p.n_units)
            if server == "edge"
            else (lambda p: p.cut_edge == p.cut_cloud)
        )
        filters: list[tuple[str, Callable[[Plan], bool]]] = [
            # threshold rules are not in the papers' configuration spaces
            ("feasible", lambda p: bool(model.static_mask[p.index]) and p.threshold is None),
            ("variant", lambda p: any_variant or p.variant == v),
            (f"device-{server} only", two_tier),
            ("batch", lambda p: p.batch_size == batch),
            ("cache", lambda p: p.cache_policy == cache),
        ]
        if final_only:
            filters.insert(2, ("final exit", lambda p: p.exit_index == final_exit))
        plans, self.relaxed = preferred_subset(model.plans, filters)
        if "feasible" in self.relaxed:
            raise ValueError(f"{self.name}: no feasible plan in the scenario")
        return plans

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(latency_source=self.latency_source, fit_on=self.fit_on, relaxed=self.relaxed)
        if self.costs is not None:
            d["costs"] = self.costs.describe()
        return d


class NeurosurgeonPolicy(_CostModelPolicy):
    """Neurosurgeon: the latency- or energy-optimal partition point of the full model.

    Kang, Hauswald, Gao, Rovinski, Mudge, Mars, Tang: "Neurosurgeon: Collaborative
    Intelligence Between the Cloud and Mobile Edge", ASPLOS 2017. Per request, over every
    cut of the full model (reference variant, final exit) between the device and one
    server (the edge by default, ``server="cloud"`` for the paper's mobile-cloud set-up),
    it predicts the latency (or the device energy) from per-layer-type regression models
    (here :mod:`edgerl.profiles.regression` via :mod:`edgerl.agents.latency`) and the
    current bandwidth estimate, and takes the minimum. The observed device/uplink/edge
    backlogs enter the prediction as start delays (the paper likewise adapts its choice to
    the server's current load).
    """

    stateless = True  # each decision depends on the observation (or the simulator) alone

    def __init__(
        self,
        objective: Literal["latency", "energy"] = "latency",
        server: Literal["edge", "cloud"] = "edge",
        latency_source: LatencySource = "regression",
        fit_on: FitOn = "hardware",
    ) -> None:
        super().__init__(latency_source, fit_on)
        if objective not in ("latency", "energy"):
            raise ValueError(f"objective must be 'latency' or 'energy', got {objective!r}")
        self.objective = objective
        self.server: Literal["edge", "cloud"] = server
        self.name = "neurosurgeon" if objective == "latency" else "neurosurgeon-energy"
        self.candidates = np.zeros(0, dtype=np.intp)

    def _setup(self, model: ScenarioModel) -> None:
        plans = self._filters(model, self.server, final_only=True)
        self.candidates = np.array([p.index for p in plans], dtype=np.intp)

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        assert self.costs is not None and self._decoder is not None, "call bind(env) first"
        state = self._decoder.decode(observation)
        cand = self.candidates
        if self.objective == "latency":
            cost = self.costs.latency_s(cand, state)
        else:
            cost = self.costs.device_energy_j(cand, state)
        ok = action_mask[cand] if action_mask is not None else None
        return int(cand[masked_argmax(-cost, ok)])

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(objective=self.objective, server=self.server, n_candidates=len(self.candidates))
        return d


class EdgentPolicy(_CostModelPolicy):
    """Edgent: the most accurate (model, exit, partition) predicted to meet the deadline.

    Li, Zhou, Chen: "Edge AI: On-Demand Accelerating Deep Neural Network Inference via Edge
    Computing", IEEE Transactions on Wireless Communications 19(1), 2019. Its static-bandwidth
    configurator: per request, for each accuracy level from the most accurate down, find the
    device-edge partition with the smallest predicted latency (layer regressions + the
    current bandwidth estimate); return the first whose latency meets the request's deadline
    (the paper's "right-sizing": maximal accuracy subject to the latency requirement). When
    nothing can meet it, the paper returns no configuration; here the plan with the smallest
    predicted latency is taken, so every request is still served.

    Accuracy levels: with ``all_variants=True`` (the default, ``edgent``), every (variant,
    exit) of the scenario is a level, ordered by accuracy: the scenario's compressed variants
    (int8, reduced resolution, pruned) are right-sizing options just like earlier exits. With
    ``all_variants=False`` (``edgent-fp32``) only the exits of the reference variant count,
    the paper's single-model form.

    This is the paper's static configurator, re-run for every request with the observed
    bandwidth estimate and backlogs; its dynamic-bandwidth mode (an offline configuration map
    over bandwidth states with online change-point detection) is ``edgent-dynamic``
    (:class:`edgerl.agents.serving.EdgentDynamicPolicy`).
    """

    stateless = True  # each decision depends on the observation (or the simulator) alone

    name = "edgent"

    def __init__(
        self,
        latency_source: LatencySource = "regression",
        fit_on: FitOn = "hardware",
        all_variants: bool = True,
    ) -> None:
        super().__init__(latency_source, fit_on)
        self.all_variants = all_variants
        self.name = "edgent" if all_variants else "edgent-fp32"
        self.groups: list[np.ndarray] = []
        self.candidates = np.zeros(0, dtype=np.intp)
        self._group_of = np.zeros(0, dtype=np.intp)

    def _setup(self, model: ScenarioModel) -> None:
        plans = self._filters(model, "edge", final_only=False, any_variant=self.all_variants)
        accs = sorted({p.accuracy for p in plans}, reverse=True)
        groups = [[p.index for p in plans if p.accuracy == a] for a in accs]
        self.groups = [np.array(g, dtype=np.intp) for g in groups]
        self.candidates = np.concatenate(self.groups)
        self._group_of = np.concatenate(
            [np.full(len(g), i, dtype=np.intp) for i, g in enumerate(self.groups)]
        )

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        assert self.costs is not None and self._decoder is not None, "call bind(env) first"
        return self.choose(self._decoder.decode(observation), action_mask)

    def choose(self, state: ObservedState, action_mask: np.ndarray | None = None) -> int:
        """Edgent's configurator for one (observed or hypothetical) state."""
        assert self.costs is not None, "call bind(env) first"
        cand = self.candidates
        lat = self.costs.latency_s(cand, state)
        if action_mask is not None:
            lat = np.where(action_mask[cand], lat, np.inf)
        meets = lat <= state.deadline_s
        if meets.any():
            g = self._group_of[np.argmax(meets)]  # candidates are ordered by accuracy group
            in_g = np.where(self._group_of == g, lat, np.inf)
            return int(cand[int(np.argmin(in_g))])
        return int(cand[int(np.argmin(lat))])

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            n_candidates=len(self.candidates),
            n_accuracy_levels=len(self.groups),
            all_variants=self.all_variants,
        )
        return d


# --------------------------------------------------------------------------- search / oracle


class BestFixedPolicy(FixedPlanPolicy):
    """The single plan with the best mean utility on the *training* traces.

    Exhaustive search over every feasible plan (:mod:`edgerl.agents.best_fixed`), cached per
    scenario and search budget. A strong static baseline: what a careful operator would
    configure after measuring every option offline.
    """

    name = "best-fixed"

    def __init__(self, search: Any = None, cache_dir: str | Path | None = None) -> None:
        super().__init__()
        from edgerl.agents.best_fixed import SearchConfig

        self.search = search if search is not None else SearchConfig()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.result: Any = None

    def _choose(self, model: ScenarioModel) -> int:
        from edgerl.agents.best_fixed import search_best_fixed

        # searched on the training traces of the training scenario (an operator's offline
        # measurements), also when the episodes run on other traces
        self.result = search_best_fixed(self.training_scenario(), self.search, self.cache_dir)
        return int(self.result.best_index)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["search"] = asdict(self.search)
        if self.result is not None:
            d.update(
                search_wall_time_s=self.result.wall_time_s,
                complete=self.result.complete,
                cache_file=str(self.result.cache_file) if self.result.cache_file else None,
            )
        return d


class ClairvoyantGreedyPolicy(BasePolicy):
    """Per request, the feasible plan with the best utility given the true future.

    For every feasible plan it asks ``sim.predict_outcome(request, plan)``: a side-effect-free
    replay of every request in flight and this one with the *actual* bandwidth of the traces
    over the request's future (exact unless a request decided later overtakes this one).
    Greedy: it does not weigh the effect of its choice on later requests (queueing, cache
    contents). Not deployable; it is the reference the learned agents are measured against.
    """

    stateless = True  # each decision depends on the observation (or the simulator) alone

    name = "clairvoyant"

    def __init__(self) -> None:
        super().__init__()
        self._feasible = np.zeros(0, dtype=np.intp)

    def bind(self, env: Any) -> None:
        super().bind(env)
        self._feasible = np.flatnonzero(self.env.model.static_mask)

    def predict(
        self,
        observation: np.ndarray,
        action_mask: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> int:
        env = self.env
        sim, req = env.sim, env.pending_request
        if sim is None or req is None:
            raise RuntimeError("clairvoyant: no pending request (reset the env first)")
        plans = env.plans
        cand = self._feasible if action_mask is None else np.flatnonzero(action_mask)
        best, best_u = int(cand[0]), -np.inf
        snapshot = Snapshot(sim)  # the state in flight, shared by every plan's what-if
        for i in cand:
            u = sim.predict_outcome(req, plans[i], snapshot).utility
            if u > best_u:
                best, best_u = int(i), u
        return best


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class BaselineOptions:
    """Options a baseline may take (others are ignored by the baselines that do not)."""

    latency_source: LatencySource = "regression"
    fit_on: FitOn = "hardware"
    seed: int = 0
    search: Any = None  # edgerl.agents.best_fixed.SearchConfig
    cache_dir: str | None = None
    window_s: float = 2.0  # the hindsight oracle's window
    workers: int = 1  # the oracle's concurrent forks


@dataclass(frozen=True)
class BaselineSpec:
    factory: Callable[..., BasePolicy]
    summary: str
    deployable: bool = True
    paper: str = ""
    option_names: tuple[str, ...] = field(default=())
    expensive: bool = False  # minutes per episode: left out of the "all baselines" shortcut


def _spec(
    factory: Callable[..., BasePolicy],
    summary: str,
    deployable: bool = True,
    paper: str = "",
    expensive: bool = False,
) -> BaselineSpec:
    params = tuple(inspect.signature(factory).parameters)
    return BaselineSpec(factory, summary, deployable, paper, params, expensive)


BASELINES: dict[str, BaselineSpec] = {
    "device-only": _spec(
        lambda: PlacementPolicy("device"), "full model, final exit, all on device"
    ),
    "edge-only": _spec(lambda: PlacementPolicy("edge"), "raw input to the edge, full model there"),
    "cloud-only": _spec(lambda: PlacementPolicy("cloud"), "raw input to the cloud via the edge"),
    "random": _spec(lambda seed=0: RandomPolicy(seed), "uniform over feasible plans"),
    "neurosurgeon": _spec(
        lambda latency_source="regression", fit_on="hardware": NeurosurgeonPolicy(
            "latency", latency_source=latency_source, fit_on=fit_on
        ),
        "latency-optimal device-edge cut of the full model",
        paper="Kang et al., ASPLOS 2017",
    ),
    "neurosurgeon-energy": _spec(
        lambda latency_source="regression", fit_on="hardware": NeurosurgeonPolicy(
            "energy", latency_source=latency_source, fit_on=fit_on
        ),
        "device-energy-optimal device-edge cut of the full model",
        paper="Kang et al., ASPLOS 2017",
    ),
    "edgent": _spec(
        lambda latency_source="regression", fit_on="hardware": EdgentPolicy(
            latency_source=latency_source, fit_on=fit_on
        ),
        "most accurate variant/exit + cut predicted to meet the deadline (right-sizing)",
        paper="Li, Zhou, Chen, IEEE TWC 2019",
    ),
    "edgent-fp32": _spec(
        lambda latency_source="regression", fit_on="hardware": EdgentPolicy(
            latency_source=latency_source, fit_on=fit_on, all_variants=False
        ),
        "Edgent on the reference (fp32) model only: most accurate exit + cut",
        paper="Li, Zhou, Chen, IEEE TWC 2019",
    ),
    "edgent-dynamic": _spec(
        lambda latency_source="regression", fit_on="hardware": _serving().EdgentDynamicPolicy(
            latency_source=latency_source, fit_on=fit_on
        ),
        "Edgent's dynamic mode: offline bandwidth-state map + online change-point detection",
        paper="Li, Zeng, Zhou, Chen, IEEE TWC 2019",
    ),
    "composite": _spec(
        lambda latency_source="regression", fit_on="hardware": _serving().ServingCompositePolicy(
            latency_source=latency_source, fit_on=fit_on
        ),
        "INFaaS variant + Neurosurgeon cut + Clipper AIMD batch + LRU cache",
        paper="Romero et al. ATC 2021; Kang et al. ASPLOS 2017; Crankshaw et al. NSDI 2017",
    ),
    "composite-triton": _spec(
        lambda latency_source="regression", fit_on="hardware": _serving().TritonBatchingComposite(
            latency_source=latency_source, fit_on=fit_on
        ),
        "composite with Triton's default dynamic batcher (no added queue delay)",
        paper="NVIDIA Triton Inference Server user guide, Dynamic Batcher",
    ),
    "composite-rayserve": _spec(
        lambda latency_source="regression", fit_on="hardware": _serving().RayServeBatchingComposite(
            latency_source=latency_source, fit_on=fit_on
        ),
        "composite with Ray Serve's @serve.batch defaults (10 requests, 0.01 s)",
        paper="Ray Serve API reference, ray.serve.batch",
    ),
    "proteus": _spec(
        lambda latency_source="regression", fit_on="hardware": _proteus().ProteusPolicy(
            latency_source=latency_source, fit_on=fit_on
        ),
        "periodic MILP (HiGHS) over the plan catalogue, weighted routing, adaptive batching",
        paper="Ahmad et al., ASPLOS 2024",
    ),
    "best-fixed": _spec(
        lambda search=None, cache_dir=None: BestFixedPolicy(search, cache_dir),
        "best single plan on the training traces (exhaustive search)",
    ),
    "clairvoyant": _spec(
        ClairvoyantGreedyPolicy,
        "per request the best plan given the true future bandwidth",
        deployable=False,
    ),
    "oracle": _spec(
        lambda window_s=2.0, workers=1: _oracle().HindsightWindowOracle(
            window_s=window_s, workers=workers
        ),
        "per window the best single plan given the true future (simulator forks)",
        deployable=False,
        expensive=True,
    ),
}


def _serving() -> Any:
    from edgerl.agents import serving  # imports this module: resolved at call time

    return serving


def _proteus() -> Any:
    from edgerl.agents import proteus  # imports this module: resolved at call time

    return proteus


def _oracle() -> Any:
    from edgerl.agents import oracle

    return oracle


def list_baselines(include_expensive: bool = True) -> list[str]:
    """Baseline names; ``include_expensive=False`` leaves out the oracle (minutes/episode)."""
    return [n for n, spec in BASELINES.items() if include_expensive or not spec.expensive]


def make_baseline(name: str, options: BaselineOptions | None = None) -> BasePolicy:
    """A fresh (unbound) baseline by name; call ``bind(env)`` before ``predict``.

    Raises:
        UnknownBaselineError: ``name`` is not one of :func:`list_baselines`.
    """
    spec = BASELINES.get(name)
    if spec is None:
        raise UnknownBaselineError(
            f"unknown baseline {name!r}; valid baselines: {', '.join(BASELINES)}"
        )
    opts = options or BaselineOptions()
    kwargs = {f.name: getattr(opts, f.name) for f in fields(opts)}
    return spec.factory(**{k: v for k, v in kwargs.items() if k in spec.option_names})
