"""The runtime: real segments, the roles in one event loop, bad clients, a killed edge.

Every test here runs the CIFAR-10 B-AlexNet (fp32, shipped weights) on synthetic inputs (the
data set is not needed) with one torch thread; the multi-process runs are in the slow tests
at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from edgerl.runtime import frames as fr
from edgerl.runtime.device import DeviceClient
from edgerl.runtime.frames import Frame, Kind
from edgerl.runtime.segments import ModelStore, PlanSpec, run_segment
from edgerl.runtime.servers import CloudServer, EdgeServer
from edgerl.runtime.workload import (
    PolicyHandle,
    Setup,
    arrivals,
    build_setup,
    load_inputs,
    load_policy,
)

OVERRIDES = (
    "model.variants=[fp32]",
    "action_menu.tiers=[device,edge,cloud]",
    "action_menu.batch_sizes=[1,4]",
    "action_menu.cache_policies=[none,lru]",
    "edge.cache_capacity=8",
    "edge.max_batch_wait_ms=30",
    "workload.arrival.rate_per_s=40",
    "workload.catalogue_size=4",  # repeated inputs: the cache gets hits
)


@pytest.fixture(scope="module")
def setup() -> Setup:
    torch.set_num_threads(1)
    return build_setup("edgent-rpi", OVERRIDES, seed=3)


@pytest.fixture(scope="module")
def store() -> ModelStore:
    s = ModelStore("balexnet_c10")
    s.net("fp32")
    return s


def find_plan(setup: Setup, **want: Any) -> int:
    for p in setup.model.plans:
        if all(getattr(p, k) == v for k, v in want.items()):
            return p.index
    raise AssertionError(f"no plan with {want}")


class Cycle:
    """A policy cycling through given plans (the shared predict interface)."""

    name = "cycle"

    def __init__(self, plans: Sequence[int]) -> None:
        self.plans, self.i = list(plans), 0

    def predict(
        self, observation: np.ndarray, action_mask: Any = None, deterministic: bool = True
    ) -> int:
        self.i += 1
        return self.plans[(self.i - 1) % len(self.plans)]


def test_workload_and_links_are_the_simulators_episode(setup: Setup) -> None:
    """Same seed: the simulator's arrivals (times, apps, inputs, images) and traces."""
    from edgerl.envs.sim.build import build_simulator

    sim = build_simulator(setup.model, setup.seed, setup.split)
    seen = []
    while (req := sim.next_decision()) is not None and req.arrival_s < 2.0:
        if req.device == 0:
            seen.append((req.arrival_s, req.app, req.input_id, sim.image_of[req.input_id]))
        sim.apply(0)
    ours = [(a.time_s, a.app, a.input_id, a.image) for a in arrivals(setup, 0, 2.0)]
    assert len(ours) > 30
    assert [s[1:] for s in seen] == [o[1:] for o in ours]
    np.testing.assert_allclose([s[0] for s in seen], [o[0] for o in ours], rtol=0, atol=1e-9)
    up = sim.devices[0].uplink.bandwidth
    for t in (0.0, 0.7, 5.3, 60.0):
        assert setup.links[0].uplink.mbps_at(t) == up.mbps_at(t)


# ---- segments ---------------------------------------------------------------------------


def test_split_execution_equals_the_whole_network(store: ModelStore) -> None:
    net = store.net("fp32")
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        want = net(x.float() / 255)[-1].argmax(1).tolist()
    n = len(net.units)
    for c_edge in range(n + 1):
        for c_cloud in sorted({c_edge, (c_edge + n + 1) // 2, n}):
            plan = PlanSpec(0, "fp32", len(net.exits) - 1, n, c_edge, c_cloud, 1, "none")
            h: torch.Tensor | None = x
            answers: list[Any] = [None] * 3
            for tier in ("device", "edge", "cloud"):
                if h is None:
                    break
                got, h = run_segment(store, plan, tier, h)
                answers = [a or b for a, b in zip(answers, got, strict=True)]
            assert [a.prediction for a in answers] == want, (c_edge, c_cloud)


def test_threshold_rule_leaves_early_and_sends_nothing(store: ModelStore) -> None:
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    # tau = 1e-9: every input leaves at the first rule exit (after unit 0), on the device
    plan = PlanSpec(0, "fp32", 4, 7, 3, 7, 1, "none", threshold=1e-9, rule_exits=(0, 4))
    answers, rest = run_segment(store, plan, "device", x)
    assert rest is None and all(a is not None and a.exit == 0 for a in answers)
    plan1 = PlanSpec(0, "fp32", 4, 7, 3, 7, 1, "none", threshold=1.0, rule_exits=(0, 4))
    answers, rest = run_segment(store, plan1, "device", x)  # nobody is that sure: goes on
    assert rest is not None and rest.shape[0] == sum(a is None for a in answers)


def test_plan_from_frame_is_validated(store: ModelStore) -> None:
    good = PlanSpec(1, "fp32", 4, 7, 2, 5, 1, "none").to_json()
    assert PlanSpec.from_json(good, store.spec).cut_cloud == 5
    from edgerl.runtime.segments import PlanError

    for key, bad in (("cut_edge", 6), ("variant", "fp64"), ("n_units", 3), ("exit", True)):
        with pytest.raises(PlanError, match=r"meta\.plan"):
            PlanSpec.from_json({**good, key: bad}, store.spec)


# ---- the roles in one event loop ----------------------------------------------------------


async def _servers(
    setup: Setup, store: ModelStore
) -> tuple[EdgeServer, CloudServer, asyncio.Server, asyncio.Server, list[asyncio.StreamWriter]]:
    cloud = CloudServer(setup, store)
    cs = await asyncio.start_server(cloud.handle, "127.0.0.1", 0)
    edge = EdgeServer(setup, store, ("127.0.0.1", cs.sockets[0].getsockname()[1]))
    writers: list[asyncio.StreamWriter] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)
        await edge.handle(r, w)

    es = await asyncio.start_server(handle, "127.0.0.1", 0)
    return edge, cloud, es, cs, writers


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def _client(setup: Setup, store: ModelStore, policy: Any, port: int, work: list) -> DeviceClient:
    inputs = load_inputs(setup, [a.image for a in work], None, setup.seed)
    return DeviceClient(setup, store, PolicyHandle("test", policy), inputs, 0,
                        ("127.0.0.1", port), timeout_s=5.0)  # fmt: skip


def test_every_kind_of_plan_runs_and_accounts(setup: Setup, store: ModelStore) -> None:
    n = 7
    plans = [
        find_plan(setup, cut_edge=n, cut_cloud=n, exit_index=4, threshold=None),  # device only
        find_plan(
            setup,
            cut_edge=0,
            cut_cloud=n,
            exit_index=4,
            batch_size=4,
            cache_policy="none",
            threshold=None,
        ),
        find_plan(setup, cut_edge=2, cut_cloud=2, exit_index=4, threshold=None),  # cloud path
        find_plan(setup, cut_edge=0, cut_cloud=n, exit_index=4, cache_policy="lru", threshold=None),
        find_plan(setup, cut_edge=1, cut_cloud=n, threshold=0.6),  # the tau rule
    ]
    work = arrivals(setup, 0, 1.5)
    assert len(work) > 20

    async def run() -> tuple[dict, DeviceClient, EdgeServer]:
        edge, cloud, es, cs, _ = await _servers(setup, store)
        dev = _client(setup, store, Cycle(plans), _port(es), work)
        acc = await dev.run(work)
        es.close()
        cs.close()
        assert not edge.connection_errors and not cloud.connection_errors
        return acc, dev, edge

    acc, dev, _edge = asyncio.run(run())
    assert acc["sent"] == len(work) == acc["completed"] + acc["dropped"]
    assert acc["completed"] == len(work), acc
    recs = dev.records
    tiers = {r["tier"] for r in recs}
    assert {"device", "edge", "cloud", "cache"} <= tiers
    assert any(r.get("edge_batch", 0) and r["edge_batch"] > 1 for r in recs)  # real batches
    for r in recs:
        assert r["input_source"] == "synthetic" and r["correct"] is None
        assert set(r["observation"]) == {f.name for f in setup.features}
        assert r["stages_ms"]["end_to_end"] > 0 and "utility_parts" in r
        json.dumps(r)  # every record is JSON
        if r["tier"] == "cloud":
            assert {"uplink", "edge_compute", "wan_up", "cloud_compute", "wan_down"} <= set(
                r["stages_ms"]
            )
        if r["tier"] == "device":
            assert r["bytes"]["uplink"] == 0 or r["plan"].endswith("cache:lru")
        if r["tier"] == "cache":  # the lookup and its reply went on the wire
            assert r["bytes"]["uplink"] > 0 and r["bytes"]["downlink"] > 0


def _bad_clients() -> list[tuple[str, bytes, bool]]:
    """(name, bytes to send, keep the connection open afterwards)."""
    prefix = struct.pack("<4sBBBBQIQ", fr.MAGIC, 1, int(Kind.WORK), 1, 1, 9, 2, 10)
    return [
        ("garbage", b"GET / HTTP/1.1\r\n\r\n" + bytes(20), False),
        ("unknown version", struct.pack("<4sBBBBQIQ", fr.MAGIC, 9, 1, 0, 0, 0, 0, 0), False),
        ("oversized", struct.pack("<4sBBBBQIQ", fr.MAGIC, 1, 1, 0, 0, 0, 2**31, 0), False),
        ("truncated then gone", prefix + b"\x05\x00", False),
        ("stalled mid-frame", prefix + b"\x05", True),
    ]


def test_server_survives_bad_clients_and_keeps_serving(setup: Setup, store: ModelStore) -> None:
    plan = find_plan(setup, cut_edge=0, cut_cloud=7, exit_index=4, batch_size=1,
                     cache_policy="none", threshold=None)  # fmt: skip
    work = arrivals(setup, 0, 0.5)

    async def bad(port: int, data: bytes, keep: bool) -> Any:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(data)
        await w.drain()
        if keep:
            return w
        w.write_eof()  # the client is gone (half-close: it can still read the server's reply)
        reply = await asyncio.wait_for(r.read(), 5.0)  # the server answers and closes
        w.close()
        return reply

    async def wrong_tensor(port: int) -> Frame | None:
        """A valid hello, then WORK with a float32 tensor where the edge takes raw uint8."""
        r, w = await asyncio.open_connection("127.0.0.1", port)
        from edgerl.runtime.common import hello_meta

        hello = hello_meta("device", setup, time.monotonic(), None)
        await fr.write_frame(w, Frame(Kind.HELLO, 0, hello))
        assert (await fr.read_frame(r, 5.0)).kind == Kind.WELCOME
        meta = {"plan": PlanSpec.from_plan(setup.model.plans[plan]).to_json()}
        work_frame = fr.tensor_frame(Kind.WORK, 5, meta, np.zeros((3, 32, 32), np.float32),
                                     fr.DType.FLOAT32)  # fmt: skip
        await fr.write_frame(w, work_frame)
        reply = await fr.read_frame(r, 5.0)
        w.close()
        return reply

    async def run() -> tuple[list[bytes], Frame | None, dict, EdgeServer]:
        edge, _, es, cs, _ = await _servers(setup, store)
        port = _port(es)
        replies: list[bytes] = []
        stalled: list[Any] = []
        for _, data, keep in _bad_clients():
            out = await bad(port, data, keep)
            (stalled if keep else replies).append(out)
        wrong = await wrong_tensor(port)
        acc = await _client(setup, store, Cycle([plan]), port, work).run(work)
        for w in stalled:
            w.close()
        es.close()
        cs.close()
        return replies, wrong, acc, edge

    replies, wrong, acc, edge = asyncio.run(run())
    for (name, _, _), reply in zip(_bad_clients(), replies, strict=False):
        frame = fr.decode_frame(reply) if reply else None
        assert frame is not None and frame.kind == Kind.ERROR, name
        assert frame.meta["error"].startswith("protocol:"), (name, frame.meta)
    assert wrong is not None and wrong.kind == Kind.ERROR
    assert "takes uint8[3, 32, 32], got float32[3, 32, 32]" in wrong.meta["error"]
    assert acc["completed"] == acc["sent"] == len(work)  # the good client is fully served
    assert any("unsupported version 9" in e for e in edge.connection_errors)
    assert any("exceeds the limit" in e for e in edge.connection_errors)


def test_edge_killed_mid_run_requests_dropped_and_accounted(
    setup: Setup, store: ModelStore
) -> None:
    n = 7
    offload = find_plan(setup, cut_edge=0, cut_cloud=n, exit_index=4, batch_size=1,
                        cache_policy="none", threshold=None)  # fmt: skip
    local = find_plan(setup, cut_edge=n, cut_cloud=n, exit_index=4, threshold=None)
    work = arrivals(setup, 0, 1.5)

    async def run() -> tuple[dict, list[dict]]:
        _, _, es, cs, writers = await _servers(setup, store)
        dev = _client(setup, store, Cycle([offload, local]), _port(es), work)

        async def kill() -> None:
            await asyncio.sleep(0.6)
            es.close()
            for w in writers:
                w.transport.abort()  # like a killed process: connections reset

        acc, _ = await asyncio.gather(dev.run(work), kill())
        cs.close()
        return acc, dev.records

    acc, recs = asyncio.run(run())
    assert acc["sent"] == len(work) == acc["completed"] + acc["dropped"]
    assert acc["dropped"] > 0 and set(acc["drop_reasons"]) == {"connection_lost"}
    dropped = [r for r in recs if r["outcome"] == "dropped"]
    assert all(r["plan"].startswith("fp32/exit4/dev[0:0)") for r in dropped)
    assert all(r["utility_parts"]["drop"] < 0 for r in dropped)
    assert any(r["outcome"] == "completed" and r["tier"] == "device" for r in recs[-5:])


def test_policies_through_the_shared_interface(setup: Setup) -> None:
    from edgerl.runtime.workload import SetupError

    assert load_policy("fixed:3", setup).policy.predict(np.zeros(len(setup.features))) == 3
    edgent = load_policy("baseline:edgent", setup)
    assert (
        0
        <= edgent.policy.predict(np.zeros(len(setup.features), np.float32))
        < len(setup.model.plans)
    )
    for bad in ("fixed:x", "baseline:nope", "whatever"):
        with pytest.raises(SetupError, match="--policy"):
            load_policy(bad, setup)


def test_binding_elsewhere_needs_a_token() -> None:
    from edgerl.runtime.common import RoleError, check_bind, default_cpus

    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "s3cret")
    with pytest.raises(RoleError, match="requires a shared token"):
        check_bind("0.0.0.0", None)
    assert [default_cpus(r, [0, 1]) for r in ("device", "edge", "cloud")] == [[0], [1], [1]]
    assert [default_cpus(r, [0, 1, 2, 3]) for r in ("device", "edge", "cloud")] == [[0], [1], [2]]


def test_bench_runtime_reports_both_configurations_side_by_side() -> None:
    """Structure only: the numbers are measurements (never asserted in tests)."""
    from edgerl.runtime.bench import bench_runtime

    res = bench_runtime(
        "edgent-rpi", ("model.variants=[fp32]",), rates_per_s=(20.0,), duration_s=0.4,
        budget_ms=1000.0, batch_on=4, window_ms=5.0,
    )  # fmt: skip
    assert set(res.points) == set(res.goodput_per_s) == {"off", "on"}
    for points in res.points.values():
        (p,) = points
        assert p.sent > 0 and p.completed <= p.sent and p.within_budget <= p.completed
    json.dumps(res.__dict__, default=lambda o: o.__dict__)


def test_fidelity_grid_and_simulator_side() -> None:
    from edgerl.envs.sim.build import ScenarioModel
    from edgerl.runtime.fidelity import default_grid, host_overrides, simulate
    from edgerl.runtime.workload import load_config

    sets = [*OVERRIDES, *host_overrides(2.0), "devices.active_power_w=5.4"]
    model = ScenarioModel.from_config(load_config("edgent-rpi", sets))
    grid = default_grid(model)
    plans = [model.plans[i] for i in grid]
    assert len(set(grid)) == len(grid) >= 4
    assert any(p.cut_edge == p.n_units for p in plans) and any(p.uses_cloud for p in plans)
    done = simulate(model, grid[0], 3, "eval")
    ours = arrivals(build_setup("edgent-rpi", sets, 3), 0, 2.0)
    assert sorted(done) == [a.request_id for a in ours]  # the same requests on both sides


# ---- processes (slow) ---------------------------------------------------------------------


def _edgerl(*args: str) -> list[str]:
    return [sys.executable, "-c", "from edgerl.experiments.cli import main; main()", *args]


def _alive_with(marker: str) -> list[int]:
    import psutil

    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and any(marker in c for c in p.info["cmdline"])
    ]


@pytest.mark.slow
def test_one_command_runs_three_processes_and_stops_them(tmp_path: Path) -> None:
    log = tmp_path / "req.jsonl"
    sets = [x for o in OVERRIDES for x in ("--set", o)]
    out = subprocess.run(
        _edgerl("runtime", "run", *sets, "--seed", "3", "--policy", "baseline:edgent",
                "--duration-s", "1.5", "--log", str(log)),
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    assert "end_to_end" in out.stdout and "sent " in out.stdout, out.stdout
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert recs and all(r["outcome"] == "completed" for r in recs)
    assert not _alive_with(str(tmp_path))  # nothing outlives the command


@pytest.mark.slow
def test_killed_edge_process_device_accounts_for_everything(tmp_path: Path) -> None:
    from edgerl.runtime.launch import _read_event, role_process, stop

    sets = [x for o in OVERRIDES for x in ("--set", o)]
    common = [*sets, "--seed", "3"]
    offload = "--policy"
    with role_process("cloud", [*common, "--port", "0"]) as (_, cloud):
        edge_args = [*common, "--port", "0", "--cloud", f"127.0.0.1:{cloud['port']}"]
        with role_process("edge", edge_args) as (edge_proc, edge):
            log = tmp_path / "req.jsonl"
            dev = subprocess.Popen(
                _edgerl("runtime", "device", *common, offload, "baseline:edge-only",
                        "--duration-s", "3", "--edge", f"127.0.0.1:{edge['port']}",
                        "--log", str(log)),
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                _read_event(dev, "inputs", 300, "device")
                while not log.exists() or len(log.read_text().splitlines()) < 3:
                    assert dev.poll() is None
                    time.sleep(0.05)
                os.kill(edge_proc.pid, signal.SIGKILL)
                done = _read_event(dev, "done", 120, "device")
            finally:
                stop(dev)
    assert done["sent"] == done["completed"] + done["dropped"]
    assert done["dropped"] > 0 and "connection_lost" in done["drop_reasons"]
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(recs) == done["sent"]
    assert all(r["drop_reason"].startswith("connection_lost") for r in recs if r["drop_reason"])


@pytest.mark.slow
def test_int8_cut_tensors_cross_frames_as_quint8() -> None:
    """int8 (loading it converts FX observers: ~15 s): quint8 cut tensors and their scale."""
    from edgerl.runtime.frames import DType, decode_frame, encode_frame
    from edgerl.runtime.segments import frame_of, tensor_of

    s = ModelStore("balexnet_c10")
    net = s.net("int8")
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        want = net(x.float() / 255)[-1].argmax(1).tolist()
    plan = PlanSpec(0, "int8", 4, 7, 2, 5, 1, "none")
    _, h = run_segment(s, plan, "device", x)
    assert h is not None
    got = []
    for k in range(2):
        frame = decode_frame(encode_frame(frame_of(Kind.WORK, k, {}, h[k])))
        assert frame.dtype == DType.QUINT8 and frame.meta["q_scale"] == h.q_scale()
        got.append(tensor_of(frame).unsqueeze(0))
    _, h2 = run_segment(s, plan, "edge", torch.cat(got))
    assert h2 is not None
    answers, rest = run_segment(s, plan, "cloud", h2)
    assert rest is None and [a.prediction for a in answers if a] == want


def test_warm_threads_warms_every_worker_thread() -> None:
    """Each thread of a pool runs the warm-up once (a fresh thread's first forward pass is the
    slow one), for every loaded variant and batch size."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from edgerl.runtime.segments import warm_threads

    seen: list[tuple[int, str, tuple[int, ...]]] = []

    class FakeStore:
        warm_batch_sizes = (1, 4)

        def loaded(self) -> list[str]:
            return ["fp32", "int8"]

        def warm_up(self, variant: str, batch_sizes: tuple[int, ...]) -> None:
            seen.append((threading.get_ident(), variant, batch_sizes))

    pool = ThreadPoolExecutor(3)
    warm_threads(pool, 3, FakeStore())  # type: ignore[arg-type]
    assert len({t for t, _, _ in seen}) == 3 and len(seen) == 6
    assert {(v, b) for _, v, b in seen} == {("fp32", (1, 4)), ("int8", (1, 4))}
    pool.shutdown()
    store = ModelStore("balexnet_c10", (1, 2))
    store.net("fp32")
    one = ThreadPoolExecutor(1)
    warm_threads(one, 1, store)  # the real thing runs on the real network
    one.shutdown()
