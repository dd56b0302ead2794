"""Entry points of the three roles as processes (``edgerl runtime edge|cloud|device``).

A server loads its scenario and model (every variant the scenario offers) before it listens,
then prints one JSON line ``{"event": "ready", "role": ..., "host": ..., "port": ...}`` on
stdout (port 0 binds a free port; the launcher reads the line), and serves until SIGTERM or
SIGINT. The device prints ``{"event": "done", ...}`` with its accounting when its workload is
over. Each role pins itself (:func:`edgerl.runtime.common.pin`) and says where in its ready
line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from typing import Any

from edgerl.runtime.common import RoleError, announce, check_bind, pin
from edgerl.runtime.segments import ModelStore
from edgerl.runtime.workload import Setup, arrivals, build_setup, load_inputs, load_policy


def _store(setup: Setup, variants: Sequence[str] | None = None) -> ModelStore:
    batches = tuple(sorted(set(setup.cfg.action_menu.batch_sizes) | {1}))
    store = ModelStore(setup.cfg.model.name, batches)
    for v in variants or setup.cfg.model.variants:
        store.net(v)  # load before announcing readiness: no request waits for weights
    return store


def parse_addr(value: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``; raises RoleError naming the option."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 1 << 16:
        raise RoleError(f"{option} {value!r}: expected HOST:PORT")
    return host, int(port)


async def _serve(role: str, handler: Any, host: str, port: int, extra: dict[str, Any]) -> None:
    server = await asyncio.start_server(handler, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    announce({"event": "ready", "role": role, "host": bound[0], "port": bound[1], **extra})
    async with server:
        await stop.wait()
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)


def serve_cloud(
    scenario: str, overrides: Sequence[str], seed: int, split: str, host: str, port: int,
    token: str | None, cpus: list[int] | None,
) -> None:  # fmt: skip
    """Run the cloud server until SIGTERM/SIGINT."""
    from edgerl.runtime.servers import CloudServer

    check_bind(host, token)
    setup = build_setup(scenario, overrides, seed, split)
    placed = pin("cloud", setup, cpus)
    store = _store(setup)

    async def main() -> None:
        cloud = CloudServer(setup, store, token)
        await _serve("cloud", cloud.handle, host, port, placed)

    asyncio.run(main())


def serve_edge(
    scenario: str, overrides: Sequence[str], seed: int, split: str, host: str, port: int,
    token: str | None, cpus: list[int] | None, cloud: str | None, window_ms: float | None,
) -> None:  # fmt: skip
    """Run the edge server until SIGTERM/SIGINT."""
    from edgerl.runtime.servers import EdgeServer

    check_bind(host, token)
    cloud_addr = parse_addr(cloud, "--cloud") if cloud else None
    setup = build_setup(scenario, overrides, seed, split)
    placed = pin("edge", setup, cpus)
    store = _store(setup)

    async def main() -> None:
        edge = EdgeServer(setup, store, cloud_addr, token, window_ms)
        await _serve("edge", edge.handle, host, port, placed)

    asyncio.run(main())


def run_device(
    scenario: str, overrides: Sequence[str], seed: int, split: str, edge: str,
    token: str | None, cpus: list[int] | None, policy: str, duration_s: float, device: int,
    log: str | None, data: str | None, timeout_s: float,
) -> dict[str, Any]:  # fmt: skip
    """Replay ``duration_s`` of device ``device``'s workload against the edge; the accounting."""
    from edgerl.runtime.device import DeviceClient, open_log

    edge_addr = parse_addr(edge, "--edge")
    setup = build_setup(scenario, overrides, seed, split)
    placed = pin("device", setup, cpus)
    handle = load_policy(policy, setup)
    work = arrivals(setup, device, duration_s)
    inputs = load_inputs(setup, [a.image for a in work], data, seed)
    store = _store(setup)
    announce({"event": "inputs", "source": inputs.source, "note": inputs.note, **placed})
    out = open_log(log)
    try:
        client = DeviceClient(
            setup, store, handle, inputs, device, edge_addr, out, token, timeout_s
        )
        result = asyncio.run(client.run(work))
    finally:
        if out is not None:
            out.close()
    result.update(policy=handle.label, input_source=inputs.source, log=log, **placed)
    announce({"event": "done", **result})
    return result
