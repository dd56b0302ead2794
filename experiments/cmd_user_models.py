"""Your own model and your own device: ``edgerl profile --model module:factory`` (the work behind
that option of ``edgerl profile``), ``edgerl profile import`` and ``edgerl device-template``.

Your own model::

    edgerl profile --model my_models.py:tiny_resnet --input-shape 3,32,32 \
        [--exit-head aux1 --exit-head fc] --hardware my-laptop --out myprofiles/

traces any model the factory returns, cuts it at its valid cut points
(:mod:`edgerl.profiles.graph`: never inside a skip connection or a branch) and measures every
unit and exit head like a zoo model, into ``myprofiles/tiny_resnet/fp32/my-laptop.json``.

Your own device, three ways:

a. Measure on it: install edgerl on the device and run the same ``edgerl profile`` there with
   ``--hardware my-board`` (``--threads N``; CUDA is used when present). A measured profile is
   the best source; it replaces a derived one of the same name.
b. Derive from datasheet figures: ``edgerl device-template --method gpu-roofline --name my-gpu
   > my-devices.yaml``, fill in every null and its source, then ``edgerl derive --devices
   my-devices.yaml --to my-gpu --from my-laptop --data-dir myprofiles/`` (layer-type aware as
   for the shipped classes; hosts come from the shipped ``devices.yaml`` unless the file has
   its own; GPU operator counts come from the profile).
c. Import another tool's per-layer timings: ``edgerl profile import timings.csv --base
   myprofiles/tiny_resnet/fp32/my-laptop.json --hardware my-board --out myprofiles/``
   (:mod:`edgerl.profiles.timing_import` documents the CSV).

torch is imported inside the commands so that ``edgerl --help`` stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from edgerl.experiments.cli import app
from edgerl.experiments.cmd_profiles import (
    _command_line,
    _fail,
    _out_path,
    _parse_batch_sizes,
    console,
    print_profile_table,
    profile_app,
)
from rich.table import Table

if TYPE_CHECKING:
    from edgerl.profiles.schema import LayerProfile
    from edgerl.profiles.timing_import import TimingTable

#: Latencies of the import summary are printed for at most this many batch sizes (the full
#: table is in the written profile), so that it fits a 100-column terminal.
MAX_BATCH_COLUMNS = 4
MAX_LAYERS_SHOWN = 3  # module names listed per entry in the import summary


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"3,32,32"`` -> ``(3, 32, 32)``; a one-line error naming ``--input-shape`` otherwise."""
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise _fail(
            f"--input-shape: expected comma-separated positive integers (per sample, without "
            f"the batch dimension), e.g. 3,32,32; got {text!r}"
        ) from None
    if not shape or min(shape) < 1:
        raise _fail(f"--input-shape: every dimension must be >= 1, got {text!r}")
    return shape


def profile_user_model(
    *,
    model: str,
    variant: str,
    input_shape: str | None,
    exit_heads: list[str],
    fuse_pointwise: bool,
    batch_sizes: str,
    threads: int,
    min_run_time: float,
    warmup: int,
    min_runs: int,
    rounds: int,
    seed: int,
    device: str,
    hardware: str,
    out: Path | None,
) -> None:
    """``edgerl profile --model module:factory`` (options as ``edgerl profile`` has them)."""
    from edgerl.profiles import graph, profiler
    from edgerl.profiles.schema import profile_from_dict, save_profile

    if input_shape is None:
        raise _fail(
            f"--input-shape is required with --model {model} (per-sample shape, e.g. 3,32,32)"
        )
    shape = parse_input_shape(input_shape)
    if variant == "all":
        raise _fail("--variant all: your own model has one variant; give its name (e.g. fp32)")
    if device not in ("auto", "cpu", "cuda"):
        raise _fail(f"--device must be auto, cpu or cuda, got {device!r}")
    try:
        settings = profiler.ProfileSettings(
            batch_sizes=_parse_batch_sizes(batch_sizes), threads=threads,
            min_run_time_s=min_run_time, warmup_runs=warmup, min_runs=min_runs, rounds=rounds,
            seed=seed, device=None if device == "auto" else device,
        )  # fmt: skip
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    start = time.perf_counter()
    console.print(f"profiling {model} (input {list(shape)}) on {hardware} ...")
    try:
        data = profiler.profile_user_model(
            model, input_shape=shape, exit_heads=exit_heads, variant=variant,
            hardware_name=hardware, settings=settings, command=_command_line(),
            fuse_pointwise=fuse_pointwise, progress=lambda msg: console.print(f"  {msg}"),
        )  # fmt: skip
    except graph.GraphError as exc:
        raise _fail(str(exc)) from exc
    prof = profile_from_dict(data)
    console.print(
        f"{len(prof.units)} units between {len(prof.units) - 1} valid cut points, "
        f"{len(prof.exits)} exit(s): {', '.join(x.name for x in prof.exits)}"
    )
    print_profile_table(prof)
    if out is not None:
        path = save_profile(data, _out_path(out, prof.model, variant, hardware, 1))
        console.print(f"wrote {path}")
    console.print(f"  {prof.model}/{variant}: {time.perf_counter() - start:.1f} s wall time")


# --------------------------------------------------------------------------- profile import


@profile_app.command("import")
def profile_import(
    table: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header row: layer,batch_size,latency_ms[,latency_ms_p95][,runs]."
        ),
    ],
    base: Annotated[
        Path,
        typer.Option(
            help="A profile of the same model on any hardware (its units, exits, FLOPs, bytes)."
        ),
    ],
    hardware: Annotated[str, typer.Option(help="Name of the new hardware (hardware.name).")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="A .json file, or a directory root (writes <model>/<variant>/<hw>.json). "
            "Omit to only print."
        ),
    ] = None,
    fill_missing: Annotated[
        bool,
        typer.Option(
            help="Entries no layer maps onto get the base latency scaled by the imported/base "
            "ratio (the profile is then marked derived) instead of failing."
        ),
    ] = False,
    device_class: Annotated[
        str, typer.Option(help="hardware.device_class of the new profile.")
    ] = "imported",
) -> None:
    """Import another tool's per-layer timing table as a profile of new hardware.

    The CSV (comma-separated, UTF-8; blank lines and lines starting with # are skipped) has a
    header row with the columns layer (module name, as model.named_modules() gives it),
    batch_size, latency_ms (for the whole batch), and optionally latency_ms_p95 and runs.

    Each layer is mapped onto a unit or exit head of the --base profile by name: the entry's
    name, a module it calls (profiles of your own model list them; zoo models use units.<i> and
    exits.<e>), a submodule of one, or a parent module inside one entry. A unit's latency is
    the sum of its layers' latencies. Layers that map nowhere (or onto several entries) and
    entries with no layers are reported; the latter are an error unless --fill-missing.

    Example rows after the header layer,batch_size,latency_ms: conv1,1,0.512 then
    layer1.0,1,0.871 then fc,1,0.020 (one row per layer and batch size).
    """
    from edgerl.profiles.schema import ProfileError, load_profile, save_profile
    from edgerl.profiles.timing_import import (
        TimingTableError,
        import_profile,
        load_timing_table,
    )

    try:
        base_prof = load_profile(base)
        parsed = load_timing_table(table)
    except (ProfileError, TimingTableError) as exc:
        raise _fail(str(exc)) from exc
    try:
        prof, rep = import_profile(
            parsed, base_prof, hardware=hardware, fill_missing=fill_missing,
            device_class=device_class, command=_command_line(),
        )  # fmt: skip
    except TimingTableError as exc:
        _print_unmatched(parsed, base_prof)
        raise _fail(str(exc)) from exc
    bs = rep.batch_sizes[:MAX_BATCH_COLUMNS]
    t = Table(
        title=f"{prof.model}/{prof.variant} on {hardware}, imported from {table.name}: "
        "median latency per batch [ms]"
    )
    t.add_column("entry", overflow="fold", max_width=22)
    t.add_column("layers summed", overflow="fold", max_width=34)
    for b in bs:
        t.add_column(f"b={b}", justify="right")
    for e in (*prof.units, *prof.exits):
        layers = rep.layers_of[e.name]
        shown = ", ".join(layers[:MAX_LAYERS_SHOWN])
        if len(layers) > MAX_LAYERS_SHOWN:
            shown += f" (+{len(layers) - MAX_LAYERS_SHOWN})"
        mark = "[yellow]filled from base[/yellow]" if e.name in rep.filled else shown
        t.add_row(e.name, mark, *(f"{v:.3f}" for v in e.latency_ms_median[: len(bs)]))
    console.print(t)
    if len(rep.batch_sizes) > len(bs):
        console.print(f"(batch sizes {', '.join(map(str, rep.batch_sizes))}: all in the file)")
    _print_report(rep.unmatched, rep.empty, rep.filled)
    if out is not None:
        path = save_profile(prof, _out_path(out, prof.model, prof.variant, hardware, 1))
        console.print(f"wrote {path}")


def _print_report(unmatched: list[tuple[str, str]], empty: list[str], filled: list[str]) -> None:
    if unmatched:
        console.print(f"[yellow]{len(unmatched)} layer(s) of the table not used:[/yellow]")
        for layer, why in unmatched:
            console.print(f"  {layer}: {why}")
    else:
        console.print("every layer of the table maps onto one entry")
    if empty:
        verb = "filled from the base profile" if filled else "no layer maps onto them"
        console.print(f"[yellow]{len(empty)} entr{'y' if len(empty) == 1 else 'ies'} "
                      f"without layers ({verb}):[/yellow] {', '.join(empty)}")  # fmt: skip


def _print_unmatched(parsed: TimingTable, base_prof: LayerProfile) -> None:
    """On a failed import, still show what matched and what did not."""
    from edgerl.profiles.timing_import import map_layers

    rep = map_layers(parsed, base_prof)
    _print_report(rep.unmatched, rep.empty, [])


# --------------------------------------------------------------------------- device template


@app.command("device-template")
def device_template(
    method: Annotated[
        str, typer.Option(help="cpu-scaled (a CPU device) or gpu-roofline (a GPU).")
    ] = "gpu-roofline",
    name: Annotated[str, typer.Option(help="Hardware name of your device.")] = "my-device",
) -> None:
    """Print a device-table entry to fill with your device's figures, for `edgerl derive`.

    Save the output as a YAML file, replace every null with your device's figure and every
    source with where it comes from (datasheet, paper, benchmark page), then run
    `edgerl derive --devices FILE --to NAME --data-dir DIR`. Hosts (the measured machines a
    derivation starts from) come from the shipped profiles/devices.yaml unless your file
    defines them too.
    """
    from edgerl.profiles.derive import METHODS, device_template_yaml

    if method not in METHODS:
        raise _fail(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    typer.echo(device_template_yaml(method, name), nl=False)
