"""What the three roles share: the hello handshake, binding rules, CPU pinning and threads."""

from __future__ import annotations

import hmac
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from edgerl.envs.sim.network import BITS_PER_BYTE, BITS_PER_MBIT
from edgerl.runtime.frames import Frame, FrameError, Kind
from edgerl.runtime.workload import Setup

ROLES = ("device", "edge", "cloud")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
TOKEN_ENV = "EDGERL_RUNTIME_TOKEN"
#: A connecting peer must say hello within this time [s].
HELLO_TIMEOUT_S = 10.0
#: Weight of the newest sample in the edge's moving averages (the simulator's EWMA_WEIGHT).
EWMA_WEIGHT = 0.05
BYTES_PER_KB = 1e3
MIN_ESTIMATE_MBPS = 1e-3  # as edgerl.envs.env: a drain estimate never divides by zero


class RoleError(RuntimeError):
    """A role cannot start or a peer broke the protocol (names what and where)."""


def check_bind(host: str, token: str | None) -> None:
    """Servers bind loopback by default; anything else requires a shared token."""
    if host not in LOOPBACK_HOSTS and not token:
        raise RoleError(
            f"--host {host}: binding a non-loopback address requires a shared token "
            f"(--token or ${TOKEN_ENV}); peers must present it in their hello"
        )


def hello_meta(role: str, setup: Setup, epoch_s: float, token: str | None, **extra: Any) -> dict:
    return {
        "role": role,
        "scenario": setup.cfg.name,
        "seed": setup.seed,
        "split": setup.split,
        "epoch_s": epoch_s,
        "token": token or "",
        **extra,
    }


def check_hello(frame: Frame | None, setup: Setup, token: str | None, want_role: str) -> dict:
    """Validate a peer's hello; returns its meta.

    Raises:
        FrameError: not a hello, the wrong role, a bad token, or another run's scenario/seed.
    """
    if frame is None or frame.kind != Kind.HELLO:
        raise FrameError(f"expected HELLO first, got {None if frame is None else frame.kind.name}")
    m = frame.meta
    if m.get("role") != want_role:
        raise FrameError(f"hello: role {m.get('role')!r}, expected {want_role!r}")
    if token and not hmac.compare_digest(str(m.get("token", "")).encode(), token.encode()):
        raise FrameError("hello: wrong or missing token")
    for key, ours in (("scenario", setup.cfg.name), ("seed", setup.seed), ("split", setup.split)):
        if m.get(key) != ours:
            raise FrameError(f"hello: {key} {m.get(key)!r} differs from this server's {ours!r}")
    epoch = m.get("epoch_s")
    if isinstance(epoch, bool) or not isinstance(epoch, int | float):
        raise FrameError(f"hello: epoch_s must be a number, got {epoch!r}")
    return m


# ----------------------------------------------------------------------------- cores, threads


def default_cpus(role: str, available: list[int] | None = None) -> list[int]:
    """The cores a role is pinned to by default.

    With three or more cores every role gets its own; on two cores the device gets the first
    and the edge and cloud share the second (a request's edge and cloud segments run one after
    the other, so they rarely compete); on one core all share it.
    """
    cpus = sorted(os.sched_getaffinity(0)) if available is None else sorted(available)
    i = ROLES.index(role)
    if len(cpus) >= len(ROLES):
        return [cpus[i]]
    if len(cpus) == 2:  # noqa: PLR2004 (the two-core layout documented above)
        return [cpus[min(i, 1)]]
    return cpus[:1]


def role_threads(setup: Setup, tier: str, n_cpus: int) -> int:
    """Torch threads of a role: its profile's measured thread count, capped by its cores.

    Derived profiles (e.g. ``device-rpi4``) have no thread count this machine could reproduce;
    their role runs one thread.
    """
    variant = setup.cfg.model.variants[0]
    prof = getattr(setup.model.profiles, tier)[variant]
    threads = prof.hardware.extra.get("threads")
    n = int(threads) if isinstance(threads, int) and threads > 0 else 1
    return max(1, min(n, n_cpus))


def pin(role: str, setup: Setup, cpus: list[int] | None) -> dict[str, Any]:
    """Pin this process to ``cpus`` (default :func:`default_cpus`) and set torch's threads."""
    import torch

    chosen = default_cpus(role) if cpus is None else cpus
    try:
        os.sched_setaffinity(0, chosen)
    except (OSError, ValueError) as exc:
        raise RoleError(f"--cpus {chosen}: cannot pin the {role}: {exc}") from exc
    tier = {"device": "device", "edge": "edge", "cloud": "cloud"}[role]
    threads = role_threads(setup, tier, len(chosen))
    torch.set_num_threads(threads)
    return {"cpus": chosen, "torch_threads": threads}


def drain_ms(queued_bytes: float, mbps: float) -> float:
    """Time to deliver ``queued_bytes`` at ``mbps`` [ms] (a sender's estimate)."""
    if queued_bytes <= 0:
        return 0.0
    return queued_bytes * BITS_PER_BYTE / (max(mbps, MIN_ESTIMATE_MBPS) * BITS_PER_MBIT) * 1e3


def announce(event: dict[str, Any]) -> None:
    """One JSON line on stdout (the launcher reads ``ready`` lines to learn ports)."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


@dataclass
class Clock:
    """Trace time of the run: seconds since the epoch on ``time.monotonic``."""

    epoch_s: float

    def now(self) -> float:
        return time.monotonic() - self.epoch_s
