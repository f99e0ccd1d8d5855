"""Vocabularies: bytes (default) and SentencePiece (optional).

`ByteVocabulary` reproduces the id layout of seqio's `ByteVocabulary` without importing
TensorFlow: pad 0, eos 1, unk 2, byte b -> b + 3, vocab_size 259. Losses measured with it are in
nats per byte-token, so they compare across languages without training a tokenizer.

`SentencePieceVocabulary` wraps a trained model (pad 0, eos 1, unk 2 as well);
`train_sentencepiece` trains one on a family-balanced sample (equal bytes per family, then equal
bytes per language inside a family), so no family dominates the pieces.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from multiscale.errors import InputError, MissingFileError

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2


class VocabularyError(InputError):
    """An unknown vocabulary name or a bad model file."""


class ByteVocabulary:
    """UTF-8 bytes shifted by 3 special ids (seqio ByteVocabulary layout, no TensorFlow)."""

    name = "byte"
    num_special = 3
    pad_id = PAD_ID
    eos_id = EOS_ID
    unk_id = UNK_ID
    vocab_size = 256 + 3

    def encode(self, text: str) -> list[int]:
        return self.encode_np(text).tolist()

    def encode_np(self, text: str) -> np.ndarray:
        """int32 ids of `text` (no EOS appended)."""
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        return raw.astype(np.int32) + self.num_special

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`: stops at the first EOS, drops pad/unk and out-of-range ids (as seqio)."""
        out = bytearray()
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if self.num_special <= i < self.vocab_size:
                out.append(i - self.num_special)
        return out.decode("utf-8", errors="ignore")

    def to_dict(self) -> dict:
        return {"name": "byte", "vocab_size": self.vocab_size}

    def __repr__(self):
        return "ByteVocabulary(vocab_size=259)"


class SentencePieceVocabulary:
    """A SentencePiece model file; pad/eos/unk must be 0/1/2 (as `train_sentencepiece` makes)."""

    def __init__(self, model_path: str | os.PathLike):
        import sentencepiece as spm

        path = os.fspath(model_path)
        if not os.path.exists(path):
            raise MissingFileError(f"SentencePiece model not found: {path}")
        self.path = path
        if os.path.isdir(path):
            raise VocabularyError(f"SentencePiece model {path!r} is a folder, not a .model file")
        try:
            self._sp = spm.SentencePieceProcessor(model_file=path)
        except (RuntimeError, OSError) as err:  # not a serialized ModelProto (or unreadable)
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise VocabularyError(f"{path!r} is not a SentencePiece model file ({first})") from None
        self.name = f"sentencepiece:{os.path.basename(path)}"
        self.vocab_size = int(self._sp.get_piece_size())
        ids = (self._sp.pad_id(), self._sp.eos_id(), self._sp.unk_id())
        if ids != (PAD_ID, EOS_ID, UNK_ID):
            raise VocabularyError(
                f"{path}: pad/eos/unk ids are {ids}, expected (0, 1, 2) (train with "
                "multiscale.data.vocab.train_sentencepiece)"
            )
        self.pad_id, self.eos_id, self.unk_id = PAD_ID, EOS_ID, UNK_ID

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def encode_np(self, text: str) -> np.ndarray:
        return np.asarray(self._sp.encode(text), dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        clean = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i != self.pad_id and 0 <= i < self.vocab_size:
                clean.append(i)
        return self._sp.decode(clean)

    def to_dict(self) -> dict:
        return {"name": "sentencepiece", "vocab_size": self.vocab_size, "model": self.path}

    def __repr__(self):
        return f"SentencePieceVocabulary({self.path!r}, vocab_size={self.vocab_size})"


Vocabulary = ByteVocabulary | SentencePieceVocabulary


def get_vocabulary(name: str | os.PathLike = "byte") -> Vocabulary:
    """`"byte"` -> ByteVocabulary; a path to a `.model` file -> SentencePieceVocabulary."""
    if isinstance(name, (ByteVocabulary, SentencePieceVocabulary)):
        return name
    text = os.fspath(name)
    if text == "byte":
        return ByteVocabulary()
    if text.endswith(".model") or os.path.isfile(text):
        return SentencePieceVocabulary(text)
    raise VocabularyError(
        f"unknown vocabulary {text!r}: use 'byte' or the path of a SentencePiece .model file"
    )


def family_balanced_sample(
    texts_by_language: Mapping[str, Sequence[str]],
    family_of: Mapping[str, str],
    *,
    bytes_per_family: int,
) -> dict[str, list[str]]:
    """Equal bytes per family; inside a family, equal bytes per language (as far as text allows).

    Returns {language: [text pieces]}; a language's pieces total at most
    `bytes_per_family // (languages in its family)` UTF-8 bytes.

    Documents are taken in the given order (callers pass a shuffled or hash-ordered list).
    """
    families: dict[str, list[str]] = {}
    for lang in texts_by_language:
        if lang not in family_of:
            raise VocabularyError(f"language {lang!r} has no family in the grouping")
        families.setdefault(family_of[lang], []).append(lang)
    sample: dict[str, list[str]] = {}
    for langs in families.values():
        per_lang = max(1, bytes_per_family // len(langs))
        for lang in langs:
            used = 0
            pieces = sample.setdefault(lang, [])
            for doc in texts_by_language[lang]:
                if used >= per_lang:
                    break
                piece = doc.encode("utf-8")[: per_lang - used].decode("utf-8", errors="ignore")
                pieces.append(piece)
                used += len(piece.encode("utf-8"))
    return sample


@dataclasses.dataclass(frozen=True)
class SentencePieceConfig:
    vocab_size: int = 8000
    model_type: str = "unigram"  # or "bpe"
    character_coverage: float = 0.9995
    bytes_per_family: int = 2_000_000


def train_sentencepiece(
    texts_by_language: Mapping[str, Sequence[str]],
    family_of: Mapping[str, str],
    out_prefix: str | os.PathLike,
    config: SentencePieceConfig = SentencePieceConfig(),
) -> SentencePieceVocabulary:
    """Train on a family-balanced sample; writes `<out_prefix>.model` and returns it loaded."""
    import sentencepiece as spm

    sample = family_balanced_sample(
        texts_by_language, family_of, bytes_per_family=config.bytes_per_family
    )
    lines = [
        line for docs in sample.values() for doc in docs for line in doc.splitlines() if line.strip()
    ]
    if not lines:
        raise VocabularyError("no text to train SentencePiece on")
    prefix = os.fspath(out_prefix)
    os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_prefix=prefix,
            vocab_size=config.vocab_size,
            model_type=config.model_type,
            character_coverage=config.character_coverage,
            pad_id=PAD_ID,
            eos_id=EOS_ID,
            unk_id=UNK_ID,
            bos_id=-1,
            byte_fallback=True,
            hard_vocab_limit=False,
            shuffle_input_sentence=False,
            # lossless: no NFKC, keep whitespace as is; newlines come back through byte pieces
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            minloglevel=2,
        )
    except RuntimeError as err:  # e.g. vocab_size below the number of required characters
        raise VocabularyError(f"SentencePiece training failed (vocab_size {config.vocab_size}): {err}") from None
    return SentencePieceVocabulary(prefix + ".model")
