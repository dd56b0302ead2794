"""The device role: replays a scenario's workload, plans every request, runs the device segment.

For every arrival of the workload (:func:`edgerl.runtime.workload.arrivals`) at its time:

1. **observe**: the raw observation from what the device measured (its uplink's capacity over
   the past ``network.bandwidth_window_s``, the bytes it handed to the uplink and not yet had
   delivered, its queued compute in profiled milliseconds, its request rate, whether it sent the
   same input among its last 64 requests, the request's deadline and application) and what the
   edge last reported (``edge_state`` on every edge reply);
2. **decide**: the policy's ``predict(observation, static mask)`` (an exported planner, a
   baseline or a fixed plan, :func:`edgerl.runtime.workload.load_policy`);
3. **cache**: a plan with a cache policy first sends the input's fingerprint (SHA-256 of its
   bytes); a hit is the answer;
4. **device segment**: units ``[0, cut_edge)`` (and their heads) on the device's CPU, one
   request at a time (FIFO); an answer here ends the request (a cached plan uploads the result
   and fingerprint, as the simulator does);
5. **offload**: the cut tensor goes over the shaped uplink to the edge; the RESULT (from the
   edge or, through it, the cloud) or an ERROR ends the request.

Every request ends exactly once, completed or dropped with a reason (an ERROR from the edge,
the connection lost, no answer within ``timeout_s``), so ``sent = completed + dropped``; its
record goes to the JSON-lines log (:data:`RECORD_SCHEMA`, documented in README "Runtime").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from edgerl.runtime.common import (
    BYTES_PER_KB,
    EWMA_WEIGHT,
    HELLO_TIMEOUT_S,
    drain_ms,
    hello_meta,
)
from edgerl.runtime.frames import Frame, FrameError, Kind, encode_frame, read_frame, write_frame
from edgerl.runtime.segments import (
    Answer,
    ModelStore,
    PlanSpec,
    frame_of,
    run_segment,
    warm_threads,
)
from edgerl.runtime.shaper import ShapedLink
from edgerl.runtime.workload import (
    EDGE_REPORT_KEYS,
    Arrival,
    Inputs,
    PolicyHandle,
    Setup,
    observation,
)

RECORD_SCHEMA = "edgerl.runtime.request/1"
#: Requests of the device's own history that count for ``input_seen_recently`` (the
#: simulator's RECENT_INPUTS_PER_DEVICE).
RECENT_INPUTS = 64
#: Lead time between connecting and the epoch (trace time 0), so the first arrival is not late.
EPOCH_LEAD_S = 0.2
MB = 1e6

#: Stages of the latency table, each the difference of two timestamps of a record.
STAGES = (
    ("decide", "arrival", "decided"),
    ("cache_lookup", "decided", "cache_reply"),
    ("device_queue", "ready", "device_start"),
    ("device_compute", "device_start", "device_end"),
    ("uplink", "sent", "edge_recv"),
    ("edge_batching+queue", "edge_recv", "edge_start"),
    ("edge_compute", "edge_start", "edge_end"),
    ("wan_up", "edge_sent", "cloud_recv"),
    ("cloud_queue", "cloud_recv", "cloud_start"),
    ("cloud_compute", "cloud_start", "cloud_end"),
    ("wan_down", "cloud_end", "edge_relay"),
    ("downlink", "edge_reply", "done"),
    ("end_to_end", "arrival", "done"),
)


class RequestDropped(Exception):
    """A request ends without an answer (the message is its drop reason)."""


@dataclass
class _Pending:
    future: asyncio.Future[Frame]


@dataclass
class DeviceStats:
    """What the device measured about itself (the observation's device features)."""

    backlog_s: float = 0.0  # profiled compute of the requests queued on / running on the CPU
    gap_ewma_s: float = 0.0
    last_arrival_s: float = 0.0
    energy_j: float = 0.0
    recent: OrderedDict[int, int] = field(default_factory=OrderedDict)
    recent_order: list[int] = field(default_factory=list)

    def remember(self, input_id: int) -> bool:
        seen = input_id in self.recent
        self.recent[input_id] = self.recent.get(input_id, 0) + 1
        self.recent_order.append(input_id)
        if len(self.recent_order) > RECENT_INPUTS:
            old = self.recent_order.pop(0)
            self.recent[old] -= 1
            if self.recent[old] == 0:
                del self.recent[old]
        return seen


class DeviceClient:
    """One device: connects to the edge and replays its arrivals (see the module docstring).

    Args:
        setup: The run.
        store: The model's networks (device segments).
        policy: The planner, baseline or fixed plan.
        inputs: The images of the arrivals.
        device: Device index in the scenario.
        edge_addr: ``(host, port)`` of the edge server.
        log: Where the JSON-lines records go (``None``: kept in memory only).
        token: Shared token.
        timeout_s: Longest wait for an offloaded request's answer [s].
    """

    def __init__(
        self,
        setup: Setup,
        store: ModelStore,
        policy: PolicyHandle,
        inputs: Inputs,
        device: int,
        edge_addr: tuple[str, int],
        log: IO[str] | None = None,
        token: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.setup = setup
        self.store = store
        self.policy = policy
        self.inputs = inputs
        self.device = device
        self.edge_addr = edge_addr
        self.log = log
        self.token = token
        self.timeout_s = timeout_s
        self.records: list[dict[str, Any]] = []
        self.stats = DeviceStats()
        self.edge_state = {k: 0.0 for k in EDGE_REPORT_KEYS}
        self.cpu = ThreadPoolExecutor(1, thread_name_prefix="device-cpu")
        warm_threads(self.cpu, 1, store)
        self._cpu_lock = asyncio.Lock()
        self._pending: dict[int, _Pending] = {}
        self._lost: str | None = None
        self.link: ShapedLink | None = None
        self.epoch_s = 0.0

    def now(self) -> float:
        return time.monotonic() - self.epoch_s

    # -- running

    async def run(self, arrivals: list[Arrival]) -> dict[str, Any]:
        """Connect, replay ``arrivals``, wait for every request; returns the accounting."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*self.edge_addr), HELLO_TIMEOUT_S
        )
        self.epoch_s = time.monotonic() + EPOCH_LEAD_S
        hello = hello_meta("device", self.setup, self.epoch_s, self.token, device=self.device)
        await write_frame(writer, Frame(Kind.HELLO, 0, hello))
        welcome = await read_frame(reader, HELLO_TIMEOUT_S)
        if welcome is None or welcome.kind != Kind.WELCOME:
            writer.close()
            why = "closed" if welcome is None else welcome.meta.get("error", welcome.kind.name)
            raise ConnectionError(f"edge {self.edge_addr} refused the device: {why}")
        self.edge_state.update(_floats(welcome.meta.get("edge_state", {})))
        links = self.setup.links[self.device]
        self.link = ShapedLink(writer, links.uplink, links.access_one_way_s, self.epoch_s)
        reader_task = asyncio.get_running_loop().create_task(self._reader(reader))
        tasks = []
        for a in arrivals:
            delay = a.time_s - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.get_running_loop().create_task(self._request(a)))
        await asyncio.gather(*tasks)
        with contextlib.suppress(ConnectionError):
            self.link.send(encode_frame(Frame(Kind.BYE, 0)))
        await self.link.flush(timeout_s=2.0)
        reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader_task
        await self.link.close()
        self.cpu.shutdown(wait=True)
        return self.accounting()

    def accounting(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for r in self.records:
            if r["outcome"] == "dropped":
                key = str(r["drop_reason"]).split(":")[0]
                reasons[key] = reasons.get(key, 0) + 1
        done = sum(r["outcome"] == "completed" for r in self.records)
        return {
            "sent": len(self.records),
            "completed": done,
            "dropped": len(self.records) - done,
            "drop_reasons": reasons,
        }

    async def _reader(self, reader: asyncio.StreamReader) -> None:
        reason = "the edge closed the connection"
        try:
            while True:
                frame = await read_frame(reader, None)
                if frame is None:
                    break
                if isinstance(frame.meta.get("edge_state"), dict):
                    self.edge_state.update(_floats(frame.meta["edge_state"]))
                pending = self._pending.pop(frame.request_id, None)
                if pending is not None and not pending.future.done():
                    pending.future.set_result(frame)
                elif frame.kind == Kind.ERROR and frame.request_id == 0:
                    reason = f"edge error: {frame.meta.get('error')}"
                    break
        except (FrameError, ConnectionError, OSError) as exc:
            reason = str(exc)
        finally:
            self._lost = reason
            for p in self._pending.values():
                if not p.future.done():
                    p.future.set_exception(RequestDropped(f"connection_lost: {reason}"))
            self._pending.clear()

    async def _exchange(self, frame: Frame) -> Frame:
        """Send ``frame`` on the uplink and wait for the reply to its request id."""
        if self._lost is not None:
            raise RequestDropped(f"connection_lost: {self._lost}")
        assert self.link is not None
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[frame.request_id] = _Pending(fut)
        try:
            self.link.send(encode_frame(frame))
        except ConnectionError as exc:
            self._pending.pop(frame.request_id, None)
            raise RequestDropped(f"connection_lost: {exc}") from None
        try:
            reply = await asyncio.wait_for(fut, self.timeout_s)
        except TimeoutError:
            self._pending.pop(frame.request_id, None)
            raise RequestDropped(f"timeout: no answer within {self.timeout_s} s") from None
        if reply.kind == Kind.ERROR:
            raise RequestDropped(str(reply.meta.get("error", "edge error")))
        return reply

    # -- one request

    def _raw_state(self, a: Arrival) -> dict[str, float]:
        cfg = self.setup.cfg
        assert self.link is not None
        up_mbps = self.link.mean_mbps(cfg.network.bandwidth_window_s)
        up_q = float(self.link.queued_bytes())
        st = self.stats
        gap = a.time_s - st.last_arrival_s
        st.gap_ewma_s = (
            gap if st.gap_ewma_s == 0.0 else st.gap_ewma_s + EWMA_WEIGHT * (gap - st.gap_ewma_s)
        )
        st.last_arrival_s = a.time_s
        budget = cfg.devices.energy_budget_j
        raw = {
            "uplink_mbps": up_mbps,
            "device_backlog_ms": st.backlog_s * 1e3,
            "uplink_queue_kb": up_q / BYTES_PER_KB,
            "uplink_drain_est_ms": drain_ms(up_q, up_mbps),
            **self.edge_state,
            "arrival_rate_per_s": 1.0 / st.gap_ewma_s if st.gap_ewma_s > 0 else 0.0,
            "input_seen_recently": float(st.remember(a.input_id)),
            "deadline_ms": a.deadline_ms,
            "energy_left": max(0.0, 1.0 - st.energy_j / budget) if budget < float("inf") else 1.0,
        }
        for i, app in enumerate(cfg.workload.apps):
            raw[f"app_{app.name}"] = 1.0 if i == a.app else 0.0
        return raw

    async def _request(self, a: Arrival) -> None:
        model = self.setup.model
        t: dict[str, float] = {"arrival": a.time_s}
        rec: dict[str, Any] = {
            "schema": RECORD_SCHEMA,
            "request_id": a.request_id,
            "device": a.device,
            "app": a.app_name,
            "input_id": a.input_id,
            "image": a.image,
            "input_source": self.inputs.source,
            "deadline_ms": a.deadline_ms,
            "policy": self.policy.label,
            "t": t,
            "bytes": {"uplink": 0, "downlink": 0},
            "cache": None,
        }
        plan_obj = None
        try:
            raw = self._raw_state(a)
            obs = observation(self.setup, raw)
            action = int(self.policy.policy.predict(obs, model.static_mask))
            plan_obj = model.plans[action]
            plan = PlanSpec.from_plan(plan_obj)
            t["decided"] = self.now()
            rec.update(observation=raw, action=action, action_prob=None, plan=plan_obj.name)
            answer, tier = await self._execute(a, plan, t, rec)
            t["done"] = self.now()
            self._complete(rec, a, plan_obj, answer, tier)
        except RequestDropped as exc:
            t["done"] = self.now()
            self._drop(rec, plan_obj, str(exc))
        except Exception as exc:  # every request must end in the log, whatever failed
            t["done"] = self.now()
            self._drop(rec, plan_obj, f"device_error: {type(exc).__name__}: {exc}")
        self._emit(rec)

    async def _execute(
        self, a: Arrival, plan: PlanSpec, t: dict[str, float], rec: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        image = self.inputs.images[a.image]
        fingerprint = hashlib.sha256(image.tobytes()).hexdigest()
        if plan.cache_policy != "none":
            lookup = Frame(Kind.CACHE_LOOKUP, a.request_id, {"fingerprint": fingerprint})
            rec["bytes"]["uplink"] += lookup.wire_bytes
            reply = await self._exchange(lookup)
            rec["bytes"]["downlink"] += reply.wire_bytes
            t["cache_reply"] = self.now()
            rec["cache"] = "hit" if reply.meta.get("hit") else "miss"
            if reply.meta.get("hit"):
                return dict(reply.meta["answer"]), "cache"
        x = torch.from_numpy(image[None].copy())
        compute_s = 0.0
        if plan.cut_edge > 0:  # the device runs units [0, cut_edge) (and their heads)
            t["ready"] = self.now()
            profiled_s = self.setup.model.plans[plan.index].device_s
            self.stats.backlog_s += profiled_s
            try:
                async with self._cpu_lock:
                    t["device_start"] = self.now()
                    answers, rest = await asyncio.get_running_loop().run_in_executor(
                        self.cpu, run_segment, self.store, plan, "device", x
                    )
                    t["device_end"] = self.now()
            finally:
                self.stats.backlog_s -= profiled_s
            compute_s = t["device_end"] - t["device_start"]
        else:
            answers, rest = [None], x
        rec["energy_j"] = compute_s * self.setup.model.device_power_w  # compute only
        self.stats.energy_j += rec["energy_j"]
        if answers[0] is not None:
            ans = _answer(answers[0])
            if plan.cache_policy != "none":
                put = {"fingerprint": fingerprint, "answer": ans, "cache_policy": plan.cache_policy,
                       "compute_s": compute_s}  # fmt: skip
                self._send(Frame(Kind.CACHE_PUT, a.request_id, put), rec)
            return ans, "device"
        assert rest is not None
        meta = {
            "plan": plan.to_json(),
            "fingerprint": fingerprint,
            "compute_s": compute_s,
            "t": {"sent": self.now()},
        }
        t["sent"] = meta["t"]["sent"]
        work = frame_of(Kind.WORK, a.request_id, meta, rest[0])
        rec["bytes"]["uplink"] += work.wire_bytes
        rec["raw_input_left"] = plan.cut_edge == 0
        reply = await self._exchange(work)
        rec["bytes"]["downlink"] += reply.wire_bytes
        for k, v in reply.meta.get("t", {}).items():
            if k not in t and isinstance(v, int | float):
                t[k] = float(v)
        rec["edge_batch"] = reply.meta.get("edge_batch")
        return dict(reply.meta["answer"]), str(reply.meta.get("tier", "edge"))

    def _send(self, frame: Frame, rec: dict[str, Any]) -> None:
        assert self.link is not None
        data = encode_frame(frame)
        rec["bytes"]["uplink"] += len(data)
        with contextlib.suppress(ConnectionError):
            self.link.send(data)

    # -- outcome and utility

    def _complete(
        self, rec: dict[str, Any], a: Arrival, plan: Any, answer: dict[str, Any], tier: str
    ) -> None:
        w = self.setup.cfg.reward
        t = rec["t"]
        latency_s = t["done"] - t["arrival"]
        label = self.inputs.labels.get(a.image)
        correct = None if label is None else int(answer["prediction"]) == label
        acc = plan.accuracy if w.accuracy_mode == "expected" or correct is None else float(correct)
        capped = latency_s if w.latency_cap_s is None else min(latency_s, w.latency_cap_s)
        energy = rec.get("energy_j", 0.0)
        sent_mb = rec["bytes"]["uplink"] / MB
        rec.update(
            outcome="completed",
            drop_reason=None,
            tier=tier,
            exit_taken=answer.get("exit"),
            prediction=answer.get("prediction"),
            confidence=answer.get("confidence"),
            label=label,
            correct=correct,
            latency_ms=latency_s * 1e3,
            slo_met=latency_s * 1e3 <= a.deadline_ms,
            utility_parts={
                "accuracy": w.accuracy * acc,
                "latency": -w.latency_per_s * capped,
                "energy": -w.energy_per_j * energy,
                "slo_miss": -w.slo_miss * (latency_s * 1e3 > a.deadline_ms),
                "bytes": -w.bytes_per_mb * sent_mb,
                "privacy": -w.privacy * bool(rec.get("raw_input_left")),
                "drop": 0.0,
            },
        )
        rec["stages_ms"] = stages_ms(t)

    def _drop(self, rec: dict[str, Any], plan: Any, reason: str) -> None:
        w = self.setup.cfg.reward
        rec.update(
            outcome="dropped",
            drop_reason=reason,
            plan=rec.get("plan", None if plan is None else plan.name),
            utility_parts={
                "accuracy": 0.0, "latency": 0.0, "energy": 0.0, "slo_miss": 0.0,
                "bytes": -w.bytes_per_mb * rec["bytes"]["uplink"] / MB,
                "privacy": -w.privacy * bool(rec.get("raw_input_left")),
                "drop": -w.drop,
            },
        )  # fmt: skip
        rec["stages_ms"] = stages_ms(rec["t"])

    def _emit(self, rec: dict[str, Any]) -> None:
        rec["utility"] = sum(rec["utility_parts"].values())
        self.records.append(rec)
        if self.log is not None:
            self.log.write(json.dumps(rec, default=_json_default) + "\n")
            self.log.flush()


def stages_ms(t: dict[str, float]) -> dict[str, float]:
    """Per-stage durations [ms] of a record's timestamps (stages it did not pass are absent)."""
    return {name: (t[b] - t[a]) * 1e3 for name, a, b in STAGES if a in t and b in t}


def _answer(a: Answer) -> dict[str, Any]:
    return {"prediction": a.prediction, "confidence": a.confidence, "exit": a.exit}


def _floats(d: Any) -> dict[str, float]:
    if not isinstance(d, dict):
        return {}
    return {
        k: float(v)
        for k, v in d.items()
        if k in EDGE_REPORT_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
    }


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def open_log(path: str | None) -> IO[str] | None:
    """The JSON-lines log (parent folders created), or ``None``."""
    if path is None:
        return None
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p.open("w", encoding="utf-8")
