"""The runtime's wire format: versioned, length-prefixed frames of a JSON header and tensor bytes.

Every message between the device, edge and cloud processes is one *frame*. Nothing is ever
pickled: a frame is a fixed binary prefix, a small UTF-8 JSON object (``meta``, the message's
fields) and raw tensor bytes whose dtype and shape the prefix declares.

Layout (all integers little-endian; version :data:`VERSION` = 1)::

    offset  size  field
    0       4     magic         b"ERT1" (:data:`MAGIC`)
    4       1     version       1
    5       1     kind          :class:`Kind` (HELLO, WELCOME, WORK, RESULT, ...)
    6       1     dtype         :class:`DType` code: none, uint8, float32, quint8, int64
    7       1     ndim          0 .. MAX_NDIM (6)
    8       8     request_id    unsigned 64-bit
    16      4     meta_len      bytes of the JSON object, <= MAX_META_BYTES (64 KiB)
    20      8     payload_len   tensor bytes, <= MAX_PAYLOAD_BYTES (64 MiB)
    28      4*ndim shape        unsigned 32-bit per dimension, each <= MAX_DIM
    ..      meta_len            UTF-8 JSON object (``{}`` at least)
    ..      payload_len         the tensor, C order, ``payload_len == prod(shape) * itemsize``

``dtype == none`` carries no tensor (``ndim == 0`` and ``payload_len == 0``). ``quint8``
tensors (cut tensors of the int8 variant) carry their per-tensor quantization parameters in
``meta`` as ``q_scale`` (a positive finite number) and ``q_zero_point`` (an integer in
0..255); the payload is the tensor's ``int_repr()`` bytes.

Parsing is two pure functions, so the socket code only reads exact lengths:
:func:`parse_prefix` takes the first :data:`PREFIX_BYTES` and returns the lengths still to read
(or raises); :func:`decode_frame` takes a whole frame's bytes and returns a :class:`Frame` (or
raises). Every failure is a :class:`FrameError` whose message names the field and the value.
:func:`read_frame` and :func:`write_frame` are the asyncio stream helpers (every read has a
timeout). The format follows gRPC's length-prefixed messages (a fixed prefix with a length,
then the message; ``grpc/grpc`` ``doc/PROTOCOL-HTTP2.md``), with the dtype and shape of the
tensor in the prefix.
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAGIC = b"ERT1"
VERSION = 1
#: ``<`` little-endian: magic, version, kind, dtype, ndim, request_id, meta_len, payload_len.
_PREFIX = struct.Struct("<4sBBBBQIQ")
PREFIX_BYTES = _PREFIX.size  # 28
MAX_NDIM = 6
MAX_DIM = 1 << 24  # no single dimension of a CIFAR or ImageNet cut tensor comes near this
MAX_META_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024  # an ImageNet fp32 cut tensor at batch 16 is < 13 MB
#: Largest ``q_zero_point`` of a ``quint8`` tensor.
QUINT8_MAX = 255


class FrameError(ValueError):
    """A frame is malformed, oversized, of an unknown version or kind, or inconsistent."""


class Kind(enum.IntEnum):
    """What a frame is (the ``kind`` byte)."""

    HELLO = 1  # client -> server: role, token, run settings (meta)
    WELCOME = 2  # server -> client: accepted, server state (meta)
    WORK = 3  # a request's tensor and plan, to run the receiver's segment
    RESULT = 4  # a request's answer (meta: class, confidence, exit, timestamps)
    CACHE_LOOKUP = 5  # device -> edge: input fingerprint (meta)
    CACHE_REPLY = 6  # edge -> device: hit (with the result) or miss
    CACHE_PUT = 7  # device -> edge: a result computed on the device, with its fingerprint
    ERROR = 8  # either way: a one-line reason (meta "error"); the request is dropped
    BYE = 9  # client -> server: the client is done


class DType(enum.IntEnum):
    """Tensor element type (the ``dtype`` byte)."""

    NONE = 0
    UINT8 = 1
    FLOAT32 = 2
    QUINT8 = 3
    INT64 = 4


_ITEMSIZE = {DType.NONE: 0, DType.UINT8: 1, DType.FLOAT32: 4, DType.QUINT8: 1, DType.INT64: 8}
_NUMPY = {DType.UINT8: "<u1", DType.FLOAT32: "<f4", DType.QUINT8: "<u1", DType.INT64: "<i8"}


@dataclass(frozen=True)
class Prefix:
    """The fixed part of a frame: what it is and how many bytes follow."""

    kind: Kind
    dtype: DType
    ndim: int
    request_id: int
    meta_len: int
    payload_len: int

    @property
    def rest_bytes(self) -> int:
        """Bytes after the prefix: shape, meta and payload."""
        return 4 * self.ndim + self.meta_len + self.payload_len


@dataclass(frozen=True)
class Frame:
    """A decoded frame.

    Attributes:
        kind: The message kind.
        request_id: The request the frame belongs to (0 for connection-level messages).
        meta: The message's fields (a JSON object).
        dtype: Element type of ``tensor`` (``NONE``: no tensor).
        shape: Tensor shape (``()`` without a tensor).
        payload: The tensor's bytes (C order; ``int_repr`` bytes for ``quint8``).
    """

    kind: Kind
    request_id: int
    meta: dict[str, Any] = field(default_factory=dict)
    dtype: DType = DType.NONE
    shape: tuple[int, ...] = ()
    payload: bytes = b""

    def array(self) -> np.ndarray:
        """The payload as a read-only numpy array of ``shape`` (uint8 for ``quint8``)."""
        if self.dtype == DType.NONE:
            raise FrameError(f"frame {self.kind.name} #{self.request_id} carries no tensor")
        return np.frombuffer(self.payload, dtype=_NUMPY[self.dtype]).reshape(self.shape)

    @property
    def wire_bytes(self) -> int:
        """Size of the encoded frame on the wire [bytes]."""
        return len(encode_frame(self))


def _check_quant(meta: Mapping[str, Any]) -> None:
    scale, zp = meta.get("q_scale"), meta.get("q_zero_point")
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise FrameError(f"quint8 frame: meta.q_scale must be a number, got {scale!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise FrameError(f"quint8 frame: meta.q_scale must be finite and > 0, got {scale!r}")
    if isinstance(zp, bool) or not isinstance(zp, int) or not 0 <= zp <= QUINT8_MAX:
        raise FrameError(f"quint8 frame: meta.q_zero_point must be an integer 0..255, got {zp!r}")


def parse_prefix(data: bytes) -> Prefix:
    """Parse and validate the first :data:`PREFIX_BYTES` of a frame (a pure function).

    Raises:
        FrameError: wrong length or magic, an unknown version, kind or dtype, too many
            dimensions, an oversized meta or payload, or a tensor-less frame with a payload.
    """
    if len(data) != PREFIX_BYTES:
        raise FrameError(f"frame prefix: expected {PREFIX_BYTES} bytes, got {len(data)}")
    magic, version, kind, dtype, ndim, request_id, meta_len, payload_len = _PREFIX.unpack(data)
    if magic != MAGIC:
        raise FrameError(f"frame prefix: bad magic {magic!r} (expected {MAGIC!r}): not edgerl")
    if version != VERSION:
        raise FrameError(
            f"frame prefix: unsupported version {version} (this edgerl speaks {VERSION})"
        )
    try:
        k = Kind(kind)
    except ValueError:
        raise FrameError(f"frame prefix: unknown kind {kind}") from None
    try:
        dt = DType(dtype)
    except ValueError:
        raise FrameError(f"frame prefix: unknown dtype code {dtype}") from None
    if ndim > MAX_NDIM:
        raise FrameError(f"frame prefix: ndim {ndim} exceeds the limit {MAX_NDIM}")
    if meta_len > MAX_META_BYTES:
        raise FrameError(f"frame prefix: meta_len {meta_len} exceeds the limit {MAX_META_BYTES}")
    if payload_len > MAX_PAYLOAD_BYTES:
        raise FrameError(
            f"frame prefix: payload_len {payload_len} exceeds the limit {MAX_PAYLOAD_BYTES}"
        )
    if dt == DType.NONE and (ndim or payload_len):
        raise FrameError(
            f"frame prefix: dtype none needs ndim 0 and no payload, got ndim {ndim}, "
            f"payload_len {payload_len}"
        )
    return Prefix(k, dt, ndim, request_id, meta_len, payload_len)


def decode_rest(prefix: Prefix, rest: bytes) -> Frame:
    """Decode what follows a parsed prefix (shape, meta, payload) into a :class:`Frame`.

    Raises:
        FrameError: wrong length, a dimension over :data:`MAX_DIM`, a payload that does not
            hold ``prod(shape)`` elements, meta that is not a UTF-8 JSON object, or bad
            ``quint8`` quantization parameters.
    """
    if len(rest) != prefix.rest_bytes:
        raise FrameError(
            f"frame #{prefix.request_id}: expected {prefix.rest_bytes} bytes after the prefix, "
            f"got {len(rest)} (truncated or trailing data)"
        )
    n_shape = 4 * prefix.ndim
    shape = struct.unpack(f"<{prefix.ndim}I", rest[:n_shape])
    for i, d in enumerate(shape):
        if d > MAX_DIM:
            raise FrameError(f"frame #{prefix.request_id}: shape[{i}] = {d} exceeds {MAX_DIM}")
    if prefix.dtype != DType.NONE:
        want = math.prod(shape) * _ITEMSIZE[prefix.dtype]
        if want != prefix.payload_len:
            raise FrameError(
                f"frame #{prefix.request_id}: payload_len {prefix.payload_len} != "
                f"prod(shape {list(shape)}) * {_ITEMSIZE[prefix.dtype]} B ({want}) for "
                f"dtype {prefix.dtype.name.lower()}"
            )
    raw_meta = rest[n_shape : n_shape + prefix.meta_len]
    try:
        meta = json.loads(raw_meta.decode("utf-8")) if raw_meta else {}
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FrameError(f"frame #{prefix.request_id}: meta is not UTF-8 JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise FrameError(
            f"frame #{prefix.request_id}: meta must be a JSON object, got {type(meta).__name__}"
        )
    if prefix.dtype == DType.QUINT8:
        _check_quant(meta)
    return Frame(
        kind=prefix.kind,
        request_id=prefix.request_id,
        meta=meta,
        dtype=prefix.dtype,
        shape=tuple(shape),
        payload=bytes(rest[n_shape + prefix.meta_len :]),
    )


def decode_frame(data: bytes) -> Frame:
    """Decode one whole frame (prefix + rest) from ``data`` (a pure function).

    Raises:
        FrameError: as :func:`parse_prefix` and :func:`decode_rest`.
    """
    if len(data) < PREFIX_BYTES:
        raise FrameError(f"frame: {len(data)} bytes, shorter than the {PREFIX_BYTES}-byte prefix")
    prefix = parse_prefix(data[:PREFIX_BYTES])
    return decode_rest(prefix, data[PREFIX_BYTES:])


def encode_frame(frame: Frame) -> bytes:
    """The wire bytes of ``frame``; validates it as the parser would (round-trip safe).

    Raises:
        FrameError: the frame breaks a limit or its payload does not fit dtype and shape.
    """
    meta = json.dumps(frame.meta, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if not 0 <= frame.request_id < 1 << 64:
        raise FrameError(f"frame: request_id {frame.request_id} is not an unsigned 64-bit int")
    if len(frame.shape) > MAX_NDIM:
        raise FrameError(f"frame: {len(frame.shape)} dimensions exceed the limit {MAX_NDIM}")
    if any(not 0 <= d <= MAX_DIM for d in frame.shape):
        raise FrameError(f"frame: shape {list(frame.shape)} has a dimension outside 0..{MAX_DIM}")
    if len(meta) > MAX_META_BYTES or len(frame.payload) > MAX_PAYLOAD_BYTES:
        raise FrameError(
            f"frame: meta ({len(meta)} B) or payload ({len(frame.payload)} B) exceeds its limit"
        )
    prefix = _PREFIX.pack(
        MAGIC,
        VERSION,
        int(frame.kind),
        int(frame.dtype),
        len(frame.shape),
        frame.request_id,
        len(meta),
        len(frame.payload),
    )
    out = prefix + struct.pack(f"<{len(frame.shape)}I", *frame.shape) + meta + frame.payload
    decode_frame(out)  # the sender never emits what a receiver would refuse
    return out


def tensor_frame(
    kind: Kind, request_id: int, meta: Mapping[str, Any], array: np.ndarray, dtype: DType
) -> Frame:
    """A frame carrying ``array`` (converted to ``dtype``'s little-endian C layout)."""
    arr = np.require(np.asarray(array, dtype=_NUMPY[dtype]), requirements="C")
    return Frame(kind, request_id, dict(meta), dtype, tuple(int(d) for d in arr.shape),
                 arr.tobytes())  # fmt: skip


# ----------------------------------------------------------------------------- streams


async def read_frame(reader: asyncio.StreamReader, timeout_s: float | None) -> Frame | None:
    """Read one frame; ``None`` on a clean end of stream before a frame starts.

    Every read waits at most ``timeout_s`` (``None``: forever, for idle connections between
    requests); the rest of a frame whose prefix has arrived always gets ``timeout_s`` or
    :data:`REST_TIMEOUT_S`, so a sender that stops mid-frame cannot hold the reader.

    Raises:
        FrameError: malformed data, or the stream ended or stalled mid-frame.
    """
    try:
        head = await asyncio.wait_for(reader.readexactly(PREFIX_BYTES), timeout_s)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FrameError(
            f"connection closed mid-prefix after {len(exc.partial)} of {PREFIX_BYTES} bytes"
        ) from None
    except TimeoutError:
        raise FrameError(f"no frame within {timeout_s} s") from None
    prefix = parse_prefix(head)
    rest_timeout = REST_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        rest = await asyncio.wait_for(reader.readexactly(prefix.rest_bytes), rest_timeout)
    except asyncio.IncompleteReadError as exc:
        raise FrameError(
            f"frame #{prefix.request_id}: connection closed mid-frame after "
            f"{len(exc.partial)} of {prefix.rest_bytes} bytes"
        ) from None
    except TimeoutError:
        raise FrameError(
            f"frame #{prefix.request_id}: the rest ({prefix.rest_bytes} bytes) did not arrive "
            f"within {rest_timeout} s (slow or stalled sender)"
        ) from None
    return decode_rest(prefix, rest)


#: Longest wait for the rest of a frame once its prefix has arrived [s] (a slow sender's cap;
#: a 64 MiB payload at 100 Mbit/s takes 5.4 s).
REST_TIMEOUT_S = 30.0


async def write_frame(writer: asyncio.StreamWriter, frame: Frame) -> int:
    """Encode and write ``frame`` unshaped (control traffic); returns the bytes written."""
    data = encode_frame(frame)
    writer.write(data)
    await writer.drain()
    return len(data)
