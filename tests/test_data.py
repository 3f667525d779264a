"""Tests for diffusion_lite.data: vendored MNIST, subsets, search path, errors, checksums, CIFAR-10."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lite import data
from diffusion_lite.data import (
    DATASETS,
    DatasetChecksumError,
    DatasetNotFoundError,
    ImageDataset,
    load_dataset,
    search_dirs,
)
from diffusion_lite.utils import from_uint8, to_uint8

MNIST_DIR = data.REPO_DATA_DIR / "mnist"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Point every search location at empty folders under tmp_path; returns tmp_path."""
    for attr in ("REPO_DATA_DIR", "CACHE_DIR", "DEBIAN_DIR"):
        d = tmp_path / attr.lower()
        d.mkdir()
        monkeypatch.setattr(data, attr, d)
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    return tmp_path


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)


def _idx_bytes(path, header: int) -> np.ndarray:
    """The payload of an IDX .gz file read independently of the code under test."""
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8)[header:]


def test_mnist_train_and_test(no_env):
    train, test = load_dataset("mnist"), load_dataset("mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.labels.shape == (60000,) and test.labels.shape == (10000,)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.long
    assert train.images.min() == -1.0 and train.images.max() == 1.0
    assert train.labels[0] == 5 and test.labels[0] == 7  # the canonical first labels
    assert torch.bincount(train.labels).tolist()[:2] == [5923, 6742]  # class counts of the real MNIST
    assert train.classes == tuple("0123456789") and train.info is DATASETS["mnist"]
    assert train.source == MNIST_DIR and len(train) == 60000
    x, y = test[3]
    assert x.shape == (1, 28, 28) and y.dtype == torch.long
    # pixel mapping is exactly x / 127.5 - 1: converting back gives the file's bytes
    raw = _idx_bytes(MNIST_DIR / "t10k-images-idx3-ubyte.gz", 16).reshape(10000, 1, 28, 28)
    assert torch.equal(to_uint8(test.images[:50]), torch.from_numpy(raw[:50].copy()))
    assert "n=10000" in repr(test)


def test_subset_is_first_k(no_env):
    full, sub = load_dataset("mnist", "test"), load_dataset("mnist", "test", subset=100)
    assert len(sub) == 100
    assert torch.equal(sub.images, full.images[:100]) and torch.equal(sub.labels, full.labels[:100])


def test_balanced_subset_takes_first_of_each_class_in_file_order(no_env):
    full = load_dataset("mnist", "test")
    sub = load_dataset("mnist", "test", subset=100, balanced=True)
    assert len(sub) == 100 and torch.bincount(sub.labels, minlength=10).tolist() == [10] * 10
    expected = np.sort(np.concatenate([np.flatnonzero(full.labels.numpy() == k)[:10] for k in range(10)]))
    assert torch.equal(sub.labels, full.labels[expected]) and torch.equal(sub.images, full.images[expected])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(subset=5, balanced=True), r"smaller than the number of classes \(10\); use 10, or a multiple of 10"),
        (dict(balanced=True), "needs subset"),
        (dict(subset=15, balanced=True), r"multiple of the number of classes \(10\).*use 10 or 20"),
        (dict(subset=10001), "only 10000"),
        (dict(subset=10000, balanced=True), "needs 1000 images per class.*'5': 892"),  # 892 fives in test
        (dict(subset=0), "positive int"),
        (dict(subset=2.5), "positive int"),
        (dict(subset=True), "positive int"),
    ],
)
def test_bad_subsets(no_env, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("mnist", "test", **kwargs)


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="cifar10.*fashion-mnist.*mnist"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"'train', 'test'"):
        load_dataset("mnist", "validation")


def test_search_order(isolated, monkeypatch):
    (isolated / "env").mkdir()
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "env"))
    expected = [isolated / "root", isolated / "env", data.REPO_DATA_DIR, data.CACHE_DIR]
    assert search_dirs("mnist", isolated / "root") == expected
    assert search_dirs("fashion-mnist", isolated / "root") == expected + [data.DEBIAN_DIR]


def test_a_data_folder_variable_naming_no_folder_is_a_warning(isolated, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "typo"))
    with pytest.warns(UserWarning, match=r"DIFFUSION_LITE_DATA is '.*typo', which is not a folder"):
        assert search_dirs("mnist")[0] == isolated / "typo"


def test_missing_data_error_lists_every_place(isolated, monkeypatch):
    (isolated / "env").mkdir()
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "env"))
    (isolated / "root" / "fashion-mnist").mkdir(parents=True)  # exists but empty
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("fashion-mnist", root=isolated / "root")
    assert isinstance(e.value, FileNotFoundError)
    msg = str(e.value)
    for base in ["root", "env", "repo_data_dir", "cache_dir"]:
        assert str(isolated / base / "fashion-mnist") in msg
        assert str(isolated / base / "FashionMNIST" / "raw") in msg
    assert str(isolated / "debian_dir" / "fashion-mnist") in msg
    assert "lacks train-images-idx3-ubyte" in msg
    for hint in ["download=True", "--download", "apt-get install dataset-fashion-mnist", data.ENV_VAR]:
        assert hint in msg
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("mnist", "test", root=isolated / "root")
    assert "apt-get" not in str(e.value) and "data/mnist" in str(e.value)
    assert "t10k-labels-idx1-ubyte" in str(e.value)  # the files to copy are named even where no folder exists
    with pytest.raises(DatasetNotFoundError, match="data_batch_1 ... data_batch_5, test_batch"):
        load_dataset("cifar10", root=isolated / "root")


def test_a_wheel_install_has_no_repository_data_folder(isolated, monkeypatch):
    """In a wheel install REPO_DATA_DIR is None (site-packages/data belongs to others) and is not searched."""
    monkeypatch.setattr(data, "REPO_DATA_DIR", None)
    assert search_dirs("mnist") == [data.CACHE_DIR]
    assert search_dirs("fashion-mnist") == [data.CACHE_DIR, data.DEBIAN_DIR]
    with pytest.raises(DatasetNotFoundError, match="not in a wheel"):
        load_dataset("mnist")


def test_env_var_and_torchvision_layout_with_plain_idx(isolated, monkeypatch):
    raw = isolated / "env" / "MNIST" / "raw"  # torchvision's layout, decompressed files
    raw.mkdir(parents=True)
    for f in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        (raw / f).write_bytes(gzip.decompress((MNIST_DIR / f"{f}.gz").read_bytes()))
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "env"))
    ds = load_dataset("mnist", "test", subset=20)
    assert ds.source == raw
    assert torch.equal(ds.images, load_dataset("mnist", "test", root=MNIST_DIR.parent, subset=20).images)
    with pytest.raises(DatasetNotFoundError, match="lacks train-images-idx3-ubyte, train-labels"):
        load_dataset("mnist", "train", root=isolated / "env")


def test_vendored_manifest_covers_all_files():
    listed = {line.split()[1] for line in (MNIST_DIR / "SHA256SUMS").read_text(encoding="utf-8").splitlines()}
    assert listed == {p.name for p in MNIST_DIR.glob("*.gz")} and len(listed) == 4


def test_checksum_mismatch_is_detected(isolated):
    copy = isolated / "root" / "mnist"
    shutil.copytree(MNIST_DIR, copy)
    bad = copy / "t10k-labels-idx1-ubyte.gz"
    blob = bytearray(bad.read_bytes())
    blob[100] ^= 0xFF
    bad.chmod(0o644)
    bad.write_bytes(bytes(blob))
    with pytest.raises(DatasetChecksumError, match="t10k-labels-idx1-ubyte.gz is corrupted"):
        load_dataset("mnist", "test", root=isolated / "root")
    assert len(load_dataset("mnist", "train", root=isolated / "root", subset=10)) == 10  # others still fine


def _plain_mnist_test(folder):
    """The vendored MNIST test split, decompressed into folder/mnist/ without a SHA256SUMS manifest."""
    d = folder / "mnist"
    d.mkdir(parents=True)
    for f in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        (d / f).write_bytes(gzip.decompress((MNIST_DIR / f"{f}.gz").read_bytes()))
    return d


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[:-28], r"header says shape \(10000, 28, 28\) but the file holds 7839972 bytes"),  # cut short
    (lambda b: b"\x00\x00\x0d\x03" + b[4:], "not an IDX file of unsigned bytes"),  # float32 type code
    (lambda b: b"", "not an IDX file"),
])
def test_a_damaged_idx_file_without_a_manifest_is_named(isolated, damage, match):
    """With no SHA256SUMS to catch it (e.g. files copied by hand), a truncated or foreign file is still an error that
    names the file, never a silently shorter dataset."""
    d = _plain_mnist_test(isolated / "root")
    images = d / "t10k-images-idx3-ubyte"
    images.write_bytes(damage(images.read_bytes()))
    with pytest.raises(DatasetChecksumError, match=match) as e:  # a ValueError: the CLI prints one line
        load_dataset("mnist", "test", root=isolated / "root")
    assert str(e.value).startswith(f"{images} is corrupt or incomplete") and "--download" in str(e.value)


def test_a_malformed_manifest_is_an_error(isolated):
    d = _plain_mnist_test(isolated / "root")
    (d / "SHA256SUMS").write_text("t10k-images-idx3-ubyte\n", encoding="utf-8")  # a name without its digest
    with pytest.raises(DatasetChecksumError, match="expected lines '<sha256>  <file name>'"):
        load_dataset("mnist", "test", root=isolated / "root")


def _write_cifar(folder, rng, n_train=(2, 2, 2, 2, 2), n_test=3, label_names=None):
    """A CIFAR-10 python-format folder; returns {file name: (data (N, 3072) uint8, labels list)}."""
    folder.mkdir(parents=True)
    batches = {}
    names = [f"data_batch_{i + 1}" for i in range(len(n_train))] + ["test_batch"]
    for fname, n in zip(names, list(n_train) + [n_test], strict=True):
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).tolist()
        batches[fname] = (x, y)
        (folder / fname).write_bytes(pickle.dumps({"batch_label": fname, "data": x, "labels": y}))
    meta = {"label_names": list(label_names or DATASETS["cifar10"].classes), "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return batches


def test_cifar10_python_batches(isolated):
    rng = np.random.default_rng(0)
    batches = _write_cifar(isolated / "root" / "cifar-10-batches-py", rng)
    x0 = batches["data_batch_1"][0]
    x0[0] = 0
    x0[0, :1024] = 255  # first image: red plane full, green and blue empty
    (isolated / "root" / "cifar-10-batches-py" / "data_batch_1").write_bytes(
        pickle.dumps({"data": x0, "labels": batches["data_batch_1"][1]}))
    train = load_dataset("cifar10", root=isolated / "root")
    test = load_dataset("cifar10", "test", root=isolated / "root")
    assert train.images.shape == (10, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert train.classes[0] == "airplane" and train.classes[-1] == "truck"
    assert (train.images[0, 0] == 1).all() and (train.images[0, 1:] == -1).all()
    all_x = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(10, 3, 32, 32)
    assert torch.equal(train.images, from_uint8(torch.from_numpy(all_x)))
    assert train.labels.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert test.labels.tolist() == batches["test_batch"][1]


def test_cifar10_pickled_with_bytes_keys(isolated):
    """The same files re-pickled in Python 3 after reading them as the CIFAR-10 page shows (encoding="bytes")."""
    rng = np.random.default_rng(2)
    folder = isolated / "root" / "cifar-10-batches-py"
    batches = _write_cifar(folder, rng)
    for name, (x, y) in batches.items():
        (folder / name).write_bytes(pickle.dumps({b"batch_label": name.encode(), b"data": x, b"labels": y}))
    classes = [c.encode() for c in DATASETS["cifar10"].classes]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": classes, b"num_vis": 3072}))
    train = load_dataset("cifar10", root=isolated / "root")
    assert train.images.shape == (10, 3, 32, 32)
    assert train.labels.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    (folder / "batches.meta").write_bytes(pickle.dumps({"num_vis": 3072}))
    with pytest.raises(ValueError, match="batches.meta: has no label_names"):
        load_dataset("cifar10", "test", root=isolated / "root")


def test_cifar10_in_python2s_numpy1_format_loads_and_a_pickle_naming_code_does_not_run(isolated, tmp_path):
    """The real files were pickled by Python 2 with numpy 1 (numpy.core.multiarray, byte strings); a file that
    names any other global (here os.system) is refused before it is called."""
    import os

    folder = isolated / "root" / "cifar-10-batches-py"
    batches = _write_cifar(folder, np.random.default_rng(3))
    x, y = batches["test_batch"]
    old = pickle.dumps({"batch_label": "t", "data": x, "labels": y, "filenames": [b"", b"x.png"]}, protocol=2)
    (folder / "test_batch").write_bytes(old.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert load_dataset("cifar10", "test", root=isolated / "root").labels.tolist() == y
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Payload(), "labels": y}))
    with pytest.raises(DatasetChecksumError, match=r"test_batch is not a CIFAR-10 batch: it refers to \w+\.system"):
        load_dataset("cifar10", "test", root=isolated / "root")
    assert not marker.exists()


def test_cifar10_missing_batch_and_wrong_meta(isolated):
    rng = np.random.default_rng(1)
    _write_cifar(isolated / "a" / "cifar10", rng, n_train=(2, 2, 2, 2))  # no data_batch_5
    with pytest.raises(DatasetNotFoundError, match="lacks data_batch_5"):
        load_dataset("cifar10", root=isolated / "a")
    _write_cifar(isolated / "b" / "cifar10", rng, label_names=[f"c{i}" for i in range(10)])
    with pytest.raises(ValueError, match="label_names"):
        load_dataset("cifar10", "test", root=isolated / "b")


def test_image_dataset_checks_its_tensors():
    with pytest.raises(ValueError, match="float32"):
        ImageDataset("mnist", "train", torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(2).long(),
                     DATASETS["mnist"])
    with pytest.raises(ValueError, match="labels long"):
        ImageDataset("mnist", "train", torch.zeros(2, 1, 28, 28), torch.zeros(3).long(), DATASETS["mnist"])


FASHION_DEBIAN = data.DEBIAN_DIR / "fashion-mnist"


@pytest.mark.skipif(not (FASHION_DEBIAN / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian_package(isolated, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", FASHION_DEBIAN.parent)
    test = load_dataset("fashion-mnist", "test")
    assert test.source == FASHION_DEBIAN
    assert test.images.shape == (10000, 1, 28, 28) and test.images.min() == -1 and test.images.max() == 1
    assert test.labels[:5].tolist() == [9, 2, 1, 1, 6]  # Ankle boot, Pullover, Trouser, Trouser, Shirt
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert test.classes[9] == "Ankle boot"
    assert len(load_dataset("fashion-mnist", subset=50, balanced=True)) == 50


def test_download_goes_through_torchvision_only_when_missing(isolated, monkeypatch):
    """download=True hands over to torchvision (faked here: no network) and then reads its layout."""
    import torchvision.datasets

    calls = []

    class FakeMNIST:  # writes what torchvision.datasets.MNIST(download=True) leaves on disk
        def __init__(self, root, download=False, **kw):
            calls.append((root, download))
            raw = isolated / "cache_dir" / "MNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for f in MNIST_DIR.glob("t10k-*.gz"):
                shutil.copy(f, raw / f.name)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    with pytest.raises(DatasetNotFoundError):
        load_dataset("mnist", "test")
    assert calls == []
    ds = load_dataset("mnist", "test", subset=3, download=True)
    assert calls == [(str(data.CACHE_DIR), True)] and ds.source == data.CACHE_DIR / "MNIST" / "raw"
    load_dataset("mnist", "test", subset=3, download=True)  # found now: no second download
    assert len(calls) == 1
    # and without download=True: one download serves every later call (what the not-found message promises)
    assert load_dataset("mnist", "test", subset=3).source == data.CACHE_DIR / "MNIST" / "raw" and len(calls) == 1


def test_a_failed_download_says_what_failed_and_what_to_do(isolated, monkeypatch, capsys):
    """Offline, download=True fails with a DatasetDownloadError naming the dataset and the offline route,
    not a bare urllib traceback; the CLI turns it into a one-line error with exit status 2."""
    import urllib.error

    import torchvision.datasets

    from diffusion_lite import cli

    class OfflineCIFAR10:
        def __init__(self, root, download=False, **kw):
            raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", OfflineCIFAR10)
    with pytest.raises(data.DatasetDownloadError, match="could not download cifar10") as e:
        load_dataset("cifar10", "train", download=True)
    assert data.ENV_VAR in str(e.value) and "Name or service not known" in str(e.value)
    code = cli.main(["train", "--dataset", "cifar10", "--download", "--steps", "1", "--out", str(isolated / "run")])
    assert code == 2 and "error: could not download cifar10" in capsys.readouterr().err


def test_a_root_that_is_not_a_folder_is_an_error_not_a_fallback(tmp_path, no_env):
    # MNIST is found in the default places (data/), but a mistyped root must not silently read them instead
    with pytest.raises(DatasetNotFoundError, match="is not a folder"):
        load_dataset("mnist", "test", root=tmp_path / "no-such-folder", subset=5)
    (tmp_path / "exists").mkdir()
    assert len(load_dataset("mnist", "test", root=tmp_path / "exists", subset=5)) == 5  # searched first, then the rest


def test_pointing_at_the_files_folder_itself_says_to_point_at_its_parent(isolated, monkeypatch):
    flat = isolated / "env"  # the IDX files directly in $DIFFUSION_LITE_DATA, not in env/mnist/
    flat.mkdir()
    shutil.copy(MNIST_DIR / "t10k-images-idx3-ubyte.gz", flat)
    monkeypatch.setenv(data.ENV_VAR, str(flat))
    with pytest.raises(DatasetNotFoundError, match=r"holds t10k-images-idx3-ubyte itself: expected it in .*env/mnist"):
        load_dataset("mnist", "test")


def _cut_half(b: bytes) -> bytes:
    return b[: len(b) // 2]


def _flip_middle(b: bytes) -> bytes:
    mid = len(b) // 2
    return b[:mid] + bytes(x ^ 0xFF for x in b[mid:mid + 64]) + b[mid + 64:]


@pytest.mark.parametrize("damage, match", [
    (_cut_half, "EOFError: Compressed file ended before the end-of-stream marker"),  # a half-copied download
    (lambda b: np.random.default_rng(0).bytes(3000), "BadGzipFile: Not a gzipped file"),  # not gzip at all
    (_flip_middle, "not a complete gzip file"),  # damaged in the middle (zlib error or CRC check)
])
def test_a_damaged_gzip_without_a_manifest_is_named_with_how_to_get_it_again(isolated, damage, match):
    """A truncated or foreign .gz is a DatasetChecksumError (a ValueError, so the CLI prints one line) that names
    the file, says it is corrupt or incomplete and how to get it again; not a bare EOFError / BadGzipFile."""
    d = isolated / "root" / "mnist"
    d.mkdir(parents=True)
    for f in MNIST_DIR.glob("t10k-*.gz"):  # copied by hand: no SHA256SUMS beside them
        shutil.copy(f, d / f.name)
    images = d / "t10k-images-idx3-ubyte.gz"
    images.chmod(0o644)
    images.write_bytes(damage(images.read_bytes()))
    with pytest.raises(DatasetChecksumError, match=match) as e:
        load_dataset("mnist", "test", root=isolated / "root")
    msg = str(e.value)
    assert msg.startswith(f"{images} is corrupt or incomplete")
    assert "delete it" in msg and "--download (Python: load_dataset(..., download=True))" in msg


def test_the_cli_shows_a_truncated_training_file_as_a_one_line_error(isolated, monkeypatch, capsys):
    from diffusion_lite import cli

    d = isolated / "env" / "mnist"  # $DIFFUSION_LITE_DATA/mnist/, the four files, the training images cut short
    d.mkdir(parents=True)
    for f in MNIST_DIR.glob("*.gz"):
        shutil.copy(f, d / f.name)
    images = d / "train-images-idx3-ubyte.gz"
    images.chmod(0o644)
    images.write_bytes(_cut_half(images.read_bytes()))
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "env"))
    code = cli.main(["train", "--dataset", "mnist", "--steps", "1", "--model", "tiny", "--threads", "1",
                     "--out", str(isolated / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"error: {images} is corrupt or incomplete" in err and "--download" in err


@pytest.mark.parametrize("fname, damage, match", [
    ("data_batch_3", _cut_half, "UnpicklingError: pickle data was truncated"),
    ("data_batch_3", lambda b: b"", "EOFError"),
    ("data_batch_3", lambda b: np.random.default_rng(0).bytes(3000), "not a complete pickle"),
    ("batches.meta", _cut_half, "UnpicklingError: pickle data was truncated"),
])
def test_a_damaged_cifar_batch_is_named_with_how_to_get_it_again(isolated, fname, damage, match):
    folder = isolated / "root" / "cifar-10-batches-py"
    _write_cifar(folder, np.random.default_rng(2))
    bad = folder / fname
    bad.write_bytes(damage(bad.read_bytes()))
    with pytest.raises(DatasetChecksumError, match=match) as e:
        load_dataset("cifar10", root=isolated / "root")
    assert str(e.value).startswith(f"{bad} is corrupt or incomplete") and "--download" in str(e.value)


def test_pointing_at_the_cifar_batch_folder_itself_says_to_point_at_its_parent(isolated, monkeypatch):
    batches = isolated / "env" / "cifar-10-batches-py"
    _write_cifar(batches, np.random.default_rng(3))
    monkeypatch.setenv(data.ENV_VAR, str(batches))
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("cifar10")
    msg = str(e.value)
    assert (f"holds data_batch_1 itself: give {isolated / 'env'} instead, the folder that contains "
            "cifar-10-batches-py/") in msg
    assert "MNIST" not in msg.split("To get it:")[0]  # the MNIST / Fashion-MNIST file-name clash is no reason here
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "env"))  # as the hint says: found
    assert load_dataset("cifar10").source == batches
    other = isolated / "loose"  # batches in a folder of another name
    shutil.copytree(batches, other)
    monkeypatch.delenv(data.ENV_VAR)
    with pytest.raises(DatasetNotFoundError, match=r"holds test_batch itself: expected it in "
                       r".*loose/cifar-10-batches-py: give the folder that contains cifar-10-batches-py/"):
        load_dataset("cifar10", "test", root=other)


def test_pointing_at_torchvisions_raw_folder_says_to_point_at_the_folder_above_it(isolated, monkeypatch):
    raw = isolated / "env" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(MNIST_DIR / "t10k-images-idx3-ubyte.gz", raw)
    monkeypatch.setenv(data.ENV_VAR, str(raw))
    with pytest.raises(DatasetNotFoundError, match=r"holds t10k-images-idx3-ubyte itself: give .*env instead, the "
                                                   r"folder that contains MNIST/raw/"):
        load_dataset("mnist", "test")


def test_not_found_hints_read_for_the_command_line_and_for_python(isolated):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("cifar10")
    msg = str(e.value)
    assert "--download (Python: load_dataset('cifar10', download=True))" in msg
    assert f"saves it under {data.CACHE_DIR}" in msg and "so one download is enough" in msg
    assert f"set {data.ENV_VAR}=<dir> (Python: or root=<dir>)" in msg


def _offline(created=()):
    """A torchvision dataset class that, like torchvision offline, creates ``created`` under root, then fails."""
    import urllib.error

    class Offline:
        def __init__(self, root, download=False, **kw):
            for sub in created:
                (Path(root) / sub).mkdir(parents=True, exist_ok=True)
            raise urllib.error.URLError("[Errno -2] Name or service not known")
    return Offline


def test_a_failed_download_removes_the_empty_folder_it_created(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # never the real ~/.cache
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    for attr in ("REPO_DATA_DIR", "DEBIAN_DIR"):
        monkeypatch.setattr(data, attr, tmp_path / "empty")
    cache = tmp_path / "home" / ".cache" / "diffusion_lite"
    monkeypatch.setattr(data, "CACHE_DIR", cache)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _offline())
    monkeypatch.setattr(torchvision.datasets, "MNIST", _offline(["MNIST/raw"]))  # torchvision makes raw/ first
    for name in ("cifar10", "mnist"):
        with pytest.raises(data.DatasetDownloadError):
            load_dataset(name, download=True)
        assert not cache.exists()
    with pytest.raises(data.DatasetDownloadError):  # the same for a root= the download created
        load_dataset("mnist", root=tmp_path / "new-root", download=True)
    assert not (tmp_path / "new-root").exists()
    cache.mkdir(parents=True)  # a folder that was there before is kept, even empty
    with pytest.raises(data.DatasetDownloadError):
        load_dataset("cifar10", download=True)
    assert cache.is_dir()


def test_a_failed_download_keeps_a_created_folder_holding_a_file(tmp_path, monkeypatch):
    import torchvision.datasets

    cache = tmp_path / "cache" / "diffusion_lite"
    monkeypatch.setattr(data, "CACHE_DIR", cache)
    monkeypatch.setattr(data, "REPO_DATA_DIR", None)
    monkeypatch.delenv(data.ENV_VAR, raising=False)

    class PartlyDownloaded:
        def __init__(self, root, download=False, **kw):
            Path(root).mkdir(parents=True)
            (Path(root) / "cifar-10-python.tar.gz").write_bytes(b"partial")
            raise RuntimeError("File not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", PartlyDownloaded)
    with pytest.raises(data.DatasetDownloadError):
        load_dataset("cifar10", download=True)
    assert (cache / "cifar-10-python.tar.gz").read_bytes() == b"partial"  # not ours to delete
