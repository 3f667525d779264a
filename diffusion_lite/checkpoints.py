"""Checkpoints: safetensors weights + a JSON sidecar, written atomically, loaded without pickle.

A checkpoint named ``PATH`` is the pair ``PATH.safetensors`` (tensors) and ``PATH.json`` (metadata:
``kind``, configs, schedule, training state, dataset, and the sha256 of the weights, so a weights file
that does not belong to its JSON is caught). Either file's path, or the stem, may be passed. Only those
two suffixes are stripped: any other dot is part of the name ("model-v1.5" is model-v1.5.safetensors).
While a save is under way its new JSON waits as a hidden ``.PATH.json.pending`` (see ``save_checkpoint``).

Models are rebuilt from the file alone: ``meta["kind"]`` names a builder (see ``BUILDERS``), which
reads the configs stored in the JSON.
"""

from __future__ import annotations

import difflib
import importlib
import itertools
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import files
from .utils import caller_stacklevel, get_device

FORMAT_VERSION = 1
PRETRAINED_DIR = Path(__file__).parent / "pretrained"

# kind -> "module:function" building the object from (tensors, meta, device); imported lazily
BUILDERS = {
    "diffusion": "diffusion_lite.pipeline:pipeline_from_checkpoint",
    "clip": "diffusion_lite.clip:clip_from_checkpoint",
    "classifier": "diffusion_lite.classifier:classifier_from_checkpoint",
}
# kind -> the JSON fields its builder reads (checked by ``check_meta`` before building)
REQUIRED_KEYS = {
    "diffusion": ("unet", "schedule"),
    "clip": ("config", "tokenizer"),
    "classifier": ("classifier_config",),
}


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match what was expected."""


def _stem(path: str | os.PathLike) -> Path:
    """The checkpoint stem: ``path`` without a trailing .safetensors or .json (other dots are kept)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_name(p.name[:-len(p.suffix)])
    return p


def _files(stem: Path) -> tuple[Path, Path]:
    """(STEM.safetensors, STEM.json), appending the suffix: Path.with_suffix would replace ".5" in "v1.5"."""
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _device(device: str | torch.device) -> torch.device:
    """``device`` parsed and checked to exist (utils.get_device); None, "" and "auto" are refused, not guessed."""
    if device is None or str(device) in ("", "auto"):
        raise ValueError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or mps")
    return get_device(str(device))


def _pending(sidecar: Path) -> Path:
    """Where save_checkpoint keeps the new JSON between renaming the new weights into place and renaming it."""
    return sidecar.with_name(f".{sidecar.name}.pending")


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Save ``tensors`` and JSON-serialisable ``meta`` as PATH.safetensors + PATH.json. Returns the stem.

    Both files are written whole under temporary names first; the new JSON then waits as ``.PATH.json.pending``
    while the weights are renamed into place, and is renamed last. So a crash leaves the previous pair, or (killed
    between the two renames) the new weights next to the pending JSON that matches them, which the next load or
    save renames into place (``finish_interrupted_save``); never a half-written file, never weights no JSON matches.
    """
    stem = _stem(path)
    weights, sidecar = _files(stem)
    try:  # fail before touching the files (as the sidecar will be written), so a bad ``meta`` costs nothing
        json.dumps({**meta, "format_version": FORMAT_VERSION, "weights_sha256": ""}, indent=2, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint metadata must be JSON-serialisable (numbers, strings, lists, dicts): {e}") from e
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    finish_interrupted_save(stem)  # the pair on disk is whole before this save starts (a pending JSON is its own)
    pending = _pending(sidecar)
    w_tmp = j_tmp = None
    pending_is_ours = weights_in_place = False
    try:
        w_tmp = files.write_temp(weights, lambda tmp: save_file(tensors, tmp))
        sha = files.sha256_file(w_tmp)
        text = json.dumps({**meta, "format_version": FORMAT_VERSION, "weights_sha256": sha}, indent=2, sort_keys=True)
        j_tmp = files.write_temp(sidecar, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        os.replace(j_tmp, pending)
        j_tmp, pending_is_ours = None, True
        os.replace(w_tmp, weights)
        w_tmp, weights_in_place = None, True
        files.fsync_dir(weights.parent)
        os.replace(pending, sidecar)
        files.fsync_dir(sidecar.parent)
    except BaseException:
        files.remove_if_exists(w_tmp)
        files.remove_if_exists(j_tmp)
        if pending_is_ours and not weights_in_place:  # the previous pair is intact; once the new weights are in,
            files.remove_if_exists(pending)           # the pending JSON is theirs and must stay
        raise
    return stem


def finish_interrupted_save(path: str | os.PathLike) -> bool:
    """Finish a save of checkpoint ``path`` that was killed between renaming its new weights into place and
    renaming their JSON: the pending JSON that matches the weights becomes PATH.json (with a warning). Returns
    whether it did. A pending JSON that does not match the weights (a save killed before it touched them) is
    left alone; the pair beside it is whole. Called by every load and save, so nothing else sees the pending file.
    """
    weights, sidecar = _files(_stem(path))
    pending = _pending(sidecar)
    if not (pending.exists() and weights.exists()):
        return False
    try:
        new = json.loads(pending.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    sha = files.sha256_file(weights)
    if not isinstance(new, dict) or new.get("weights_sha256") != sha:
        return False
    try:
        os.replace(pending, sidecar)
    except OSError as e:
        raise CheckpointError(f"{weights} was saved, but its JSON is still {pending} (the save was interrupted) and "
                              f"cannot be renamed to {sidecar.name} here ({e}); rename it to finish the save") from e
    files.fsync_dir(sidecar.parent)
    warnings.warn(f"{_stem(path)}: a save was interrupted after writing {weights.name}; finished it ({pending.name} "
                  f"renamed to {sidecar.name})", stacklevel=caller_stacklevel())
    return True


def check_resumable(path: str | os.PathLike, how_to_start_afresh: str = "choose another place for the run") -> None:
    """Before a training run resumes from, or starts at, checkpoint ``path``: finish an interrupted save, then
    refuse (CheckpointError) weights that have no JSON (the run cannot be resumed, and a new run would overwrite
    them) or that do not match their JSON's sha256 (corrupt, or from another run)."""
    weights, sidecar = _files(_stem(path))
    finish_interrupted_save(path)
    if weights.exists() and not sidecar.exists():
        raise CheckpointError(f"{weights} has no {sidecar.name} beside it, so the run cannot be resumed, and a new "
                              f"run would overwrite it; restore the JSON from a copy, or {how_to_start_afresh}")
    if not (weights.exists() and sidecar.exists()):
        return
    try:
        sha = json.loads(sidecar.read_text(encoding="utf-8")).get("weights_sha256")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return  # not JSON (or not an object): the caller's reading of it says so
    if sha and files.sha256_file(weights) != sha:
        raise CheckpointError(f"{weights} does not match the sha256 recorded in {sidecar.name} (corrupt, or copied "
                              "from another run), so the run cannot be resumed; restore both files from a copy, or "
                              f"{how_to_start_afresh}")


def resolve(path_or_name: str | os.PathLike) -> Path:
    """A checkpoint path (either file or the stem), or the name of a shipped pretrained model."""
    stem = _stem(path_or_name)
    if any(f.is_file() for f in _files(stem)):  # not a run folder named "x.safetensors"
        return stem
    if Path(path_or_name).is_dir():  # a run folder (whose first save may have been interrupted)
        finish_interrupted_save(Path(path_or_name) / "checkpoint")
        if (Path(path_or_name) / "checkpoint.json").exists():
            return Path(path_or_name) / "checkpoint"
    named = PRETRAINED_DIR / str(path_or_name)
    if _files(named)[1].exists():
        return named
    available = ", ".join(list_pretrained()) or "none shipped"
    hint = ""
    if stem.suffix and stem.with_suffix(".json").exists():  # where older versions saved a dotted name
        hint = (f"; note {stem.with_suffix('.json')} exists: older versions saved a checkpoint named "
                f"{stem.name!r} there, dropping {stem.suffix!r}")
    elif (near := _near_name(stem)) is not None:  # a typo: runs/ft2j for runs/ft2i
        hint = f"; did you mean {near!r}?"
    raise CheckpointError(f"no checkpoint at {str(path_or_name)!r} (looked for {stem}.json/.safetensors, "
                          f"a run folder with checkpoint.json, and pretrained models: {available}){hint}")


def _near_name(stem: Path) -> str | None:
    """The checkpoint, run folder or pretrained name whose name is closest to ``stem``'s (a likely typo), or None;
    looks at no more than 1,000 entries of stem's folder."""
    parent = stem.parent
    found: dict[str, str] = {name: name for name in list_pretrained()}
    if parent.is_dir():
        for p in itertools.islice(parent.iterdir(), 1000):
            if p.suffix == ".json" and p.with_suffix(".safetensors").exists():
                found[p.stem] = str(p.with_suffix(""))
            elif p.is_dir() and (p / "checkpoint.json").exists():
                found[p.name] = str(p)
    close = difflib.get_close_matches(stem.name, list(found), 1, 0.75)
    return found[close[0]] if close else None


def check_meta(meta: dict[str, Any], where: str = "checkpoint") -> None:
    """Raise CheckpointError unless ``meta`` has a known kind and the fields its builder reads (see
    REQUIRED_KEYS), and so has the text encoder stored inside a diffusion checkpoint. ``where`` names the file."""
    if not isinstance(meta, dict) or "kind" not in meta:
        raise CheckpointError(f"{where} has no 'kind' field; not a diffusion_lite checkpoint")
    kind = meta["kind"]
    if kind not in BUILDERS:
        raise CheckpointError(f"{where}: unknown checkpoint kind {kind!r}; expected one of {sorted(BUILDERS)}")
    missing = [k for k in REQUIRED_KEYS[kind] if meta.get(k) is None]
    if missing:
        why = "the JSON is incomplete or was edited"
        if kind == "diffusion" and "train_state" in meta:  # a run folder's checkpoint, written by train.fit
            why = ("it was written by train.fit of an earlier version, which recorded them only when given in "
                   "meta=, or the JSON was edited; add them to the JSON: \"unet\": UNetConfig(...).to_dict(), "
                   "\"schedule\": ScheduleConfig(...).to_dict(), the configs the run was trained with")
        raise CheckpointError(f"{where} lacks {', '.join(map(repr, missing))}, which a {kind!r} checkpoint needs "
                              f"({why})")
    if kind == "diffusion" and meta.get("text") is not None:
        check_meta(meta["text"], f"{where} (its 'text' encoder)")
    context_dim = meta["unet"].get("context_dim") if kind == "diffusion" and isinstance(meta["unet"], dict) else None
    if context_dim is not None and meta.get("text") is None:
        raise CheckpointError(f"{where}: its U-Net is text-conditional (cross-attention over {context_dim}-wide text "
                              "tokens), but no text encoder is stored with it ('text' is missing), so it cannot "
                              "turn prompts into tokens; save the pipeline with its text encoder (a CLIPModel)")


def load_checkpoint(path_or_name: str | os.PathLike, device: str | torch.device = "cpu",
                    verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load (tensors, meta) onto ``device``. Raises CheckpointError for missing, corrupt or mismatched files,
    ValueError for a device that is unknown or not available here."""
    device = _device(device)
    stem = resolve(path_or_name)
    weights, sidecar = _files(stem)
    finish_interrupted_save(stem)
    for f in (weights, sidecar):
        if not f.exists():
            raise CheckpointError(f"checkpoint {stem} is incomplete: {f.name} is missing")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{sidecar} is not valid JSON ({e}); the checkpoint is corrupt") from e
    if not isinstance(meta, dict) or "kind" not in meta:
        raise CheckpointError(f"{sidecar} has no 'kind' field; not a diffusion_lite checkpoint")
    version = meta.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        from . import __version__
        raise CheckpointError(f"{sidecar} has checkpoint format version {version!r}, but diffusion_lite "
                              f"{__version__} reads versions up to {FORMAT_VERSION}: it was written by a newer "
                              "release of the package; upgrade it to load this checkpoint")
    if verify and meta.get("weights_sha256") and files.sha256_file(weights) != meta["weights_sha256"]:
        raise CheckpointError(f"{weights} does not match the sha256 recorded in {sidecar.name}: "
                              "the weights are corrupt or belong to another checkpoint")
    try:
        tensors = load_file(str(weights), device="cpu")  # then moved: safetensors refuses e.g. "cpu:0"
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {weights} as safetensors ({e}); the checkpoint is corrupt") from e
    return {k: v.to(device) for k, v in tensors.items()}, meta


def load(path_or_name: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild whatever the checkpoint holds (a pipeline, a CLIP model, a classifier) from the file alone."""
    device = _device(device)
    tensors, meta = load_checkpoint(path_or_name, device)
    check_meta(meta, str(_files(resolve(path_or_name))[1]))
    module, fn = BUILDERS[meta["kind"]].split(":")
    return getattr(importlib.import_module(module), fn)(tensors, meta, device)


def load_pretrained(name: str, device: str | torch.device = "cpu"):
    """Load a model shipped with the package by name, e.g. ``load_pretrained("mnist-text2img")``."""
    if name not in list_pretrained():
        raise CheckpointError(f"unknown pretrained model {name!r}; available: {', '.join(list_pretrained())} "
                              "(your own checkpoints and run folders: diffusion_lite.load(path))")
    return load(PRETRAINED_DIR / name, device)


def list_pretrained() -> list[str]:
    """Names of the shipped pretrained models."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.json")) if PRETRAINED_DIR.exists() else []


def dataset_name(meta: dict | None) -> str | None:
    """The dataset a checkpoint was trained on: meta["dataset"] is {"name": ...} (diffusion runs, CLIP) or the name
    itself (classifiers); None when the meta does not say."""
    d = (meta or {}).get("dataset")
    return d.get("name") if isinstance(d, dict) else d if isinstance(d, str) else None


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
