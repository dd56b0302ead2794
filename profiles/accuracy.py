"""Measured per-input accuracy tables of the trained multi-exit models. numpy only (no torch).

A table holds, for one model, every ``(variant, exit)`` pair's answer on every test input:
whether the exit's top-1 prediction is correct and the exit head's confidence (the largest
softmax probability of its logits). It is written by :mod:`edgerl.profiles.cifar` and
shipped as ``profiles/data/<model>/accuracy.npz`` (``np.savez_compressed``; read with
``allow_pickle=False`` only).

File layout (schema version 1)::

    metadata    0-d unicode array: JSON text
                {"schema_version": 1, "kind": "edgerl.accuracy_table", "model": "...",
                 "variants": [...], "exit_names": [...], "exit_after": [...],
                 "n_inputs": 10000, "class_names": [...],
                 "test_set": {"description", "order", "order_sha256", "source_sha256", ...},
                 "confidence": "...", "provenance": {...}}
    correct     bool     (n_variants, n_exits, n_inputs)   prediction == label
    confidence  float32  (n_variants, n_exits, n_inputs)   max softmax probability, in [0, 1]
    prediction  uint8    (n_variants, n_exits, n_inputs)   predicted class index
    labels      uint8    (n_inputs,)                       true class index

Input ``i`` is test image ``i`` in the order the metadata's ``test_set.order`` describes (for
CIFAR-10: :data:`edgerl.profiles.cifar_data.ORDER_DESCRIPTION`), so a simulator can map a
request's input id to a test image and look up the measured answer of the plan's
``(variant, exit)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgerl.profiles.schema import DATA_DIR

ACCURACY_SCHEMA_VERSION = 1
ACCURACY_KIND = "edgerl.accuracy_table"
ACCURACY_FILE = "accuracy.npz"
ARRAYS = ("correct", "confidence", "prediction", "labels")
METADATA_KEY = "metadata"
#: Confidence is a probability; float32 softmax may exceed 1 by rounding [probability].
CONFIDENCE_ROUNDING = 1e-6


class AccuracyTableError(ValueError):
    """An accuracy table is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class AccuracyTable:
    """A validated accuracy table (build with :func:`load_accuracy_table`).

    Attributes:
        model: Zoo model name.
        variants: Variant names, in the order of the arrays' first axis.
        exit_names: Exit names, in the order of the arrays' second axis.
        exit_after: Index of the unit each exit follows.
        n_inputs: Test inputs (the arrays' last axis).
        class_names: Class names; ``labels`` index into them.
        labels: ``uint8`` ``(n_inputs,)``: the true class of every input.
        metadata: The decoded metadata (test-set order, provenance, ...).
        path: The file read.
    """

    model: str
    variants: tuple[str, ...]
    exit_names: tuple[str, ...]
    exit_after: tuple[int, ...]
    n_inputs: int
    class_names: tuple[str, ...]
    labels: np.ndarray = field(repr=False)
    metadata: Mapping[str, Any] = field(repr=False)
    path: str
    _correct: np.ndarray = field(repr=False)
    _confidence: np.ndarray = field(repr=False)
    _prediction: np.ndarray = field(repr=False)

    def _index(self, variant: str, exit_index: int) -> tuple[int, int]:
        if variant not in self.variants:
            raise KeyError(
                f"{self.path}: model {self.model!r} has no variant {variant!r} in its accuracy "
                f"table; available: {', '.join(self.variants)}"
            )
        if isinstance(exit_index, bool) or not 0 <= exit_index < len(self.exit_names):
            raise IndexError(
                f"{self.path}: exit_index {exit_index!r} out of range; {self.model} has "
                f"{len(self.exit_names)} exits ({', '.join(self.exit_names)})"
            )
        return self.variants.index(variant), int(exit_index)

    def top1(self, variant: str, exit_index: int) -> float:
        """Top-1 accuracy of ``(variant, exit)`` over all inputs (fraction in [0, 1])."""
        v, e = self._index(variant, exit_index)
        return float(self._correct[v, e].mean())

    def top1_per_exit(self, variant: str) -> tuple[float, ...]:
        """Top-1 accuracy of every exit of ``variant``, in exit order."""
        return tuple(self.top1(variant, e) for e in range(len(self.exit_names)))

    def correct(self, variant: str, exit_index: int) -> np.ndarray:
        """Read-only ``bool`` ``(n_inputs,)``: whether the exit got input ``i`` right."""
        v, e = self._index(variant, exit_index)
        return self._correct[v, e]

    def confidence(self, variant: str, exit_index: int) -> np.ndarray:
        """Read-only ``float32`` ``(n_inputs,)``: the exit's max softmax probability per input."""
        v, e = self._index(variant, exit_index)
        return self._confidence[v, e]

    def prediction(self, variant: str, exit_index: int) -> np.ndarray:
        """Read-only ``uint8`` ``(n_inputs,)``: the exit's predicted class per input."""
        v, e = self._index(variant, exit_index)
        return self._prediction[v, e]

    def threshold_exits(
        self, variant: str, tau: float, exits: Sequence[int] | None = None
    ) -> np.ndarray:
        """BranchyNet's confidence rule: the exit each input leaves at, for threshold ``tau``.

        An input leaves at the first exit of ``exits`` whose confidence is at least ``tau``;
        an input that reaches none leaves at the last exit of ``exits``. (BranchyNet,
        Teerapittayanon et al., ICPR 2016, thresholds the softmax entropy instead; a
        max-probability threshold is the same kind of rule.)

        Args:
            variant: Variant name.
            tau: Confidence threshold in [0, 1].
            exits: Exit indices to offer, strictly increasing (default: all exits).

        Returns:
            ``int64`` ``(n_inputs,)``: the exit index (into :attr:`exit_names`) per input.
        """
        if not (isinstance(tau, int | float) and 0.0 <= tau <= 1.0):
            raise ValueError(f"tau must be a number in [0, 1], got {tau!r}")
        chosen = list(range(len(self.exit_names))) if exits is None else list(exits)
        if not chosen or chosen != sorted(set(chosen)):
            raise ValueError(f"exits must be a non-empty, strictly increasing list, got {chosen}")
        for e in chosen:
            self._index(variant, e)
        out = np.full(self.n_inputs, chosen[-1], dtype=np.int64)
        undecided = np.ones(self.n_inputs, dtype=bool)
        for e in chosen[:-1]:
            leave = undecided & (self.confidence(variant, e) >= tau)
            out[leave] = e
            undecided &= ~leave
        return out

    def threshold_correct(self, variant: str, exit_taken: np.ndarray) -> np.ndarray:
        """``bool`` ``(n_inputs,)``: correctness when input ``i`` leaves at ``exit_taken[i]``."""
        v, _ = self._index(variant, 0)
        taken = np.asarray(exit_taken)
        if taken.shape != (self.n_inputs,):
            raise ValueError(f"exit_taken must have shape ({self.n_inputs},), got {taken.shape}")
        return self._correct[v, taken, np.arange(self.n_inputs)]


# --------------------------------------------------------------------------- paths


def accuracy_table_path(model: str, root: Path = DATA_DIR) -> Path:
    """Where a model's table is shipped: ``data/<model>/accuracy.npz``."""
    return root / model / ACCURACY_FILE


def available_tables(root: Path = DATA_DIR) -> list[str]:
    """Models that ship an accuracy table under ``root``."""
    return sorted(p.parent.name for p in root.glob(f"*/{ACCURACY_FILE}"))


# --------------------------------------------------------------------------- validation


def _fail(path: str, where: str, msg: str) -> AccuracyTableError:
    return AccuracyTableError(f"{path}: field '{where}': {msg}")


def _str_list(meta: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    v = meta.get(key)
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise _fail(path, f"metadata.{key}", f"expected a non-empty list of strings, got {v!r}")
    if len(set(v)) != len(v):
        raise _fail(path, f"metadata.{key}", f"names must be unique, got {v}")
    return tuple(v)


def _array(
    arrays: Mapping[str, np.ndarray], key: str, path: str, kind: str, shape: tuple[int, ...]
) -> np.ndarray:
    if key not in arrays:
        raise _fail(path, key, f"missing array (the file has {sorted(arrays)})")
    a = arrays[key]
    if a.dtype.kind != kind:
        raise _fail(path, key, f"expected dtype kind {kind!r}, got {a.dtype}")
    if a.shape != shape:
        raise _fail(path, key, f"expected shape {shape}, got {a.shape}")
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def table_from_arrays(
    arrays: Mapping[str, np.ndarray], path: str = "<memory>", model: str | None = None
) -> AccuracyTable:
    """Validate decoded arrays (``metadata`` + :data:`ARRAYS`); raise naming the bad field."""
    if METADATA_KEY not in arrays:
        raise _fail(path, METADATA_KEY, "missing (not an edgerl accuracy table?)")
    raw = arrays[METADATA_KEY]
    if raw.dtype.kind != "U" or raw.shape != ():
        raise _fail(
            path, METADATA_KEY, f"expected a 0-d unicode array, got {raw.dtype} {raw.shape}"
        )
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise _fail(path, METADATA_KEY, f"not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise _fail(path, METADATA_KEY, "expected a JSON object")
    version = meta.get("schema_version")
    if version != ACCURACY_SCHEMA_VERSION:
        raise _fail(
            path,
            "metadata.schema_version",
            f"unsupported version {version!r}; this edgerl reads version {ACCURACY_SCHEMA_VERSION}",
        )
    if meta.get("kind") != ACCURACY_KIND:
        raise _fail(path, "metadata.kind", f"expected {ACCURACY_KIND!r}, got {meta.get('kind')!r}")
    name = meta.get("model")
    if not isinstance(name, str) or not name:
        raise _fail(path, "metadata.model", f"expected a non-empty string, got {name!r}")
    if model is not None and name != model:
        raise _fail(path, "metadata.model", f"the table is of {name!r}, not {model!r}")
    variants = _str_list(meta, "variants", path)
    exit_names = _str_list(meta, "exit_names", path)
    class_names = _str_list(meta, "class_names", path)
    after = meta.get("exit_after")
    if (
        not isinstance(after, list)
        or len(after) != len(exit_names)
        or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in after)
        or after != sorted(set(after))
    ):
        raise _fail(
            path,
            "metadata.exit_after",
            f"expected {len(exit_names)} strictly increasing unit indices, got {after!r}",
        )
    n = meta.get("n_inputs")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise _fail(path, "metadata.n_inputs", f"expected a positive integer, got {n!r}")
    for key in ("test_set", "provenance"):
        if not isinstance(meta.get(key), dict):
            raise _fail(path, f"metadata.{key}", "expected an object")
    shape = (len(variants), len(exit_names), n)
    correct = _array(arrays, "correct", path, "b", shape)
    confidence = _array(arrays, "confidence", path, "f", shape)
    prediction = _array(arrays, "prediction", path, "u", shape)
    labels = _array(arrays, "labels", path, "u", (n,))
    if confidence.dtype != np.float32:
        raise _fail(path, "confidence", f"expected float32, got {confidence.dtype}")
    if not np.isfinite(confidence).all():
        raise _fail(path, "confidence", "contains NaN or infinite values")
    lo, hi = float(confidence.min()), float(confidence.max())
    floor = 1.0 / len(class_names) - CONFIDENCE_ROUNDING  # a max softmax is at least 1/classes
    if lo < floor or hi > 1.0 + CONFIDENCE_ROUNDING:
        raise _fail(
            path, "confidence", f"values must lie in [1/{len(class_names)}, 1], got [{lo}, {hi}]"
        )
    for key, arr in (("prediction", prediction), ("labels", labels)):
        if int(arr.max()) >= len(class_names):
            raise _fail(path, key, f"class index {int(arr.max())} >= {len(class_names)} classes")
    if not np.array_equal(correct, prediction == labels[None, None, :]):
        raise _fail(path, "correct", "disagrees with prediction == labels")
    return AccuracyTable(
        model=name,
        variants=variants,
        exit_names=exit_names,
        exit_after=tuple(after),
        n_inputs=n,
        class_names=class_names,
        labels=labels,
        metadata=meta,
        path=path,
        _correct=correct,
        _confidence=confidence,
        _prediction=prediction,
    )


def load_accuracy_table(model_or_path: str | Path, root: Path = DATA_DIR) -> AccuracyTable:
    """Load and validate an accuracy table.

    Args:
        model_or_path: A zoo model name (reads ``root/<model>/accuracy.npz``) or the path of a
            ``.npz`` file.
        root: Data directory for a model name.

    Returns:
        The validated table.

    Raises:
        AccuracyTableError: The file is missing, unreadable, or breaks the schema (the message
            names the file and the field).
    """
    is_path = isinstance(model_or_path, Path) or str(model_or_path).endswith(".npz")
    path = Path(model_or_path) if is_path else accuracy_table_path(str(model_or_path), root)
    model = None if is_path else str(model_or_path)
    if not path.is_file():
        have = ", ".join(available_tables(root)) or "none"
        raise AccuracyTableError(
            f"{path}: no accuracy table (models with one under {root}: {have})"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise AccuracyTableError(f"{path}: cannot read as a pickle-free .npz: {exc}") from exc
    return table_from_arrays(arrays, str(path), model)


def save_accuracy_table(
    path: str | Path,
    metadata: Mapping[str, Any],
    *,
    correct: np.ndarray,
    confidence: np.ndarray,
    prediction: np.ndarray,
    labels: np.ndarray,
) -> Path:
    """Validate and write a table (``np.savez_compressed``); returns the path.

    ``metadata`` gets ``schema_version`` and ``kind`` filled in; everything else (model,
    variants, exit names and units, n_inputs, class names, test_set, provenance) is the
    caller's.
    """
    meta = {"schema_version": ACCURACY_SCHEMA_VERSION, "kind": ACCURACY_KIND, **dict(metadata)}
    arrays: dict[str, np.ndarray] = {
        METADATA_KEY: np.array(json.dumps(meta, sort_keys=True)),
        "correct": np.asarray(correct, dtype=bool),
        "confidence": np.asarray(confidence, dtype=np.float32),
        "prediction": np.asarray(prediction, dtype=np.uint8),
        "labels": np.asarray(labels, dtype=np.uint8),
    }
    p = Path(path)
    table_from_arrays(arrays, str(p))  # never write a file the loader would reject
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
    return p
