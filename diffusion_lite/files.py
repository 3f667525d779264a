"""Files written whole or not at all: temporary files, atomic renames, fsync, and file hashes.

Every file the package writes (checkpoints, sample grids, .npz outputs) goes through ``atomic_write`` or, for
a checkpoint's two files, ``write_temp`` and a rename (see ``checkpoints.save_checkpoint``): a crash or Ctrl-C
leaves the previous file, never half of a new one.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(folder: Path) -> None:
    """Flush a rename to disk (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def create_temp(folder: Path, name: str) -> str:
    """Create an empty, uniquely named file next to ``name`` with the usual permissions (0666 minus the umask).

    ``os.open(..., 0o666)`` lets the OS apply the umask, so it never has to be read (reading it means
    setting it, which races with other threads); ``tempfile.mkstemp`` would make the file 0600.
    """
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return str(tmp)
    raise FileExistsError(f"could not create a temporary file in {folder}")


def write_temp(path: Path, write) -> str:
    """Write a whole file next to ``path`` under a temporary name (fsynced, usual permissions); return that name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temp(path.parent, path.name)
    try:
        mode = os.stat(tmp).st_mode & 0o777  # 0666 minus the umask, applied by the OS
        write(tmp)
        os.chmod(tmp, mode)  # writers that re-create the file (safetensors does, as 0600) keep it
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        remove_if_exists(tmp)
        raise
    return tmp


def atomic_write(path: Path, write) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path`` (kept whole or replaced)."""
    tmp = write_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        remove_if_exists(tmp)
        raise
    fsync_dir(path.parent)


def remove_if_exists(path: str | os.PathLike | None) -> None:
    if path is not None and os.path.exists(path):
        os.remove(path)
