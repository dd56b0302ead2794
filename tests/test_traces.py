"""Tests of edgerl.envs.traces: loaders, the trace model, the split manifest, shipped data."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgerl.envs.traces import (
    BYTES_PER_S_PER_MBPS,
    MAHIMAHI_PACKET_BYTES,
    TRACE_DATA_DIR,
    BandwidthTrace,
    SplitEntry,
    TraceError,
    benchmark_queries,
    list_trace_families,
    load_irish5g_csv,
    load_mahimahi_trace,
    load_pensieve_trace,
    load_split_manifest,
    load_trace_set,
    splice,
    summarize_trace_sets,
    time_weighted_quantile,
    trace_summary,
)

SHIPPED_FAMILIES = ["fcc-broadband", "irish-5g", "mahimahi-cellular", "norway-hsdpa-3g"]
NOT_TRACE_FILES = {"SOURCE.md", "LICENSE", "LICENSE-NOTE.md"}


def make(times: list[float], mbps: list[float], duration_s: float, **kw: object) -> BandwidthTrace:
    return BandwidthTrace(
        name="t",
        family="test",
        times_s=np.array(times),
        mbps=np.array(mbps),
        duration_s=duration_s,
        **kw,
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def reference_transfer_end(tr: BandwidthTrace, start_s: float, nbytes: float) -> float:
    """Slow reference: walk the samples one by one (no cumulative sums, no bisection)."""
    x = start_s + tr.offset_s
    k = math.floor(x / tr.duration_s)
    u = x - k * tr.duration_s
    i = int(np.searchsorted(tr.times_s, u, side="right")) - 1
    left = nbytes
    while True:
        seg_end = tr.times_s[i + 1] if i + 1 < tr.times_s.size else tr.duration_s
        rate = tr.mbps[i] * BYTES_PER_S_PER_MBPS
        can = rate * (seg_end - u)
        if rate > 0 and can >= left:
            return k * tr.duration_s + u + left / rate - tr.offset_s
        left -= can
        i += 1
        if i == tr.times_s.size:
            i, k = 0, k + 1
        u = tr.times_s[i]


# ----------------------------------------------------------------------------- Pensieve loader


def test_pensieve_round_trip(tmp_path: Path) -> None:
    p = write(tmp_path, "tr", "0.0\t2.0\n1.0\t4.0\n\n3.0 0.0\n4.0\t1.5\n")
    tr = load_pensieve_trace(p)
    assert tr.times_s.tolist() == [0.0, 1.0, 3.0, 4.0]
    assert tr.mbps.tolist() == [2.0, 4.0, 0.0, 1.5]
    assert tr.duration_s == 4.0 + 1.0  # last sample lasts the median step (steps 1, 2, 1)
    assert tr.family == tmp_path.name and tr.name == "tr" and tr.direction == "down"
    assert tr.looping


def test_pensieve_times_are_rebased_to_zero(tmp_path: Path) -> None:
    tr = load_pensieve_trace(write(tmp_path, "tr", "10 1\n12 2\n"), family="fam")
    assert tr.times_s.tolist() == [0.0, 2.0] and tr.duration_s == 4.0 and tr.family == "fam"


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("0 1\n1 x\n", ":2:", "non-numeric"),
        ("0 1\n1 2 3\n", ":2:", "2 columns"),
        ("0 1\n1 nan\n", ":2:", "non-finite"),
        ("0 1\n1 2\n1 3\n", ":3:", "does not increase"),
        ("0 1\n2 2\n1 3\n", ":3:", "does not increase"),
        ("0 1\n1 -0.5\n", ":2:", "negative"),
        ("", ":", "empty"),
        ("\n  \n", ":", "empty"),
        ("0 1\n", ":1:", "only one sample"),
        ("0 0\n1 0\n2 0.0\n", ":1-3:", "zero"),
    ],
)
def test_pensieve_rejects_bad_files(tmp_path: Path, text: str, where: str, what: str) -> None:
    p = write(tmp_path, "bad", text)
    with pytest.raises(TraceError, match=what) as err:
        load_pensieve_trace(p)
    assert f"{p}{where}" in str(err.value)


def test_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        load_pensieve_trace(tmp_path / "nope")


def test_loader_cache_reuses_and_invalidates(tmp_path: Path) -> None:
    p = write(tmp_path, "tr", "0 1\n1 2\n")
    a = load_pensieve_trace(p)
    assert load_pensieve_trace(p) is a
    p.write_text("0 1\n1 2\n2 3\n")
    b = load_pensieve_trace(p)
    assert b is not a and b.mbps.tolist() == [1.0, 2.0, 3.0]


# ----------------------------------------------------------------------------- mahimahi loader


def test_mahimahi_conversion_equals_hand_count(tmp_path: Path) -> None:
    p = write(tmp_path, "tiny.up", "0\n0\n500\n999\n1000\n1500\n2500\n")
    tr = load_mahimahi_trace(p, window_ms=1000)
    # T = 2500 ms -> floor(2500/1000) = 2 windows: [0, 1000) holds 0,0,500,999 (4 packets);
    # the 500 ms remainder joins the last window, [1000, 2500] holds 1000,1500,2500 (3).
    assert tr.times_s.tolist() == [0.0, 1.0]
    assert tr.duration_s == 2.5
    assert tr.mbps[0] == pytest.approx(4 * 1500 * 8 / 1.0 / 1e6)  # 0.048
    assert tr.mbps[1] == pytest.approx(3 * 1500 * 8 / 1.5 / 1e6)  # 0.024
    assert tr.direction == "up"
    # every line delivered exactly once per period
    assert tr.period_bytes == pytest.approx(7 * MAHIMAHI_PACKET_BYTES)

    fine = load_mahimahi_trace(p, window_ms=500)
    # windows of 500 ms: {0,0}, {500,999}, {1000}, {1500}, {2000..2500]: {2500}
    assert fine.times_s.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    np.testing.assert_allclose(fine.mbps, np.array([2, 2, 1, 1, 1]) * 1500 * 8 / 0.5 / 1e6)


def test_mahimahi_readme_example_is_12_mbps(tmp_path: Path) -> None:
    # mahimahi traces/README: a file holding just "1" is one MTU-sized packet per ms (12 Mbps)
    tr = load_mahimahi_trace(write(tmp_path, "one", "1\n"))
    assert tr.mbps.tolist() == [pytest.approx(12.0)] and tr.duration_s == 0.001
    assert tr.direction == "unknown"
    assert tr.transfer_end_s(0.0, 1500 * 1000) == pytest.approx(1.0)


def test_mahimahi_short_trace_is_one_window(tmp_path: Path) -> None:
    tr = load_mahimahi_trace(write(tmp_path, "x.down", "3\n3\n300\n"), window_ms=1000)
    assert tr.times_s.tolist() == [0.0] and tr.duration_s == 0.3 and tr.direction == "down"
    assert tr.mbps[0] == pytest.approx(3 * 12000 / 0.3 / 1e6)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("0\n5\n\n9\n", ":3:", "empty line"),
        ("0\n5\n7.5\n", ":3:", "not an integer"),
        ("0\nabc\n", ":2:", "not an integer"),
        ("0\n5\n4\n9\n", ":3:", "decreases"),
        ("-1\n5\n", ":1:", "negative"),
        ("", ":", "empty"),
        ("0\n0\n", ":2:", "last time is 0"),
    ],
)
def test_mahimahi_rejects_bad_files(tmp_path: Path, text: str, where: str, what: str) -> None:
    p = write(tmp_path, "bad.up", text)
    with pytest.raises(TraceError, match=what) as err:
        load_mahimahi_trace(p)
    assert f"{p}{where}" in str(err.value)


def test_mahimahi_rejects_bad_window(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="window_ms"):
        load_mahimahi_trace(write(tmp_path, "a.up", "0\n5\n"), window_ms=0)


# ----------------------------------------------------------------------------- Irish 5G loader

IRISH_CSV = """Timestamp,Longitude,DL_bitrate,UL_bitrate,State
2020.02.14_09.40.18,0,6652,103,D
2020.02.14_09.40.20,0,0,1,D
2020.02.14_09.40.20,0,2000,1,D
2020.02.14_09.40.21,0,-,101,D
2020.02.14_09.40.22,0,6283,-,D
"""


def test_irish5g_loader(tmp_path: Path) -> None:
    p = write(tmp_path, "B.csv", IRISH_CSV)
    dl = load_irish5g_csv(p)
    assert dl.times_s.tolist() == [0.0, 2.0, 4.0]  # the '-' row is skipped
    np.testing.assert_allclose(dl.mbps, [6.652, 1.0, 6.283])  # duplicate second averaged
    assert dl.duration_s == 6.0 and dl.direction == "down"
    ul = load_irish5g_csv(p, column="UL_bitrate")
    assert ul.times_s.tolist() == [0.0, 2.0, 3.0]
    np.testing.assert_allclose(ul.mbps, [0.103, 0.001, 0.101])
    assert ul.duration_s == 4.5 and ul.direction == "up"


@pytest.mark.parametrize(
    ("replace", "where", "what"),
    [
        ("2020.02.14_09.40.21,0,-", "2020/02/14,0,-", ":5:"),
        ("2020.02.14_09.40.22,0,6283", "2020.02.14_09.40.19,0,6283", ":6:"),
        ("0,2000,1", "0,fast,1", ":4:"),
        ("0,2000,1", "0,-5,1", ":4:"),
    ],
)
def test_irish5g_rejects_bad_rows(tmp_path: Path, replace: str, where: str, what: str) -> None:
    p = write(tmp_path, "B.csv", IRISH_CSV.replace(replace, where))
    with pytest.raises(TraceError) as err:
        load_irish5g_csv(p)
    assert f"{p}{what}" in str(err.value)


# ----------------------------------------------------------------------------- trace model


def test_constructor_rejects_bad_traces() -> None:
    with pytest.raises(TraceError, match="zero everywhere"):
        make([0.0, 1.0], [0.0, 0.0], 2.0)
    with pytest.raises(TraceError, match="start at 0"):
        make([0.5, 1.0], [1.0, 1.0], 2.0)
    with pytest.raises(TraceError, match="strictly increasing"):
        make([0.0, 1.0, 1.0], [1.0, 1.0, 1.0], 2.0)
    with pytest.raises(TraceError, match="duration_s"):
        make([0.0, 1.0], [1.0, 1.0], 1.0)
    with pytest.raises(TraceError, match=">= 0"):
        make([0.0, 1.0], [1.0, -1.0], 2.0)


def test_trace_is_immutable_and_picklable() -> None:
    tr = make([0.0, 1.0], [1.0, 2.0], 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tr.duration_s = 3.0
    with pytest.raises(ValueError, match="read-only"):
        tr.mbps[0] = 5.0
    back = pickle.loads(pickle.dumps(tr))
    assert back.transfer_end_s(0.3, 1e5) == tr.transfer_end_s(0.3, 1e5)


def test_source_arrays_are_copied() -> None:
    mbps = np.array([1.0, 2.0])
    tr = BandwidthTrace(
        name="t", family="f", times_s=np.array([0.0, 1.0]), mbps=mbps, duration_s=2.0
    )
    mbps[0] = 100.0
    assert tr.mbps_at(0.5) == 1.0


@pytest.mark.parametrize("start_s", [0.0, 1.0, 9.0, 12.5, 1234.5])
@pytest.mark.parametrize("nbytes", [1.0, 2.5e6, 3e6, 1e8])
def test_transfer_end_constant_closed_form(start_s: float, nbytes: float) -> None:
    tr = make([0.0], [8.0], 10.0)  # 8 Mbit/s = 1e6 B/s
    expected = start_s + nbytes * 8 / (8.0 * 1e6)
    assert tr.transfer_end_s(start_s, nbytes) == pytest.approx(expected, rel=1e-12)


TWO_STEP = ([0.0, 4.0], [8.0, 2.0], 10.0)  # 1e6 B/s on [0,4), 0.25e6 B/s on [4,10)


@pytest.mark.parametrize(
    ("start_s", "nbytes", "end_s"),
    [
        (0.0, 1e6, 1.0),
        (2.0, 3e6, 8.0),  # 2e6 B by t=4, then 1e6 B at 0.25e6 B/s = 4 s
        (8.0, 1e6, 10.5),  # 0.5e6 B by t=10 (wrap), then 0.5e6 B at 1e6 B/s
        (0.0, 5.5e6, 10.0),  # exactly one period
        (0.0, 3 * 5.5e6 + 1e6, 31.0),  # three periods, then 1 s
        (25.0, 0.0, 25.0),
        (4.0, 1.5e6, 10.0),
    ],
)
def test_transfer_end_two_step_closed_form(start_s: float, nbytes: float, end_s: float) -> None:
    tr = make(*TWO_STEP)
    assert tr.period_bytes == pytest.approx(5.5e6)
    assert tr.transfer_end_s(start_s, nbytes) == pytest.approx(end_s, rel=1e-12, abs=1e-12)


def test_transfer_end_zero_intervals() -> None:
    trailing_zero = make([0.0, 4.0], [8.0, 0.0], 10.0)
    assert trailing_zero.transfer_end_s(0.0, 4e6) == pytest.approx(4.0)  # earliest, not 10
    assert trailing_zero.transfer_end_s(0.0, 8e6) == pytest.approx(14.0)
    assert trailing_zero.transfer_end_s(5.0, 1e6) == pytest.approx(11.0)  # waits for the wrap
    assert trailing_zero.transfer_end_s(105.0, 1e6) == pytest.approx(111.0)
    inner_zero = make([0.0, 2.0, 5.0], [8.0, 0.0, 8.0], 6.0)
    assert inner_zero.transfer_end_s(1.0, 2e6) == pytest.approx(6.0)  # 1 s, 3 s idle, 1 s
    assert inner_zero.transfer_end_s(2.0, 0.5e6) == pytest.approx(5.5)
    leading_zero = make([0.0, 3.0], [0.0, 8.0], 5.0)
    assert leading_zero.transfer_end_s(0.0, 2e6) == pytest.approx(5.0)
    assert leading_zero.transfer_end_s(4.0, 2e6) == pytest.approx(9.0)  # 1e6, wrap, 3 s idle


def test_transfer_end_matches_slow_reference_on_random_traces() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(1, 30))
        times = np.concatenate(([0.0], np.cumsum(rng.uniform(0.1, 3.0, n - 1))))
        mbps = rng.uniform(0.0, 10.0, n) * (rng.random(n) > 0.3)
        mbps[int(rng.integers(n))] = rng.uniform(0.5, 5.0)  # at least one non-zero sample
        tr = make(times.tolist(), mbps.tolist(), float(times[-1] + rng.uniform(0.1, 3.0)))
        tr = tr.with_offset(float(rng.uniform(-50.0, 50.0)))
        for _ in range(30):
            start = float(rng.uniform(0.0, 200.0))
            nbytes = float(rng.uniform(1.0, 3.0) * tr.period_bytes * rng.choice([0.01, 0.3, 4]))
            got = tr.transfer_end_s(start, nbytes)
            assert got == pytest.approx(reference_transfer_end(tr, start, nbytes), abs=1e-9)
            # the bytes delivered between start and end are the transfer's size
            assert tr.mean_mbps(start, got) * (got - start) * BYTES_PER_S_PER_MBPS == (
                pytest.approx(nbytes, rel=1e-9)
            )


def test_transfer_end_rejects_negative_bytes() -> None:
    with pytest.raises(ValueError, match="nbytes"):
        make(*TWO_STEP).transfer_end_s(0.0, -1.0)


def test_mbps_at_and_wrap() -> None:
    tr = make(*TWO_STEP)
    assert tr.mbps_at(0.0) == 8.0
    assert tr.mbps_at(3.999) == 8.0
    assert tr.mbps_at(4.0) == 2.0
    assert tr.mbps_at(9.99) == 2.0
    assert tr.mbps_at(10.0) == 8.0
    assert tr.mbps_at(1e6 + 5.0) == 2.0
    shifted = tr.with_offset(5.0)
    assert shifted.mbps_at(0.0) == 2.0 and shifted.mbps_at(6.0) == 8.0
    assert shifted.with_offset(-5.0).mbps_at(0.0) == 8.0  # offsets compose


def test_mean_mbps_hand_computation() -> None:
    tr = make(*TWO_STEP)
    assert tr.mean_mbps(0.0, 10.0) == pytest.approx((4 * 8 + 6 * 2) / 10)  # 4.4
    assert tr.mean_mbps(2.0, 6.0) == pytest.approx((2 * 8 + 2 * 2) / 4)  # 5.0
    assert tr.mean_mbps(8.0, 12.0) == pytest.approx((2 * 2 + 2 * 8) / 4)  # across the wrap
    assert tr.mean_mbps(0.0, 100.0) == pytest.approx(4.4)
    assert tr.mean_mbps(5.0, 5.0) == 2.0
    assert tr.mean_mbps_period() == pytest.approx(4.4)
    with pytest.raises(ValueError, match="t0_s <= t1_s"):
        tr.mean_mbps(3.0, 2.0)


def test_offset_is_a_time_shift() -> None:
    tr = load_trace_set("norway-hsdpa-3g", "train")[0]
    d = 37.25
    sh = tr.with_offset(d)
    for s in (0.0, 12.3, 400.0):
        assert sh.mbps_at(s) == tr.mbps_at(s + d)
        assert sh.transfer_end_s(s, 5e5) == pytest.approx(tr.transfer_end_s(s + d, 5e5) - d)
        assert sh.mean_mbps(s, s + 3) == pytest.approx(tr.mean_mbps(s + d, s + d + 3))
    rng = np.random.default_rng(0)
    offsets = {tr.with_random_offset(rng).offset_s for _ in range(5)}
    assert len(offsets) == 5 and all(0 <= o < tr.duration_s for o in offsets)


def test_random_offset_is_seeded() -> None:
    tr = make(*TWO_STEP)
    a = [tr.with_random_offset(np.random.default_rng(3)).offset_s for _ in range(2)]
    assert a[0] == a[1]


def test_scaled() -> None:
    tr = make(*TWO_STEP)
    fast = tr.scaled(2.0)
    assert fast.mbps.tolist() == [16.0, 4.0] and fast.name == "t*2"
    # 2e6 B/s on [0, 4): 3e6 B from t=2 take 1.5 s (unscaled: 8.0, see the two-step test)
    assert fast.transfer_end_s(2.0, 3e6) == pytest.approx(3.5)
    assert tr.scaled(1.0) is tr
    assert tr.scaled_to_mean(1.1).mean_mbps_period() == pytest.approx(1.1)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="scale factor"):
            tr.scaled(bad)


def test_non_looping_trace_refuses_to_wrap() -> None:
    tr = make(*TWO_STEP, looping=False)
    assert tr.transfer_end_s(2.0, 3e6) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="past the end"):
        tr.transfer_end_s(8.0, 1e6)
    with pytest.raises(ValueError, match="outside"):
        tr.mbps_at(10.5)


def test_window_and_splice() -> None:
    tr = make(*TWO_STEP)
    w = tr.window(2.0, 6.0)
    assert w.times_s.tolist() == [0.0, 2.0] and w.mbps.tolist() == [8.0, 2.0]
    assert w.duration_s == 4.0
    inner = tr.window(5.0, 7.0)
    assert inner.times_s.tolist() == [0.0] and inner.mbps.tolist() == [2.0]
    joined = splice([tr.window(0.0, 2.0), tr.window(6.0, 10.0)], name="j")
    assert joined.times_s.tolist() == [0.0, 2.0] and joined.mbps.tolist() == [8.0, 2.0]
    assert joined.duration_s == 6.0
    assert joined.period_bytes == pytest.approx(2e6 + 1e6)
    with pytest.raises(ValueError, match="window"):
        tr.window(3.0, 11.0)


# ----------------------------------------------------------------------------- shipped data


def _trace_files(family: str) -> set[str]:
    return {p.name for p in (TRACE_DATA_DIR / family).iterdir() if p.name not in NOT_TRACE_FILES}


def test_families_and_licences_shipped() -> None:
    assert list_trace_families() == SHIPPED_FAMILIES
    for fam in SHIPPED_FAMILIES:
        folder = TRACE_DATA_DIR / fam
        assert (folder / "SOURCE.md").is_file()
        assert (folder / "LICENSE").is_file() or (folder / "LICENSE-NOTE.md").is_file()
    for fam in ("mahimahi-cellular", "irish-5g"):
        gpl = (TRACE_DATA_DIR / fam / "LICENSE").read_text()
        assert "GNU GENERAL PUBLIC LICENSE" in gpl and "Version 3, 29 June 2007" in gpl


@pytest.mark.parametrize("family", SHIPPED_FAMILIES)
def test_every_shipped_trace_loads_and_is_in_a_split(family: str) -> None:
    manifest = load_split_manifest()
    spec = manifest.families[family]
    listed = {e.file for e in spec.train} | {e.file for e in spec.eval}
    assert listed == _trace_files(family)  # no file silently left out, none missing
    for split in ("train", "eval"):
        traces = load_trace_set(family, split)
        per_file = 2 if spec.format == "irish5g" else 1  # DL_bitrate and UL_bitrate
        assert len(traces) == per_file * len(spec.entries(split))
        for tr in traces:
            assert tr.family == family and tr.looping and tr.mean_mbps_period() > 0


def test_shipped_counts() -> None:
    assert len(load_trace_set("norway-hsdpa-3g", "train")) == 20
    assert len(load_trace_set("norway-hsdpa-3g", "eval")) == 5
    assert len(load_trace_set("fcc-broadband", "train")) == 24
    assert len(load_trace_set("fcc-broadband", "eval")) == 6
    assert [t.direction for t in load_trace_set("mahimahi-cellular", "eval", direction="up")] == [
        "up"
    ] * 3


@pytest.mark.parametrize(
    ("name", "mean_mbps"),
    # SOURCE.md: mean = lines x 1500 B x 8 / last timestamp
    [
        ("ATT-LTE-driving-2016.down", 4.56),
        ("Verizon-LTE-short.up", 5.95),
        ("TMobile-LTE-short.down", 16.70),
    ],
)
@pytest.mark.parametrize("window_ms", [1000, 100])
def test_mahimahi_shipped_mean_matches_source_md(
    name: str, mean_mbps: float, window_ms: int
) -> None:
    path = TRACE_DATA_DIR / "mahimahi-cellular" / name
    tr = load_mahimahi_trace(path, window_ms=window_ms)
    lines = path.read_text().count("\n")
    assert tr.period_bytes == pytest.approx(lines * MAHIMAHI_PACKET_BYTES)
    assert tr.mean_mbps_period() == pytest.approx(mean_mbps, abs=0.005)


def test_norway_split_covers_every_mode() -> None:
    for split in ("train", "eval"):
        modes = {t.name.split("_")[1] for t in load_trace_set("norway-hsdpa-3g", split)}
        assert modes == {"bus", "car", "metro", "train", "tram"}


@pytest.mark.parametrize("family", SHIPPED_FAMILIES)
def test_split_is_disjoint_and_non_empty(family: str) -> None:
    spec = load_split_manifest().families[family]
    assert spec.train and spec.eval
    for a in spec.train:
        for b in spec.eval:
            assert not a.overlaps(b), (a, b)
    if spec.format == "mahimahi":
        # windows of each file: train and eval together tile the whole recording
        for tr_e, ev_e in zip(spec.train, spec.eval, strict=True):
            assert tr_e.file == ev_e.file
            spans = sorted(tr_e.windows_s + ev_e.windows_s, key=lambda w: w[0])
            assert spans[0][0] == 0.0 and spans[-1][1] is None
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert end == start
    elif spec.format == "irish5g":
        # whole sessions: no session's timestamps on both sides
        def stamps(entries: tuple[SplitEntry, ...]) -> set[str]:
            return {
                ln.split(",", 1)[0]
                for e in entries
                for ln in (TRACE_DATA_DIR / family / e.file).read_text().splitlines()[1:]
            }

        assert not stamps(spec.train) & stamps(spec.eval)
    else:
        # Pensieve cut traces from longer logs; no train/eval pair shares two consecutive
        # samples, i.e. no overlapping cut of one log is on both sides.
        def pairs(entries: tuple[SplitEntry, ...]) -> set[tuple[str, str]]:
            out: set[tuple[str, str]] = set()
            for e in entries:
                col = [
                    ln.split()[1]
                    for ln in (TRACE_DATA_DIR / family / e.file).read_text().split("\n")
                    if ln.strip()
                ]
                out |= set(itertools.pairwise(col))
            return out

        assert not pairs(spec.train) & pairs(spec.eval)


def test_mahimahi_split_windows_cover_each_recording_once() -> None:
    """Per file, the spliced train and eval traces together last exactly the recording."""
    train = {t.name.split("[")[0]: t for t in load_trace_set("mahimahi-cellular", "train")}
    for ev in load_trace_set("mahimahi-cellular", "eval"):
        tr = train[ev.name.split("[")[0]]
        assert tr.duration_s + ev.duration_s == pytest.approx(
            load_mahimahi_trace(
                TRACE_DATA_DIR / "mahimahi-cellular" / ev.name.split("[")[0]
            ).duration_s
        )


def _copy_manifest(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    for fam in SHIPPED_FAMILIES:
        shutil.copytree(TRACE_DATA_DIR / fam, tmp_path / fam)
    data = json.loads((TRACE_DATA_DIR / "splits.json").read_text())
    return tmp_path, data


def _write_manifest(folder: Path, data: dict[str, Any]) -> None:
    (folder / "splits.json").write_text(json.dumps(data))


def test_manifest_rejects_overlap_and_empty_splits(tmp_path: Path) -> None:
    folder, data = _copy_manifest(tmp_path)
    bad = json.loads(json.dumps(data))
    bad["families"]["norway-hsdpa-3g"]["eval"].append("norway_bus_1")
    _write_manifest(folder, bad)
    with pytest.raises(TraceError, match="train and eval overlap on norway_bus_1"):
        load_split_manifest(folder)
    bad = json.loads(json.dumps(data))
    bad["families"]["mahimahi-cellular"]["eval"][0]["windows_s"][0] = [29, 40]
    _write_manifest(folder, bad)
    with pytest.raises(TraceError, match=r"overlap on ATT-LTE-driving-2016\.up"):
        load_split_manifest(folder)
    bad = json.loads(json.dumps(data))
    bad["families"]["fcc-broadband"]["eval"] = []
    _write_manifest(folder, bad)
    with pytest.raises(TraceError, match=r"fcc-broadband\.eval: empty split"):
        load_split_manifest(folder)


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        (lambda d: d["families"]["norway-hsdpa-3g"].update(typo=1), r"unknown key\(s\) \['typo'\]"),
        (lambda d: d["families"]["norway-hsdpa-3g"]["train"].append("norway_ferry_1"), "no file"),
        (lambda d: d["families"]["fcc-broadband"].update(window_ms=100), "only mahimahi"),
        (lambda d: d["families"]["mahimahi-cellular"].pop("window_ms"), "window_ms"),
        (
            lambda d: d["families"]["mahimahi-cellular"]["train"][0]["windows_s"].reverse(),
            "increasing and disjoint",
        ),
        (lambda d: d.update(kind="other"), "kind"),
    ],
)
def test_manifest_is_strict(
    tmp_path: Path, edit: Callable[[dict[str, Any]], object], what: str
) -> None:
    folder, data = _copy_manifest(tmp_path)
    edit(data)
    _write_manifest(folder, data)
    with pytest.raises(TraceError, match=what) as err:
        load_split_manifest(folder)
    assert "splits.json" in str(err.value)


def test_manifest_window_past_end_is_rejected_at_load(tmp_path: Path) -> None:
    folder, data = _copy_manifest(tmp_path)
    data["families"]["mahimahi-cellular"]["eval"][0]["windows_s"][-1] = [110, 500]
    _write_manifest(folder, data)
    with pytest.raises(TraceError, match=r"does not fit ATT-LTE-driving-2016\.up"):
        load_trace_set("mahimahi-cellular", "eval", data_dir=folder)


def test_load_trace_set_argument_errors() -> None:
    with pytest.raises(KeyError, match="unknown trace family"):
        load_trace_set("no-such-family", "train")
    with pytest.raises(ValueError, match="split"):
        load_trace_set("norway-hsdpa-3g", "test")
    with pytest.raises(ValueError, match="mahimahi families only"):
        load_trace_set("norway-hsdpa-3g", "train", window_ms=100)
    with pytest.raises(ValueError, match="no 'up' traces"):
        load_trace_set("norway-hsdpa-3g", "train", direction="up")


def test_load_trace_set_is_cached_and_window_configurable() -> None:
    a = load_trace_set("mahimahi-cellular", "train")
    b = load_trace_set("mahimahi-cellular", "train")
    assert a == b and a is not b and all(x is y for x, y in zip(a, b, strict=True))
    fine = load_trace_set("mahimahi-cellular", "train", window_ms=100)
    assert fine[0].times_s.size == 10 * a[0].times_s.size
    assert fine[0].period_bytes == pytest.approx(a[0].period_bytes)


# ----------------------------------------------------------------------------- summary, speed


def test_time_weighted_quantile() -> None:
    tr = make(*TWO_STEP)  # 8 Mbit/s 40% of the time, 2 Mbit/s 60%
    assert time_weighted_quantile([tr], 0.5) == 2.0
    assert time_weighted_quantile([tr], 0.7) == 8.0
    assert time_weighted_quantile([tr], 0.1) == 2.0


def test_trace_summary_lists_every_set() -> None:
    rows = summarize_trace_sets()
    keys = {(r.family, r.split, r.direction) for r in rows}
    assert ("mahimahi-cellular", "eval", "up") in keys and (
        "norway-hsdpa-3g",
        "train",
        "down",
    ) in keys
    assert len(rows) == 2 * 1 + 2 * 2 + 2 * 2 + 2 * 1  # fcc, irish (up+down), mahimahi, norway
    norway_train = next(r for r in rows if (r.family, r.split) == ("norway-hsdpa-3g", "train"))
    assert norway_train.count == 20 and norway_train.p10_mbps <= norway_train.median_mbps
    assert "norway-hsdpa-3g" in trace_summary()


def test_transfer_end_is_fast() -> None:
    """A loose guard (the measured figure is ~1-2 us): catches an accidental O(n) path."""
    tr = load_trace_set("fcc-broadband", "train")[0]
    us = benchmark_queries(tr, n_calls=20_000, repeats=3)
    assert us["transfer_end_s_us"] < 25.0
