"""Real network bandwidth traces: loaders, the train/eval split registry and a fast trace object.

This module is part of the Gymnasium-free simulator core (numpy only). Its central type is
:class:`BandwidthTrace`, an immutable, periodic, piecewise-constant bandwidth function of
simulated time that the SimPy links query once per transfer:

* ``mbps_at(t_s)``: the bandwidth at time ``t_s``;
* ``transfer_end_s(start_s, nbytes)``: when a transfer of ``nbytes`` that starts at ``start_s``
  and has the link to itself ends (the bandwidth integrated over time);
* ``mean_mbps(t0_s, t1_s)``: the mean bandwidth over an interval (what a device could have
  measured over its recent past).

Model of a trace
----------------
Samples ``(t_i, b_i)`` with ``0 = t_0 < t_1 < ... < t_{n-1} < duration_s``: the bandwidth is
``b_i`` on ``[t_i, t_{i+1})`` and ``b_{n-1}`` on ``[t_{n-1}, duration_s)``. A looping trace
repeats with period ``duration_s`` (Pensieve's simulator and mahimahi's ``mm-link`` both
replay a trace from the start when it ends). A per-trace ``offset_s`` shifts the trace in
time, so that many devices can share one measured trace without moving in lock-step.

Units: times in seconds, bandwidth in Mbit/s with SI prefixes (1 Mbit/s = 10^6 bit/s, as in
Pensieve's traces and mahimahi's throughput graphs), sizes in bytes.

File formats
------------
* **Pensieve** (``norway-hsdpa-3g``, ``fcc-broadband``): one ``time_s throughput_Mbps`` pair per
  line (Mao et al., "Neural Adaptive Video Streaming with Pensieve", SIGCOMM 2017). The last
  sample lasts the median sampling step of the file.
* **mahimahi** (``mahimahi-cellular``): one integer per line, a time in milliseconds at which
  one 1500-byte packet can leave the bottleneck (Winstein et al., "Stochastic Forecasts Achieve
  High Throughput and Low Delay over Cellular Networks", NSDI 2013; Netravali et al.,
  "Mahimahi: Accurate Record-and-Replay for HTTP", USENIX ATC 2015). See
  :func:`load_mahimahi_trace` for the conversion to Mbit/s.
* **Irish 5G CSV** (``irish-5g``; Raca et al., "Beyond Throughput, The Next Generation: A 5G
  Dataset with Channel and Context Metrics", MMSys 2020): ``DL_bitrate``/``UL_bitrate`` in
  kbit/s, ``-`` for a missing value. Each file gives two traces, ``DL_bitrate`` (direction
  ``down``) and ``UL_bitrate`` (``up``). See :func:`load_irish5g_csv`; read the family's
  ``SOURCE.md`` before using the ``up`` traces: in these bulk-download sessions the uplink
  column is the traffic the phone sent (TCP acknowledgements), not the uplink's capacity.

The shipped traces live in ``envs/data/traces/<family>/`` with their ``SOURCE.md`` and licence;
``envs/data/traces/splits.json`` says which traces (or, for mahimahi, which time windows) are
training data and which are held out for evaluation, and why.
"""

from __future__ import annotations

import copy
import csv
import functools
import json
import math
import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Split = Literal["train", "eval"]
Direction = Literal["up", "down", "unknown"]
TraceFormat = Literal["pensieve", "mahimahi", "irish5g"]

TRACE_DATA_DIR = Path(__file__).resolve().parent / "data" / "traces"
SPLITS_FILENAME = "splits.json"
SPLITS_KIND = "edgerl.trace_splits"
SPLITS_SCHEMA_VERSION = 1

BITS_PER_BYTE = 8
BITS_PER_MBIT = 1_000_000  # SI mega, the unit of Pensieve's traces and mahimahi's graphs
BYTES_PER_S_PER_MBPS = BITS_PER_MBIT / BITS_PER_BYTE  # 1 Mbit/s = 125,000 B/s (derived)
MS_PER_S = 1000
US_PER_S = 1_000_000
KBIT_PER_MBIT = 1000

# Each line of a mahimahi trace is an opportunity to deliver one packet of this size, per
# mahimahi's `traces/README` ("an opportunity for one 1500-byte packet to be drained from the
# bottleneck queue"; a file holding just "1" is "one MTU-sized packet per millisecond (12 Mbps)").
# mm-link's code (`src/frontend/link_queue.hh`, ravinet/mahimahi @2c50ceb) drains up to
# PACKET_SIZE = 1504 B per opportunity, "default max TUN payload size"; the 4 B difference
# (0.27%) is ignored here, as in the shared data set's SOURCE.md means.
MAHIMAHI_PACKET_BYTES = 1500
# Averaging window used to turn mahimahi's packet opportunities into a bandwidth series. A
# modelling choice, not a measured value: 1 s matches the ~1 s sampling of the other families
# (Norway logs: bytes per ~1 s interval, Riiser et al. MMSys 2013; Irish 5G: one row per second).
DEFAULT_MAHIMAHI_WINDOW_MS = 1000

IRISH5G_TIME_FORMAT = "%Y.%m.%d_%H.%M.%S"  # e.g. 2019.12.14_10.16.30 (Raca et al. MMSys 2020)
IRISH5G_MISSING = "-"
IRISH5G_COLUMNS: dict[str, Direction] = {"DL_bitrate": "down", "UL_bitrate": "up"}


class TraceError(ValueError):
    """A trace file or the split manifest is malformed; the message names file and line (or key)."""


# ----------------------------------------------------------------------------- the trace


@dataclass(frozen=True, eq=False)
class BandwidthTrace:
    """An immutable, piecewise-constant bandwidth trace with fast per-transfer queries.

    Attributes:
        name: Trace name, unique within its family (the file name, plus a time window if any).
        family: Family (data set) the trace belongs to, e.g. ``"norway-hsdpa-3g"``.
        times_s: Sample start times [s], strictly increasing, starting at 0 (read-only array).
        mbps: Bandwidth of each sample [Mbit/s], non-negative, not all zero (read-only array).
        duration_s: Length of one period [s]; the last sample lasts until ``duration_s``.
        direction: ``"up"`` or ``"down"`` for the link direction the trace was measured on.
        looping: If true, time wraps modulo ``duration_s``; if false, a query outside
            ``[0, duration_s]`` raises :class:`ValueError` (use it to prove an episode never
            reuses trace data).
        offset_s: Simulated time ``t`` reads the underlying trace at ``t + offset_s``.
        source: Where the data came from (a file path), for error messages and records.

    Raises:
        TraceError: On construction, if the samples violate the model above (including a trace
            whose bandwidth is zero everywhere: no transfer could ever end).
    """

    name: str
    family: str
    times_s: FloatArray
    mbps: FloatArray
    duration_s: float
    direction: Direction = "unknown"
    looping: bool = True
    offset_s: float = 0.0
    source: str = ""
    # Precomputed for the hot methods: python lists, because `bisect` on a list is about ten
    # times faster than `np.searchsorted` on a scalar (0.26 vs 2.7 us per lookup, timeit on
    # this project's 2-core build machine; `benchmark_queries` re-measures the methods).
    _t: list[float] = field(init=False, repr=False)  # sample starts, then duration_s (n + 1)
    _cum: list[float] = field(init=False, repr=False)  # bytes deliverable from 0 to _t[i]
    _rate: list[float] = field(init=False, repr=False)  # bytes per second of each sample
    _mbps: list[float] = field(init=False, repr=False)
    _n: int = field(init=False, repr=False)
    _period_bytes: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        where = f"trace {self.family}/{self.name}" + (f" ({self.source})" if self.source else "")
        times = np.array(self.times_s, dtype=np.float64)
        mbps = np.array(self.mbps, dtype=np.float64)
        duration_s = float(self.duration_s)
        offset_s = float(self.offset_s)
        if times.ndim != 1 or mbps.ndim != 1 or times.size != mbps.size:
            raise TraceError(
                f"{where}: times_s and mbps must be 1-D of equal length, "
                f"got shapes {times.shape} and {mbps.shape}"
            )
        if times.size == 0:
            raise TraceError(f"{where}: no samples")
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(mbps))):
            raise TraceError(f"{where}: times_s and mbps must be finite")
        if times[0] != 0.0:
            raise TraceError(f"{where}: times_s must start at 0, got {times[0]}")
        if np.any(np.diff(times) <= 0.0):
            raise TraceError(f"{where}: times_s must be strictly increasing")
        if np.any(mbps < 0.0):
            raise TraceError(f"{where}: bandwidth must be >= 0 Mbit/s")
        if not np.any(mbps > 0.0):
            raise TraceError(f"{where}: bandwidth is zero everywhere; no transfer could end")
        if not (math.isfinite(duration_s) and duration_s > times[-1]):
            raise TraceError(
                f"{where}: duration_s must be finite and after the last sample "
                f"({times[-1]} s), got {duration_s}"
            )
        if not math.isfinite(offset_s):
            raise TraceError(f"{where}: offset_s must be finite, got {offset_s}")
        if self.direction not in get_args(Direction):
            raise TraceError(f"{where}: direction must be one of {get_args(Direction)}")
        times.flags.writeable = False
        mbps.flags.writeable = False
        step_s = np.diff(np.append(times, duration_s))
        rate = mbps * BYTES_PER_S_PER_MBPS
        cum = np.concatenate(([0.0], np.cumsum(rate * step_s)))
        for name, value in (
            ("times_s", times),
            ("mbps", mbps),
            ("duration_s", duration_s),
            ("offset_s", offset_s),
            ("_t", [*times.tolist(), duration_s]),
            ("_cum", cum.tolist()),
            ("_rate", rate.tolist()),
            ("_mbps", mbps.tolist()),
            ("_n", int(times.size)),
            ("_period_bytes", float(cum[-1])),
        ):
            object.__setattr__(self, name, value)

    # -- hot methods (called per transfer by the simulator) ------------------------------

    def mbps_at(self, t_s: float) -> float:
        """Bandwidth [Mbit/s] at simulated time ``t_s`` [s]."""
        x = t_s + self.offset_s
        if self.looping:
            x %= self.duration_s
        elif not 0.0 <= x <= self.duration_s:
            raise self._outside(t_s)
        return self._mbps[bisect_right(self._t, x, 0, self._n) - 1]

    def transfer_end_s(self, start_s: float, nbytes: float) -> float:
        """Time [s] at which a transfer of ``nbytes`` starting at ``start_s`` has been delivered.

        The transfer has the link to itself and gets the full trace bandwidth: the end is the
        earliest ``t`` with ``integral_{start_s}^{t} bandwidth = nbytes``. Zero-bandwidth
        intervals simply pass without progress; a looping trace is followed over as many
        periods as needed (cost O(log n), independent of the number of periods).

        Args:
            start_s: Start of the transfer in simulated time [s].
            nbytes: Bytes to deliver, >= 0 (0 returns ``start_s``).

        Returns:
            The end time [s], >= ``start_s``.

        Raises:
            ValueError: If ``nbytes`` is negative, or a non-looping trace ends first.
        """
        if nbytes <= 0:
            if nbytes == 0:
                return start_s
            raise ValueError(f"trace {self.name}: nbytes must be >= 0, got {nbytes}")
        t = self._t
        cum = self._cum
        rate = self._rate
        n = self._n
        period_s = self.duration_s
        period_bytes = self._period_bytes
        x = start_s + self.offset_s
        if self.looping:
            k, u = divmod(x, period_s)
        elif 0.0 <= x <= period_s:
            k, u = 0.0, x
        else:
            raise self._outside(start_s)
        i = bisect_right(t, u, 0, n) - 1
        target = cum[i] + rate[i] * (u - t[i]) + nbytes  # bytes since the period's start
        if target > period_bytes:
            if not self.looping:
                raise ValueError(
                    f"trace {self.name}: a {nbytes} B transfer from {start_s} s would run past "
                    f"the end of the non-looping trace ({period_s} s)"
                )
            m, r = divmod(target, period_bytes)
            if r <= 0.0:  # ends exactly at a period boundary: the earliest such time
                m -= 1.0
                r += period_bytes
        else:
            m, r = 0.0, target
        j = bisect_left(cum, r)
        if j > n:  # r above the period total by rounding only
            end_in_period = period_s
        elif cum[j] == r:
            end_in_period = t[j]
        else:  # cum[j-1] < r < cum[j]: sample j-1 has a positive rate
            end_in_period = t[j - 1] + (r - cum[j - 1]) / rate[j - 1]
        end = (k + m) * period_s + end_in_period - self.offset_s
        return end if end > start_s else start_s

    def mean_mbps(self, t0_s: float, t1_s: float) -> float:
        """Mean bandwidth [Mbit/s] over ``[t0_s, t1_s]`` (the bandwidth at ``t0_s`` if equal).

        An observation of measured past bandwidth calls it with ``t1_s`` = now, so that it
        never looks at future trace values.

        Raises:
            ValueError: If ``t1_s < t0_s``, or the interval leaves a non-looping trace.
        """
        if t1_s <= t0_s:
            if t1_s == t0_s:
                return self.mbps_at(t0_s)
            raise ValueError(
                f"trace {self.name}: mean_mbps needs t0_s <= t1_s, got {t0_s} > {t1_s}"
            )
        delivered = self._bytes_until(t1_s) - self._bytes_until(t0_s)
        return delivered / (t1_s - t0_s) / BYTES_PER_S_PER_MBPS

    def _bytes_until(self, t_s: float) -> float:
        """Bytes the trace can deliver from base time 0 up to simulated time ``t_s``."""
        x = t_s + self.offset_s
        if self.looping:
            k, u = divmod(x, self.duration_s)
        elif 0.0 <= x <= self.duration_s:
            k, u = 0.0, x
        else:
            raise self._outside(t_s)
        i = bisect_right(self._t, u, 0, self._n) - 1
        return k * self._period_bytes + self._cum[i] + self._rate[i] * (u - self._t[i])

    def _outside(self, t_s: float) -> ValueError:
        return ValueError(
            f"trace {self.name}: time {t_s} s (offset {self.offset_s} s) is outside the "
            f"non-looping trace [0, {self.duration_s}] s"
        )

    # -- derived traces --------------------------------------------------------------------

    @property
    def period_bytes(self) -> float:
        """Bytes one full period can deliver."""
        return self._period_bytes

    def with_offset(self, offset_s: float) -> BandwidthTrace:
        """The same trace read ``offset_s`` seconds later.

        ``trace.with_offset(d).mbps_at(t) == trace.mbps_at(t + d)``. Offsets compose with the
        existing one (``offset_s`` is added to it).
        """
        offset_s = self.offset_s + float(offset_s)
        if not math.isfinite(offset_s):
            raise ValueError(f"trace {self.name}: offset must be finite, got {offset_s}")
        # The trace is immutable, so the copy shares arrays and precomputed tables: about 3 us
        # instead of about 86 us for re-validating and recomputing them (timeit, FCC trace).
        shifted = copy.copy(self)
        object.__setattr__(shifted, "offset_s", offset_s)
        return shifted

    def with_random_offset(self, rng: np.random.Generator) -> BandwidthTrace:
        """A copy with an offset drawn uniformly from ``[0, duration_s)`` with ``rng``.

        Use one draw per device so that devices sharing a trace are not in lock-step.
        """
        return self.with_offset(float(rng.uniform(0.0, self.duration_s)))

    def scaled(self, factor: float) -> BandwidthTrace:
        """The trace with every bandwidth sample multiplied by ``factor`` (> 0).

        Scaling keeps the timing and the relative variability (coefficient of variation) of
        the measured trace and multiplies its mean by ``factor``. Use it for scenarios that
        need a faster or slower access link with realistic dynamics (e.g. a 3G trace shape
        at LTE rates). A scaled trace is no longer a measurement: the name records the factor.
        """
        if not (math.isfinite(factor) and factor > 0.0):
            raise ValueError(
                f"trace {self.name}: scale factor must be finite and > 0, got {factor}"
            )
        if factor == 1.0:
            return self
        return replace(self, name=f"{self.name}*{factor:g}", mbps=self.mbps * factor)

    def scaled_to_mean(self, target_mbps: float) -> BandwidthTrace:
        """The trace scaled so that its mean over one period is ``target_mbps``."""
        return self.scaled(target_mbps / self.mean_mbps_period())

    def mean_mbps_period(self) -> float:
        """Time-weighted mean bandwidth [Mbit/s] over one period."""
        return self._period_bytes / self.duration_s / BYTES_PER_S_PER_MBPS

    def window(self, start_s: float, end_s: float) -> BandwidthTrace:
        """The part of one period between ``start_s`` and ``end_s`` as a trace of its own.

        Times are in the trace's own time base (the offset is ignored and reset to 0); the
        result starts at time 0 and lasts ``end_s - start_s``.
        """
        if not 0.0 <= start_s < end_s <= self.duration_s:
            raise ValueError(
                f"trace {self.name}: window [{start_s}, {end_s}] s must satisfy "
                f"0 <= start < end <= {self.duration_s}"
            )
        i0 = bisect_right(self._t, start_s, 0, self._n) - 1
        i1 = bisect_left(self._t, end_s, 0, self._n)
        times = np.concatenate(([start_s], self.times_s[i0 + 1 : i1])) - start_s
        return replace(
            self,
            name=f"{self.name}[{start_s:g}-{end_s:g}s]",
            times_s=times,
            mbps=self.mbps[i0:i1],
            duration_s=end_s - start_s,
            offset_s=0.0,
        )

    def __repr__(self) -> str:
        return (
            f"BandwidthTrace({self.family}/{self.name}, {self._n} samples, "
            f"{self.duration_s:g} s, mean {self.mean_mbps_period():.3g} Mbit/s, {self.direction}"
            f"{', looping' if self.looping else ''}"
            f"{f', offset {self.offset_s:g} s' if self.offset_s else ''})"
        )


def splice(traces: Sequence[BandwidthTrace], name: str) -> BandwidthTrace:
    """Concatenate traces in time: each starts where the previous one's period ends.

    Used to join disjoint time windows of one recording into one looping trace. All parts
    must share family and direction; offsets are ignored, and the result loops if the first
    part does.
    """
    if not traces:
        raise ValueError("splice needs at least one trace")
    first = traces[0]
    for tr in traces[1:]:
        if (tr.family, tr.direction) != (first.family, first.direction):
            raise ValueError(
                f"splice: {tr.name} is {tr.family}/{tr.direction}, "
                f"but {first.name} is {first.family}/{first.direction}"
            )
    starts = np.cumsum([0.0] + [tr.duration_s for tr in traces[:-1]])
    return BandwidthTrace(
        name=name,
        family=first.family,
        times_s=np.concatenate([tr.times_s + t0 for tr, t0 in zip(traces, starts, strict=True)]),
        mbps=np.concatenate([tr.mbps for tr in traces]),
        duration_s=float(starts[-1] + traces[-1].duration_s),
        direction=first.direction,
        looping=first.looping,
        source=first.source,
    )


# ----------------------------------------------------------------------------- loaders


def _file_key(path: str | Path) -> tuple[str, int, int]:
    """Cache key of a file: absolute path, modification time and size (edits invalidate)."""
    p = os.path.abspath(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise TraceError(f"{p}: cannot read trace file ({exc.strerror})") from None
    return p, st.st_mtime_ns, st.st_size


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not a UTF-8 text file ({exc.reason})") from None


def _last_step_s(times: Sequence[float]) -> float:
    """The median sampling step: how long the last sample of a file is taken to last."""
    return float(np.median(np.diff(np.asarray(times, dtype=np.float64))))


def load_pensieve_trace(path: str | Path, *, family: str | None = None) -> BandwidthTrace:
    """Load a Pensieve-format trace: one ``time_s throughput_Mbps`` pair per line.

    Blank lines are skipped. Times must strictly increase; they are shifted so that the first
    sample is at 0. The last sample lasts the file's median sampling step. Parsed traces are
    cached per (file, modification time, family).

    Args:
        path: The trace file.
        family: Family name to record; defaults to the name of the file's folder.

    Returns:
        A looping :class:`BandwidthTrace` with ``direction="down"`` (both Pensieve families
        measured downlink TCP throughput).

    Raises:
        TraceError: Naming the file and line, for a non-numeric or non-finite value, a wrong
            number of columns, a non-increasing time, a negative bandwidth, fewer than two
            samples, or a file whose bandwidth is zero everywhere.
    """
    key = _file_key(path)
    return _load_pensieve_cached(*key, family or Path(key[0]).parent.name)


@functools.lru_cache(maxsize=512)
def _load_pensieve_cached(path: str, _mtime_ns: int, _size: int, family: str) -> BandwidthTrace:
    times: list[float] = []
    mbps: list[float] = []
    first_line = last_line = 0
    for lineno, raw in enumerate(_read_text(path).splitlines(), start=1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 2:  # noqa: PLR2004 (the format has two columns)
            raise TraceError(
                f"{path}:{lineno}: expected 2 columns 'time_s throughput_Mbps', "
                f"got {len(parts)}: {raw!r}"
            )
        try:
            t_s, bw = float(parts[0]), float(parts[1])
        except ValueError:
            raise TraceError(f"{path}:{lineno}: non-numeric value in {raw!r}") from None
        if not (math.isfinite(t_s) and math.isfinite(bw)):
            raise TraceError(f"{path}:{lineno}: non-finite value in {raw!r}")
        if times and t_s <= times[-1]:
            raise TraceError(
                f"{path}:{lineno}: time {t_s} s does not increase "
                f"(previous sample at {times[-1]} s)"
            )
        if bw < 0.0:
            raise TraceError(f"{path}:{lineno}: negative bandwidth {bw} Mbit/s")
        times.append(t_s)
        mbps.append(bw)
        first_line = first_line or lineno
        last_line = lineno
    if not times:
        raise TraceError(f"{path}: no samples (empty file)")
    if len(times) < 2:  # noqa: PLR2004
        raise TraceError(f"{path}:{first_line}: only one sample; need two to know the step")
    if not any(b > 0.0 for b in mbps):
        raise TraceError(
            f"{path}:{first_line}-{last_line}: every bandwidth sample is zero; "
            f"a trace must carry some bandwidth"
        )
    t0 = times[0]
    rel = np.asarray(times, dtype=np.float64) - t0
    return BandwidthTrace(
        name=Path(path).name,
        family=family,
        times_s=rel,
        mbps=np.asarray(mbps, dtype=np.float64),
        duration_s=float(rel[-1]) + _last_step_s(times),
        direction="down",
        source=path,
    )


def load_mahimahi_trace(
    path: str | Path,
    *,
    window_ms: int = DEFAULT_MAHIMAHI_WINDOW_MS,
    family: str | None = None,
) -> BandwidthTrace:
    """Load a mahimahi packet-delivery trace and convert it to Mbit/s per time window.

    Format (Winstein et al., NSDI 2013; mahimahi ``traces/README``): one integer per line, a
    time in ms since the start of the trace; each line is one opportunity to deliver one
    1500-byte packet, and k lines with the same time are k packets in that millisecond. The
    trace repeats with period equal to its last timestamp (mahimahi ``link_queue.cc``:
    ``base_timestamp_ += schedule_.back()`` on wrap-around); like mahimahi, an empty line,
    a decreasing time or a last time of 0 is an error.

    Conversion: the period ``[0, T]`` (T = last timestamp, ms) is cut into
    ``max(1, floor(T / window_ms))`` windows of ``window_ms``; a remainder shorter than a
    window is merged into the last window, so every opportunity is counted once and a period
    delivers exactly ``lines * 1500`` bytes. For a window of length L ms holding c lines::

        bandwidth_Mbps = c * 1500 B * 8 bit/B / (L / 1000 s) / 10^6 = c * 12 / L

    The rate is spread evenly over each window: a transfer much shorter than a window sees
    the window's average, not mahimahi's packet-level timing. Smaller windows (e.g. 100 ms)
    keep more of the burstiness.

    Args:
        path: The trace file (``*.up`` / ``*.down`` set the direction).
        window_ms: Averaging window [ms], a positive integer.
        family: Family name to record; defaults to the name of the file's folder.

    Returns:
        A looping :class:`BandwidthTrace` of duration T / 1000 s.

    Raises:
        TraceError: Naming file and line, for an empty file or line, a non-integer or negative
            time, a decreasing time, or a trace whose last time is 0.
    """
    if not (isinstance(window_ms, int) and window_ms > 0):
        raise TraceError(f"{path}: window_ms must be a positive integer, got {window_ms!r}")
    key = _file_key(path)
    return _load_mahimahi_cached(*key, window_ms, family or Path(key[0]).parent.name)


@functools.lru_cache(maxsize=128)
def _load_mahimahi_cached(
    path: str, _mtime_ns: int, _size: int, window_ms: int, family: str
) -> BandwidthTrace:
    lines = _read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if not lines:
        raise TraceError(f"{path}: no samples (empty file)")
    try:
        stamps = [int(s) for s in lines]
    except ValueError:
        for lineno, s in enumerate(lines, start=1):
            if not s.strip():
                raise TraceError(f"{path}:{lineno}: empty line") from None
            try:
                int(s)
            except ValueError:
                raise TraceError(f"{path}:{lineno}: not an integer time in ms: {s!r}") from None
        raise  # pragma: no cover (the loop above finds the line)
    ms = np.asarray(stamps, dtype=np.int64)
    if ms.min() < 0:
        lineno = int(np.argmax(ms < 0)) + 1
        raise TraceError(f"{path}:{lineno}: negative time {ms[lineno - 1]} ms")
    drops = np.flatnonzero(np.diff(ms) < 0)
    if drops.size:
        lineno = int(drops[0]) + 2
        raise TraceError(
            f"{path}:{lineno}: time {ms[lineno - 1]} ms decreases "
            f"(previous line {ms[lineno - 2]} ms); times must be non-decreasing"
        )
    period_ms = int(ms[-1])
    if period_ms == 0:
        raise TraceError(f"{path}:{len(lines)}: last time is 0 ms; the trace must last > 0 ms")
    n_windows = max(1, period_ms // window_ms)
    counts = np.bincount(np.minimum(ms // window_ms, n_windows - 1), minlength=n_windows)
    length_ms = np.full(n_windows, float(window_ms))
    length_ms[-1] = period_ms - (n_windows - 1) * window_ms
    bits_per_packet = MAHIMAHI_PACKET_BYTES * BITS_PER_BYTE
    mbps = counts * bits_per_packet / (length_ms / MS_PER_S) / BITS_PER_MBIT
    suffix = Path(path).suffix
    direction: Direction = "up" if suffix == ".up" else "down" if suffix == ".down" else "unknown"
    return BandwidthTrace(
        name=Path(path).name,
        family=family,
        times_s=np.arange(n_windows, dtype=np.float64) * (window_ms / MS_PER_S),
        mbps=mbps,
        duration_s=period_ms / MS_PER_S,
        direction=direction,
        source=path,
    )


def load_irish5g_csv(
    path: str | Path, *, column: str = "DL_bitrate", family: str | None = None
) -> BandwidthTrace:
    """Load one CSV of the Irish 5G data set (Raca et al., MMSys 2020) as a trace.

    ``column`` is ``DL_bitrate`` or ``UL_bitrate`` (kbit/s over the last second, as logged by
    G-NetTrack Pro). Rows whose value is ``-`` (missing) are skipped: the previous sample then
    lasts until the next valid one. The logger's clock has 1 s resolution and sometimes writes
    two rows with the same ``Timestamp``; such rows are averaged into one sample. Times are
    seconds since the first valid row; the last sample lasts the median step.

    Raises:
        TraceError: Naming file and line, for a missing column, an unparsable timestamp, a
            time going backwards, a non-numeric or negative value, too few valid rows, or a
            column that is zero everywhere.
    """
    if column not in IRISH5G_COLUMNS:
        raise TraceError(f"{path}: column must be one of {sorted(IRISH5G_COLUMNS)}, got {column!r}")
    key = _file_key(path)
    return _load_irish5g_cached(*key, column, family or Path(key[0]).parent.name)


@functools.lru_cache(maxsize=128)
def _load_irish5g_cached(
    path: str, _mtime_ns: int, _size: int, column: str, family: str
) -> BandwidthTrace:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for needed in ("Timestamp", column):
            if needed not in header:
                raise TraceError(f"{path}:1: header has no column {needed!r}")
        seconds: list[float] = []
        sums: list[float] = []
        counts: list[int] = []
        previous: datetime | None = None
        origin: datetime | None = None
        first_line = 0
        for row in reader:
            lineno = reader.line_num
            stamp, value = row["Timestamp"], row[column]
            if value is None or stamp is None:
                raise TraceError(f"{path}:{lineno}: row has fewer columns than the header")
            try:
                when = datetime.strptime(stamp, IRISH5G_TIME_FORMAT)
            except ValueError:
                raise TraceError(
                    f"{path}:{lineno}: Timestamp {stamp!r} is not {IRISH5G_TIME_FORMAT}"
                ) from None
            if previous is not None and when < previous:
                raise TraceError(f"{path}:{lineno}: Timestamp {stamp} goes back in time")
            previous = when
            if value.strip() == IRISH5G_MISSING:
                continue
            try:
                kbps = float(value)
            except ValueError:
                raise TraceError(f"{path}:{lineno}: {column} {value!r} is not a number") from None
            if not math.isfinite(kbps) or kbps < 0.0:
                raise TraceError(f"{path}:{lineno}: {column} must be finite and >= 0, got {kbps}")
            if origin is None:
                origin, first_line = when, lineno
            t_s = (when - origin).total_seconds()
            if seconds and t_s == seconds[-1]:
                sums[-1] += kbps
                counts[-1] += 1
            else:
                seconds.append(t_s)
                sums.append(kbps)
                counts.append(1)
    if len(seconds) < 2:  # noqa: PLR2004
        raise TraceError(f"{path}: fewer than two valid {column} samples")
    mbps = np.asarray(sums) / np.asarray(counts) / KBIT_PER_MBIT
    if not np.any(mbps > 0.0):
        raise TraceError(f"{path}:{first_line}-{lineno}: {column} is zero everywhere")
    return BandwidthTrace(
        name=f"{Path(path).name}:{column}",
        family=family,
        times_s=np.asarray(seconds),
        mbps=mbps,
        duration_s=seconds[-1] + _last_step_s(seconds),
        direction=IRISH5G_COLUMNS[column],
        source=path,
    )


# ----------------------------------------------------------------------------- user traces

UserFormat = Literal["auto", "pensieve", "mahimahi", "csv", "irish5g"]
Unit = Literal["mbps", "kbps", "bps"]
UNIT_PER_MBPS: dict[str, float] = {"mbps": 1.0, "kbps": 1e3, "bps": 1e6}  # SI prefixes
#: Above this mean a trace is almost surely in another unit than the one it was read in
#: (kbit/s read as Mbit/s): 10x the IMT-2020 user-experienced downlink data rate requirement
#: of 100 Mbit/s (ITU-R M.2410-0, 2017, sec. 4.2) and about 30x the fastest mean of the
#: shipped traces (irish-5g eval downlink, 33.62 Mbit/s, printed by `edgerl traces`). [Mbit/s]
IMPLAUSIBLE_MEAN_MBPS = 1_000.0


def unit_from_column(column: str | None) -> Unit | None:
    """The unit a column name states by its suffix (``up_kbps`` -> ``kbps``), else None."""
    if column is None:
        return None
    name = column.lower()
    for unit in ("kbps", "mbps", "bps"):  # "bps" last: "_kbps" also ends in "bps"
        if name.endswith(f"_{unit}") or name == unit:
            return unit
    return None


def plausibility_warning(trace: BandwidthTrace) -> str | None:
    """A warning if ``trace``'s mean bandwidth is implausible (wrong unit?), else None."""
    mean = trace.mean_mbps_period()
    if mean > IMPLAUSIBLE_MEAN_MBPS:
        return (
            f"{trace.source or trace.name}: mean {mean:,.0f} Mbit/s is implausible for a "
            f"network trace (above {IMPLAUSIBLE_MEAN_MBPS:,.0f} Mbit/s); is the unit right? "
            "(--unit kbps | bps)"
        )
    return None


CSV_TIME_COLUMN = "time_s"


def load_csv_trace(
    path: str | Path,
    *,
    column: str,
    unit: Unit = "mbps",
    time_column: str = CSV_TIME_COLUMN,
    family: str = "user",
) -> BandwidthTrace:
    """A comma-separated file with a header: ``time_column`` [s] and a bandwidth ``column``.

    Times must strictly increase (shifted to start at 0); the last sample lasts the median
    step. Values are converted from ``unit`` to Mbit/s.

    Raises:
        TraceError: naming file and line, for a missing column, a non-numeric, non-finite or
            negative value, a time that does not increase, fewer than two samples or a trace
            that is zero everywhere.
    """
    if unit not in UNIT_PER_MBPS:
        raise TraceError(f"{path}: unit must be one of {sorted(UNIT_PER_MBPS)}, got {unit!r}")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if not header:
            raise TraceError(f"{path}: empty file")
        for needed in (time_column, column):
            if needed not in header:
                raise TraceError(f"{path}:1: header has no column {needed!r} (has {header})")
        times: list[float] = []
        values: list[float] = []
        for row in reader:
            lineno = reader.line_num
            try:
                t_s, v = float(row[time_column]), float(row[column])
            except (TypeError, ValueError):
                raise TraceError(
                    f"{path}:{lineno}: {time_column!r} or {column!r} is not a number"
                ) from None
            if not (math.isfinite(t_s) and math.isfinite(v)):
                raise TraceError(f"{path}:{lineno}: non-finite value")
            if v < 0.0:
                raise TraceError(f"{path}:{lineno}: negative bandwidth {v} {unit}")
            if times and t_s <= times[-1]:
                raise TraceError(f"{path}:{lineno}: time {t_s} s does not increase")
            times.append(t_s)
            values.append(v / UNIT_PER_MBPS[unit])
    if len(times) < 2:  # noqa: PLR2004
        raise TraceError(f"{path}: fewer than two samples")
    if not any(v > 0 for v in values):
        raise TraceError(f"{path}: {column} is zero everywhere")
    rel = np.asarray(times) - times[0]
    return BandwidthTrace(
        name=f"{Path(path).name}:{column}",
        family=family,
        times_s=rel,
        mbps=np.asarray(values),
        duration_s=float(rel[-1]) + _last_step_s(times),
        source=str(path),
    )


def detect_format(path: str | Path) -> str:
    """Guess a trace file's format from its first non-empty line."""
    try:
        with open(path, encoding="utf-8") as f:
            first = next((ln.strip() for ln in f if ln.strip()), "")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read: {exc}") from None
    if not first:
        raise TraceError(f"{path}: empty file")
    if "DL_bitrate" in first and "Timestamp" in first:
        return "irish5g"
    if "," in first:
        return "csv"
    parts = first.split()
    if len(parts) == 1 and parts[0].isdigit():
        return "mahimahi"
    if len(parts) == 2:  # noqa: PLR2004 (time_s throughput_Mbps)
        return "pensieve"
    raise TraceError(
        f"{path}:1: cannot tell the format from {first[:60]!r}; give format: pensieve | "
        "mahimahi | csv | irish5g"
    )


def load_user_trace(
    path: str | Path, fmt: str = "auto", column: str | None = None, unit: Unit = "mbps"
) -> BandwidthTrace:
    """Load one of a user's trace files in any supported format (``auto``: detected)."""
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "pensieve":
        return load_pensieve_trace(path, family="user")
    if kind == "mahimahi":
        return load_mahimahi_trace(path, family="user")
    if kind == "irish5g":
        return load_irish5g_csv(path, column=column or "DL_bitrate", family="user")
    if kind == "csv":
        if column is None:
            raise TraceError(f"{path}: a csv trace needs column: <the bandwidth column>")
        return load_csv_trace(path, column=column, unit=unit)
    raise TraceError(f"{path}: unknown format {kind!r}")


def user_trace_set(
    files: Sequence[str | Path],
    split: Split,
    *,
    fmt: str = "auto",
    column: str | None = None,
    unit: Unit = "mbps",
    eval_files: Sequence[str | Path] = (),
    eval_share: float = 0.25,
) -> list[BandwidthTrace]:
    """A user's traces for one split.

    With ``eval_files``, those files are held out for evaluation and the others train.
    Without, every file is split in time: the last ``eval_share`` of its duration is held out
    and the rest trains (``eval_share`` 1.0 holds everything out: evaluation only).

    Raises:
        TraceError: a malformed file (naming it and the line), or an empty split.
    """
    held = {str(Path(f)) for f in eval_files}
    out: list[BandwidthTrace] = []
    for f in files:
        tr = load_user_trace(f, fmt, column, unit)
        if held:
            if (str(Path(f)) in held) == (split == "eval"):
                out.append(tr)
            continue
        cut = tr.duration_s * (1.0 - eval_share)
        if split == "train" and cut > 0:
            out.append(tr.window(0.0, cut))
        elif split == "eval" and cut < tr.duration_s:
            out.append(tr.window(cut, tr.duration_s))
    if not out:
        raise TraceError(
            f"no {split} traces among {len(files)} file(s) "
            + (f"with eval_files {sorted(held)}" if held else f"with eval_share {eval_share}")
        )
    return out


# ----------------------------------------------------------------------------- split manifest


Window = tuple[float, float | None]  # (start_s, end_s); end None = the end of the trace


@dataclass(frozen=True)
class SplitEntry:
    """One item of a split: a whole trace file, or time windows of one spliced together.

    Attributes:
        file: File name inside the family folder.
        windows_s: Disjoint, increasing ``(start_s, end_s)`` windows in the file's time base;
            ``end_s = None`` means the end of the trace. ``((0.0, None),)`` is the whole file.
    """

    file: str
    windows_s: tuple[Window, ...] = ((0.0, None),)

    @property
    def whole_file(self) -> bool:
        """True if the entry is the complete file."""
        return self.windows_s == ((0.0, None),)

    def overlaps(self, other: SplitEntry) -> bool:
        """True if both entries use some common stretch of the same file."""
        if self.file != other.file:
            return False
        for s0, e0 in self.windows_s:
            for s1, e1 in other.windows_s:
                if s0 < (math.inf if e1 is None else e1) and s1 < (math.inf if e0 is None else e0):
                    return True
        return False


@dataclass(frozen=True)
class FamilySplit:
    """The training / held-out evaluation split of one trace family (from ``splits.json``)."""

    family: str
    format: TraceFormat
    description: str
    rationale: str
    window_ms: int | None
    train: tuple[SplitEntry, ...]
    eval: tuple[SplitEntry, ...]

    def entries(self, split: Split) -> tuple[SplitEntry, ...]:
        """The entries of ``split``."""
        return self.train if split == "train" else self.eval


@dataclass(frozen=True)
class SplitManifest:
    """All families and their splits."""

    path: str
    families: Mapping[str, FamilySplit]


_FAMILY_KEYS = {"format", "description", "rationale", "window_ms", "train", "eval"}
_ENTRY_KEYS = {"file", "windows_s"}


def _manifest_number(value: Any, where: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TraceError(f"{path}: {where}: expected a finite number, got {value!r}")
    return float(value)


def _parse_entry(raw: Any, where: str, path: str, folder: Path) -> SplitEntry:
    if isinstance(raw, str):
        raw = {"file": raw}
    if not isinstance(raw, dict):
        raise TraceError(f"{path}: {where}: expected a file name or an object, got {raw!r}")
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise TraceError(f"{path}: {where}: unknown key(s) {sorted(unknown)}")
    name = raw.get("file")
    if not isinstance(name, str) or not name:
        raise TraceError(f"{path}: {where}.file: expected a file name, got {name!r}")
    if not (folder / name).is_file():
        raise TraceError(f"{path}: {where}.file: no file {name!r} in {folder}")
    if "windows_s" not in raw:
        return SplitEntry(file=name)
    items = raw["windows_s"]
    if not isinstance(items, list) or not items:
        raise TraceError(f"{path}: {where}.windows_s: expected a non-empty list of [start, end]")
    windows: list[Window] = []
    previous_end = 0.0
    for i, item in enumerate(items):
        w_where = f"{where}.windows_s[{i}]"
        if not isinstance(item, list) or len(item) != 2:  # noqa: PLR2004 ([start, end])
            raise TraceError(f"{path}: {w_where}: expected [start_s, end_s], got {item!r}")
        start_s = _manifest_number(item[0], w_where, path)
        end_s = None if item[1] is None else _manifest_number(item[1], w_where, path)
        if start_s < previous_end or (end_s is not None and end_s <= start_s):
            raise TraceError(
                f"{path}: {w_where}: windows must be increasing and disjoint with "
                f"start < end, got [{start_s}, {end_s}] after a window ending at {previous_end}"
            )
        if end_s is None and i != len(items) - 1:
            raise TraceError(f"{path}: {w_where}: only the last window may run to the end (null)")
        windows.append((start_s, end_s))
        previous_end = math.inf if end_s is None else end_s
    return SplitEntry(file=name, windows_s=tuple(windows))


def check_disjoint(split: FamilySplit, path: str = "<memory>") -> None:
    """Raise :class:`TraceError` if a family's train and eval sets share data or one is empty."""
    named = (("train", split.train), ("eval", split.eval))
    for which, entries in named:
        if not entries:
            raise TraceError(f"{path}: families.{split.family}.{which}: empty split")
        for idx, a in enumerate(entries):
            for b in entries[idx + 1 :]:
                if a.overlaps(b):
                    raise TraceError(
                        f"{path}: families.{split.family}.{which}: {a.file} listed twice "
                        f"with overlapping windows"
                    )
    for a in split.train:
        for b in split.eval:
            if a.overlaps(b):
                raise TraceError(
                    f"{path}: families.{split.family}: train and eval overlap on {a.file} "
                    f"(windows {list(a.windows_s)} vs {list(b.windows_s)} s)"
                )


def load_split_manifest(data_dir: str | Path | None = None) -> SplitManifest:
    """Read and validate ``<data_dir>/splits.json`` (strict: unknown keys are errors).

    Args:
        data_dir: Folder holding ``splits.json`` and one sub-folder per family; defaults to
            the shipped ``envs/data/traces``.
    """
    return _load_manifest_cached(*_manifest_key(data_dir))


def _manifest_key(data_dir: str | Path | None) -> tuple[str, int, int]:
    folder = TRACE_DATA_DIR if data_dir is None else Path(data_dir)
    return _file_key(folder / SPLITS_FILENAME)


@functools.lru_cache(maxsize=8)
def _load_manifest_cached(path: str, _mtime_ns: int, _size: int) -> SplitManifest:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise TraceError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise TraceError(f"{path}: expected a JSON object at top level")
    unknown = set(data) - {"schema_version", "kind", "comment", "families"}
    if unknown:
        raise TraceError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    if data.get("kind") != SPLITS_KIND:
        raise TraceError(f"{path}: kind: expected {SPLITS_KIND!r}, got {data.get('kind')!r}")
    if data.get("schema_version") != SPLITS_SCHEMA_VERSION:
        raise TraceError(
            f"{path}: schema_version: expected {SPLITS_SCHEMA_VERSION}, "
            f"got {data.get('schema_version')!r}"
        )
    fams = data.get("families")
    if not isinstance(fams, dict) or not fams:
        raise TraceError(f"{path}: families: expected a non-empty object")
    root = Path(path).parent
    families: dict[str, FamilySplit] = {}
    for fam, spec in fams.items():
        where = f"families.{fam}"
        if not isinstance(spec, dict):
            raise TraceError(f"{path}: {where}: expected an object")
        unknown = set(spec) - _FAMILY_KEYS
        if unknown:
            raise TraceError(f"{path}: {where}: unknown key(s) {sorted(unknown)}")
        fmt = spec.get("format")
        if fmt not in get_args(TraceFormat):
            raise TraceError(f"{path}: {where}.format: expected one of {get_args(TraceFormat)}")
        window_ms = spec.get("window_ms")
        if fmt == "mahimahi":
            if not (
                isinstance(window_ms, int) and not isinstance(window_ms, bool) and window_ms > 0
            ):
                raise TraceError(f"{path}: {where}.window_ms: expected a positive integer")
        elif window_ms is not None:
            raise TraceError(f"{path}: {where}.window_ms: only mahimahi families have a window")
        texts = {}
        for key in ("description", "rationale"):
            text = spec.get(key)
            if not isinstance(text, str) or not text.strip():
                raise TraceError(f"{path}: {where}.{key}: expected a non-empty string")
            texts[key] = text
        folder = root / fam
        if not folder.is_dir():
            raise TraceError(f"{path}: {where}: no folder {folder}")
        parsed: dict[str, tuple[SplitEntry, ...]] = {}
        for which in ("train", "eval"):
            items = spec.get(which)
            if not isinstance(items, list):
                raise TraceError(f"{path}: {where}.{which}: expected a list")
            parsed[which] = tuple(
                _parse_entry(item, f"{where}.{which}[{i}]", path, folder)
                for i, item in enumerate(items)
            )
        split = FamilySplit(
            family=fam,
            format=cast(TraceFormat, fmt),
            description=texts["description"],
            rationale=texts["rationale"],
            window_ms=window_ms,
            train=parsed["train"],
            eval=parsed["eval"],
        )
        check_disjoint(split, path)
        families[fam] = split
    return SplitManifest(path=path, families=families)


def list_trace_families(data_dir: str | Path | None = None) -> list[str]:
    """Names of the trace families in the split manifest, sorted."""
    return sorted(load_split_manifest(data_dir).families)


def load_trace_set(
    family: str,
    split: Split,
    *,
    direction: Direction | None = None,
    window_ms: int | None = None,
    data_dir: str | Path | None = None,
) -> list[BandwidthTrace]:
    """The training or held-out evaluation traces of a family, as listed in ``splits.json``.

    Args:
        family: A name from :func:`list_trace_families`.
        split: ``"train"`` or ``"eval"``.
        direction: Keep only traces of this link direction (``None``: all).
        window_ms: mahimahi averaging window [ms]; ``None`` uses the manifest's value. Only
            valid for mahimahi-format families.
        data_dir: Folder of the manifest and family folders (default: the shipped data).

    Returns:
        The traces in manifest order (a new list; the traces themselves are cached, immutable
        and shared).

    Raises:
        KeyError: Unknown family.
        ValueError: Unknown split or direction, a window for a non-mahimahi family, or no
            trace left after the direction filter.
        TraceError: A listed file or window is malformed.
    """
    if split not in get_args(Split):
        raise ValueError(f"split must be one of {get_args(Split)}, got {split!r}")
    if direction is not None and direction not in get_args(Direction):
        raise ValueError(f"direction must be one of {get_args(Direction)}, got {direction!r}")
    manifest_key = _manifest_key(data_dir)
    manifest = _load_manifest_cached(*manifest_key)
    if family not in manifest.families:
        raise KeyError(f"unknown trace family {family!r}; known: {sorted(manifest.families)}")
    spec = manifest.families[family]
    if window_ms is not None and spec.format != "mahimahi":
        raise ValueError(f"window_ms applies to mahimahi families only, not {family!r}")
    traces = _load_set_cached(manifest_key, family, split, window_ms or spec.window_ms)
    kept = [tr for tr in traces if direction is None or tr.direction == direction]
    if not kept:
        raise ValueError(f"trace family {family!r} has no {direction!r} traces in split {split!r}")
    return kept


@functools.lru_cache(maxsize=64)
def _load_set_cached(
    manifest_key: tuple[str, int, int], family: str, split: Split, window_ms: int | None
) -> tuple[BandwidthTrace, ...]:
    manifest_path = manifest_key[0]
    manifest = _load_manifest_cached(*manifest_key)
    spec = manifest.families[family]
    folder = Path(manifest_path).parent / family
    out = []
    for idx, entry in enumerate(spec.entries(split)):
        path = folder / entry.file
        if spec.format == "pensieve":
            whole = [load_pensieve_trace(path, family=family)]
        elif spec.format == "irish5g":
            whole = [load_irish5g_csv(path, column=c, family=family) for c in IRISH5G_COLUMNS]
        else:
            assert window_ms is not None  # checked when the manifest was read
            whole = [load_mahimahi_trace(path, window_ms=window_ms, family=family)]
        for trace in whole:
            if not entry.whole_file:
                parts = []
                for start_s, end in entry.windows_s:
                    end_s = trace.duration_s if end is None else end
                    if not start_s < end_s <= trace.duration_s:
                        raise TraceError(
                            f"{manifest_path}: families.{family}.{split}[{idx}]: window "
                            f"[{start_s}, {end_s}] s does not fit {entry.file} "
                            f"({trace.duration_s} s)"
                        )
                    parts.append(trace.window(start_s, end_s))
                trace = splice(parts, name=f"{trace.name}[{split}]") if len(parts) > 1 else parts[0]
            out.append(trace)
    return tuple(out)


# ----------------------------------------------------------------------------- summary


def time_weighted_quantile(traces: Iterable[BandwidthTrace], q: float) -> float:
    """The bandwidth [Mbit/s] below which the pooled traces spend a fraction ``q`` of their time."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    values: list[FloatArray] = []
    weights: list[FloatArray] = []
    for tr in traces:
        values.append(tr.mbps)
        weights.append(np.diff(np.append(tr.times_s, tr.duration_s)))
    if not values:
        raise ValueError("no traces")
    v = np.concatenate(values)
    w = np.concatenate(weights)
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order])
    idx = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(v[order][min(idx, v.size - 1)])


@dataclass(frozen=True)
class TraceSetStats:
    """Summary statistics of one family / split / direction (bandwidths time-weighted, pooled)."""

    family: str
    split: Split
    direction: Direction
    count: int
    total_duration_s: float
    min_duration_s: float
    max_duration_s: float
    mean_mbps: float
    median_mbps: float
    p10_mbps: float


P10 = 0.10
MEDIAN = 0.50
BENCH_PERIODS = 20  # benchmark start times span this many trace periods
BENCH_MIN_BYTES = 1_000  # benchmark transfer sizes [B]: a small feature map ...
BENCH_MAX_BYTES = 2_000_000  # ... up to a raw camera frame (arbitrary test range)
BENCH_MEAN_WINDOW_S = 5.0  # benchmark mean_mbps window [s]


def trace_set_stats(
    traces: Sequence[BandwidthTrace], family: str, split: Split, direction: Direction
) -> TraceSetStats:
    """Pooled, time-weighted statistics of a list of traces."""
    durations = [tr.duration_s for tr in traces]
    total_s = float(sum(durations))
    total_mbit_s = sum(tr.mean_mbps_period() * tr.duration_s for tr in traces)
    return TraceSetStats(
        family=family,
        split=split,
        direction=direction,
        count=len(traces),
        total_duration_s=total_s,
        min_duration_s=min(durations),
        max_duration_s=max(durations),
        mean_mbps=total_mbit_s / total_s,
        median_mbps=time_weighted_quantile(traces, MEDIAN),
        p10_mbps=time_weighted_quantile(traces, P10),
    )


def summarize_trace_sets(data_dir: str | Path | None = None) -> list[TraceSetStats]:
    """Statistics for every family, split and direction of the manifest."""
    rows = []
    for family in list_trace_families(data_dir):
        for split in get_args(Split):
            traces = load_trace_set(family, split, data_dir=data_dir)
            for direction in sorted({tr.direction for tr in traces}):
                same = [tr for tr in traces if tr.direction == direction]
                rows.append(trace_set_stats(same, family, split, direction))
    return rows


def trace_summary(data_dir: str | Path | None = None) -> str:
    """A plain-text table of :func:`summarize_trace_sets` (for ``edgerl traces`` or a notebook)."""
    header = (
        f"{'family':<18} {'split':<5} {'dir':<4} {'n':>3} {'total s':>8} {'min s':>7} "
        f"{'max s':>7} {'mean':>6} {'median':>6} {'p10':>6}"
    )
    lines = ["durations in s; mean, median, p10 in Mbit/s, time-weighted", header]
    lines.append("-" * len(header))
    for r in summarize_trace_sets(data_dir):
        lines.append(
            f"{r.family:<18} {r.split:<5} {r.direction:<4} {r.count:>3} "
            f"{r.total_duration_s:>8.1f} {r.min_duration_s:>7.1f} {r.max_duration_s:>7.1f} "
            f"{r.mean_mbps:>6.2f} {r.median_mbps:>6.2f} {r.p10_mbps:>6.2f}"
        )
    return "\n".join(lines)


def benchmark_queries(
    trace: BandwidthTrace, n_calls: int = 100_000, seed: int = 0, repeats: int = 5
) -> dict[str, float]:
    """Measure the hot methods: microseconds per call (best of ``repeats``, via ``timeit``).

    Start times are uniform over 20 periods (so wrap-around is exercised) and transfer sizes
    uniform in [1 kB, 2 MB], drawn from ``numpy.random.default_rng(seed)``.
    """
    import timeit

    rng = np.random.default_rng(seed)
    starts = rng.uniform(0.0, BENCH_PERIODS * trace.duration_s, n_calls).tolist()
    sizes = rng.uniform(BENCH_MIN_BYTES, BENCH_MAX_BYTES, n_calls).tolist()
    end_fn, at_fn, mean_fn = trace.transfer_end_s, trace.mbps_at, trace.mean_mbps

    def run_transfer() -> None:
        for s, b in zip(starts, sizes, strict=True):
            end_fn(s, b)

    def run_at() -> None:
        for s in starts:
            at_fn(s)

    def run_mean() -> None:
        for s in starts:
            mean_fn(s, s + BENCH_MEAN_WINDOW_S)

    def run_empty() -> None:
        for _s, _b in zip(starts, sizes, strict=True):
            pass

    def per_call_us(fn: Any) -> float:
        return min(timeit.repeat(fn, number=1, repeat=repeats)) / n_calls * US_PER_S

    loop_us = per_call_us(run_empty)
    return {
        "transfer_end_s_us": per_call_us(run_transfer),
        "mbps_at_us": per_call_us(run_at),
        "mean_mbps_us": per_call_us(run_mean),
        "loop_overhead_us": loop_us,
    }
