"""Ray for edgerl's commands: a local Ray kept on loopback, or an existing cluster.

``edgerl sweep`` and ``edgerl compare --ray`` call :func:`ray_address` before ``import ray``,
then :func:`ray_init` (or :func:`ray_session`, which also shuts Ray down however the block
ends, so that nothing started here outlives the command).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from edgerl.experiments.errors import OptionError


@dataclass
class RayInfo:
    """How this process talks to Ray: connected to a cluster, or a Ray it started."""

    address: str | None
    num_cpus: int


def ray_address(address: str | None, num_cpus: int | None) -> str | None:
    """The cluster to connect to (None: start Ray here). Before ``import ray``: a local Ray is
    kept on the loopback interface. Ray gives its node the loopback address only where
    clusters are off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when ``ray`` is imported,
    see ``get_node_ip_address`` in ``ray/_private/services.py``); with that and
    ``_node_ip_address="127.0.0.1"`` the GCS, raylet and workers of Ray 2.60 listen on
    127.0.0.1 only (checked with ``ss -ltnp`` while a sweep ran)."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    elif num_cpus is not None:
        raise OptionError("--num-cpus: only for a local Ray; a cluster has its own CPUs")
    return address


def ray_init(address: str | None, num_cpus: int | None) -> RayInfo:
    """Start a local Ray (loopback only, no dashboard) or connect to ``address``."""
    import ray

    if address is None:
        n = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
        if n < 1:
            raise OptionError(f"--num-cpus must be >= 1, got {n}")
        ray.init(
            num_cpus=n,
            include_dashboard=False,
            dashboard_host="127.0.0.1",
            _node_ip_address="127.0.0.1",
            configure_logging=False,
            log_to_driver=False,
        )
        return RayInfo(None, n)
    ray.init(address=address, log_to_driver=False)
    return RayInfo(address, int(ray.cluster_resources().get("CPU", 1)))


@contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[RayInfo]:
    """Ray for the block (:func:`ray_address`, :func:`ray_init`); ``ray.shutdown()`` after."""
    address = ray_address(address, num_cpus)
    import ray

    try:
        yield ray_init(address, num_cpus)
    finally:
        ray.shutdown()
