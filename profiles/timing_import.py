"""Import another tool's per-layer timing table as a layer profile of new hardware. No torch.

``edgerl profile import FILE.csv --base PROFILE.json --hardware NAME`` reads a CSV of per-layer
latencies measured by any tool on the new hardware (TensorRT's or TFLite's per-layer profiler,
a vendor SDK, the PyTorch profiler, ...), maps every layer onto the units and exit heads of a
*base* profile of the same model (any hardware: only its structure, FLOPs and bytes are used),
and writes a profile whose latencies are the imported ones. A unit's latency at a batch size is
the sum of the latencies of its layers at that batch size.

CSV format (UTF-8, comma-separated, a header row; blank lines and lines starting with ``#`` are
skipped; column names are case-insensitive and may come in any order)::

    # per-layer latency of mymodel on jetson-nano, trtexec --dumpProfile, 2026-01-02
    layer,batch_size,latency_ms,latency_ms_p95,runs
    conv1,1,0.512,0.530,200
    layer1.0.conv1,1,0.251,0.262,200
    fc,1,0.020,0.022,200

=================  =========  ==========================================================
column             required   meaning
=================  =========  ==========================================================
``layer``          yes        module name, as ``model.named_modules()`` names it
``batch_size``     yes        batch size of the measurement (positive integer)
``latency_ms``     yes        median (or mean) latency of the layer for the whole batch [ms]
``latency_ms_p95`` no         95th percentile [ms] (default: the median, said in the file)
``runs``           no         timed runs behind the figure (default 1, said in the file)
=================  =========  ==========================================================

Layer names are matched against each entry of the base profile, in this order: the entry's
own name; the module names the entry calls (``layers``, recorded for models profiled with
``edgerl profile --model module:factory``; for zoo models ``units.<i>`` and ``exits.<e>``, the
module names of :class:`~edgerl.profiles.zoo.MultiExitNet`); a submodule of one of those
(``layer1.0.conv1`` belongs to the unit calling ``layer1.0``); a parent module all of whose
called submodules sit in one entry (``layer1.0`` for the unit ``layer1.0``). A layer matching
no entry, or several, is reported and not used; an entry no layer maps onto is reported and,
unless ``fill_missing`` is set, makes the import fail (a profile needs every entry).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerl.profiles.schema import (
    CostEntry,
    LayerProfile,
    ProfileError,
    interpolate_latency,
    profile_from_dict,
)

REQUIRED_COLUMNS = ("layer", "batch_size", "latency_ms")
OPTIONAL_COLUMNS = ("latency_ms_p95", "runs")
DEFAULT_RUNS = 1  # a table without a runs column: each figure counts as one run
COMMENT_PREFIX = "#"
IMPORTED_DEVICE_CLASS = "imported"


class TimingTableError(ValueError):
    """The CSV is malformed or cannot be mapped; the message names the file and line."""


@dataclass(frozen=True)
class TimingRow:
    """One measured layer at one batch size."""

    line: int
    layer: str
    batch_size: int
    latency_ms: float
    latency_ms_p95: float | None
    runs: int | None


@dataclass(frozen=True)
class TimingTable:
    """A parsed per-layer timing table."""

    path: str
    rows: tuple[TimingRow, ...]
    columns: tuple[str, ...]
    sha256: str

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return tuple(sorted({r.batch_size for r in self.rows}))


def _positive_int(text: str, what: str, where: str) -> int:
    try:
        v = int(text.strip())
    except ValueError:
        raise TimingTableError(f"{where}: {what} {text!r} is not an integer") from None
    if v < 1:
        raise TimingTableError(f"{where}: {what} must be >= 1, got {v}")
    return v


def _positive_ms(text: str, what: str, where: str) -> float:
    try:
        v = float(text.strip())
    except ValueError:
        raise TimingTableError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise TimingTableError(f"{where}: {what} must be a positive finite number, got {text!r}")
    return v


def parse_timing_table(text: str, path: str = "<memory>") -> TimingTable:
    """Parse the CSV text of a per-layer timing table (see the module docstring).

    Raises:
        TimingTableError: naming ``path:line`` and what is wrong.
    """
    lines = [
        (i, ln)
        for i, ln in enumerate(text.splitlines(), start=1)
        if ln.strip() and not ln.lstrip().startswith(COMMENT_PREFIX)
    ]
    if not lines:
        raise TimingTableError(
            f"{path}: no header row; expected the columns {', '.join(REQUIRED_COLUMNS)}"
        )
    records = list(csv.reader(io.StringIO("\n".join(ln for _, ln in lines))))
    header_line = lines[0][0]
    header = [h.strip().lower() for h in records[0]]
    where = f"{path}:{header_line}"
    known = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    for h in header:
        if h not in known:
            raise TimingTableError(
                f"{where}: unknown column {h!r}; the columns are {', '.join(known)} "
                "(latencies in ms)"
            )
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise TimingTableError(f"{where}: column {dup[0]!r} appears twice")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise TimingTableError(
            f"{where}: missing column {missing[0]!r} (header: {', '.join(header)}; required: "
            f"{', '.join(REQUIRED_COLUMNS)})"
        )
    col = {h: k for k, h in enumerate(header)}
    rows: list[TimingRow] = []
    first_seen: dict[tuple[str, int], int] = {}
    for (line, _), rec in zip(lines[1:], records[1:], strict=True):
        where = f"{path}:{line}"
        if len(rec) != len(header):
            raise TimingTableError(
                f"{where}: expected {len(header)} fields ({', '.join(header)}), got {len(rec)}"
            )
        layer = rec[col["layer"]].strip()
        if not layer:
            raise TimingTableError(f"{where}: empty layer name")
        b = _positive_int(rec[col["batch_size"]], "batch_size", where)
        lat = _positive_ms(rec[col["latency_ms"]], "latency_ms", where)
        p95 = None
        if "latency_ms_p95" in col:
            p95 = _positive_ms(rec[col["latency_ms_p95"]], "latency_ms_p95", where)
            if p95 < lat:
                raise TimingTableError(
                    f"{where}: latency_ms_p95 {p95} is below latency_ms {lat} (a 95th "
                    "percentile cannot be below the median)"
                )
        runs = _positive_int(rec[col["runs"]], "runs", where) if "runs" in col else None
        key = (layer, b)
        if key in first_seen:
            raise TimingTableError(
                f"{where}: a second row for layer {layer!r} at batch size {b} (first on line "
                f"{first_seen[key]}); aggregate repeated calls of a layer into one row"
            )
        first_seen[key] = line
        rows.append(TimingRow(line, layer, b, lat, p95, runs))
    if not rows:
        raise TimingTableError(f"{path}: the table has a header but no rows")
    return TimingTable(
        path=path,
        rows=tuple(rows),
        columns=tuple(header),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def load_timing_table(path: str | Path) -> TimingTable:
    """Read and parse a timing table file (see :func:`parse_timing_table`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TimingTableError(f"{p}: cannot read timing table: {exc}") from exc
    return parse_timing_table(text, str(p))


# --------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class _Entry:
    kind: str  # "unit" or "exit"
    index: int
    name: str
    layers: tuple[str, ...]


def entry_layers(profile: LayerProfile) -> list[_Entry]:
    """Every unit and exit head with the module names it calls (see the module docstring)."""
    out = []
    for kind, entries, prefix in (
        ("unit", profile.units, "units"),
        ("exit", profile.exits, "exits"),
    ):
        for i, e in enumerate(entries):
            out.append(_Entry(kind, i, e.name, e.layers or (f"{prefix}.{i}",)))
    return out


def _candidates(layer: str, entries: Sequence[_Entry]) -> tuple[list[_Entry], str]:
    """Entries ``layer`` maps onto, and how (see the module docstring)."""
    for how, test in (
        ("entry name", lambda e: layer == e.name),
        ("module of the entry", lambda e: layer in e.layers),
        ("submodule", lambda e: any(layer.startswith(m + ".") for m in e.layers)),
        ("parent module", lambda e: any(m.startswith(layer + ".") for m in e.layers)),
    ):
        found = [e for e in entries if test(e)]
        if found:
            return found, how
    return [], ""


@dataclass
class ImportReport:
    """What an import matched and what it did not.

    Attributes:
        layers_of: Entry name -> the table's layers summed into it.
        unmatched: ``(layer, reason)`` of every table layer that was not used.
        empty: Names of entries no layer maps onto.
        filled: Entries whose latencies were filled from the base profile (``fill_missing``).
        batch_sizes: Batch sizes of the written profile.
    """

    layers_of: dict[str, list[str]] = field(default_factory=dict)
    unmatched: list[tuple[str, str]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    batch_sizes: tuple[int, ...] = ()


def map_layers(table: TimingTable, profile: LayerProfile) -> ImportReport:
    """Map every table layer onto one entry of ``profile`` (or report why not)."""
    entries = entry_layers(profile)
    rep = ImportReport(layers_of={e.name: [] for e in entries})
    for layer in dict.fromkeys(r.layer for r in table.rows):
        found, how = _candidates(layer, entries)
        if not found:
            rep.unmatched.append((layer, "no unit or exit head calls a module of that name"))
        elif len(found) > 1:
            kinds = ", ".join(f"{e.kind} {e.name}" for e in found)
            what = "spans" if how == "parent module" else "is called by"
            rep.unmatched.append((layer, f"{what} several entries ({kinds}); cannot split it"))
        else:
            rep.layers_of[found[0].name].append(layer)
    # A layer inside another layer of the same entry is already in its parent's time.
    for name, layers in rep.layers_of.items():
        nested = [m for m in layers if any(m.startswith(p + ".") for p in layers)]
        for m in nested:
            parent = next(p for p in layers if m.startswith(p + "."))
            rep.unmatched.append((m, f"inside {parent}, also in the table (counted once)"))
        rep.layers_of[name] = [m for m in layers if m not in nested]
    rep.empty = [e.name for e in entries if not rep.layers_of[e.name]]
    return rep


def import_profile(
    table: TimingTable,
    base: LayerProfile,
    *,
    hardware: str,
    fill_missing: bool = False,
    device_class: str = IMPORTED_DEVICE_CLASS,
    command: str = "",
    extra_hardware: Mapping[str, Any] | None = None,
) -> tuple[LayerProfile, ImportReport]:
    """Build the profile of ``base``'s model on ``hardware`` from a per-layer timing table.

    Args:
        table: The parsed table.
        base: A profile of the same model (any hardware): units, exits, FLOPs and bytes.
        hardware: ``hardware.name`` of the new profile.
        fill_missing: Entries no layer maps onto get the base profile's latency scaled by the
            ratio imported / base over the matched entries at that batch size (the profile is
            then marked derived); otherwise they are an error.
        device_class: ``hardware.device_class`` of the new profile.
        command: The command line (provenance).
        extra_hardware: More fields for the ``hardware`` block (description, power, ...).

    Raises:
        TimingTableError: nothing matched, entries without layers (and no ``fill_missing``),
            a matched layer without a row at one of the table's batch sizes.
    """
    rep = map_layers(table, base)
    matched = {layer: name for name, layers in rep.layers_of.items() for layer in layers}
    if not matched:
        raise TimingTableError(
            f"{table.path}: none of the table's {len(rep.unmatched)} layers maps onto a unit or "
            f"exit of {base.model}/{base.variant} (first: {rep.unmatched[0][0]!r}; entries: "
            f"{', '.join(e.name for e in entry_layers(base))})"
        )
    rows = [r for r in table.rows if r.layer in matched]
    batch_sizes = tuple(sorted({r.batch_size for r in rows}))
    by_layer: dict[str, dict[int, TimingRow]] = defaultdict(dict)
    for r in rows:
        by_layer[r.layer][r.batch_size] = r
    for layer, per_b in by_layer.items():
        gap = [b for b in batch_sizes if b not in per_b]
        if gap:
            first = min(r.line for r in per_b.values())
            raise TimingTableError(
                f"{table.path}:{first}: layer {layer!r} has no row at batch size "
                f"{', '.join(map(str, gap))} (the table's batch sizes: "
                f"{', '.join(map(str, batch_sizes))}); every layer needs every batch size"
            )
    if rep.empty and not fill_missing:
        raise TimingTableError(
            f"{table.path}: no layer of the table maps onto {len(rep.empty)} entr"
            f"{'y' if len(rep.empty) == 1 else 'ies'} of {base.model}/{base.variant}: "
            f"{', '.join(rep.empty)} (pass --fill-missing to scale the base profile's latencies "
            "for them)"
        )
    rep.batch_sizes = batch_sizes

    def sums(name: str) -> tuple[list[float], list[float], list[int]]:
        med, p95, runs = [], [], []
        for b in batch_sizes:
            rs = [by_layer[layer][b] for layer in rep.layers_of[name]]
            med.append(sum(r.latency_ms for r in rs))
            p95.append(sum(r.latency_ms_p95 or r.latency_ms for r in rs))
            runs.append(min(r.runs or DEFAULT_RUNS for r in rs))
        return med, p95, runs

    base_entries: list[CostEntry] = [*base.units, *base.exits]
    imported = {e.name: sums(e.name) for e in base_entries if rep.layers_of[e.name]}

    def base_ms(e: CostEntry, b: int) -> float:
        return interpolate_latency(base.batch_sizes, e.latency_ms_median, b)

    ratio = [
        sum(imported[e.name][0][k] for e in base_entries if e.name in imported)
        / sum(base_ms(e, b) for e in base_entries if e.name in imported)
        for k, b in enumerate(batch_sizes)
    ]
    data = base.to_dict()
    for key, entries in (("units", base.units), ("exits", base.exits)):
        for raw, e in zip(data[key], entries, strict=True):
            if e.name in imported:
                med, p95, runs = imported[e.name]
            else:
                med = [base_ms(e, b) * ratio[k] for k, b in enumerate(batch_sizes)]
                p95, runs = list(med), [DEFAULT_RUNS] * len(batch_sizes)
                rep.filled.append(e.name)
            raw["latency_ms_median"], raw["latency_ms_p95"], raw["runs"] = med, p95, runs
    data["batch_sizes"] = list(batch_sizes)
    has = set(table.columns)
    p95_note = (
        "the table's latency_ms_p95 (summed over an entry's layers: an upper bound)"
        if "latency_ms_p95" in has
        else "the table has no latency_ms_p95 column: p95 = median"
    )
    runs_note = (
        "the table's runs (fewest over an entry's layers)"
        if "runs" in has
        else f"the table has no runs column: {DEFAULT_RUNS}"
    )
    data["timing"] = {
        "timer": f"imported: another tool's per-layer table {Path(table.path).name}",
        "statistic": "latency_ms_median of an entry = sum of its layers' latency_ms",
        "p95": p95_note,
        "runs": runs_note,
    }
    source = (
        f"imported by `edgerl profile import` from the per-layer timing table "
        f"{Path(table.path).name} (sha256 {table.sha256[:12]}); units/exits, FLOPs and bytes "
        f"from the {base.hardware.name} profile of {base.model}/{base.variant}"
    )
    if rep.filled:
        source += (
            f"; DERIVED for {', '.join(rep.filled)}: no layer of the table maps onto them, so "
            f"their {base.hardware.name} latencies were scaled by the imported/base ratio of the "
            "matched entries at each batch size"
        )
    data["hardware"] = {
        "name": hardware,
        "device_class": device_class,
        "derived": bool(rep.filled),
        "source": source,
        **dict(extra_hardware or {}),
    }
    data["provenance"] = {
        "imported_with": command or "edgerl.profiles.timing_import.import_profile",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "timing_table": str(table.path),
        "timing_table_sha256": table.sha256,
        "base_profile": f"{base.model}/{base.variant}/{base.hardware.name}.json",
        "layers_per_entry": rep.layers_of,
        "unmatched_layers": [{"layer": n, "reason": why} for n, why in rep.unmatched],
        "filled_entries": rep.filled,
    }
    try:
        prof = profile_from_dict(json.loads(json.dumps(data)), f"<imported {hardware}>")
    except ProfileError as exc:  # a bug here, not bad input
        raise TimingTableError(f"{table.path}: the imported profile is invalid: {exc}") from exc
    return prof, rep
