"""Image datasets, offline first: MNIST (vendored in data/mnist/), Fashion-MNIST and CIFAR-10.

    ds = load_dataset("mnist", subset=1000, balanced=True)  # 100 per digit, images (1000, 1, 28, 28)
    x, y = ds[0]                                            # (1, 28, 28) float32 in [-1, 1], () long

Files are looked for, in order, in: the ``root`` argument, ``$DIFFUSION_LITE_DATA``, the repository's data/ (in a source
checkout; a wheel has none),
``~/.cache/diffusion_lite``, and (Fashion-MNIST only) ``/usr/share/datasets`` (Debian package
``dataset-fashion-mnist``), each in our layout ``<dir>/<name>/`` or torchvision's (``<dir>/MNIST/raw/``,
``<dir>/FashionMNIST/raw/``, ``<dir>/cifar-10-batches-py/``; for CIFAR-10 that one first, as it is the folder its
archive unpacks to). Nothing is downloaded unless ``download=True``.
A ``SHA256SUMS`` manifest next to the files (as in data/mnist/) is checked before reading. This module finds the
files; ``data_files`` reads their formats.
Pixels map to [-1, 1] by ``x / 127.5 - 1`` (as ``utils.from_uint8``).
"""

from __future__ import annotations

import difflib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .data_files import DatasetChecksumError, read_raw, verify_checksums  # noqa: F401 (the error is part of this API)
from .utils import caller_stacklevel, source_checkout

ENV_VAR = "DIFFUSION_LITE_DATA"
_SOURCE = source_checkout()
REPO_DATA_DIR = _SOURCE / "data" if _SOURCE else None  # the repository's data/; None in a wheel install
CACHE_DIR = Path.home() / ".cache" / "diffusion_lite"  # where download=True saves when no root is given
DEBIAN_DIR = Path("/usr/share/datasets")  # `apt-get install dataset-fashion-mnist` -> fashion-mnist/*.gz
SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's images are (channels, image_size, image_size); label k names ``classes[k]``."""

    name: str
    channels: int
    image_size: int
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", 1, 28, tuple(str(d) for d in range(10))),
    "fashion-mnist": DatasetInfo("fashion-mnist", 1, 28, ("T-shirt/top", "Trouser", "Pullover", "Dress",
                                 "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "cifar10": DatasetInfo("cifar10", 3, 32, ("airplane", "automobile", "bird", "cat", "deer", "dog",
                           "frog", "horse", "ship", "truck")),
}

# Sub-folders of a search directory that may hold each dataset: our layout first, then torchvision's (CIFAR-10:
# the folder its archive unpacks to first, as that is the folder a user has)
_LAYOUTS = {
    "mnist": ("mnist", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw"),
    "cifar10": ("cifar-10-batches-py", "cifar10", "cifar10/cifar-10-batches-py"),
}


class DatasetNotFoundError(FileNotFoundError):
    """No searched folder holds the dataset's files; the message lists every folder looked at."""


class DatasetDownloadError(OSError):
    """download=True could not fetch the dataset (no network, or the server failed); the message says how to
    get the files another way."""


@dataclass(eq=False, repr=False)
class ImageDataset(Dataset):
    """Images in memory, ``ds[i] -> (image (C, H, W), label ())``; ``source``: the folder read from.

    images: float32 (N, C, H, W) in [-1, 1]; labels: long (N,) in [0, num_classes).
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    source: Path | None = None

    def __post_init__(self):
        x, y = self.images, self.labels
        if x.ndim != 4 or x.dtype != torch.float32 or y.dtype != torch.long or y.shape != x.shape[:1]:
            raise ValueError(f"expected images float32 (N, C, H, W) and labels long (N,), "
                             f"got {x.dtype} {tuple(x.shape)} and {y.dtype} {tuple(y.shape)}")

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"image_shape={tuple(self.images.shape[1:])}, source={str(self.source)!r})")


def dataset_info(name: str) -> DatasetInfo:
    """The DatasetInfo of ``name``; ValueError listing the valid names otherwise."""
    if name not in DATASETS:
        key = str(name).lower().replace("_", "-").replace(" ", "-")
        close = [n for n in DATASETS if n == key or n.replace("-", "") == key.replace("-", "")]
        typo = difflib.get_close_matches(key, list(DATASETS), 1, 0.8)  # "fashon-mnist"
        hint = (f" (did you mean {close[0]!r}? names are lower case)" if close
                else f" (did you mean {typo[0]!r}?)" if typo else "")
        raise ValueError(f"unknown dataset {name!r}{hint}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def search_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for ``name``, in order: root, $DIFFUSION_LITE_DATA, repo data/, cache, Debian."""
    dataset_info(name)
    env = os.environ.get(ENV_VAR)
    if env and not Path(env).expanduser().is_dir():  # a typo would otherwise fall back to other copies silently
        warnings.warn(f"${ENV_VAR} is {env!r}, which is not a folder; looking in the other places",
                      stacklevel=caller_stacklevel())
    dirs = [Path(d).expanduser() for d in (root, env) if d]  # "" counts as unset
    dirs += [d for d in (REPO_DATA_DIR, CACHE_DIR) if d is not None]
    dirs += [DEBIAN_DIR] if name == "fashion-mnist" else []
    return list(dict.fromkeys(dirs))  # drop duplicates, keep order


def _locate(name: str, split: str, root) -> tuple[Path, list[Path]]:
    """First folder in the search path holding every file of the split -> (folder, file paths)."""
    p = "train" if split == "train" else "t10k"
    wanted, suffixes = [f"{p}-images-idx3-ubyte", f"{p}-labels-idx1-ubyte"], ("", ".gz")  # IDX, gzip or not
    if name == "cifar10":
        wanted, suffixes = [f"data_batch_{i}" for i in range(1, 6)] if p == "train" else ["test_batch"], ("",)
    tried = []
    for base in search_dirs(name, root):
        if any((base / (wanted[0] + s)).is_file() for s in suffixes):  # the files themselves, not their parent
            tried.append(f"{base}  (holds {wanted[0]} itself: {_files_itself_hint(name, base)})")
        for sub in _LAYOUTS[name]:
            folder = base / sub
            if not folder.is_dir():
                tried.append(f"{folder}  (no such folder)")
                continue
            found = [next((q for s in suffixes if (q := folder / (f + s)).is_file()), None) for f in wanted]
            missing = [f for f, q in zip(wanted, found, strict=True) if q is None]
            if not missing:
                return folder, found
            tried.append(f"{folder}  (lacks {', '.join(missing)})")
    raise DatasetNotFoundError(_not_found_message(name, split, tried))


def _files_itself_hint(name: str, base: Path) -> str:
    """What to do when a searched folder holds the dataset's files directly instead of in a sub-folder."""
    for sub in map(Path, _LAYOUTS[name]):  # e.g. .../cifar-10-batches-py given: its parent was meant
        if len(base.parts) > len(sub.parts) and base.parts[-len(sub.parts):] == sub.parts:
            return f"give {base.parents[len(sub.parts) - 1]} instead, the folder that contains {sub}/"
    if name == "cifar10":
        return f"expected it in {base / 'cifar-10-batches-py'}: give the folder that contains cifar-10-batches-py/"
    return (f"expected it in {base / _LAYOUTS[name][0]}; MNIST and Fashion-MNIST share file names, so each needs its "
            "own folder")


def _expected_files(name: str) -> str:
    """The files of both splits, for messages that tell a user what to copy where."""
    if name == "cifar10":
        return "CIFAR-10's python version (data_batch_1 ... data_batch_5, test_batch)"
    return ("the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            "t10k-labels-idx1-ubyte; plain or .gz)")


def _not_found_message(name: str, split: str, tried: list[str]) -> str:
    how = [f"  - online: --download (Python: load_dataset({name!r}, download=True)); torchvision saves it under "
           f"{CACHE_DIR} (Python: or under root=<dir>); later calls look in that cache without being told, so one "
           "download is enough (e.g. one notebook cell, for every chapter)"]
    if name == "mnist":
        how.append("  - MNIST ships in the diffusion-lite source repository's data/mnist/, not in a wheel: work in a "
                   "git checkout (`pip install -e .` there)")
    if name == "fashion-mnist":
        how.append("  - Debian/Ubuntu, offline-friendly: sudo apt-get install dataset-fashion-mnist "
                   f"(installs {DEBIAN_DIR / 'fashion-mnist'}/)")
    how.append(f"  - or copy {_expected_files(name)} to <dir>/{_LAYOUTS[name][0]}/ and set {ENV_VAR}=<dir> "
               "(Python: or root=<dir>)")
    return (f"{name} ({split} split) not found. Looked in:\n" + "\n".join(f"  {t}" for t in tried)
            + "\nTo get it:\n" + "\n".join(how))


def _select(info: DatasetInfo, split: str, labels: np.ndarray, subset, balanced: bool):
    """Indices to keep: all, the first ``subset``, or the first ``subset // C`` of each class (file order)."""
    if subset is None:
        if balanced:
            raise ValueError("balanced=True needs subset=K (it keeps K / num_classes images per class)")
        return slice(None)
    n, c = len(labels), info.num_classes
    if not balanced:
        if subset > n:
            raise ValueError(f"subset={subset} but {info.name} {split} has only {n} images")
        return slice(0, subset)
    if subset < c:
        raise ValueError(f"balanced subset={subset} is smaller than the number of classes ({c}); use {c}, or a "
                         f"multiple of {c}")
    if subset % c:  # K // C per class would train on fewer images than asked for
        lo, hi = subset // c * c, (subset // c + 1) * c
        raise ValueError(f"balanced subset={subset} must be a multiple of the number of classes ({c}), the same "
                         f"number of each: use {lo} or {hi}")
    per_class = subset // c
    keep = [np.flatnonzero(labels == k)[:per_class] for k in range(c)]  # first per_class of each class
    short = [f"{info.classes[k]!r}: {len(keep[k])}" for k in range(c) if len(keep[k]) < per_class]
    if short:
        raise ValueError(f"balanced subset={subset} needs {per_class} images per class but {info.name} "
                         f"{split} has fewer for {', '.join(short)}")
    return np.sort(np.concatenate(keep))  # back to file order


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it holds nothing but empty folders (what torchvision leaves when a download fails);
    a folder with any file in it is kept as it is."""
    try:
        if any(not p.is_dir() or p.is_symlink() for p in folder.rglob("*")):
            return
        for d in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [folder]:
            d.rmdir()  # only ever removes an empty folder
    except OSError:  # raced with another process, or no permission: leave it
        pass


def _download(name: str, root) -> None:
    """Fetch ``name`` with torchvision into ``root`` or CACHE_DIR, in torchvision's layout (needs network)."""
    import torchvision.datasets as tvd  # only needed here
    target = Path(root).expanduser() if root is not None else CACHE_DIR  # torchvision creates it
    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    created = not target.exists()
    try:
        cls(root=str(target), download=True)  # fetches both splits
    except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError; torchvision raises RuntimeError
        if created:
            _remove_if_empty(target)
        raise DatasetDownloadError(
            f"could not download {name} with torchvision into {target} ({type(e).__name__}: {e}). Without network, "
            f"copy {_expected_files(name)} to <dir>/{_LAYOUTS[name][0]}/ and set {ENV_VAR}=<dir>") from e


def load_dataset(name: str, split: str = "train", *, root: str | os.PathLike | None = None,
                 subset: int | None = None, balanced: bool = False, download: bool = False) -> ImageDataset:
    """Load a split of ``name`` ("mnist", "fashion-mnist", "cifar10") into memory.

    Returns an ImageDataset: images float32 (N, C, H, W) in [-1, 1] ((1, 28, 28) or (3, 32, 32)), labels
    long (N,). ``subset=K`` keeps the first K images; with ``balanced=True`` the first K / num_classes of
    each class (K must be a multiple of num_classes), in file order. ValueError for an unknown name/split
    or an impossible subset; DatasetNotFoundError (a FileNotFoundError) when no searched folder has the
    files, or when ``root`` is given but is not a folder (without ``download``; a ``root`` that exists is
    searched first, then the default places); DatasetChecksumError (a ValueError) when a file differs from its
    SHA256SUMS entry or is truncated / not in its format. ``download=True`` fetches missing files with
    torchvision into ``root`` or CACHE_DIR (a folder it created is removed again if the download fails and
    leaves it empty). Raw arrays are cached per process.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, (int, np.integer))
                               or subset < 1):
        raise ValueError(f"subset must be a positive int or None, got {subset!r}")
    if root is not None and not download and not Path(root).expanduser().is_dir():  # a typo would fall back
        raise DatasetNotFoundError(f"root={str(root)!r} is not a folder (give the folder that holds "
                                   f"{_LAYOUTS[name][0]}/, or root=None to search the default places)")
    try:
        folder, files = _locate(name, split, root)
    except DatasetNotFoundError:
        if not download:
            raise
        _download(name, root)
        folder, files = _locate(name, split, root)
    verify_checksums(files)
    raw_images, raw_labels = read_raw(info, folder, files)
    keep = _select(info, split, raw_labels, subset, balanced)
    images = torch.from_numpy(np.array(raw_images[keep]))  # uint8 copy (N, C, H, W); cache stays read-only
    images = images.float().div_(127.5).sub_(1.0)  # [0, 255] -> [-1, 1], as utils.from_uint8
    labels = torch.from_numpy(np.array(raw_labels[keep], dtype=np.int64))
    return ImageDataset(name, split, images, labels, info, source=folder)
