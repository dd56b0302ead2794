"""``edgerl models``, ``edgerl profile``, ``edgerl digits``: the zoo, its profiler, digits training.

``models`` lists every zoo family, variant, unit and exit (from the registry, no weights).
``profile`` measures a model's units and exit heads on this machine and writes schema-v1 profiles
(``profiles/data/<model>/<variant>/<hardware>.json`` when ``--out`` is a directory).
``digits`` trains ``digits_me`` and prints the held-out accuracy of every exit and variant.

torch and the zoo are imported inside the commands so that ``edgerl --help`` stays fast.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from edgerl.experiments.cli import app
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from edgerl.profiles.schema import LayerProfile

NON_TTY_WIDTH = 200  # columns when output is redirected (rich would default to 80)
console = Console(width=None if sys.stdout.isatty() else NON_TTY_WIDTH)

BYTES_PER_KIB = 1024
FLOPS_PER_MFLOP = 1e6
DEFAULT_HARDWARE = "host-cpu"


def _fail(msg: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {msg}")
    return typer.Exit(code=1)


def _command_line() -> str:
    """The command as typed, with the program name normalised to ``edgerl``."""
    return shlex.join(["edgerl", *sys.argv[1:]])


def _kib(n: int) -> str:
    return f"{n / BYTES_PER_KIB:,.1f}"


# --------------------------------------------------------------------------- models


@app.command("models")
def models() -> None:
    """List the multi-exit model zoo: families, variants, units (cut points) and exits."""
    from edgerl.profiles import zoo

    specs = zoo.list_models()
    t = Table(title="edgerl model zoo: units (cut points) and exits")
    for col in (
        "model",
        "family",
        "input (C,H,W)",
        "units (index: name [type])",
        "exits (after unit)",
    ):
        t.add_column(col, overflow="fold")
    for s in specs:
        units = "\n".join(
            f"{i}: {n} [{ty}]"
            for i, (n, ty) in enumerate(zip(s.unit_names, s.unit_layer_types, strict=True))
        )
        exits = "\n".join(
            f"{n} ({a}: {s.unit_names[a]})" for n, a in zip(s.exit_names, s.exit_after, strict=True)
        )
        t.add_row(s.name, s.family, str(s.input_shape("fp32")), units, exits)
    console.print(t)

    v = Table(title="variants")
    for col in ("model", "variant", "precision", "input px", "description", "final-exit accuracy"):
        v.add_column(col, overflow="fold")
    for s in specs:
        for var in s.variants.values():
            if s.measured_accuracy:
                acc = "measured per exit (edgerl digits)"
            elif var.final_accuracy is None:
                acc = "unknown (scenario supplies it)"
            else:
                acc = f"{var.final_accuracy:.3f} (cited)"
            v.add_row(
                s.name, var.name, var.precision, str(var.input_resolution), var.description, acc
            )
    console.print(v)


# --------------------------------------------------------------------------- profile


def print_profile_table(prof: LayerProfile) -> None:
    """A rich per-unit / per-exit table of one profile."""
    bs = prof.batch_sizes
    t = Table(
        title=f"{prof.model}/{prof.variant} on {prof.hardware.name} "
        f"({prof.hardware.extra.get('threads', '?')} threads): median latency per batch [ms]"
    )
    for col in ("entry", "type", "output", "out KiB fp32/int8", "params KiB", "MFLOPs", "peak KiB"):
        t.add_column(col)
    for b in bs:
        t.add_column(f"b={b}", justify="right")
    t.add_column("accuracy", justify="right")
    for u in prof.units:
        t.add_row(
            u.name, u.layer_type, "x".join(map(str, u.output_shape)),
            f"{_kib(u.output_bytes_fp32)}/{_kib(u.output_bytes_int8)}", _kib(u.params_bytes),
            f"{u.flops / FLOPS_PER_MFLOP:,.1f}", _kib(u.peak_activation_bytes),
            *(f"{x:.3f}" for x in u.latency_ms_median), "",
        )  # fmt: skip
    for x in prof.exits:
        acc = "?" if x.accuracy is None else f"{x.accuracy:.3f}"
        t.add_row(
            f"{x.name} (after {prof.units[x.after_unit].name})", x.layer_type, "", "",
            _kib(x.params_bytes), f"{x.flops / FLOPS_PER_MFLOP:,.1f}",
            _kib(x.peak_activation_bytes), *(f"{v:.3f}" for v in x.latency_ms_median), acc,
        )  # fmt: skip
    totals = [
        sum(u.latency_ms_median[i] for u in prof.units) + prof.exits[-1].latency_ms_median[i]
        for i in range(len(bs))
    ]
    t.add_row(
        "total (units + final exit)", "", "", "", "", "", "", *(f"{v:.3f}" for v in totals), ""
    )
    console.print(t)
    console.print(
        f"input: {prof.input_raw_bytes:,} B raw (uint8), {prof.input_tensor_bytes:,} B as tensor; "
        f"load average {prof.hardware.extra.get('load_avg_at_start')} -> "
        f"{prof.hardware.extra.get('load_avg_at_end')}"
    )


def _parse_batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise _fail(f"--batch-sizes: expected comma-separated integers, got {text!r}") from exc
    if not sizes or list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
        raise _fail(f"--batch-sizes: expected strictly increasing positive integers, got {text!r}")
    return sizes


def _out_path(out: Path, model: str, variant: str, hardware: str, n_variants: int) -> Path:
    from edgerl.profiles.schema import profile_path

    if out.suffix == ".json":
        if n_variants > 1:
            raise _fail(
                f"--out {out} is a file but {n_variants} variants are profiled; give a directory"
            )
        return out
    return profile_path(model, variant, hardware, root=out)


@app.command("profile")
def profile(
    model: Annotated[str, typer.Option(help="Zoo model (see `edgerl models`).")],
    variant: Annotated[str, typer.Option(help="Variant name, or 'all'.")] = "fp32",
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,2,4,8,16",
    threads: Annotated[int, typer.Option(min=1, help="torch intra-op threads while timing.")] = 1,
    hardware: Annotated[
        str, typer.Option(help="Hardware name stored in the profile (e.g. cpu-epyc-1t).")
    ] = DEFAULT_HARDWARE,
    out: Annotated[
        Path | None,
        typer.Option(
            help="A .json file, or a directory root (writes <model>/<variant>/<hw>.json). "
            "Omit to only print."
        ),
    ] = None,
    min_run_time: Annotated[
        float,
        typer.Option(
            min=0.001, help="Timer.blocked_autorange min_run_time per entry and batch [s]."
        ),
    ] = 0.2,
    warmup: Annotated[int, typer.Option(min=0, help="Explicit warm-up calls before timing.")] = 3,
    min_runs: Annotated[
        int, typer.Option(min=1, help="Fewest timed runs per entry and batch.")
    ] = 5,
    rounds: Annotated[
        int, typer.Option(min=1, help="Sweeps; the least-disturbed round is kept per entry.")
    ] = 1,
    seed: Annotated[int, typer.Option(help="Seeds weights, inputs and digits training.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Measure per-unit and per-exit latency, bytes, FLOPs and memory; write a layer profile."""
    from edgerl.profiles import profiler, zoo
    from edgerl.profiles.schema import profile_from_dict, save_profile

    try:
        spec = zoo.get_spec(model)
    except KeyError as exc:
        raise _fail(str(exc.args[0])) from exc
    variants = list(spec.variants) if variant == "all" else [variant]
    for v in variants:
        if v not in spec.variants:
            raise _fail(
                f"model {model!r} has no variant {v!r}; available: {', '.join(spec.variants)}, all"
            )
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
    command = _command_line()
    digits_result: Any = None
    if spec.measured_accuracy:
        from edgerl.profiles import digits

        console.print(f"training {model} (seed {seed}) to measure per-exit accuracy ...")
        digits_result = digits.train_and_evaluate(digits.DigitsConfig(seed=seed))
        console.print(f"  trained in {digits_result.train_time_s:.1f} s")
    for v in variants:
        start = time.perf_counter()
        console.print(f"profiling {model}/{v} on {hardware} ({threads} threads) ...")
        data = profiler.profile_model(
            model, v, hardware_name=hardware, settings=settings, command=command,
            digits_result=digits_result, progress=lambda msg: console.print(f"  {msg}"),
        )  # fmt: skip
        prof = profile_from_dict(data)
        print_profile_table(prof)
        if out is not None:
            path = save_profile(data, _out_path(out, model, v, hardware, len(variants)))
            console.print(f"wrote {path}")
        console.print(f"  {model}/{v}: {time.perf_counter() - start:.1f} s wall time")


# --------------------------------------------------------------------------- digits


@app.command("digits")
def digits_cmd(
    seed: Annotated[int, typer.Option(help="Seed of split, weights and batch order.")] = 0,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="fp32 training epochs [default: digits.EPOCHS].")
    ] = None,
    finetune_epochs: Annotated[
        int | None,
        typer.Option(
            min=1, help="Fine-tuning epochs after pruning [default: digits.FINETUNE_EPOCHS]."
        ),
    ] = None,
) -> None:
    """Train digits_me on sklearn's digits; print held-out accuracy per exit and variant."""
    from edgerl.profiles import digits, zoo

    res = digits.train_and_evaluate(
        digits.DigitsConfig(
            seed=seed,
            epochs=digits.EPOCHS if epochs is None else epochs,
            finetune_epochs=digits.FINETUNE_EPOCHS if finetune_epochs is None else finetune_epochs,
        )
    )

    spec = zoo.get_spec(digits.MODEL)
    t = Table(
        title=f"digits_me held-out accuracy ({res.n_test} test / {res.n_train} train images, "
        f"seed {seed}, trained in {res.train_time_s:.1f} s)"
    )
    t.add_column("variant")
    for name in spec.exit_names:
        t.add_column(name, justify="right")
    for v, accs in res.accuracy.items():
        t.add_row(v, *(f"{a:.4f}" for a in accs))
    console.print(t)
