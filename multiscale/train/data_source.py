"""What a run needs from the data pipeline (multiscale.data), behind one small value.

`RunData` is the seam between training and data: the corpus's families, the vocabulary size,
a factory of per-host train iterators (with `get_state`/`set_state`), and the fixed eval set.
`load_run_data` builds it from a corpus folder; tests and other trainers may build their own.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from multiscale.mixture import Mixture


@dataclasses.dataclass(frozen=True)
class RunData:
    """family_names: the corpus's families (rows get a p_<family> column each).
    make_train_iterator(batch_size, shard_index, shard_count): this host's batches, each a dict
    of numpy arrays inputs/targets/segment_ids/positions [B, L] int32, weights [B, L] f32.
    eval_set: `.languages`, `.family_of`, `.bytes_per_language`, `.batches(batch_size)`.
    sampled_ratios: the family ratios the train iterator samples, in `family_names` order (the
    run table records these; None: the config's ratios).
    fingerprint: a digest of the data; checkpoints resume only on the same one (None: unchecked)."""

    family_names: tuple[str, ...]
    vocab_size: int
    make_train_iterator: Callable[[int, int, int], Iterator[dict[str, Any]]]
    eval_set: Any
    sampled_ratios: Mapping[str, float] | None = None
    fingerprint: str | None = None


def load_run_data(corpus_path: str, ratios: Mixture, *, seq_len: int, seed: int,
                  eval_tokens_per_language: int | None = 32_768) -> RunData:
    """Open the corpus at `corpus_path` and wire the mixture and eval set of a run (ratios naming
    a family the corpus lacks: `UnknownFamilyError`)."""
    from multiscale.data.sampling import MixtureSpec, make_train_iterator

    try:
        mtime = os.stat(corpus_path).st_mtime_ns
    except (OSError, TypeError):  # remote paths: no cheap stat
        mtime = None
    corpus, eval_set = _open(str(corpus_path), mtime, seq_len, eval_tokens_per_language)
    corpus.require_intact()  # every shard present, of its recorded size (not cached: cheap)
    spec = MixtureSpec(ratios)
    sampled = spec.family_ratios(corpus)  # refuses families the corpus lacks

    def make_iterator(batch_size: int, shard_index: int, shard_count: int):
        return make_train_iterator(corpus, spec, seq_len=seq_len, batch_size=batch_size,
                                   seed=seed, shard_index=shard_index, shard_count=shard_count)

    return RunData(family_names=tuple(corpus.families), vocab_size=int(corpus.vocab.vocab_size),
                   make_train_iterator=make_iterator, eval_set=eval_set, sampled_ratios=sampled,
                   fingerprint=corpus.fingerprint)


@functools.lru_cache(maxsize=4)
def _open(corpus_path: str, mtime: int | None, seq_len: int,
          eval_tokens_per_language: int | None):
    """(corpus, eval set), cached so a sweep in one process builds each eval set once
    (keyed on the folder's modification time, so a rebuilt corpus is re-read)."""
    from multiscale.data.corpus import Corpus
    from multiscale.data.evalset import load_eval_set

    corpus = Corpus.open(corpus_path)
    return corpus, load_eval_set(corpus, seq_len=seq_len,
                                 max_tokens_per_language=eval_tokens_per_language)
