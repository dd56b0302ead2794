"""``edgerl models``, ``profile``, ``digits``, ``cifar``: the zoo, its profiler, trained families.

``models`` lists every zoo family, variant, unit and exit (from the registry, no weights), and the
measured per-exit top-1 of the families that ship an accuracy table.
``profile`` measures a model's units and exit heads on this machine and writes schema-v1 profiles
(``profiles/data/<model>/<variant>/<hardware>.json`` when ``--out`` is a directory).
``digits`` trains ``digits_me`` and prints the held-out accuracy of every exit and variant.
``cifar train`` trains, quantizes, prunes and measures a CIFAR-10 family and writes its accuracy
table and weights (:mod:`edgerl.profiles.cifar`); ``cifar accuracy`` prints the shipped tables.

torch and the zoo are imported inside the commands so that ``edgerl --help`` stays fast.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from edgerl.experiments import term
from edgerl.experiments.cli import app
from edgerl.experiments.errors import fail
from rich.table import Table

if TYPE_CHECKING:
    from edgerl.profiles.schema import LayerProfile

console = term.console()

BYTES_PER_KIB = 1024
FLOPS_PER_MFLOP = 1e6
DEFAULT_HARDWARE = "host-cpu"


def _fail(msg: str) -> typer.Exit:
    """One line on stderr; the exit (status 2) to raise (:func:`edgerl.experiments.errors.fail`)."""
    return fail(msg)


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
            if s.shipped_weights:
                acc = "measured per exit (below; edgerl cifar accuracy)"
            elif s.measured_accuracy:
                acc = "measured per exit (edgerl digits)"
            elif var.final_accuracy is None:
                acc = "unknown (scenario supplies it)"
            else:
                acc = f"{var.final_accuracy:.3f} (cited)"
            v.add_row(
                s.name, var.name, var.precision, str(var.input_resolution), var.description, acc
            )
    console.print(v)
    _print_measured_exits([s for s in specs if s.shipped_weights])


def _print_measured_exits(specs: list[Any]) -> None:
    """Per-exit top-1 of every variant of the families that ship an accuracy table."""
    from edgerl.profiles.accuracy import AccuracyTableError, load_accuracy_table

    t = Table(
        title="measured top-1 per exit (CIFAR-10 test set, 10,000 JPEG images; "
        "profiles/data/<model>/accuracy.npz)"
    )
    for col in ("model", "variant", "top-1 per exit (exit name: accuracy)"):
        t.add_column(col, overflow="fold")
    for s in specs:
        try:
            table = load_accuracy_table(s.name)
        except AccuracyTableError as exc:
            t.add_row(s.name, "", f"[red]no table[/red]: {exc}")
            continue
        for v in table.variants:
            accs = [f"{n}: {table.top1(v, e):.4f}" for e, n in enumerate(table.exit_names)]
            pairs = [", ".join(accs[i : i + 2]) for i in range(0, len(accs), 2)]  # 100 columns
            t.add_row(s.name, v, "\n".join(pairs))
    console.print(t)


# --------------------------------------------------------------------------- profile


def print_profile_table(prof: LayerProfile) -> None:
    """A per-unit / per-exit table of one profile that fits a 100-column terminal: latency at
    the smallest and the largest batch size; every batch size, shape and peak memory are in
    the JSON file."""
    bs = prof.batch_sizes
    shown = sorted({0, len(bs) - 1})
    t = Table(
        title=f"{prof.model}/{prof.variant} on {prof.hardware.name} "
        f"({prof.hardware.extra.get('threads', '?')} threads): median latency [ms]"
    )
    for col in ("entry", "type", "out KiB", "params KiB", "MFLOPs"):
        t.add_column(col, justify="left" if col in ("entry", "type") else "right")
    for i in shown:
        t.add_column(f"b={bs[i]}", justify="right")
    t.add_column("acc", justify="right")
    for u in prof.units:
        t.add_row(
            u.name, u.layer_type, _kib(u.output_bytes_fp32), _kib(u.params_bytes),
            f"{u.flops / FLOPS_PER_MFLOP:,.1f}", *(f"{u.latency_ms_median[i]:.2f}" for i in shown),
            "",
        )  # fmt: skip
    for x in prof.exits:
        acc = "?" if x.accuracy is None else f"{x.accuracy:.3f}"
        after = prof.units[x.after_unit].name
        t.add_row(
            x.name if after in x.name else f"{x.name} (after {after})", x.layer_type, "",
            _kib(x.params_bytes), f"{x.flops / FLOPS_PER_MFLOP:,.1f}",
            *(f"{x.latency_ms_median[i]:.2f}" for i in shown), acc,
        )  # fmt: skip
    totals = [
        sum(u.latency_ms_median[i] for u in prof.units) + prof.exits[-1].latency_ms_median[i]
        for i in shown
    ]
    t.add_row("total (units + final exit)", "", "", "", "", *(f"{v:.2f}" for v in totals), "")
    console.print(t)
    console.print(
        f"input: {prof.input_raw_bytes:,} B raw (uint8), {prof.input_tensor_bytes:,} B as tensor; "
        f"load average {prof.hardware.extra.get('load_avg_at_start')} -> "
        f"{prof.hardware.extra.get('load_avg_at_end')}; batch sizes {', '.join(map(str, bs))} "
        "with shapes and peak memory in the JSON"
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


#: `edgerl profile` measures a model; `edgerl profile import` (cmd_user_models) imports a
#: per-layer timing table measured by another tool.
profile_app = typer.Typer()
app.add_typer(profile_app, name="profile")


@profile_app.callback(invoke_without_command=True)
def profile(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            help="Zoo model (see `edgerl models`), or your own: package.module:factory or "
            "file.py:factory (a callable returning a torch.nn.Module; needs --input-shape)."
        ),
    ] = None,
    input_shape: Annotated[
        str | None, typer.Option(help="Your own model: per-sample input shape, e.g. 3,32,32.")
    ] = None,
    exit_head: Annotated[
        list[str] | None,
        typer.Option(
            help="Your own model: a module that becomes an exit (repeatable; the head reading "
            "the latest tensor is the final exit; none: the last segment is the final exit)."
        ),
    ] = None,
    fuse_pointwise: Annotated[
        bool, typer.Option(help="Your own model: no cut before BatchNorm/activation/reshape.")
    ] = True,
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
    """Measure per-unit and per-exit latency, bytes, FLOPs and memory; write a layer profile.

    `edgerl profile import FILE.csv` imports another tool's per-layer timings instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    if model is None:
        raise _fail("--model is required: a zoo model (`edgerl models`) or package.module:factory")
    source, sep, factory = model.rpartition(":") if ":" in model else (model, "", "")
    if model.endswith(".py") or (sep and not factory) or (not sep and Path(model).exists()):
        raise _fail(
            f"--model {model}: name the factory as well, {source}:FACTORY (a callable in "
            f"{source} that returns a torch.nn.Module)"
        )
    if ":" in model:  # your own model (edgerl.experiments.cmd_user_models)
        from edgerl.experiments.cmd_user_models import profile_user_model

        profile_user_model(
            model=model, variant=variant, input_shape=input_shape, exit_heads=exit_head or [],
            fuse_pointwise=fuse_pointwise, batch_sizes=batch_sizes, threads=threads,
            min_run_time=min_run_time, warmup=warmup, min_runs=min_runs, rounds=rounds,
            seed=seed, device=device, hardware=hardware, out=out,
        )  # fmt: skip
        return
    if input_shape is not None or exit_head:
        raise _fail("--input-shape and --exit-head are for your own model (--model module:factory)")
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
    if spec.measured_accuracy and not spec.shipped_weights:
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


# --------------------------------------------------------------------------- cifar

cifar_app = typer.Typer(
    help="CIFAR-10 multi-exit families: train them for real; show their measured accuracy.",
    no_args_is_help=True,
)
app.add_typer(cifar_app, name="cifar")

DEFAULT_TAU = 0.9  # confidence threshold of `edgerl cifar accuracy` (our choice for the README)


@cifar_app.command("train")
def cifar_train(
    model: Annotated[str, typer.Option(help="balexnet_c10, resnet_c10 or mobilenetv2_c10.")],
    data: Annotated[
        Path,
        typer.Option(
            help="Directory with cifar10-jpeg-{train,test}.tar.gz or the extracted "
            "train/ and test/ class folders (see profiles/cifar_data.py)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Root to write <model>/accuracy.npz and weights-*.npz (profiles/data ships them)."
        ),
    ],
    seed: Annotated[int, typer.Option(help="Seed of weights, batch order, augmentation.")] = 0,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="fp32 epochs [default: cifar.EPOCHS[model]].")
    ] = None,
    finetune_epochs: Annotated[
        int | None,
        typer.Option(min=1, help="Fine-tuning epochs [default: cifar.FINETUNE_EPOCHS[model]]."),
    ] = None,
    limit_per_class: Annotated[
        int | None,
        typer.Option(min=1, help="Only the first K images per class of each split (quick runs)."),
    ] = None,
) -> None:
    """Train, quantize, prune and fine-tune a CIFAR-10 family; measure every exit per image."""
    from edgerl.profiles import cifar, cifar_data

    start = time.perf_counter()
    try:
        config = cifar.CifarConfig(
            model=model, seed=seed, epochs=epochs or 0, finetune_epochs=finetune_epochs or 0,
            limit_per_class=limit_per_class,
        )  # fmt: skip
        cifar_data.locate(data, "train")
        cifar_data.locate(data, "test")
    except (ValueError, cifar_data.CifarDataError) as exc:
        raise _fail(str(exc)) from exc
    command = _command_line()
    console.print(f"{command}\n{config}")
    try:
        result = cifar.train_and_evaluate(
            config,
            data,
            progress=lambda msg: console.print(f"  [{time.strftime('%H:%M:%S')}] {msg}"),
        )
    except cifar_data.CifarDataError as exc:
        raise _fail(str(exc)) from exc
    wall_s = time.perf_counter() - start
    for path in cifar.save_run(result, out, command, wall_s):
        console.print(f"wrote {path} ({path.stat().st_size:,} B)")
    console.print(f"phase wall times (s): {result.phase_time_s}; total {wall_s:.1f} s")
    _print_accuracy(model, out, DEFAULT_TAU)


def _print_accuracy(model: str, root: Path, tau: float) -> None:
    import numpy as np
    from edgerl.profiles.accuracy import load_accuracy_table

    table = load_accuracy_table(model, root)
    prov = table.metadata["provenance"]
    t = Table(
        title=f"{model}: top-1 on {table.n_inputs:,} CIFAR-10 test images (JPEG copy) per exit; "
        f"threshold rule tau={tau}: share leaving at each exit and its overall top-1 "
        f"(seed {prov.get('seed')}, run {prov.get('total_wall_time_s')} s)"
    )
    t.add_column("variant")
    for name in table.exit_names:
        t.add_column(name, justify="right")
    t.add_column(f"tau={tau}: top-1", justify="right")
    for v in table.variants:
        taken = table.threshold_exits(v, tau)
        shares = np.bincount(taken, minlength=len(table.exit_names)) / table.n_inputs
        overall = float(table.threshold_correct(v, taken).mean())
        t.add_row(
            v,
            *(f"{table.top1(v, e):.4f} ({shares[e]:.1%})" for e in range(len(table.exit_names))),
            f"{overall:.4f}",
        )
    console.print(t)


@cifar_app.command("accuracy")
def cifar_accuracy(
    model: Annotated[
        str, typer.Option(help="A model with a shipped accuracy table, or all.")
    ] = "all",
    tau: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Confidence threshold of the exit rule.")
    ] = DEFAULT_TAU,
    root: Annotated[Path | None, typer.Option(help="Data root [default: profiles/data].")] = None,
) -> None:
    """Print the measured per-exit top-1 and the confidence-threshold exit shares."""
    from edgerl.profiles.accuracy import AccuracyTableError, available_tables
    from edgerl.profiles.schema import DATA_DIR

    data_root = root or DATA_DIR
    models_ = available_tables(data_root) if model == "all" else [model]
    try:
        for m in models_:
            _print_accuracy(m, data_root, tau)
    except AccuracyTableError as exc:
        raise _fail(str(exc)) from exc
