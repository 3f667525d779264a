"""Checkpoints: safetensors weights + a JSON sidecar, written atomically, loaded without pickle.

A checkpoint named ``PATH`` is the pair ``PATH.safetensors`` (tensors) and ``PATH.json`` (metadata:
``kind``, configs, schedule, training state, dataset, and the sha256 of the weights, so a weights file
that does not belong to its JSON is caught). Either file's path, or the stem, may be passed.

Models are rebuilt from the file alone: ``meta["kind"]`` names a builder (see ``BUILDERS``), which
reads the configs stored in the JSON.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
PRETRAINED_DIR = Path(__file__).parent / "pretrained"

# kind -> "module:function" building the object from (tensors, meta, device); imported lazily
BUILDERS = {
    "diffusion": "diffusion_lite.pipeline:pipeline_from_checkpoint",
    "clip": "diffusion_lite.clip:clip_from_checkpoint",
    "classifier": "diffusion_lite.classifier:classifier_from_checkpoint",
}


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match what was expected."""


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, write) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Save ``tensors`` and JSON-serialisable ``meta`` as PATH.safetensors + PATH.json. Returns the stem.

    The weights are renamed into place first and the JSON last, so a crash leaves the previous pair
    or a JSON whose sha256 no longer matches (reported at load time), never a half-written file.
    """
    stem = _stem(path)
    weights, sidecar = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic_write(weights, lambda tmp: save_file(tensors, tmp))
    meta = {**meta, "format_version": FORMAT_VERSION, "weights_sha256": _sha256(weights)}
    text = json.dumps(meta, indent=2, sort_keys=True)
    _atomic_write(sidecar, lambda tmp: Path(tmp).write_text(text))
    return stem


def resolve(path_or_name: str | os.PathLike) -> Path:
    """A checkpoint path (either file or the stem), or the name of a shipped pretrained model."""
    stem = _stem(path_or_name)
    if stem.with_suffix(".json").exists() or stem.with_suffix(".safetensors").exists():
        return stem
    if Path(path_or_name).is_dir() and (Path(path_or_name) / "checkpoint.json").exists():
        return Path(path_or_name) / "checkpoint"
    named = PRETRAINED_DIR / str(path_or_name)
    if named.with_suffix(".json").exists():
        return named
    available = ", ".join(list_pretrained()) or "none shipped"
    raise CheckpointError(f"no checkpoint at {str(path_or_name)!r} (looked for {stem}.json/.safetensors, "
                          f"a run folder with checkpoint.json, and pretrained models: {available})")


def load_checkpoint(path_or_name: str | os.PathLike, device: str | torch.device = "cpu",
                    verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load (tensors, meta). Raises CheckpointError for missing, corrupt or mismatched files."""
    stem = resolve(path_or_name)
    weights, sidecar = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for f in (weights, sidecar):
        if not f.exists():
            raise CheckpointError(f"checkpoint {stem} is incomplete: {f.name} is missing")
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{sidecar} is not valid JSON ({e}); the checkpoint is corrupt") from e
    if not isinstance(meta, dict) or "kind" not in meta:
        raise CheckpointError(f"{sidecar} has no 'kind' field; not a diffusion_lite checkpoint")
    if verify and meta.get("weights_sha256") and _sha256(weights) != meta["weights_sha256"]:
        raise CheckpointError(f"{weights.name} does not match the sha256 recorded in {sidecar.name}: "
                              "the weights are corrupt or belong to another checkpoint")
    try:
        tensors = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {weights} as safetensors ({e}); the checkpoint is corrupt") from e
    return tensors, meta


def load(path_or_name: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild whatever the checkpoint holds (a pipeline, a CLIP model, a classifier) from the file alone."""
    tensors, meta = load_checkpoint(path_or_name, device)
    kind = meta["kind"]
    if kind not in BUILDERS:
        raise CheckpointError(f"unknown checkpoint kind {kind!r}; expected one of {sorted(BUILDERS)}")
    module, fn = BUILDERS[kind].split(":")
    return getattr(importlib.import_module(module), fn)(tensors, meta, device)


def load_pretrained(name: str, device: str | torch.device = "cpu"):
    """Load a model shipped with the package by name, e.g. ``load_pretrained("mnist-text2img")``."""
    if name not in list_pretrained():
        raise CheckpointError(f"unknown pretrained model {name!r}; available: {', '.join(list_pretrained())}")
    return load(PRETRAINED_DIR / name, device)


def list_pretrained() -> list[str]:
    """Names of the shipped pretrained models."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.json")) if PRETRAINED_DIR.exists() else []


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose key starts with ``prefix + '.'``, with the prefix removed."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def add_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict with an error that names the mismatch instead of a long traceback."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:3]
        raise CheckpointError(f"{what}: weights do not fit the configured model: {' '.join(first)}") from e
