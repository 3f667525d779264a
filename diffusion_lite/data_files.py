"""The datasets' own file formats, read into cached uint8 arrays: IDX (MNIST, Fashion-MNIST), CIFAR-10's
python batches, and the SHA256SUMS manifests checked before reading. ``data.load_dataset`` finds the files;
this module only reads them.

    images = read_idx(*stat_key(Path("data/mnist/train-images-idx3-ubyte.gz")))  # (60000, 28, 28) uint8
    # (a path from the repository root; load_dataset finds the files from anywhere)
"""

from __future__ import annotations

import functools
import gzip
import pickle
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .files import sha256_file

if TYPE_CHECKING:
    from .data import DatasetInfo


class DatasetChecksumError(ValueError):
    """A data file is damaged: its sha256 differs from the one in the SHA256SUMS manifest next to it, or (checked
    while reading, manifest or not) it is truncated or not in its format, e.g. a gzip or pickle cut short."""


# How to get a damaged file again, worded for the command line and for Python
REFETCH = ("delete it and copy it again, or download it again with --download "
           "(Python: load_dataset(..., download=True))")


def _damaged(path, problem: str) -> DatasetChecksumError:
    return DatasetChecksumError(f"{path} is corrupt or incomplete ({problem}); {REFETCH}")


def stat_key(p: Path) -> tuple[str, int, int]:  # cache key: a changed file is read again
    st = p.stat()
    return str(p), st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, cached per process for an unchanged (size, mtime)."""
    return sha256_file(path)


def verify_checksums(files: list[Path]) -> None:
    """Check the files listed in a SHA256SUMS manifest in their folder; no manifest, nothing to check."""
    manifest = files[0].parent / "SHA256SUMS"
    if not manifest.is_file():
        return
    lines = [line.split(maxsplit=1) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    if any(len(parts) != 2 for parts in lines):
        raise DatasetChecksumError(f"{manifest}: expected lines '<sha256>  <file name>'")
    expected = {fname.lstrip("*"): digest.lower() for digest, fname in lines}
    for p in files:
        if p.name in expected:
            got = _sha256(*stat_key(p))
            if got != expected[p.name]:
                raise DatasetChecksumError(f"{p} is corrupted: sha256 {got} but {manifest} expects "
                                           f"{expected[p.name]}; restore it (e.g. `git checkout -- {p}`)")


# The only globals a CIFAR-10 batch refers to: numpy arrays (numpy 1's and numpy 2's module names; for files
# re-pickled by Python 3, _codecs.encode and bytes, with which protocols 0-2 write bytes, and protocol 5's
# _frombuffer). A pickle can name any function and have it called while loading, so no other is looked up.
_NUMPY_GLOBALS = {(m, n) for core in ("numpy.core", "numpy._core")
                  for m, n in ((f"{core}.multiarray", "_reconstruct"), (f"{core}.multiarray", "scalar"),
                               (f"{core}.numeric", "_frombuffer"))} | {("numpy", "ndarray"), ("numpy", "dtype"),
                                                                       ("_codecs", "encode"),
                                                                       ("__builtin__", "bytes"), ("builtins", "bytes")}


class _Forbidden(Exception):
    pass


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise _Forbidden(f"{module}.{name}")
        return super().find_class(module, name)


def _unpickle(path) -> object:
    """The object in a pickle file (CIFAR-10's format); DatasetChecksumError naming the file if it is cut short
    or not a pickle (a damaged pickle fails in many ways, so every error of decoding it is one), or if it names a
    global other than numpy's array builders: such a file is not CIFAR-10, and loading it could run code."""
    with open(path, "rb") as f:
        try:
            return _DataUnpickler(f, encoding="latin1").load()
        except _Forbidden as e:
            raise DatasetChecksumError(f"{path} is not a CIFAR-10 batch: it refers to {e}, and a dataset file holds "
                                       "only numpy arrays, lists and strings; not loaded (unpickling it could run "
                                       f"code). {REFETCH}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                ImportError) as e:  # EOFError: empty; UnpicklingError: cut short; others: random bytes
            raise _damaged(path, f"not a complete pickle: {type(e).__name__}: {e}") from e


@functools.lru_cache(maxsize=16)
def read_idx(path: str, size: int, mtime_ns: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip or not) -> read-only uint8 array of the shape in its header."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        try:
            buf = f.read()
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # not gzip / cut short / damaged in the middle
            raise _damaged(path, f"not a complete gzip file: {type(e).__name__}: {e}") from e
    if len(buf) < 4 or buf[:3] != b"\x00\x00\x08":
        raise _damaged(path, f"not an IDX file of unsigned bytes: magic {buf[:4].hex() or 'none'}, want 000008..")
    ndim = buf[3]
    if len(buf) < 4 + 4 * ndim:
        raise _damaged(path, f"{len(buf)} bytes, shorter than its {ndim}-dimension header")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise _damaged(path, f"header says shape {dims} but the file holds {data.size} bytes")
    return data.reshape(dims)


def _str_keys(d: object) -> object:
    """A dict's bytes keys as str: the same CIFAR-10 file re-pickled in Python 3 after reading it with
    ``encoding="bytes"`` (as the dataset's page shows) has b"data", b"labels" and b"label_names"."""
    if isinstance(d, dict):
        return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    return d


@functools.lru_cache(maxsize=16)
def read_cifar_batch(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 python batch (the dataset's own pickle format) -> uint8 (N, 3, 32, 32), int64 (N,)."""
    d = _str_keys(_unpickle(path))
    if not isinstance(d, dict) or not {"data", "labels"} <= d.keys():
        raise _damaged(path, "expected a dict with 'data' (N, 3072) and 'labels' (N,)")
    data, labels = np.asarray(d["data"], dtype=np.uint8), np.asarray(d["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != data.shape[:1]:
        raise ValueError(f"{path}: expected data (N, 3072), labels (N,), got {data.shape}, {labels.shape}")
    data = data.reshape(-1, 3, 32, 32)  # (N, 3, 32, 32): each row is the R, G, B planes, 32x32 row-major
    for a in (data, labels):
        a.setflags(write=False)  # cached: callers get copies
    return data, labels


def read_raw(info: DatasetInfo, folder: Path, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Cached raw arrays: uint8 images (N, C, H, W), integer labels (N,); checked against ``info``."""
    if info.name == "cifar10":
        meta = folder / "batches.meta"
        if meta.is_file():
            d = _str_keys(_unpickle(meta))
            names = tuple(n.decode("latin1") if isinstance(n, bytes) else n
                          for n in d.get("label_names", ())) if isinstance(d, dict) else None
            if not names:
                raise ValueError(f"{meta}: has no label_names (expected CIFAR-10's {info.classes})")
            if names != info.classes:
                raise ValueError(f"{meta}: label_names {names} differ from CIFAR-10's {info.classes}")
        batches = [read_cifar_batch(*stat_key(p)) for p in files]  # train: 5 x 10,000 images
        images, labels = (np.concatenate(arrays) for arrays in zip(*batches, strict=True))
    else:
        images, labels = (read_idx(*stat_key(p)) for p in files)
        images = images.reshape(len(images), 1, *images.shape[1:])  # (N, 1, 28, 28)
    shape = (info.channels, info.image_size, info.image_size)
    if images.ndim != 4 or images.shape[1:] != shape or labels.shape != images.shape[:1]:
        raise ValueError(f"{folder}: expected images (N, {shape}) and labels (N,), "
                         f"got {images.shape} and {labels.shape}")
    if len(labels) and not 0 <= labels.min() <= labels.max() < info.num_classes:
        raise ValueError(f"{folder}: labels outside [0, {info.num_classes})")
    return images, labels
