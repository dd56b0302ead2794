"""The runtime's frame format: round trips, every refusal, and property-based fuzzing."""

from __future__ import annotations

import asyncio
import contextlib
import struct

import numpy as np
import pytest
from edgerl.runtime import frames as fr
from edgerl.runtime.frames import DType, Frame, FrameError, Kind
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _work(arr: np.ndarray, dtype: DType = DType.FLOAT32, **meta: object) -> Frame:
    return fr.tensor_frame(Kind.WORK, 7, {"plan": 3, **meta}, arr, dtype)


def test_round_trip_float32() -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    data = fr.encode_frame(_work(arr))
    out = fr.decode_frame(data)
    assert out.kind == Kind.WORK and out.request_id == 7 and out.meta == {"plan": 3}
    assert out.shape == (2, 3, 4) and out.dtype == DType.FLOAT32
    np.testing.assert_array_equal(out.array(), arr)
    assert len(data) == fr.PREFIX_BYTES + 3 * 4 + len(b'{"plan":3}') + arr.nbytes


def test_round_trip_no_tensor_and_quint8() -> None:
    out = fr.decode_frame(fr.encode_frame(Frame(Kind.BYE, 0)))
    assert out.meta == {} and out.shape == () and out.payload == b""
    q = _work(np.zeros((1, 4), np.uint8), DType.QUINT8, q_scale=0.05, q_zero_point=3)
    assert fr.decode_frame(fr.encode_frame(q)).meta["q_zero_point"] == 3


def _raw(
    *,
    magic: bytes = fr.MAGIC,
    version: int = fr.VERSION,
    kind: int = int(Kind.WORK),
    dtype: int = int(DType.UINT8),
    shape: tuple[int, ...] = (2,),
    meta: bytes = b"{}",
    payload: bytes = b"ab",
    payload_len: int | None = None,
) -> bytes:
    n = len(payload) if payload_len is None else payload_len
    head = struct.pack("<4sBBBBQIQ", magic, version, kind, dtype, len(shape), 1, len(meta), n)
    return head + struct.pack(f"<{len(shape)}I", *shape) + meta + payload


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_raw(magic=b"HTTP"), "bad magic"),
        (_raw(version=2), "unsupported version 2"),
        (_raw(kind=99), "unknown kind 99"),
        (_raw(dtype=42), "unknown dtype code 42"),
        (_raw(shape=(1,) * 7, payload=b"a"), "ndim 7 exceeds"),
        (_raw(payload_len=fr.MAX_PAYLOAD_BYTES + 1), "payload_len .* exceeds the limit"),
        (_raw(shape=(3,)), r"payload_len 2 != prod\(shape \[3\]\)"),
        (_raw(dtype=int(DType.FLOAT32)), r"prod\(shape \[2\]\) \* 4 B"),
        (_raw(meta=b"[1]"), "meta must be a JSON object"),
        (_raw(meta=b"\xff{"), "meta is not UTF-8 JSON"),
        (_raw(dtype=int(DType.NONE), shape=(), payload=b"x"), "dtype none needs"),
        (_raw(dtype=int(DType.QUINT8)), "q_scale must be a number"),
        (_raw(dtype=int(DType.QUINT8), meta=b'{"q_scale":1,"q_zero_point":300}'), "0..255"),
        (_raw()[:-1], "truncated or trailing"),
        (_raw() + b"x", "truncated or trailing"),
        (_raw()[:10], "shorter than the 28-byte prefix"),
    ],
)
def test_every_refusal_names_the_field(data: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        fr.decode_frame(data)


def test_oversized_meta_is_refused_before_reading_it() -> None:
    head = struct.pack("<4sBBBBQIQ", fr.MAGIC, 1, 3, 0, 0, 1, fr.MAX_META_BYTES + 1, 0)
    with pytest.raises(FrameError, match=r"meta_len .* exceeds"):
        fr.parse_prefix(head)


def test_encoder_refuses_what_the_parser_refuses() -> None:
    with pytest.raises(FrameError, match="q_scale"):
        fr.encode_frame(_work(np.zeros(2, np.uint8), DType.QUINT8))
    with pytest.raises(FrameError, match="dimensions exceed"):
        fr.encode_frame(Frame(Kind.WORK, 1, {}, DType.UINT8, (1,) * 7, b"a"))


# ---- property-based fuzzing of the pure parser -------------------------------------------

_dtypes = st.sampled_from([DType.UINT8, DType.FLOAT32, DType.INT64])
_shapes = st.lists(st.integers(0, 5), min_size=0, max_size=fr.MAX_NDIM).map(tuple)
_meta = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=8), st.booleans(), st.none()),
    max_size=4,
)


@settings(max_examples=100, deadline=None)
@given(dtype=_dtypes, shape=_shapes, meta=_meta, rid=st.integers(0, 2**64 - 1),
       kind=st.sampled_from(list(Kind)), seed=st.integers(0, 2**32 - 1))  # fmt: skip
def test_fuzz_round_trip(
    dtype: DType, shape: tuple[int, ...], meta: dict, rid: int, kind: Kind, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 200, size=shape).astype(np.dtype(fr._NUMPY[dtype]))
    frame = fr.tensor_frame(kind, rid, meta, arr, dtype)
    out = fr.decode_frame(fr.encode_frame(frame))
    assert (out.kind, out.request_id, out.meta, out.shape) == (kind, rid, meta, shape)
    np.testing.assert_array_equal(out.array(), arr)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_only_raise_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        fr.decode_frame(data)


@settings(max_examples=300, deadline=None)
@given(
    cut=st.integers(0, 200),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
)
def test_fuzz_mutated_valid_frames(cut: int, flips: list[tuple[int, int]]) -> None:
    """Truncations and byte flips of a valid frame: a Frame or a FrameError, nothing else."""
    good = bytearray(fr.encode_frame(_work(np.ones((2, 3), np.float32), DType.FLOAT32, note="x")))
    for pos, val in flips:
        good[pos % len(good)] = val
    data = bytes(good[: max(0, len(good) - cut)])
    try:
        out = fr.decode_frame(data)
    except FrameError:
        return
    assert len(out.payload) == out.array().nbytes


# ---- the stream reader ------------------------------------------------------------------


def _reader(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    if eof:
        r.feed_eof()
    return r


def test_read_frame_clean_eof_truncation_and_stall() -> None:
    frame_bytes = fr.encode_frame(_work(np.ones(4, np.float32)))

    async def run() -> None:
        assert (await fr.read_frame(_reader(frame_bytes), 1.0)) is not None
        assert (await fr.read_frame(_reader(b""), 1.0)) is None
        with pytest.raises(FrameError, match="mid-prefix"):
            await fr.read_frame(_reader(frame_bytes[:5]), 1.0)
        with pytest.raises(FrameError, match="closed mid-frame"):
            await fr.read_frame(_reader(frame_bytes[:-3]), 1.0)
        with pytest.raises(FrameError, match=r"did not arrive within 0\.05 s"):
            await fr.read_frame(_reader(frame_bytes[:-3], eof=False), 0.05)

    asyncio.run(run())
