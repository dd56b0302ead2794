"""``edgerl fit-report`` and ``edgerl derive``: latency regressions and derived device profiles.

``fit-report`` fits the per-layer-type latency regressions (Neurosurgeon / Edgent style) on the
measured profiles of one hardware and prints their leave-one-family-out errors.
``derive`` writes the derived profiles of the device classes in ``profiles/devices.yaml``
(``device-rpi4``, ``edge-t4``, ``cloud-v100``) for every measured (model, variant), and with
``--measure-host`` measures the host figures the CPU derivation needs.

Heavy imports (torch, the zoo) stay inside the functions that need them.
"""

from __future__ import annotations

import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from edgerl.experiments import term
from edgerl.experiments.cli import app
from edgerl.experiments.errors import fail
from edgerl.profiles.schema import (
    DATA_DIR,
    LayerProfile,
    ProfileError,
    load_all,
    load_profile,
    profile_path,
    save_profile,
)
from rich.table import Table

console = term.console()

MATMUL_N = 2048  # square fp32 matrices of the host matmul probe
COPY_MIB = 256  # size of the host copy-bandwidth probe [MiB]
PROBE_WARMUPS = 2
PROBE_REPEATS = 7
BYTES_PER_MIB = 2**20
FLOAT32_BYTES = 4


def _fail(msg: str) -> typer.Exit:
    """One line on stderr; the exit (status 2) to raise (:func:`edgerl.experiments.errors.fail`)."""
    return fail(msg)


def _measured(data_dir: Path, hardware: str, *, derived_ok: bool = False) -> list[LayerProfile]:
    try:
        profs = load_all(data_dir)
    except ProfileError as exc:
        raise _fail(str(exc)) from exc
    return sorted(
        (
            p
            for p in profs.values()
            if p.hardware.name == hardware and (derived_ok or not p.hardware.derived)
        ),
        key=lambda p: p.key,
    )


def _is_derived(path: Path) -> bool:
    """Whether an existing profile file is derived (a measured one is never overwritten)."""
    try:
        return load_profile(path).hardware.derived
    except ProfileError as exc:
        raise _fail(f"refusing to overwrite {path}: {exc}") from exc


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


# --------------------------------------------------------------------------- fit-report


@app.command("fit-report")
def fit_report(
    hardware: Annotated[
        str, typer.Option(help="Measured hardware whose profiles to fit.")
    ] = "cpu-epyc-1t",
    form: Annotated[
        str,
        typer.Option(
            help="Regression form: hybrid (per layer type inside its fitted range, else pooled; "
            "cache-spill and depthwise terms), or the first version's linear / loglinear."
        ),
    ] = "hybrid",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the full report as JSON.")
    ] = None,
    save_model: Annotated[
        Path | None, typer.Option(help="Also fit on every profile and save the model as JSON.")
    ] = None,
    data_dir: Annotated[
        Path, typer.Option(help="Profile directory (<model>/<variant>/<hw>.json).")
    ] = DATA_DIR,
    include_derived: Annotated[
        bool, typer.Option(help="Also fit derived profiles (e.g. --hardware device-rpi4).")
    ] = False,
) -> None:
    """Held-out (leave-one-family-out) errors of the per-layer-type latency regressions."""
    from edgerl.profiles.regression import (
        RegressionError,
        fit_latency_models,
        leave_one_family_out,
    )

    profs = _measured(data_dir, hardware, derived_ok=include_derived)
    if not profs:
        kind = "" if include_derived else "measured "
        raise _fail(f"no {kind}profiles of hardware {hardware!r} under {data_dir}")
    try:
        rep = leave_one_family_out(profs, form)
    except RegressionError as exc:
        raise _fail(str(exc)) from exc
    table = Table(
        title=f"Latency regression, leave-one-family-out, {hardware} ({form}, "
        f"{len(profs)} profiles)"
    )
    for col in ("group", "n", "MAPE %", "R²", "R² (log)", "fallback", "held-out families"):
        table.add_column(col, justify="left" if col in ("group", "held-out families") else "right")
    for r in rep.by_group:
        table.add_row(r.group, str(r.n), f"{r.mape:.1f}", _fmt(r.r2), _fmt(r.r2_log),
                      "yes" if r.fallback else "", ", ".join(r.held_out))  # fmt: skip
    table.add_section()
    for r in rep.by_family:
        table.add_row(f"family {r.group}", str(r.n), f"{r.mape:.1f}", _fmt(r.r2), _fmt(r.r2_log),
                      "", r.group)  # fmt: skip
    table.add_section()
    for r in (rep.overall, rep.in_sample):
        table.add_row(r.group, str(r.n), f"{r.mape:.1f}", _fmt(r.r2), _fmt(r.r2_log), "",
                      ", ".join(r.held_out))  # fmt: skip
    console.print(table)
    console.print(
        "fallback = layer type absent from the training families, predicted with the global "
        "model of its precision; in-sample = fit and evaluated on every profile."
    )
    whole = Table(title=f"Whole model (every unit + final exit, each batch size), {hardware}")
    for col in ("held-out family", "n", "MAPE %", "R²"):
        whole.add_column(col, justify="left" if col == "held-out family" else "right")
    for r in rep.whole_by_family:
        whole.add_row(r.group, str(r.n), f"{r.mape:.1f}", _fmt(r.r2))
    whole.add_section()
    for r in (rep.whole_overall, rep.whole_in_sample):
        if r is not None:
            whole.add_row(r.group, str(r.n), f"{r.mape:.1f}", _fmt(r.r2))
    console.print(whole)
    if rep.whole_overall is not None and rep.whole_in_sample is not None:
        console.print(
            f"{form}: leave-one-family-out MAPE per layer {rep.overall.mape:.1f} %, whole model "
            f"{rep.whole_overall.mape:.1f} % (in-sample {rep.in_sample.mape:.1f} % / "
            f"{rep.whole_in_sample.mape:.1f} %)"
        )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rep.to_dict(), indent=1) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")
    if save_model is not None:
        cmd = "edgerl " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        model = fit_latency_models(profs, form, source=f"fitted by `{cmd}` on {hardware}")
        console.print(f"wrote {model.save(save_model)}")


# --------------------------------------------------------------------------- derive


def count_operator_calls(model: str, variant: str) -> dict[str, int]:
    """Operator calls of every unit and exit head of a zoo model (torch.fx graph nodes).

    Each ``call_module`` / ``call_function`` / ``call_method`` node of the traced float network
    is one eager-mode operator call, i.e. at least one kernel launch on a GPU. The float
    network is counted for every variant (the GPU calibration is eager PyTorch too).
    """
    import torch.fx
    from edgerl.profiles import zoo

    net = zoo.build_float(model, variant)
    counted = ("call_module", "call_function", "call_method")
    out: dict[str, int] = {}
    for names, mods in ((net.unit_names, net.units), (net.exit_names, net.exits)):
        for name, mod in zip(names, mods, strict=True):
            graph = torch.fx.symbolic_trace(mod).graph
            out[name] = sum(1 for n in graph.nodes if n.op in counted)
    return out


def measure_host(threads: int) -> dict[str, float]:
    """Measured torch matmul FLOP/s and copy bandwidth of this machine at ``threads`` threads.

    The best of :data:`PROBE_REPEATS` runs is the figure to record (the uncontended capability
    of a shared machine); the medians are printed to show how noisy the machine is.
    """
    import torch

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    b = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    n_elem = COPY_MIB * BYTES_PER_MIB // FLOAT32_BYTES
    src = torch.randn(n_elem, generator=gen)
    dst = torch.empty(n_elem)

    def times_s(fn: Any) -> list[float]:
        for _ in range(PROBE_WARMUPS):
            fn()
        ts = []
        for _ in range(PROBE_REPEATS):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return ts

    mm = times_s(lambda: torch.mm(a, b))
    cp = times_s(lambda: dst.copy_(src))
    flop, moved = 2.0 * MATMUL_N**3, 2.0 * n_elem * FLOAT32_BYTES  # copy: read + write
    return {
        "matmul_flops_per_s": flop / min(mm),  # best run: the machine is shared
        "copy_bytes_per_s": moved / min(cp),
        "matmul_flops_per_s_median": flop / statistics.median(mm),
        "copy_bytes_per_s_median": moved / statistics.median(cp),
    }


@app.command("derive")
def derive(
    to: Annotated[
        str, typer.Option("--to", help="Derived hardware name (see devices.yaml) or all.")
    ] = "all",
    source_hw: Annotated[
        str | None,
        typer.Option(
            "--from", help="Measured source hardware (default: the device's derive_from)."
        ),
    ] = None,
    model: Annotated[str, typer.Option(help="Model name or all.")] = "all",
    variant: Annotated[str, typer.Option(help="Variant name or all.")] = "all",
    data_dir: Annotated[Path, typer.Option(help="Profile directory to read and write.")] = DATA_DIR,
    devices: Annotated[
        Path | None, typer.Option(help="Device table (default: profiles/devices.yaml).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Derive and print, but write nothing.")] = False,
    measure_host_figures: Annotated[
        bool,
        typer.Option("--measure-host", help="Only measure this host's matmul FLOP/s and copy BW."),
    ] = False,
    threads: Annotated[int, typer.Option(help="Threads for --measure-host.")] = 1,
) -> None:
    """Write derived profiles of the device classes that cannot be measured here."""
    from edgerl.profiles.derive import (
        DEVICES_PATH,
        DerivationError,
        DeviceTableError,
        UnknownDeviceError,
        derive_profile,
        load_device_table,
        load_user_device_table,
        main_path_latency_ms,
        profile_operator_calls,
    )

    if measure_host_figures:
        fig = measure_host(threads)
        console.print(f"# host figures at {threads} thread(s), {time.strftime('%Y-%m-%d')}:")
        for k, v in fig.items():
            console.print(f"{k}: {v:.4g}")
        return
    try:
        # a user's table lists their devices; hosts missing from it come from the shipped one
        table = load_user_device_table(devices) if devices else load_device_table(DEVICES_PATH)
        names = sorted(table.devices) if to == "all" else [table.device(to).name]
    except (DeviceTableError, UnknownDeviceError) as exc:
        raise _fail(str(exc)) from exc
    cmd = "edgerl " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results: dict[tuple[str, str], dict[str, float]] = {}
    n_written = n_kept = 0
    for name in names:
        dev = table.device(name)
        hw = source_hw or dev.derive_from
        sources = [
            p for p in _measured(data_dir, hw)
            if model in ("all", p.model) and variant in ("all", p.variant)
        ]  # fmt: skip
        if not sources:
            raise _fail(f"no measured profiles of {hw!r} for model={model} variant={variant} "
                        f"under {data_dir}")  # fmt: skip
        # calibration references: the shipped measured profiles, then the --data-dir ones
        by_key = {(p.model, p.variant): p for p in _measured(DATA_DIR, hw)}
        by_key.update({(p.model, p.variant): p for p in _measured(data_dir, hw)})
        for src in sources:
            try:
                kwargs: dict[str, Any] = {}
                if dev.method == "gpu-roofline":
                    kwargs["op_counts"] = profile_operator_calls(src) or count_operator_calls(
                        src.model, src.variant
                    )
                else:
                    kwargs["calibration_profiles"] = by_key
                out = derive_profile(src, dev, table, command=cmd, **kwargs)
            except (DerivationError, DeviceTableError, UnknownDeviceError, KeyError) as exc:
                raise _fail(f"{src.model}/{src.variant} -> {name}: {exc}") from exc
            row = results.setdefault((src.model, src.variant), {})
            row[hw] = main_path_latency_ms(src)
            row[name] = main_path_latency_ms(out)
            target = profile_path(src.model, src.variant, name, data_dir)
            if target.exists() and not _is_derived(target):
                console.print(f"[yellow]kept[/yellow] {target}: it is a measured profile")
                n_kept += 1
                continue
            if not dry_run:
                save_profile(out, target)
                n_written += 1
    cols = sorted({c for r in results.values() for c in r})
    t = Table(title="Batch-1 latency of the whole model (all units + final exit) [ms]")
    t.add_column("model/variant", no_wrap=True)
    for c in cols:
        t.add_column(c, justify="right")
    for (m, var), r in sorted(results.items()):
        t.add_row(f"{m}/{var}", *(f"{r[c]:.2f}" if c in r else "—" for c in cols))
    console.print(t)
    console.print("dry run: nothing written" if dry_run else f"wrote {n_written} derived profiles")
    if n_kept:
        console.print(f"kept {n_kept} measured profiles (a measurement wins over a derivation)")
