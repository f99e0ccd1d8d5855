"""The family-weighted mixture: sampling ratios -> packed token batches (grain hot path).

`MixtureSpec.ratios[f]` (a `multiscale.mixture.Mixture`) is the share of *training tokens* drawn
from family f. Inside a family, languages share its part proportionally to their unique training
tokens, equally, or by temperature (`q_l ∝ n_l^tau`, tau = 1/T); those weights sum to 1, so the
family ratios sampled are exactly the mixture's (`family_ratios`).

Each language is one packed stream of `seq_len`-token rows without padding
(`multiscale.data.packing`), interleaved by grain's deterministic weighted mix with weights
`p_family * w_language|family`, so a family's *token* share is its ratio (up to integer rounding)
and a row holds one language. Each host reads `docs[shard_index::shard_count]` of every language;
a language's document order depends only on (seed, language, shard). The iterator is a grain
`DatasetIterator` whose state includes its token accounting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import grain
import numpy as np

from multiscale.data.packing import PackIterDataset
from multiscale.mixture import DEFAULT_TAU, Mixture, MixtureError, proportional, temperature, uniform

WITHIN = ("proportional", "uniform", "temperature")

__all__ = ["WITHIN", "MixtureError", "MixtureSpec", "MixtureIterator", "TokenAccount", "RepetitionWarning",
           "make_train_iterator", "repetition_report", "language_stream"]


class RepetitionWarning(UserWarning):
    """A family's share of the token budget exceeds its unique tokens: its data repeats."""


@dataclasses.dataclass(frozen=True)
class MixtureSpec:
    """Family sampling ratios (token shares) and the within-family language policy.

    ratios: anything `Mixture.parse` reads (absent families get 0; `normalize=True` scales
        non-negative ratios to sum 1), stored read-only; `mixture` is the `Mixture`. A corpus
        lacking one of its families is refused (`UnknownFamilyError`).
    tau: exponent of `q ∝ n^tau` for within="temperature" (default 0.3 as in mT5).
    """

    ratios: Mapping[str, float] | Mixture | str
    within: str = "proportional"
    tau: float = DEFAULT_TAU
    normalize: bool = False

    def __post_init__(self):
        mixture = Mixture.parse(self.ratios, normalize=self.normalize)
        object.__setattr__(self, "_mixture", mixture)
        object.__setattr__(self, "ratios", mixture.ratios)
        if self.within not in WITHIN:
            raise MixtureError(f"within must be one of {WITHIN}, got {self.within!r}", arg="within")
        tau = float(self.tau)
        if not (math.isfinite(tau) and tau >= 0):
            raise MixtureError(f"tau (within-family temperature exponent) must be finite and >= 0, got {self.tau!r}",
                               arg="tau")

    @classmethod
    def parse(cls, text: str, **kwargs) -> MixtureSpec:
        """'germanic=0.5,romance=0.3,slavic=0.2' -> MixtureSpec (see `multiscale.mixture.parse_pairs`)."""
        return cls(text, **kwargs)

    @property
    def mixture(self) -> Mixture:
        return self._mixture

    def check(self, corpus) -> None:
        """Refuses families the corpus does not have."""
        self.mixture.check_families(corpus.families)

    def family_ratio(self, family: str) -> float:
        return self.mixture.get(family)

    def family_ratios(self, corpus) -> dict[str, float]:
        """The family ratios the pipeline samples, for every family of the corpus in its order
        (0 for families the mixture leaves out). These are what a run table's `p` and
        `p_<family>` columns record."""
        return self.mixture.over(corpus.families)

    def language_weights(self, corpus) -> dict[str, float]:
        """Share of training tokens per language (sums to 1), in corpus language order."""
        self.check(corpus)
        weights: dict[str, float] = {}
        for fam in corpus.grouping.families:
            p = self.family_ratio(fam.name)
            n = {lang: float(corpus.tokens(lang)) for lang in fam.languages}
            q = self._within_family(fam.name, n) if p > 0 else {}
            for lang in fam.languages:
                weights[lang] = p * q.get(lang, 0.0)
        return weights

    def _within_family(self, family: str, tokens: Mapping[str, float]) -> dict[str, float]:
        """The within-family policy: language -> share of the family's tokens (sums to 1)."""
        if self.within == "uniform":
            return uniform(list(tokens))
        present = {lang: n for lang, n in tokens.items() if n > 0}
        if not present:
            raise MixtureError(f"family {family!r} has ratio {self.family_ratio(family):g} but no training tokens")
        if self.within == "proportional":
            return proportional(present)
        return temperature(present, float(self.tau))

    def to_dict(self) -> dict[str, Any]:
        return {"ratios": self.mixture.to_dict(), "within": self.within, "tau": float(self.tau)}


# -- repetition --------------------------------------------------------------------------------
def repetition_report(corpus, spec: MixtureSpec, total_tokens: float, *, warn: bool = True) -> dict[str, float]:
    """{family: epochs over its unique training tokens} for a run of `total_tokens` tokens (0 for
    families with ratio 0). Epochs > 1 mean the family's data repeats: a `RepetitionWarning` says
    so (the law ignores repetition: Longpre et al. 2025)."""
    if not (total_tokens > 0 and math.isfinite(total_tokens)):
        raise MixtureError(f"total_tokens must be finite and > 0, got {total_tokens!r}", arg="total_tokens")
    spec.check(corpus)
    out: dict[str, float] = {}
    for fam in corpus.families:
        unique = corpus.train_tokens(fam)
        out[fam] = spec.family_ratio(fam) * float(total_tokens) / unique
    if warn:
        over = {f: e for f, e in out.items() if e > 1.0}
        if over:
            warnings.warn("data repeats: " + ", ".join(
                f"{f} {e:.2f} epochs ({spec.family_ratio(f) * total_tokens:.3g} tokens drawn from "
                f"{corpus.train_tokens(f)} unique)" for f, e in over.items()), RepetitionWarning, stacklevel=2)
    return out


# -- accounting --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TokenAccount:
    """Tokens drawn so far by one iterator (this host). `tokens`: input positions that hold a
    document token (all of them: training rows have no padding); `target_tokens`: positions with
    weight 1 (what the loss counts)."""

    sequences: int
    tokens_per_language: Mapping[str, int]
    target_tokens_per_language: Mapping[str, int]
    tokens_per_family: Mapping[str, int]

    @property
    def tokens(self) -> int:
        return int(sum(self.tokens_per_language.values()))

    def family_shares(self) -> dict[str, float]:
        total = self.tokens
        return {f: (n / total if total else 0.0) for f, n in self.tokens_per_family.items()}

    def language_shares(self) -> dict[str, float]:
        total = self.tokens
        return {lang: (n / total if total else 0.0) for lang, n in self.tokens_per_language.items()}


class MixtureIterator(grain.DatasetIterator):
    """The train iterator: batches from the mixed streams, with exact token accounting.

    `accounting()` -> TokenAccount of everything this iterator has yielded (state included in
    `get_state`, so a restored iterator continues the same counts). `family_ratios`: the family
    ratios it samples, every family of the corpus in its order (`MixtureSpec.family_ratios`).
    """

    def __init__(self, parent: grain.DatasetIterator, languages: tuple[str, ...],
                 family_of_language: np.ndarray, family_names: tuple[str, ...],
                 family_ratios: Mapping[str, float]):
        super().__init__(parent)
        self.languages = languages
        self.family_names = family_names
        self.family_ratios = dict(family_ratios)
        self._family_of_language = family_of_language
        self._tokens = np.zeros(len(languages), np.int64)
        self._targets = np.zeros(len(languages), np.int64)
        self._sequences = 0

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._parent)
        lang = batch["language_ids"]
        n = len(self.languages)
        self._tokens += np.bincount(lang, weights=(batch["segment_ids"] > 0).sum(1), minlength=n).astype(np.int64)
        self._targets += np.bincount(lang, weights=batch["weights"].sum(1), minlength=n).astype(np.int64)
        self._sequences += len(lang)
        return batch

    def accounting(self) -> TokenAccount:
        per_lang = {l: int(v) for l, v in zip(self.languages, self._tokens)}
        per_fam = {f: 0 for f in self.family_names}
        for fam_id, v in zip(self._family_of_language, self._tokens):
            per_fam[self.family_names[fam_id]] += int(v)
        return TokenAccount(
            sequences=self._sequences,
            tokens_per_language=per_lang,
            target_tokens_per_language={l: int(v) for l, v in zip(self.languages, self._targets)},
            tokens_per_family=per_fam,
        )

    def get_state(self) -> dict[str, Any]:
        return {
            "parent": self._parent.get_state(),
            "tokens": self._tokens.tolist(),
            "targets": self._targets.tolist(),
            "sequences": self._sequences,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self._tokens = np.asarray(state["tokens"], np.int64)
        self._targets = np.asarray(state["targets"], np.int64)
        self._sequences = int(state["sequences"])


class _MixtureDataset(grain.IterDataset):
    def __init__(self, parent, languages, family_of_language, family_names, family_ratios):
        super().__init__(parent)
        self._args = (languages, family_of_language, family_names, family_ratios)

    def __iter__(self):
        return MixtureIterator(self._parent.__iter__(), *self._args)


# -- streams -----------------------------------------------------------------------------------
def _resolve_shard(shard_index, shard_count) -> tuple[int, int]:
    if shard_index is None or shard_count is None:
        import jax

        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    shard_index, shard_count = int(shard_index), int(shard_count)
    if shard_count < 1 or not (0 <= shard_index < shard_count):
        raise MixtureError(f"shard_index must be in [0, shard_count): got {shard_index} of {shard_count}")
    return shard_index, shard_count


def language_documents(corpus, lang: str, *, seed: int, shard_index: int, shard_count: int,
                       num_epochs: int | None) -> grain.MapDataset:
    """One host's documents of one language (int32 token arrays), shuffled, repeated."""
    dtype = corpus.token_dtype
    ds = grain.MapDataset.source(corpus.data_source(lang, "train"))
    if shard_count > 1:
        ds = ds[shard_index::shard_count]
    if len(ds) == 0:
        raise MixtureError(
            f"language {lang!r} has {corpus.documents(lang)} training documents: too few for "
            f"{shard_count} hosts (host {shard_index} gets none)"
        )
    digest = hashlib.sha256(f"{int(seed)}:{lang}".encode()).digest()
    stream_seed = int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
    return EpochShuffleMapDataset(ds, seed=stream_seed, num_epochs=num_epochs).map(
        lambda raw: np.frombuffer(raw, dtype=dtype).astype(np.int32)
    )


class EpochShuffleMapDataset(grain.MapDataset):
    """`num_epochs` passes over the parent (None: endless), a fresh permutation each epoch.

    Element i is parent[perm_e[i % n]] with e = i // n and perm_e drawn from numpy's PCG64
    seeded by (seed, e): random access, deterministic, cheap (one permutation per epoch).
    """

    def __init__(self, parent: grain.MapDataset, *, seed: int, num_epochs: int | None):
        super().__init__(parent)
        self._n = len(parent)
        self._seed = int(seed)
        self._len = sys.maxsize if num_epochs is None else self._n * int(num_epochs)
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self._len

    def _perm(self, epoch: int) -> np.ndarray:
        perm = self._cache.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self._seed, epoch]).permutation(self._n)
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[epoch] = perm
        return perm

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        if not 0 <= index < self._len:
            raise IndexError(index)
        epoch, i = divmod(int(index), self._n)
        return self._parent[int(self._perm(epoch)[i])]

    def __str__(self) -> str:
        return f"EpochShuffleMapDataset(n={self._n}, seed={self._seed})"


def language_stream(corpus, lang: str, *, seq_len: int, seed: int, shard_index: int = 0,
                    shard_count: int = 1, num_epochs: int | None = None) -> grain.IterDataset:
    """Packed rows (dicts, see `multiscale.data.packing`) of one language for one host."""
    lang_id = corpus.languages.index(lang)
    fam_id = corpus.families.index(corpus.grouping.family_of(lang))
    docs = language_documents(corpus, lang, seed=seed, shard_index=shard_index,
                              shard_count=shard_count, num_epochs=num_epochs)
    it = docs.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    return PackIterDataset(it, seq_len, {"family_ids": np.int32(fam_id), "language_ids": np.int32(lang_id)})


def make_train_iterator(corpus, spec: MixtureSpec, *, seq_len: int, batch_size: int, seed: int,
                        shard_index: int | None = None, shard_count: int | None = None,
                        num_epochs: int | None = None) -> MixtureIterator:
    """This host's batches of the mixture.

    Yields the packed arrays [B, L] (`multiscale.data.packing`) plus family_ids and language_ids
    int32 [B] (indices into corpus.grouping.family_names, corpus.languages); `batch_size` is per
    host. With `num_epochs` set, iteration stops when the first language runs out.
    """
    if int(seq_len) < 1:
        raise MixtureError(f"seq_len must be >= 1, got {seq_len}", arg="seq_len")
    if int(batch_size) < 1:
        raise MixtureError(f"batch_size must be >= 1, got {batch_size}", arg="batch_size")
    if num_epochs is not None and int(num_epochs) < 1:
        raise MixtureError(f"num_epochs must be >= 1 or None, got {num_epochs}", arg="num_epochs")
    shard_index, shard_count = _resolve_shard(shard_index, shard_count)
    weights = spec.language_weights(corpus)
    active = {lang: w for lang, w in weights.items() if w > 0}
    streams = {lang: language_stream(corpus, lang, seq_len=int(seq_len), seed=seed, shard_index=shard_index,
                                     shard_count=shard_count, num_epochs=num_epochs) for lang in active}
    mixed = grain.IterDataset.mix(streams, active) if len(streams) > 1 else next(iter(streams.values()))
    batched = mixed.batch(int(batch_size), drop_remainder=True)
    fam_of_lang = np.array([corpus.families.index(corpus.grouping.family_of(lang)) for lang in corpus.languages],
                           np.int64)
    return _MixtureDataset(batched, corpus.languages, fam_of_lang, corpus.families,
                           spec.family_ratios(corpus)).__iter__()
