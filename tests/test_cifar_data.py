"""The CIFAR-10 JPEG reader: fixed order, tarball = folders, clear errors (generated images)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from cifar_fixtures import colour, jpeg_bytes, members, write_dataset, write_folders, write_tarball
from edgerl.profiles import cifar_data

JPEG_TOLERANCE = 6  # levels a flat colour may move through JPEG at quality 95


def test_tarball_is_read_in_class_then_file_order(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "c10", per_class=3)  # members stored in reverse order
    s = cifar_data.load_split(root, "test")
    assert len(s) == 30 and s.images.shape == (30, 32, 32, 3) and s.images.dtype == np.uint8
    assert s.names[:4] == ("airplane/0000.jpg", "airplane/0001.jpg", "airplane/0002.jpg",
                           "automobile/0000.jpg")  # fmt: skip
    assert s.names[-1] == "truck/0002.jpg"
    assert s.labels.tolist() == [c for c in range(10) for _ in range(3)]
    for i, name in enumerate(s.names):  # image i really is the file named names[i]
        label, index = s.labels[i], int(name.split("/")[1][:4])
        expected = np.array(colour(int(label), index))
        assert np.abs(s.images[i].astype(int) - expected).max() <= JPEG_TOLERANCE
    assert s.source_sha256 == hashlib.sha256(Path(s.source).read_bytes()).hexdigest()
    expected_order = hashlib.sha256("\n".join(s.names).encode()).hexdigest()
    assert s.order_sha256 == expected_order


def test_folders_and_tarball_give_the_same_split(tmp_path: Path) -> None:
    tar = cifar_data.load_split(write_dataset(tmp_path / "tar", per_class=2), "train")
    folder = cifar_data.load_split(write_folders(tmp_path / "dir", per_class=2), "train")
    assert tar.names == folder.names and tar.order_sha256 == folder.order_sha256
    assert np.array_equal(tar.labels, folder.labels)
    assert np.array_equal(tar.images, folder.images)  # same JPEG bytes, same decoder
    assert folder.source_sha256 is None


def test_limit_per_class_keeps_the_first_images_of_each_class(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "c10", per_class=4)
    s = cifar_data.load_split(root, "train", limit_per_class=2)
    assert s.names[:3] == ("airplane/0000.jpg", "airplane/0001.jpg", "automobile/0000.jpg")
    assert np.bincount(s.labels).tolist() == [2] * 10
    with pytest.raises(ValueError, match="limit_per_class"):
        cifar_data.load_split(root, "train", limit_per_class=0)


def test_missing_dataset_says_where_to_put_it_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(cifar_data.CifarDataError) as err:
        cifar_data.load_split(tmp_path, "test")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path) in msg and "cifar10-jpeg-test.tar.gz" in msg and "--data" in msg
    with pytest.raises(ValueError, match="split"):
        cifar_data.locate(tmp_path, "validation")


def test_malformed_data_fails_naming_the_member(tmp_path: Path) -> None:
    files = members("test", per_class=1)
    files["test/cat/0005.jpg"] = jpeg_bytes((1, 2, 3), size_px=16)
    write_tarball(tmp_path / cifar_data.TARBALLS["test"], files)
    with pytest.raises(cifar_data.CifarDataError, match=r"cat/0005\.jpg.*32x32"):
        cifar_data.load_split(tmp_path, "test")

    files = members("test", per_class=1)
    files["test/unicorn/0000.jpg"] = jpeg_bytes((1, 2, 3))
    write_tarball(tmp_path / cifar_data.TARBALLS["test"], files)
    with pytest.raises(cifar_data.CifarDataError, match="unknown class 'unicorn'"):
        cifar_data.load_split(tmp_path, "test")

    files = members("test", per_class=1)
    files["test/dog/0007.jpg"] = b"not a jpeg"
    write_tarball(tmp_path / cifar_data.TARBALLS["test"], files)
    with pytest.raises(cifar_data.CifarDataError, match=r"dog/0007\.jpg.*not a readable image"):
        cifar_data.load_split(tmp_path, "test")

    (tmp_path / cifar_data.TARBALLS["test"]).write_bytes(b"truncated")
    with pytest.raises(cifar_data.CifarDataError, match="cannot read the tarball"):
        cifar_data.load_split(tmp_path, "test")


def test_class_order_is_the_cifar10_label_order() -> None:
    assert tuple(sorted(cifar_data.CLASSES)) == cifar_data.CLASSES  # also alphabetical
    assert cifar_data.CLASSES[0] == "airplane" and cifar_data.CLASSES[9] == "truck"
    assert "1000" in cifar_data.ORDER_DESCRIPTION
