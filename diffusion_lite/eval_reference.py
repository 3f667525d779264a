"""The real images an evaluation compares samples with (evaluation.py): two disjoint draws of one split.

    ref = prepare_reference(classifier, "mnist-test", n=1000, labels=balanced_labels(1000))
    fid(sample_feats, ref.feats), fid(ref.floor_feats, ref.feats)  # the samples' FID and its real-vs-real floor

``feats`` is what samples are scored against; ``floor_feats``, a second draw of the same size taken the same
way (per digit with labels), gives the floor: the FID a perfect generator would get at this n.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import metrics
from .classifier import Classifier

NUM_CLASSES = 10
EVAL_DATASETS = ("mnist", "fashion-mnist")  # the datasets with a shipped evaluation classifier
REFERENCES = tuple(f"{d}-{split}" for d in EVAL_DATASETS for split in ("test", "train"))  # "mnist-test", ...


@dataclass
class Reference:
    """Two disjoint real draws of the same size: ``feats`` (compared with samples) and ``floor_feats``
    (compared with ``feats`` for the floor), (n, F) float64; labels (n,) long."""

    name: str
    feats: torch.Tensor
    labels: torch.Tensor
    floor_feats: torch.Tensor
    floor_labels: torch.Tensor


def _reference_images(reference: Any) -> tuple[torch.Tensor, torch.Tensor, str]:
    if isinstance(reference, str):
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {list(REFERENCES)} or a dataset with .images and "
                             f".labels, got {reference!r}")
        from .data import load_dataset

        dataset, split = reference.rsplit("-", 1)
        ds = load_dataset(dataset, split)
        return ds.images, ds.labels, reference
    images, labels = getattr(reference, "images", None), getattr(reference, "labels", None)
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError(f"reference must be one of {list(REFERENCES)} or have .images (N, 1, 28, 28) and "
                         f".labels (N,) tensors, got {type(reference).__name__}")
    return images, labels, getattr(reference, "name", type(reference).__name__)


def prepare_reference(classifier: Classifier, reference: Any, n: int, labels: torch.Tensor | None = None,
                      seed: int = 0) -> Reference:
    """Draw 2n real images at random (with ``labels``: per digit, twice as many as ``labels`` holds) and
    extract their features. ValueError if the reference set is too small for two disjoint draws."""
    images, ref_labels, name = _reference_images(reference)
    g = torch.Generator().manual_seed(seed + 1_000_003)  # independent of the samples' noise
    if labels is None:
        if 2 * n > images.shape[0]:
            raise ValueError(f"n={n} needs 2n={2 * n} reference images for the floor, {name} has {images.shape[0]} "
                             f"(n <= {images.shape[0] // 2})")
        perm = torch.randperm(images.shape[0], generator=g)
        idx_a, idx_b = perm[:n], perm[n:2 * n]
    else:
        idx_a, idx_b = [], []
        for c in range(NUM_CLASSES):
            k = int((labels == c).sum())
            pool = torch.nonzero(ref_labels == c).flatten()
            if 2 * k > pool.numel():
                raise ValueError(f"{k} samples of digit {c} need {2 * k} real ones for the floor; {name} has "
                                 f"{pool.numel()} (at most {pool.numel() // 2} per digit)")
            pool = pool[torch.randperm(pool.numel(), generator=g)]
            idx_a.append(pool[:k])
            idx_b.append(pool[k:2 * k])
        idx_a, idx_b = torch.cat(idx_a), torch.cat(idx_b)
    return Reference(name, metrics.extract_features(classifier, images[idx_a]), ref_labels[idx_a],
                     metrics.extract_features(classifier, images[idx_b]), ref_labels[idx_b])
