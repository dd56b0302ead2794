"""The edge and cloud servers: asyncio stream servers running real model segments.

**Edge** (``edgerl runtime edge``): accepts device connections; answers cache lookups;
batches WORK frames of the same segment (variant, cuts, exit or rule) the way the simulator's
batcher does: a batch leaves when it holds as many requests as the smallest batch size its
members' plans ask for, or when the scenario's ``edge.max_batch_wait_ms`` has passed since its
first member arrived (at most the largest profiled batch); runs it on ``edge.workers`` worker
threads; sends each answered request's RESULT back over the device's shaped downlink (and
caches it under the request's input fingerprint when its plan's cache policy is not ``none``);
forwards the others to the cloud over the shaped WAN and relays the cloud's answers. Every
reply carries the edge's state (``edge_state``: the observation features the edge reports).

**Cloud** (``edgerl runtime cloud``): accepts the edge's connection and runs the last segment
on ``cloud.workers`` worker threads, replying over the shaped WAN.

A malformed frame, a wrong dtype or shape, a stalled sender or a disconnect on one connection
closes that connection (after an ERROR frame saying why, where the socket still works); the
server keeps serving the others. Queue limits (``edge.queue_capacity``,
``cloud.queue_capacity``) answer ERROR ``edge_full`` / ``cloud_full``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from edgerl.runtime.common import (
    BYTES_PER_KB,
    EWMA_WEIGHT,
    HELLO_TIMEOUT_S,
    check_hello,
    drain_ms,
    hello_meta,
)
from edgerl.runtime.frames import (
    Frame,
    FrameError,
    Kind,
    encode_frame,
    read_frame,
    write_frame,
)
from edgerl.runtime.segments import (
    ModelStore,
    PlanError,
    PlanSpec,
    check_work,
    frame_of,
    run_segment,
    tensor_of,
    warm_threads,
)
from edgerl.runtime.shaper import ShapedLink
from edgerl.runtime.workload import Setup

CACHE_POLICIES = ("lru", "lfu", "cost")


def _error(rid: int, reason: str) -> Frame:
    return Frame(Kind.ERROR, rid, {"error": reason})


def _answer_meta(answer: Any) -> dict[str, Any]:
    return {"prediction": answer.prediction, "confidence": answer.confidence, "exit": answer.exit}


# ----------------------------------------------------------------------------- the cache


@dataclass
class _Entry:
    result: dict[str, Any]
    hits: int
    last_used_s: float
    compute_s: float


class ResultCache:
    """Results keyed by input fingerprint; eviction by the admitting request's policy.

    ``lru`` evicts the least recently used, ``lfu`` the least often hit, ``cost`` the entry
    with the smallest hits x compute time it saves (as the simulator's cache).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: dict[str, _Entry] = {}
        self.hit_ewma = 0.0

    @property
    def fill(self) -> float:
        return len(self.entries) / self.capacity if self.capacity else 0.0

    def lookup(self, key: str, now_s: float) -> dict[str, Any] | None:
        entry = self.entries.get(key)
        self.hit_ewma += EWMA_WEIGHT * ((entry is not None) - self.hit_ewma)
        if entry is None:
            return None
        entry.hits += 1
        entry.last_used_s = now_s
        return entry.result

    def insert(
        self, key: str, result: dict[str, Any], policy: str, now_s: float, compute_s: float
    ) -> None:
        if self.capacity == 0 or policy not in CACHE_POLICIES:
            return
        if key in self.entries:
            self.entries[key].last_used_s = now_s
            return
        if len(self.entries) >= self.capacity:
            score: Callable[[_Entry], float] = {
                "lru": lambda e: e.last_used_s,
                "lfu": lambda e: float(e.hits),
                "cost": lambda e: e.hits * e.compute_s,
            }[policy]
            victim = min(self.entries, key=lambda k: score(self.entries[k]))
            del self.entries[victim]
        self.entries[key] = _Entry(result, 0, now_s, compute_s)


# ----------------------------------------------------------------------------- edge


@dataclass
class _DeviceConn:
    device: int
    link: ShapedLink
    open: bool = True


@dataclass
class _Job:
    rid: int
    conn: _DeviceConn
    plan: PlanSpec
    x: torch.Tensor
    meta: dict[str, Any]
    times: dict[str, float]


@dataclass
class _Batcher:
    jobs: list[_Job] = field(default_factory=list)
    generation: int = 0


class EdgeServer:
    """The edge role (see the module docstring).

    Args:
        setup: The run (scenario, seed, links).
        store: The model's networks.
        cloud_addr: ``(host, port)`` of the cloud server, or ``None`` (no cloud tier).
        token: Shared token peers must present (and the edge presents to the cloud).
        window_ms: Batching window (default: the scenario's ``edge.max_batch_wait_ms``).
        max_batch: Largest batch (default: the largest profiled edge batch size).
    """

    def __init__(
        self,
        setup: Setup,
        store: ModelStore,
        cloud_addr: tuple[str, int] | None,
        token: str | None = None,
        window_ms: float | None = None,
        max_batch: int | None = None,
    ) -> None:
        cfg = setup.cfg
        self.setup = setup
        self.store = store
        self.cloud_addr = cloud_addr
        self.token = token
        self.window_s = (cfg.edge.max_batch_wait_ms if window_ms is None else window_ms) / 1e3
        self.max_batch = max_batch or max(setup.model.edge_batch_sizes)
        self.queue_capacity = cfg.edge.queue_capacity
        self.cache = ResultCache(cfg.edge.cache_capacity)
        self.executor = ThreadPoolExecutor(cfg.edge.workers, thread_name_prefix="edge-worker")
        warm_threads(self.executor, cfg.edge.workers, store)
        self.batchers: dict[tuple[Any, ...], _Batcher] = {}
        self.waiting_in_batchers = 0
        self.waiting_for_worker = 0
        self.batches_busy = 0
        self.batch_ms_ewma = 0.0
        self.cloud_queue_len = 0.0
        self.epoch_s: float | None = None
        self._cloud_link: ShapedLink | None = None
        self._cloud_lock = asyncio.Lock()
        self._cloud_pending: dict[int, _Job] = {}
        self._workers = asyncio.Semaphore(cfg.edge.workers)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.served = 0
        self.connection_errors: list[str] = []

    # -- time and state

    def now(self) -> float:
        return time.monotonic() - (self.epoch_s or 0.0)

    def state(self) -> dict[str, float]:
        """The observation features the edge reports (its own state now)."""
        wan_mbps = wan_q = 0.0
        if self._cloud_link is not None:
            wan_mbps = self._cloud_link.mean_mbps(self.setup.cfg.network.bandwidth_window_s)
            wan_q = float(self._cloud_link.queued_bytes())
        elif self.epoch_s is not None:
            wan_mbps = self.setup.links[0].wan.mbps_at(max(0.0, self.now()))
        queued = self.waiting_in_batchers + self.waiting_for_worker
        return {
            "wan_mbps": wan_mbps,
            "edge_queue_len": float(queued),
            "edge_backlog_ms": (self.batches_busy + self.waiting_for_worker) * self.batch_ms_ewma,
            "edge_batch_waiting": float(self.waiting_in_batchers),
            "cloud_queue_len": self.cloud_queue_len,
            "wan_queue_kb": wan_q / BYTES_PER_KB,
            "wan_drain_est_ms": drain_ms(wan_q, wan_mbps),
            "edge_batch_ms": self.batch_ms_ewma,
            "cache_hit_rate": self.cache.hit_ewma,
            "cache_fill": self.cache.fill,
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connections

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One device connection (the asyncio server's callback)."""
        conn: _DeviceConn | None = None
        try:
            hello = check_hello(
                await read_frame(reader, HELLO_TIMEOUT_S), self.setup, self.token, "device"
            )
            device = hello.get("device", 0)
            if isinstance(device, bool) or not isinstance(device, int):
                raise FrameError(f"hello: device must be an integer, got {device!r}")
            if not 0 <= device < self.setup.n_devices:
                raise FrameError(f"hello: device {device} not in 0..{self.setup.n_devices - 1}")
            if self.epoch_s is None:
                self.epoch_s = float(hello["epoch_s"])
            links = self.setup.links[device]
            # the downlink replays the trace on this device's clock; the WAN on the first one's
            epoch = float(hello["epoch_s"])
            link = ShapedLink(writer, links.downlink, links.access_one_way_s, epoch)
            conn = _DeviceConn(device, link)
            link.send(
                encode_frame(Frame(Kind.WELCOME, 0, {"role": "edge", "edge_state": self.state()}))
            )
            while True:
                frame = await read_frame(reader, None)
                if frame is None or frame.kind == Kind.BYE:
                    break
                self._on_frame(conn, frame)
        except (FrameError, PlanError) as exc:
            self.connection_errors.append(str(exc))
            with contextlib.suppress(Exception):
                await write_frame(writer, _error(0, f"protocol: {exc}"))
        except (ConnectionError, OSError) as exc:
            self.connection_errors.append(f"connection: {exc}")
        except asyncio.CancelledError:
            pass  # server shutdown: the connection ends here (a top-level handler)
        finally:
            if conn is not None:
                conn.open = False
                await conn.link.flush(timeout_s=2.0)
                await conn.link.close()
            else:
                writer.close()

    def _reply(self, conn: _DeviceConn, frame: Frame) -> None:
        if conn.open and conn.link.error is None:
            conn.link.send(encode_frame(frame))

    def _on_frame(self, conn: _DeviceConn, frame: Frame) -> None:
        now = self.now()
        if frame.kind == Kind.CACHE_LOOKUP:
            key = str(frame.meta.get("fingerprint", ""))
            hit = self.cache.lookup(key, now)
            meta = {"hit": hit is not None, "edge_state": self.state(), "t": {"edge_recv": now}}
            if hit is not None:
                meta["answer"] = hit
            self._reply(conn, Frame(Kind.CACHE_REPLY, frame.request_id, meta))
        elif frame.kind == Kind.CACHE_PUT:
            answer = frame.meta.get("answer")
            if isinstance(answer, dict):
                self.cache.insert(
                    str(frame.meta.get("fingerprint", "")), answer,
                    str(frame.meta.get("cache_policy", "none")), now,
                    float(frame.meta.get("compute_s", 0.0)),
                )  # fmt: skip
        elif frame.kind == Kind.WORK:
            plan = PlanSpec.from_json(frame.meta.get("plan"), self.store.spec)
            check_work(frame, self.store, plan, "edge")
            queued = self.waiting_in_batchers + self.waiting_for_worker
            if queued >= self.queue_capacity:
                self._reply(conn, _error(frame.request_id, "edge_full"))
                return
            times = dict(frame.meta.get("t", {}))
            times["edge_recv"] = now
            job = _Job(frame.request_id, conn, plan, tensor_of(frame), frame.meta, times)
            self._enqueue(job)
        else:
            raise FrameError(f"edge: unexpected {frame.kind.name} frame from a device")

    # -- batching

    def _enqueue(self, job: _Job) -> None:
        p = job.plan
        key = (p.variant, p.cut_edge, p.cut_cloud, p.n_units, p.exit, p.threshold, p.rule_exits)
        b = self.batchers.setdefault(key, _Batcher())
        b.jobs.append(job)
        self.waiting_in_batchers += 1
        target = min(min(j.plan.batch_size for j in b.jobs), self.max_batch)
        if len(b.jobs) >= target or self.window_s <= 0:
            self._dispatch(b)
        elif len(b.jobs) == 1:
            gen = b.generation
            asyncio.get_running_loop().call_later(self.window_s, self._window_expired, b, gen)

    def _window_expired(self, b: _Batcher, generation: int) -> None:
        if b.generation == generation and b.jobs:
            self._dispatch(b)

    def _dispatch(self, b: _Batcher) -> None:
        jobs, b.jobs = b.jobs[: self.max_batch], b.jobs[self.max_batch :]
        b.generation += 1
        self.waiting_in_batchers -= len(jobs)
        self.waiting_for_worker += len(jobs)
        if b.jobs:  # leftovers start a new window
            gen = b.generation
            asyncio.get_running_loop().call_later(self.window_s, self._window_expired, b, gen)
        self._spawn(self._run_batch(jobs))

    async def _run_batch(self, jobs: list[_Job]) -> None:
        async with self._workers:
            self.waiting_for_worker -= len(jobs)
            self.batches_busy += 1
            start = self.now()
            try:
                x = torch.cat([j.x.unsqueeze(0) for j in jobs])
                answers, rest = await asyncio.get_running_loop().run_in_executor(
                    self.executor, run_segment, self.store, jobs[0].plan, "edge", x
                )
            except Exception as exc:  # a model error drops this batch, not the server
                for j in jobs:
                    self._reply(j.conn, _error(j.rid, f"edge_compute: {exc}"))
                return
            finally:
                self.batches_busy -= 1
            end = self.now()
            ms = (end - start) * 1e3
            self.batch_ms_ewma += EWMA_WEIGHT * (ms - self.batch_ms_ewma) if self.served else ms
            self.served += len(jobs)
        k = 0
        for job, answer in zip(jobs, answers, strict=True):
            job.times.update(edge_start=start, edge_end=end)
            job.meta["edge_batch"] = len(jobs)
            if answer is not None:
                self._finish(job, _answer_meta(answer), "edge")
            else:
                assert rest is not None
                self._spawn(self._to_cloud(job, rest[k]))
                k += 1

    def _finish(self, job: _Job, answer: dict[str, Any], tier: str) -> None:
        now = self.now()
        job.times["edge_reply"] = now
        key = job.meta.get("fingerprint")
        if job.plan.cache_policy != "none" and isinstance(key, str):
            compute_s = float(job.meta.get("compute_s", 0.0))
            self.cache.insert(key, answer, job.plan.cache_policy, now, compute_s)
        meta = {
            "answer": answer,
            "tier": tier,
            "t": job.times,
            "edge_batch": job.meta.get("edge_batch", 0),
            "edge_state": self.state(),
        }
        self._reply(job.conn, Frame(Kind.RESULT, job.rid, meta))

    # -- the cloud

    async def _cloud(self) -> ShapedLink:
        async with self._cloud_lock:
            if self._cloud_link is not None and self._cloud_link.error is None:
                return self._cloud_link
            if self.cloud_addr is None:
                raise ConnectionError("no cloud server configured (--cloud HOST:PORT)")
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*self.cloud_addr), HELLO_TIMEOUT_S
            )
            assert self.epoch_s is not None
            await write_frame(
                writer,
                Frame(Kind.HELLO, 0, hello_meta("edge", self.setup, self.epoch_s, self.token)),
            )
            welcome = await read_frame(reader, HELLO_TIMEOUT_S)
            if welcome is None or welcome.kind != Kind.WELCOME:
                raise ConnectionError(f"cloud refused the edge: {welcome and welcome.meta}")
            links = self.setup.links[0]
            self._cloud_link = ShapedLink(writer, links.wan, links.wan_one_way_s, self.epoch_s)
            self._spawn(self._cloud_reader(reader))
            return self._cloud_link

    async def _to_cloud(self, job: _Job, x: torch.Tensor) -> None:
        try:
            link = await self._cloud()
        except (ConnectionError, OSError, TimeoutError, FrameError) as exc:
            self._reply(job.conn, _error(job.rid, f"cloud_unreachable: {exc}"))
            return
        job.times["edge_sent"] = self.now()
        meta = {"plan": job.plan.to_json(), "t": job.times}
        self._cloud_pending[job.rid] = job
        try:
            link.send(encode_frame(frame_of(Kind.WORK, job.rid, meta, x)))
        except ConnectionError as exc:
            self._cloud_pending.pop(job.rid, None)
            self._reply(job.conn, _error(job.rid, f"cloud_lost: {exc}"))

    async def _cloud_reader(self, reader: asyncio.StreamReader) -> None:
        reason = "cloud closed the connection"
        try:
            while True:
                frame = await read_frame(reader, None)
                if frame is None:
                    break
                job = self._cloud_pending.pop(frame.request_id, None)
                if job is None:
                    continue
                if isinstance(frame.meta.get("cloud_queue_len"), int | float):
                    self.cloud_queue_len = float(frame.meta["cloud_queue_len"])
                if frame.kind == Kind.RESULT:
                    job.times.update(frame.meta.get("t", {}))
                    job.times["edge_relay"] = self.now()
                    self._finish(job, dict(frame.meta.get("answer", {})), "cloud")
                else:
                    self._reply(job.conn, _error(job.rid, str(frame.meta.get("error", "cloud"))))
        except (FrameError, ConnectionError, OSError) as exc:
            reason = str(exc)
        finally:
            self._cloud_link = None
            pending, self._cloud_pending = self._cloud_pending, {}
            for job in pending.values():
                self._reply(job.conn, _error(job.rid, f"cloud_lost: {reason}"))


# ----------------------------------------------------------------------------- cloud


class CloudServer:
    """The cloud role: the last segment of every forwarded request."""

    def __init__(self, setup: Setup, store: ModelStore, token: str | None = None) -> None:
        cfg = setup.cfg
        self.setup = setup
        self.store = store
        self.token = token
        self.executor = ThreadPoolExecutor(cfg.cloud.workers, thread_name_prefix="cloud-worker")
        warm_threads(self.executor, cfg.cloud.workers, store)
        self._workers = asyncio.Semaphore(cfg.cloud.workers)
        self.queue_capacity = cfg.cloud.queue_capacity
        self.waiting = 0
        self.served = 0
        self.connection_errors: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One edge connection."""
        link: ShapedLink | None = None
        try:
            hello = check_hello(
                await read_frame(reader, HELLO_TIMEOUT_S), self.setup, self.token, "edge"
            )
            epoch = float(hello["epoch_s"])
            links = self.setup.links[0]
            link = ShapedLink(writer, links.wan, links.wan_one_way_s, epoch)
            await write_frame(writer, Frame(Kind.WELCOME, 0, {"role": "cloud"}))
            while True:
                frame = await read_frame(reader, None)
                if frame is None or frame.kind == Kind.BYE:
                    break
                if frame.kind != Kind.WORK:
                    raise FrameError(f"cloud: unexpected {frame.kind.name} frame")
                plan = PlanSpec.from_json(frame.meta.get("plan"), self.store.spec)
                check_work(frame, self.store, plan, "cloud")
                if self.waiting >= self.queue_capacity:
                    link.send(encode_frame(_error(frame.request_id, "cloud_full")))
                    continue
                times = dict(frame.meta.get("t", {}))
                times["cloud_recv"] = time.monotonic() - epoch
                self.waiting += 1
                task = asyncio.get_running_loop().create_task(
                    self._run(link, frame.request_id, plan, tensor_of(frame), times, epoch)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (FrameError, PlanError) as exc:
            self.connection_errors.append(str(exc))
            with contextlib.suppress(Exception):
                await write_frame(writer, _error(0, f"protocol: {exc}"))
        except (ConnectionError, OSError) as exc:
            self.connection_errors.append(f"connection: {exc}")
        except asyncio.CancelledError:
            pass  # server shutdown: the connection ends here (a top-level handler)
        finally:
            if link is not None:
                await link.flush(timeout_s=2.0)
                await link.close()
            else:
                writer.close()

    async def _run(
        self,
        link: ShapedLink,
        rid: int,
        plan: PlanSpec,
        x: torch.Tensor,
        times: dict[str, float],
        epoch: float,
    ) -> None:
        async with self._workers:
            self.waiting -= 1
            times["cloud_start"] = time.monotonic() - epoch
            try:
                answers, _ = await asyncio.get_running_loop().run_in_executor(
                    self.executor, run_segment, self.store, plan, "cloud", x.unsqueeze(0)
                )
            except Exception as exc:  # a model error drops this request, not the server
                link.send(encode_frame(_error(rid, f"cloud_compute: {exc}")))
                return
            times["cloud_end"] = time.monotonic() - epoch
        self.served += 1
        answer = answers[0]
        if answer is None:
            link.send(encode_frame(_error(rid, "cloud: the plan's exit was not reached")))
            return
        meta = {"answer": _answer_meta(answer), "t": times, "cloud_queue_len": self.waiting}
        if link.error is None:
            link.send(encode_frame(Frame(Kind.RESULT, rid, meta)))
