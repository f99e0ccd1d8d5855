"""The fixed held-out eval set: per-language packed rows, identical for every mixture.

`load_eval_set(corpus, seq_len=L)` packs each language's eval documents (in stored order) into
rows of L that never mix languages; a language's last row is padded with weight 0.
`max_tokens_per_language` caps a language's eval tokens (the last document cut), the same set for
every run.

`bytes_per_language` counts the UTF-8 bytes of exactly the text that was kept, for bits per byte:
`bpb = (sum of nats over a language's targets) / ln 2 / bytes`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np

from multiscale.data.packing import pack_documents
from multiscale.errors import InputError

DEFAULT_MAX_TOKENS_PER_LANGUAGE = 32_768
KEYS = ("inputs", "targets", "segment_ids", "positions", "weights")


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """Eval rows of every language: arrays [R, L] plus language_ids/family_ids [R]."""

    seq_len: int
    languages: tuple[str, ...]
    family_names: tuple[str, ...]
    family_of: Mapping[str, str]
    bytes_per_language: Mapping[str, int]
    tokens_per_language: Mapping[str, int]  # tokens kept (targets counted: weights sum)
    rows: Mapping[str, np.ndarray]

    @property
    def num_rows(self) -> int:
        return int(len(self.rows["inputs"]))

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Deterministic batches in language order; the last is padded with weight-0 rows."""
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        n = self.num_rows
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = {k: v[start:stop] for k, v in self.rows.items()}
            short = batch_size - (stop - start)
            if short:
                batch = {k: np.concatenate([v, np.zeros((short,) + v.shape[1:], v.dtype)])
                         for k, v in batch.items()}
            yield batch


def load_eval_set(corpus, *, seq_len: int,
                  max_tokens_per_language: int | None = DEFAULT_MAX_TOKENS_PER_LANGUAGE) -> EvalSet:
    """The eval set of `corpus` at sequence length `seq_len` (None: no cap on tokens)."""
    if int(seq_len) < 1:
        raise InputError(f"seq_len must be >= 1, got {seq_len}", arg="seq_len")
    if max_tokens_per_language is not None and int(max_tokens_per_language) < 2:
        raise InputError(f"max_tokens_per_language must be >= 2 or None, got {max_tokens_per_language}",
                         arg="max_tokens_per_language")
    vocab = corpus.vocab
    fam_index = {f: i for i, f in enumerate(corpus.families)}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in KEYS + ("language_ids", "family_ids")}
    bytes_per_language, tokens_per_language = {}, {}
    for lang_id, lang in enumerate(corpus.languages):
        # documents until the token cap; the last one cut short (its bytes counted as decoded)
        cap, docs, n_bytes, used = max_tokens_per_language, [], 0, 0
        for doc, text in zip(corpus.read_tokens(lang, "eval"), corpus.read_texts(lang, "eval")):
            if cap is not None and used >= cap:
                break
            if cap is not None and used + len(doc) > cap:
                doc = doc[: cap - used]
                text = vocab.decode(doc)
            docs.append(doc)
            n_bytes += len(text.encode("utf-8"))
            used += len(doc)
        rows = pack_documents(docs, int(seq_len))
        bytes_per_language[lang] = int(n_bytes)
        tokens_per_language[lang] = int(sum(r["weights"].sum() for r in rows))
        for r in rows:
            for k in KEYS:
                parts[k].append(r[k])
        parts["language_ids"].extend([lang_id] * len(rows))
        parts["family_ids"].extend([fam_index[corpus.grouping.family_of(lang)]] * len(rows))
    arrays = {k: np.stack(parts[k]) for k in KEYS}
    arrays["language_ids"] = np.asarray(parts["language_ids"], np.int32)
    arrays["family_ids"] = np.asarray(parts["family_ids"], np.int32)
    return EvalSet(seq_len=int(seq_len), languages=tuple(corpus.languages), family_names=tuple(corpus.families),
                   family_of={lang: corpus.grouping.family_of(lang) for lang in corpus.languages},
                   bytes_per_language=bytes_per_language, tokens_per_language=tokens_per_language,
                   rows=arrays)
