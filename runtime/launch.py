"""One command for a local run: start cloud, edge and device as processes on loopback, wait
for the device's workload, print the per-stage latency table, stop everything.

:func:`role_process` is the context manager that owns one role's process: it starts it, waits
(with a timeout) for its ready line, and on exit terminates it (SIGTERM, then SIGKILL after
:data:`STOP_TIMEOUT_S`), so nothing outlives the command, also on errors and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
from edgerl.runtime.common import RoleError
from edgerl.runtime.device import STAGES

#: Longest wait for a role's ready line [s] (loading an int8 variant takes ~15 s on this
#: machine under load: FX prepare + convert).
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 5.0
P95 = 95


def _role_cmd(role: str, args: Sequence[str]) -> list[str]:
    # not ``-m edgerl.experiments.cli``: run as __main__, the CLI module would be loaded twice
    # and the subcommands would register on the other copy
    entry = "from edgerl.experiments.cli import main; main()"
    return [sys.executable, "-c", entry, "runtime", role, *args]


def _read_event(proc: subprocess.Popen[str], event: str, timeout_s: float, role: str) -> dict:
    """Read the role's stdout lines until the JSON line with ``event`` (bounded wait)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RoleError(f"the {role} did not report {event!r} within {timeout_s:.0f} s")
            if not sel.select(left):
                continue
            line = proc.stdout.readline()
            if not line:
                raise RoleError(
                    f"the {role} exited (code {proc.wait()}) before reporting {event!r}; "
                    "see its stderr above"
                )
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(msg, dict) and msg.get("event") == event:
                return msg
    finally:
        sel.close()


@contextmanager
def role_process(
    role: str, args: Sequence[str], ready_timeout_s: float = READY_TIMEOUT_S,
    stderr: IO[str] | None = None,
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:  # fmt: skip
    """Start ``edgerl runtime ROLE ARGS`` and yield (process, its ready line); stop it on exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _role_cmd(role, args), stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
    )
    try:
        ready = _read_event(proc, "ready", ready_timeout_s, role)
        yield proc, ready
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    """Terminate a process and reap it (kill if it does not stop within STOP_TIMEOUT_S)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def run_local(
    common: Sequence[str], device_args: Sequence[str], log: Path, workload_timeout_s: float,
    window_ms: float | None = None, placement: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Cloud, edge and device on loopback; returns the device's accounting.

    Args:
        common: Options every role takes (``--scenario``, ``--set``, ``--seed``, ``--split``).
        device_args: The device's own options (``--policy``, ``--duration-s``, ``--data``...).
        log: The JSON-lines log the device writes.
        workload_timeout_s: Longest wait for the device to finish.
        window_ms: Edge batching window override.
        placement: Cores per role (``{"device": "0", "edge": "1", "cloud": "1"}``, each a
            ``--cpus`` value); a role left out gets its default.
    """
    cpus = {r: ["--cpus", c] for r, c in (placement or {}).items()}
    with ExitStack() as stack:
        _, cloud = stack.enter_context(
            role_process("cloud", [*common, "--port", "0", *cpus.get("cloud", [])])
        )
        edge_args = [*common, "--port", "0", "--cloud", f"127.0.0.1:{cloud['port']}"]
        edge_args += cpus.get("edge", [])
        if window_ms is not None:
            edge_args += ["--window-ms", str(window_ms)]
        _, edge = stack.enter_context(role_process("edge", edge_args))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        dev_cmd = _role_cmd(
            "device",
            [
                *common,
                *device_args,
                "--edge",
                f"127.0.0.1:{edge['port']}",
                "--log",
                str(log),
                *cpus.get("device", []),
            ],
        )
        device = subprocess.Popen(dev_cmd, stdout=subprocess.PIPE, text=True, env=env)
        try:
            done = _read_event(device, "done", READY_TIMEOUT_S + workload_timeout_s, "device")
        finally:
            stop(device)
        return {**done, "cloud": cloud, "edge": edge}


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log (one line = one request)."""
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RoleError(f"{path}: line {i}: not JSON: {exc}") from exc
    return out


def stage_table(records: Sequence[dict[str, Any]]) -> str:
    """Per-stage latency (median, p95, requests that passed the stage) of completed requests."""
    done = [r for r in records if r.get("outcome") == "completed"]
    lines = [f"{'stage':<22} {'n':>5} {'median ms':>10} {'p95 ms':>10}"]
    for name, _, _ in STAGES:
        vals = [r["stages_ms"][name] for r in done if name in r.get("stages_ms", {})]
        if vals:
            med, p95 = np.median(vals), np.percentile(vals, P95)
            lines.append(f"{name:<22} {len(vals):>5} {med:>10.2f} {p95:>10.2f}")
    dropped = [r for r in records if r.get("outcome") == "dropped"]
    reasons: dict[str, int] = {}
    for r in dropped:
        key = str(r.get("drop_reason")).split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    lines.append(
        f"sent {len(records)} = completed {len(done)} + dropped {len(dropped)}"
        + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(reasons.items()))})" if reasons else "")
    )
    slo = [r["slo_met"] for r in done]
    if slo:
        util = np.mean([r["utility"] for r in records])
        lines.append(f"deadline met {np.mean(slo):.1%} of completed; mean utility {util:.3f}")
    correct = [r["correct"] for r in done if r.get("correct") is not None]
    if correct:
        lines.append(f"top-1 correct {np.mean(correct):.1%} of {len(correct)} real test images")
    return "\n".join(lines)
