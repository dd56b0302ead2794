"""Links and the radio energy model.

A :class:`Link` is a first-in-first-out store-and-forward channel: a transfer starts when the
previous one has left the link, occupies it for as long as the bandwidth source needs to
deliver its bytes, and arrives one propagation delay later. The link delay is its own object,
outside sender and receiver (as in SimPy's ``latency.py`` example). Because the order of
transfers is FIFO and the bandwidth a known function of time, the departure time of each
transfer is computed exactly when it is enqueued, with one SimPy event per transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

BITS_PER_BYTE = 8
BITS_PER_MBIT = 1e6


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
    """A FIFO link with a time-varying bandwidth and a one-way propagation delay."""

    __slots__ = ("bandwidth", "busy_until_s", "bytes_sent", "prop_s", "transfers")

    def __init__(self, bandwidth: BandwidthSource, prop_delay_s: float) -> None:
        self.bandwidth = bandwidth
        self.prop_s = prop_delay_s
        self.busy_until_s = 0.0
        self.bytes_sent = 0
        self.transfers = 0

    def send(self, now_s: float, nbytes: int) -> tuple[float, float]:
        """Enqueue a transfer; return (time on air [s], arrival time at the receiver [s])."""
        start = now_s if now_s > self.busy_until_s else self.busy_until_s
        end = self.bandwidth.transfer_end_s(start, nbytes) if nbytes > 0 else start
        self.busy_until_s = end
        self.bytes_sent += nbytes
        self.transfers += 1
        return end - start, end + self.prop_s

    def backlog_s(self, now_s: float) -> float:
        return self.busy_until_s - now_s if self.busy_until_s > now_s else 0.0


@dataclass(frozen=True)
class RadioPowerModel:
    """Throughput-dependent radio power, P = alpha * throughput + beta while transferring.

    Energy of a transfer of ``bits`` lasting ``duration_s``: alpha * Mbit + beta * duration.
    Tail energy after the transfer (the RRC tail) is not modelled.
    """

    alpha_up_mw_per_mbps: float
    alpha_down_mw_per_mbps: float
    beta_mw: float
    source: str

    def uplink_energy_j(self, nbytes: int, duration_s: float) -> float:
        mbit = nbytes * BITS_PER_BYTE / BITS_PER_MBIT
        return (self.alpha_up_mw_per_mbps * mbit + self.beta_mw * duration_s) / 1e3

    def downlink_energy_j(self, nbytes: int, duration_s: float) -> float:
        mbit = nbytes * BITS_PER_BYTE / BITS_PER_MBIT
        return (self.alpha_down_mw_per_mbps * mbit + self.beta_mw * duration_s) / 1e3


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
