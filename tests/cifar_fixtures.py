"""Tiny generated stand-ins for the CIFAR-10 JPEG copy (tests only; no real image is used).

Every image is a flat colour that encodes its class and index, so a test can check which
image landed where after decoding (JPEG is lossy, but flat colours survive it within a few
levels).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from edgerl.profiles import cifar_data
from PIL import Image

COLOUR_STEP = 20  # levels between the colours of two classes (JPEG moves flat colours < 5)


def colour(label: int, index: int) -> tuple[int, int, int]:
    """The flat RGB colour of generated image ``index`` of class ``label``."""
    return (COLOUR_STEP * label + 10, 10 * index + 5, 200 - COLOUR_STEP * label)


def jpeg_bytes(rgb: tuple[int, int, int], size_px: int = cifar_data.IMAGE_PX) -> bytes:
    img = Image.fromarray(np.full((size_px, size_px, 3), rgb, dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def members(split: str, per_class: int, classes: int = 10) -> dict[str, bytes]:
    """``{"<split>/<class>/NNNN.jpg": JPEG bytes}`` for ``per_class`` images of each class."""
    return {
        f"{split}/{cifar_data.CLASSES[c]}/{i:04d}.jpg": jpeg_bytes(colour(c, i))
        for c in range(classes)
        for i in range(per_class)
    }


def write_tarball(path: Path, files: dict[str, bytes], *, reverse: bool = True) -> Path:
    """A gzipped tarball of ``files`` with directory entries, members in reverse order."""
    names = sorted(files, reverse=reverse)
    with tarfile.open(path, "w:gz") as tar:
        dirs = sorted({str(Path(n).parent) for n in names} | {n.split("/")[0] for n in names})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for n in names:
            info = tarfile.TarInfo(n)
            info.size = len(files[n])
            tar.addfile(info, io.BytesIO(files[n]))
    return path


def write_dataset(root: Path, per_class: int = 3, classes: int = 10) -> Path:
    """Both tarballs of a tiny CIFAR-10 look-alike under ``root``; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for split in cifar_data.SPLITS:
        write_tarball(root / cifar_data.TARBALLS[split], members(split, per_class, classes))
    return root


def write_folders(root: Path, per_class: int = 3, classes: int = 10) -> Path:
    """The same images extracted as ``root/<split>/<class>/NNNN.jpg``; returns ``root``."""
    for split in cifar_data.SPLITS:
        for name, data in members(split, per_class, classes).items():
            p = root / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    return root
