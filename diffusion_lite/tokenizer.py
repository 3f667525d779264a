"""A word-level tokenizer that needs no download (chapter 06).

    tok = Tokenizer.for_dataset("mnist")       # vocabulary = every word our captions can contain
    ids, mask = tok.encode(["a thick seven", ""])   # (2, 16) long, (2, 16) bool (True = real token)

Text is lowercased and split into words, numbers and single punctuation marks ("t-shirt" -> "t", "-",
"shirt"). Every sequence is ``<bos> words... <eos>`` followed by ``<pad>`` up to ``max_length``; so the
empty prompt "" is ``<bos> <eos>``: two real tokens, the null prompt of classifier-free guidance.

Why words and not sub-words (BPE, as CLIP)? Our captions use fewer than 100 distinct words, so one id
per word keeps the vocabulary tiny and every token readable. The price: a word outside the vocabulary
("sevens", "skinny", "digits") has no id. It becomes ``<unk>``, whose embedding the model never learned
from, so the prompt loses that word's meaning; by default a warning names the unknown words
(``on_unknown="warn"``), ``"error"`` raises, ``"unk"`` maps silently. A BPE tokenizer would split an
unseen word into known pieces, but the pieces would still be ones the text encoder never saw together.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
import warnings
from typing import Any

import torch

from .utils import caller_stacklevel

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = 0, 1, 2, 3
ON_UNKNOWN = ("error", "warn", "unk")
_WORD = re.compile(r"[^\W\d_]+|\d+|[^\w\s]|_")  # letters (any script), digits, one mark


def split_words(text: str) -> list[str]:
    """Lowercase and split into words, numbers and single punctuation marks, after Unicode NFKC normalisation
    (full-width "７" is "7"; "café" stays one word, which the vocabulary may not know)."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {type(text).__name__}")
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


class Tokenizer:
    """Fixed vocabulary: ids 0..3 are <pad>, <bos>, <eos>, <unk>; words follow in the given order.

    max_length counts <bos> and <eos>, so a prompt may hold max_length - 2 words.
    """

    def __init__(self, words: list[str] | tuple[str, ...], max_length: int = 16, on_unknown: str = "warn"):
        words = list(words)
        if len(set(words)) != len(words) or any(w in SPECIALS for w in words):
            raise ValueError("vocabulary words must be unique and must not include the special tokens")
        bad = [w for w in words if split_words(w) != [w]]
        if bad:
            raise ValueError(f"vocabulary entries must be single lowercase words or marks, got {bad[:5]}")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for <bos> and <eos>), got {max_length}")
        self._check_mode(on_unknown)
        self.vocab = list(SPECIALS) + words
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_length, self.on_unknown = max_length, on_unknown
        self.unspoken = self._unspoken(words)

    @staticmethod
    def _unspoken(words: list[str]) -> frozenset[str]:
        """The middle words of the attribute scales ("regular", "medium") when ``words`` is a dataset's caption
        vocabulary (captions.all_vocabulary): they are in it, but no training caption says them, so a model
        never learned what they mean; encode warns about them as about unknown words."""
        from .captions import _SILENT, DATASET_ATTRIBUTES, all_vocabulary  # captions imports split_words from here

        vocab = set(words)
        if any(vocab == set(all_vocabulary(name)) for name in DATASET_ATTRIBUTES):
            return frozenset(vocab & set(_SILENT))
        return frozenset()

    @classmethod
    def for_dataset(cls, dataset: str | list[str], **kwargs) -> Tokenizer:
        """The vocabulary of all captions of one or more datasets (see captions.all_vocabulary)."""
        from .captions import all_vocabulary  # captions imports split_words from here

        names = [dataset] if isinstance(dataset, str) else list(dataset)
        return cls(sorted({w for name in names for w in all_vocabulary(name)}), **kwargs)

    @staticmethod
    def _check_mode(mode: str) -> None:
        if mode not in ON_UNKNOWN:
            raise ValueError(f"on_unknown must be one of {ON_UNKNOWN}, got {mode!r}")

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def unknown_words(self, text: str) -> list[str]:
        """The words of ``text`` missing from the vocabulary, each once, in order of appearance."""
        return list(dict.fromkeys(w for w in split_words(text) if w not in self.index))

    def _unknown_hints(self, unknown: list[str]) -> tuple[str, str]:
        """What to do about ``unknown`` words: (likely typos and a note on punctuation, the vocabulary)."""
        marks = [w for w in unknown if not any(c.isalnum() for c in w)]
        words = self.vocab[len(SPECIALS):]
        close = {}
        for w in unknown:
            # two words run together come first: 'ankleboot' -> 'ankle boot', 'tshirt(s)' -> 't-shirt', not the
            # nearest single word 'shirt' (another class). A one-letter first half takes a hyphen (as in 'x-ray'),
            # except the article 'a' ('ashirt' is 'a shirt'); the second half has two letters or more ('at' is not
            # 'a t'), and numbers are not split ('12' is not '1 2')
            forms = [] if w.isdigit() else dict.fromkeys((w, w.removesuffix("s")))
            halves = [(v[:i], v[i:]) for v in forms for i in range(1, len(v) - 1)
                      if v[:i] in self.index and v[i:] in self.index]
            if halves:
                a, b = halves[0]
                close[w] = repr(f"{a}-{b}" if len(a) == 1 and a != "a" and "-" in self.index else f"{a} {b}")
            elif w not in marks and (m := difflib.get_close_matches(w, words, 1, 0.75)):
                close[w] = repr(m[0])
        typos = ", ".join(f"{m} for {w!r}" for w, m in close.items())
        shown = " ".join(words) if len(words) <= 80 else " ".join(words[:80]) + " ... (all: tokenizer.vocab)"
        return ((f"; did you mean {typos}?" if close else "")
                + (f"; punctuation ({' '.join(marks)}) is not in the vocabulary: leave it out" if marks else ""),
                f"; the vocabulary: {shown}")

    def encode(self, texts: list[str], on_unknown: str | None = None,
               truncate: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """texts (B strings) -> (ids (B, max_length) long, mask (B, max_length) bool, True = real token).

        Unknown words follow ``on_unknown`` (default: the tokenizer's setting). A text longer than
        max_length - 2 words raises ValueError unless ``truncate=True`` (then words are cut, <eos> kept).
        """
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError("encode expects a list of strings; wrap a single prompt as [prompt]")
        mode = on_unknown or self.on_unknown
        self._check_mode(mode)
        room = self.max_length - 2
        split = [split_words(text) for text in texts]
        for text, words in zip(texts, split):
            if len(words) > room and not truncate:
                raise ValueError(f"prompt {text!r} has {len(words)} words; max_length={self.max_length} "
                                 f"allows {room} (plus <bos> and <eos>); shorten it (from Python, "
                                 "encode(..., truncate=True) cuts it to fit)")
        split = [words[:room] for words in split]  # what is encoded: unknown words cut off are not reported
        unknown = list(dict.fromkeys(w for words in split for w in words if w not in self.index))
        marks, vocab = self._unknown_hints(unknown) if unknown else ("", "")
        if unknown and mode == "error":
            raise ValueError(f"unknown word(s) {unknown} not in the {len(self)}-token vocabulary{marks}; rephrase, "
                             f"or pass on_unknown='unk' to map them to <unk>{vocab}")
        if unknown and mode == "warn":
            warnings.warn(f"unknown word(s) {unknown} mapped to <unk>: the model ignores their meaning{marks}{vocab}",
                          stacklevel=caller_stacklevel())
        untrained = list(dict.fromkeys(w for words in split for w in words if w in self.unspoken))
        if untrained and mode == "warn":
            warnings.warn(f"word(s) {untrained} are in the vocabulary but no training caption says them (captions "
                          "name only the ends of an attribute's scale, e.g. 'thin' / 'thick', 'plain' / 'patterned', "
                          "never the middle): the model never learned what they mean", stacklevel=caller_stacklevel())
        ids = torch.full((len(texts), self.max_length), PAD, dtype=torch.long)
        for i, words in enumerate(split):
            seq = [BOS] + [self.index.get(w, UNK) for w in words] + [EOS]
            ids[i, : len(seq)] = torch.tensor(seq)
        return ids, ids != PAD

    def decode(self, ids: torch.Tensor) -> list[str]:
        """ids (B, L) -> B strings, without <bos>, <eos>, <pad> (<unk> stays visible)."""
        if ids.dim() != 2:
            raise ValueError(f"expected ids of shape (B, L), got {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= len(self.vocab)):
            raise ValueError(f"token ids must be in [0, {len(self.vocab)}), got {ids.min().item()}..{ids.max().item()}")
        texts = []
        for row in ids.tolist():
            words = [self.vocab[i] for i in row if i not in (PAD, BOS, EOS)]
            text = " ".join(words)
            text = re.sub(r" ([,.!?;:])", r"\1", text)
            texts.append(re.sub(r" ?([-/']) ?", r"\1", text))
        return texts

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (stored in checkpoint metadata)."""
        return {"words": self.vocab[len(SPECIALS):], "max_length": self.max_length, "on_unknown": self.on_unknown}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tokenizer:
        return cls(d["words"], max_length=d["max_length"], on_unknown=d.get("on_unknown", "warn"))

    def __repr__(self) -> str:
        return f"Tokenizer({len(self)} tokens, max_length={self.max_length}, on_unknown={self.on_unknown!r})"
