"""Links and the radio energy model.

A :class:`Link` is a first-in-first-out store-and-forward channel: a transfer starts when the
previous one has left the link, occupies it for as long as the bandwidth source needs to
deliver its bytes, and arrives one propagation delay later. The link delay is its own object,
outside sender and receiver (as in SimPy's ``latency.py`` example). Because the order of
transfers is FIFO and the bandwidth a known function of time, the departure time of each
transfer is computed exactly when it is enqueued, with one SimPy event per transfer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

BITS_PER_BYTE = 8
BITS_PER_MBIT = 1e6
BYTES_PER_S_PER_MBPS = BITS_PER_MBIT / BITS_PER_BYTE


class BandwidthSource(Protocol):
    """What a link needs of a bandwidth trace (see :class:`edgerl.envs.traces.BandwidthTrace`)."""

    def mbps_at(self, t_s: float) -> float: ...

    def transfer_end_s(self, start_s: float, nbytes: float) -> float: ...

    def mean_mbps(self, t0_s: float, t1_s: float) -> float: ...


@dataclass(frozen=True)
class ConstantBandwidth:
    """A fixed-rate link (the analytically solvable toy scenario, or a provisioned WAN)."""

    mbps: float

    def mbps_at(self, t_s: float) -> float:
        return self.mbps

    def transfer_end_s(self, start_s: float, nbytes: float) -> float:
        return start_s + nbytes * BITS_PER_BYTE / (self.mbps * BITS_PER_MBIT)

    def mean_mbps(self, t0_s: float, t1_s: float) -> float:
        return self.mbps


class Link:
    """A FIFO link with a time-varying bandwidth and a one-way propagation delay.

    Besides the scheduling horizon (``busy_until_s``, computed from the true trace and used
    only inside the simulator), the link keeps its not-yet-delivered transfers so that
    :meth:`queued_bytes` can answer what the sender knows at time t: the bytes it has handed
    to the link and that have not been delivered by t (delivery so far integrates the trace
    up to t only, never beyond).
    """

    __slots__ = ("_queue", "_queued_total", "bandwidth", "busy_until_s", "bytes_sent", "prop_s")

    def __init__(self, bandwidth: BandwidthSource, prop_delay_s: float) -> None:
        self.bandwidth = bandwidth
        self.prop_s = prop_delay_s
        self.busy_until_s = 0.0
        self.bytes_sent = 0
        # (start_s, end_s, nbytes) of every transfer not yet delivered, in FIFO order
        self._queue: deque[tuple[float, float, int]] = deque()
        self._queued_total = 0

    def send(self, now_s: float, nbytes: int) -> tuple[float, float]:
        """Enqueue a transfer; return its (start, end) on the link [s].

        It arrives at the receiver at ``end + prop_s``.
        """
        start = now_s if now_s > self.busy_until_s else self.busy_until_s
        end = self.bandwidth.transfer_end_s(start, nbytes) if nbytes > 0 else start
        self.busy_until_s = end
        self.bytes_sent += nbytes
        if end > now_s:
            self._queue.append((start, end, nbytes))
            self._queued_total += nbytes
        return start, end

    def skip(self, now_s: float, nbytes: int) -> float:
        """A transfer that is handed to the link but abandoned when it would start.

        Load shedding: the sender drops a request whose deadline has passed by the time its
        transfer reaches the head of the queue. Its bytes count as queued until then (the
        sender could not know earlier), it occupies no link time, and nothing is delivered.
        Returns the time it is abandoned [s].
        """
        at = now_s if now_s > self.busy_until_s else self.busy_until_s
        if at > now_s:
            self._queue.append((at, at, nbytes))
            self._queued_total += nbytes
        return at

    def queued_bytes(self, now_s: float) -> float:
        """Bytes handed to the link and not delivered by ``now_s`` (the sender's knowledge)."""
        q = self._queue
        while q and q[0][1] <= now_s:
            self._queued_total -= q.popleft()[2]
        if not q:
            return 0.0
        start = q[0][0]
        if start >= now_s:
            return float(self._queued_total)
        delivered = self.bandwidth.mean_mbps(start, now_s) * (now_s - start) * BYTES_PER_S_PER_MBPS
        return max(0.0, self._queued_total - delivered)

    def backlog_s(self, now_s: float) -> float:
        """Time until the link is idle, from the *true* future bandwidth (simulator only)."""
        return self.busy_until_s - now_s if self.busy_until_s > now_s else 0.0


class RadioActivity:
    """When a device's radio is on air: the union of its up- and downlink transfer intervals.

    Huang et al. (MobiSys 2012) model the radio's power while transferring as
    ``alpha_u * throughput_u + alpha_d * throughput_d + beta``: the base power beta is paid
    once while the radio is active, whether one or both directions transfer. :meth:`add`
    returns the part of a new transfer's interval not already covered (the time for which
    it adds beta) and merges it into the union.
    """

    __slots__ = ("_iv",)

    def __init__(self) -> None:
        self._iv: list[tuple[float, float]] = []  # disjoint, sorted by start

    def copy_from(self, other: RadioActivity) -> None:
        """Take ``other``'s intervals (the what-if replay adds to its own copy)."""
        self._iv = list(other._iv)

    def uncovered_s(self, start_s: float, end_s: float) -> float:
        """Length of ``[start_s, end_s]`` outside the current union [s] (no change)."""
        covered = 0.0
        for s, e in self._iv:
            if e > start_s and s < end_s:
                covered += (e if e < end_s else end_s) - (s if s > start_s else start_s)
        return (end_s - start_s) - covered

    def add(self, now_s: float, start_s: float, end_s: float) -> float:
        """Add a transfer on air over ``[start_s, end_s]``; return its uncovered length [s]."""
        iv = self._iv
        k = 0
        while k < len(iv) and iv[k][1] < now_s:  # ended: no future transfer can overlap
            k += 1
        if k:
            del iv[:k]
        if end_s <= start_s:
            return 0.0
        lo, hi, covered, keep = start_s, end_s, 0.0, []
        for s, e in iv:
            if e < start_s or s > end_s:
                keep.append((s, e))
                continue
            if e > start_s and s < end_s:
                covered += (e if e < end_s else end_s) - (s if s > start_s else start_s)
            lo, hi = min(lo, s), max(hi, e)
        keep.append((lo, hi))
        keep.sort()
        self._iv = keep
        return (end_s - start_s) - covered


@dataclass(frozen=True)
class RadioPowerModel:
    """Throughput-dependent radio power, P = alpha * throughput + beta while transferring.

    Energy of a transfer of ``bits``: alpha * Mbit + beta * ``on_air_s``, where ``on_air_s`` is
    the time the transfer adds to the radio's active time (:class:`RadioActivity`: beta is
    paid once while up- and downlink overlap). Tail energy after the transfer (the RRC tail)
    is not modelled.
    """

    alpha_up_mw_per_mbps: float
    alpha_down_mw_per_mbps: float
    beta_mw: float
    source: str

    def uplink_energy_j(self, nbytes: int, on_air_s: float) -> float:
        mbit = nbytes * BITS_PER_BYTE / BITS_PER_MBIT
        return (self.alpha_up_mw_per_mbps * mbit + self.beta_mw * on_air_s) / 1e3

    def downlink_energy_j(self, nbytes: int, on_air_s: float) -> float:
        mbit = nbytes * BITS_PER_BYTE / BITS_PER_MBIT
        return (self.alpha_down_mw_per_mbps * mbit + self.beta_mw * on_air_s) / 1e3


_HUANG_2012 = (
    "Huang, Qian, Gerber, Mao, Sen, Spatscheck: A Close Examination of Performance and Power "
    "Characteristics of 4G LTE Networks, MobiSys 2012, data-transfer power model "
    "(alpha_u, alpha_d, beta per network type). Values as commonly reproduced from the "
    "paper's power-model table; not re-checked against the PDF in this repository."
)

#: Huang et al., MobiSys 2012 (see ``_HUANG_2012``): mW/Mbps uplink, mW/Mbps downlink, mW base.
RADIO_MODELS: dict[str, RadioPowerModel] = {
    "lte": RadioPowerModel(438.39, 51.97, 1288.04, _HUANG_2012),
    "3g": RadioPowerModel(868.98, 122.12, 817.88, _HUANG_2012),
    "wifi": RadioPowerModel(283.17, 137.01, 132.86, _HUANG_2012),
}
