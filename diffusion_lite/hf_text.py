"""A pretrained Hugging Face CLIP text encoder behind the same interface as our CLIPModel (chapter 06).

    enc = HFTextEncoder("/path/to/clip-vit-base-patch32")    # a local folder (or a cached hub name)
    context, mask = enc.text_tokens(["a photo of a cat"])    # (1, 77, 512), (1, 77) bool
    unet_cfg = UNetConfig(cross_attn_resolutions=(7,), context_dim=enc.context_dim)

This is what Stable Diffusion does: a frozen CLIP text encoder's last hidden states (after its final
LayerNorm) are the keys and values of the U-Net's cross-attention. It needs the optional extra
``pip install "diffusion-lite[hf]"`` (transformers). Nothing is downloaded unless
``local_files_only=False`` is passed: the default path stays offline.

Differences from our word-level tokenizer: CLIP's byte-level BPE has no unknown words (any text splits
into known pieces), pads to 77 tokens with <|endoftext|>, and begins every sequence with
<|startoftext|> and ends it with <|endoftext|>; so "" is also two real tokens, as with ours.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise ImportError("HFTextEncoder needs the transformers package: pip install 'diffusion-lite[hf]' "
                          "(or pip install transformers)") from e
    return transformers


def _check_source(name_or_path, local_files_only: bool) -> None:
    """A clear error for a path that is not a model folder, before transformers reads it as a hub name
    (a name like "openai/clip-vit-base-patch32" is left to transformers, which looks in its cache)."""
    path = Path(name_or_path).expanduser()
    text = str(name_or_path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{text!r} is a file; expected a folder saved with save_pretrained() "
                             "(config.json, the weights and the tokenizer files)")
        return
    looks_like_path = (isinstance(name_or_path, os.PathLike) or path.is_absolute() or text.count("/") > 1
                       or text.startswith(("./", "../", "~", ".\\")) or "\\" in text)
    if looks_like_path:
        raise ValueError(f"no such folder: {text!r} (expected a folder saved with save_pretrained())")


class HFTextEncoder:
    """Frozen ``CLIPTextModel`` + ``CLIPTokenizer`` loaded with ``from_pretrained(name_or_path)``.

    max_length: tokens per prompt, <|startoftext|> and <|endoftext|> included (default: the tokenizer's
    model_max_length, 77 for OpenAI's CLIP, capped by the model's position embeddings). Prompts are
    padded to max_length; a longer prompt raises ValueError unless ``truncate=True``.
    """

    def __init__(self, name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu",
                 max_length: int | None = None, local_files_only: bool = True, truncate: bool = False):
        tf = _transformers()
        _check_source(name_or_path, local_files_only)
        try:
            self.tokenizer = tf.CLIPTokenizer.from_pretrained(str(name_or_path), local_files_only=local_files_only)
            self.model = tf.CLIPTextModel.from_pretrained(str(name_or_path), local_files_only=local_files_only)
        except OSError as e:
            if local_files_only and not Path(name_or_path).expanduser().exists():  # a hub name, not cached
                raise ValueError(f"{str(name_or_path)!r} is neither a folder here nor a Hugging Face hub name in "
                                 "the local cache; pass local_files_only=False to download it (online), or the "
                                 "path to a folder saved with save_pretrained()") from e
            raise ValueError(f"cannot load a CLIP text encoder and tokenizer from {str(name_or_path)!r} "
                             f"(local_files_only={local_files_only}): {e}") from e
        self.model.eval().requires_grad_(False).to(device)
        limit = self.model.config.max_position_embeddings
        max_length = min(self.tokenizer.model_max_length, limit) if max_length is None else max_length
        if not 2 <= max_length <= limit:
            raise ValueError(f"max_length must be in [2, {limit}] (the model's position embeddings), got {max_length}")
        self.max_length, self.truncate, self.name = max_length, truncate, str(name_or_path)

    @property
    def context_dim(self) -> int:
        """D, the width of the per-token features (512 for CLIP ViT-B/32, 768 for ViT-L/14)."""
        return self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> HFTextEncoder:
        self.model.to(device)
        return self

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts -> (input_ids (B, max_length) long, mask (B, max_length) bool, True = real token)."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise ValueError("expected a list of strings; wrap a single prompt as [prompt]")
        prompts = list(prompts)
        if not prompts:  # as the package's Tokenizer: no rows (transformers raises an IndexError)
            empty = torch.zeros(0, self.max_length, dtype=torch.long)
            return empty, empty.bool()
        if not self.truncate:
            lengths = [len(ids) for ids in self.tokenizer(prompts)["input_ids"]]
            too_long = [p for p, n in zip(prompts, lengths) if n > self.max_length]
            if too_long:
                raise ValueError(f"prompt {too_long[0]!r} has more than max_length={self.max_length} tokens "
                                 "(counting <|startoftext|> and <|endoftext|>); shorten it or pass truncate=True")
        out = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        return out["input_ids"], out["attention_mask"].bool()

    @torch.no_grad()
    def text_tokens(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen per-token features: (context (B, L, D) float32, mask (B, L) bool) on the model's device."""
        ids, mask = self.encode(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        if not len(ids):  # transformers cannot run an empty batch
            return torch.zeros(0, self.max_length, self.context_dim, device=self.device), mask
        hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (B, L, D)
        return hidden.float(), mask

    def __repr__(self) -> str:
        return f"HFTextEncoder({self.name!r}, context_dim={self.context_dim}, max_length={self.max_length})"
