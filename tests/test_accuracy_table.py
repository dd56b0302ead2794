"""Accuracy tables: schema, every validation error, the lookup API and the threshold exit rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgerl.profiles import accuracy
from edgerl.profiles.accuracy import AccuracyTableError, load_accuracy_table, save_accuracy_table

N_CLASSES = 10
N_INPUTS = 4
VARIANTS = ["fp32", "int8"]
EXITS = ["exit_after_a", "exit_after_b", "exit_final"]

# Hand-made answers of variant fp32 (rows: exits; columns: inputs 0..3).
LABELS = np.array([3, 1, 4, 1], dtype=np.uint8)
PRED_FP32 = np.array([[3, 0, 4, 2],  # exit 0: right on inputs 0 and 2
                      [3, 1, 0, 1],  # exit 1: right on 0, 1, 3
                      [3, 1, 4, 1]], dtype=np.uint8)  # fmt: skip
CONF_FP32 = np.array([[0.95, 0.50, 0.80, 0.30],
                      [0.99, 0.85, 0.60, 0.40],
                      [0.99, 0.90, 0.70, 0.90]], dtype=np.float32)  # fmt: skip


def _meta(**over: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "model": "toy_c10",
        "variants": VARIANTS,
        "exit_names": EXITS,
        "exit_after": [0, 2, 4],
        "n_inputs": N_INPUTS,
        "class_names": [f"c{i}" for i in range(N_CLASSES)],
        "test_set": {"order": "by hand"},
        "provenance": {"note": "synthetic test input"},
    }
    meta.update(over)
    return meta


def _arrays() -> dict[str, np.ndarray]:
    pred = np.stack([PRED_FP32, np.roll(PRED_FP32, 1, axis=1)])
    conf = np.stack([CONF_FP32, np.full_like(CONF_FP32, 0.5)])
    return {
        "correct": pred == LABELS,
        "confidence": conf,
        "prediction": pred,
        "labels": LABELS,
    }


def _write_raw(path: Path, meta: dict[str, Any] | None, arrays: dict[str, np.ndarray]) -> Path:
    """Write an .npz bypassing save_accuracy_table's validation (to test the loader)."""
    out = dict(arrays)
    if meta is not None:
        full = {"schema_version": 1, "kind": "edgerl.accuracy_table", **meta}
        out["metadata"] = np.array(json.dumps(full))
    np.savez_compressed(path, **out)  # type: ignore[arg-type]
    return path


@pytest.fixture
def table_path(tmp_path: Path) -> Path:
    return save_accuracy_table(tmp_path / "toy_c10" / "accuracy.npz", _meta(), **_arrays())


def test_round_trip_and_lookups(table_path: Path) -> None:
    t = load_accuracy_table(table_path)
    assert (t.model, t.variants, t.exit_names, t.n_inputs) == ("toy_c10", tuple(VARIANTS),
                                                               tuple(EXITS), N_INPUTS)  # fmt: skip
    assert t.exit_after == (0, 2, 4)
    assert t.top1("fp32", 0) == 0.5 and t.top1("fp32", 1) == 0.75 and t.top1("fp32", 2) == 1.0
    assert t.top1_per_exit("fp32") == (0.5, 0.75, 1.0)
    c = t.correct("fp32", 1)
    assert (
        c.dtype == np.bool_ and c.shape == (N_INPUTS,) and c.tolist() == [True, True, False, True]
    )
    conf = t.confidence("fp32", 0)
    assert conf.dtype == np.float32 and conf.tolist() == pytest.approx([0.95, 0.5, 0.8, 0.3])
    assert t.prediction("fp32", 2).tolist() == [3, 1, 4, 1]
    assert t.labels.tolist() == LABELS.tolist()
    with pytest.raises(ValueError, match="read-only"):
        c[0] = False  # the shipped answers cannot be edited through the API
    # by model name under a data root
    same = load_accuracy_table("toy_c10", root=table_path.parent.parent)
    assert same.top1("int8", 2) == t.top1("int8", 2)
    assert accuracy.available_tables(table_path.parent.parent) == ["toy_c10"]


def test_lookups_reject_unknown_variant_and_exit(table_path: Path) -> None:
    t = load_accuracy_table(table_path)
    with pytest.raises(KeyError, match=r"pruned.*fp32, int8"):
        t.top1("pruned", 0)
    with pytest.raises(IndexError, match="exit_index 3"):
        t.correct("fp32", 3)
    with pytest.raises(IndexError, match="exit_index -1"):
        t.confidence("fp32", -1)


def test_repeated_lookups_agree(table_path: Path) -> None:
    a, b = load_accuracy_table(table_path), load_accuracy_table(table_path)
    for v in VARIANTS:
        for e in range(len(EXITS)):
            assert np.array_equal(a.correct(v, e), b.correct(v, e))
            assert np.array_equal(a.confidence(v, e), b.confidence(v, e))


def test_threshold_exit_rule_against_a_hand_computed_case(table_path: Path) -> None:
    t = load_accuracy_table(table_path)
    # tau = 0.8: input 0 leaves at exit 0 (0.95), input 1 at exit 1 (0.85), input 2 at exit 0
    # (0.80 >= 0.8), input 3 reaches the final exit (0.30, 0.40).
    taken = t.threshold_exits("fp32", 0.8)
    assert taken.tolist() == [0, 1, 0, 2]
    assert t.threshold_correct("fp32", taken).tolist() == [True, True, True, True]
    # only exits 1 and 2 offered: inputs 0 and 1 leave at exit 1, 2 and 3 at the final exit
    assert t.threshold_exits("fp32", 0.8, exits=[1, 2]).tolist() == [1, 1, 2, 2]
    assert t.threshold_exits("fp32", 1.0).tolist() == [2, 2, 2, 2]  # nobody is that sure
    assert t.threshold_exits("fp32", 0.0).tolist() == [0, 0, 0, 0]  # everybody leaves first
    assert t.threshold_correct("fp32", np.zeros(N_INPUTS, dtype=int)).mean() == 0.5
    with pytest.raises(ValueError, match="tau"):
        t.threshold_exits("fp32", 1.5)
    with pytest.raises(ValueError, match="increasing"):
        t.threshold_exits("fp32", 0.5, exits=[2, 1])


@pytest.mark.parametrize(
    ("meta_over", "arrays_over", "field", "message"),
    [
        ({"schema_version": 2}, {}, "metadata.schema_version", "unsupported version 2"),
        ({"kind": "edgerl.layer_profile"}, {}, "metadata.kind", "expected 'edgerl.accuracy_table'"),
        ({"variants": []}, {}, "metadata.variants", "non-empty list"),
        ({"variants": ["fp32", "fp32"]}, {}, "metadata.variants", "unique"),
        ({"exit_after": [0, 2]}, {}, "metadata.exit_after", "3 strictly increasing"),
        ({"n_inputs": 0}, {}, "metadata.n_inputs", "positive integer"),
        ({"provenance": "me"}, {}, "metadata.provenance", "expected an object"),
        ({}, {"correct": None}, "correct", "missing array"),
        ({}, {"confidence": np.zeros((2, 3, 5), np.float32)}, "confidence", "shape"),
        ({}, {"confidence": np.full((2, 3, 4), 0.5, np.float64)}, "confidence", "float32"),
        ({}, {"labels": LABELS.astype(np.float32)}, "labels", "dtype kind 'u'"),
        ({}, {"confidence": np.full((2, 3, 4), np.nan, np.float32)}, "confidence", "NaN"),
        ({}, {"confidence": np.full((2, 3, 4), 1.5, np.float32)}, "confidence", r"\[1/10, 1\]"),
        ({}, {"confidence": np.full((2, 3, 4), 0.01, np.float32)}, "confidence", r"\[1/10, 1\]"),
        ({}, {"labels": np.array([3, 1, 4, 12], np.uint8)}, "labels", "class index 12"),
        ({}, {"correct": np.ones((2, 3, 4), bool)}, "correct", "disagrees"),
    ],
)
def test_every_schema_violation_names_the_file_and_field(
    tmp_path: Path, meta_over: dict[str, Any], arrays_over: dict[str, Any], field: str, message: str
) -> None:
    arrays = _arrays()
    for k, v in arrays_over.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    path = _write_raw(tmp_path / "bad.npz", _meta(**meta_over), arrays)
    with pytest.raises(AccuracyTableError, match=rf"bad\.npz: field '{field}': .*{message}"):
        load_accuracy_table(path)
    # the writer refuses the same content (it sets the version and kind and casts dtypes itself)
    casts = message in ("float32", "dtype kind 'u'")
    if not ({"schema_version", "kind"} & set(meta_over)) and not casts and "correct" in arrays:
        with pytest.raises(AccuracyTableError, match=field):
            save_accuracy_table(tmp_path / "never.npz", _meta(**meta_over), **arrays)
        assert not (tmp_path / "never.npz").exists()


def test_unreadable_or_foreign_files_fail_clearly(tmp_path: Path, table_path: Path) -> None:
    with pytest.raises(AccuracyTableError, match=r"no accuracy table.*toy_c10"):
        load_accuracy_table("nope_c10", root=table_path.parent.parent)
    path = _write_raw(tmp_path / "nometa.npz", None, _arrays())
    with pytest.raises(AccuracyTableError, match="field 'metadata': missing"):
        load_accuracy_table(path)
    arrays = _arrays()
    np.savez(tmp_path / "badjson.npz", metadata=np.array("{not json"), **arrays)  # type: ignore[arg-type]
    with pytest.raises(AccuracyTableError, match="field 'metadata': not valid JSON"):
        load_accuracy_table(tmp_path / "badjson.npz")
    np.savez(tmp_path / "pickled.npz", metadata=np.array([{"a": 1}], dtype=object))
    with pytest.raises(AccuracyTableError, match="pickle-free"):
        load_accuracy_table(tmp_path / "pickled.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(AccuracyTableError, match=r"junk\.npz: cannot read"):
        load_accuracy_table(tmp_path / "junk.npz")
    other = table_path.parent.parent / "other_c10"
    other.mkdir()
    (other / "accuracy.npz").write_bytes(table_path.read_bytes())
    with pytest.raises(AccuracyTableError, match=r"metadata\.model.*'toy_c10', not 'other_c10'"):
        load_accuracy_table("other_c10", root=table_path.parent.parent)


def test_accuracy_module_needs_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import edgerl.profiles.accuracy, edgerl.profiles.cifar_data; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
