"""A synthetic stand-in for the corpus pipeline: learnable token streams per language.

Each language draws documents from its own random first-order Markov chain over the
vocabulary (a few likely successors per token), so a model's loss falls quickly and differs
across languages. Batches follow the data contract (packed rows with `segment_ids`, `positions`
restarting per document, `weights` 0 on padding), and the iterator's state is just the number
of batches drawn, so checkpoints restore it exactly. Used by tests and benchmarks.
"""

from __future__ import annotations

import numpy as np

from multiscale.train.data_source import RunData


def _chain(vocab: int, seed: int, branching: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, size=(vocab, branching))


def _document(chain: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    tokens = np.empty(length, np.int32)
    tokens[0] = rng.integers(0, chain.shape[0])
    choices = rng.integers(0, chain.shape[1], size=length)
    for i in range(1, length):
        tokens[i] = chain[tokens[i - 1], choices[i]]
    return tokens


def _pack(docs, batch: int, seq_len: int) -> dict[str, np.ndarray]:
    """Greedy packing of (language, tokens) documents into rows of seq_len + 1 tokens."""
    out = {k: np.zeros((batch, seq_len), np.int32)
           for k in ("inputs", "targets", "segment_ids", "positions")}
    out["weights"] = np.zeros((batch, seq_len), np.float32)
    for row, row_docs in enumerate(docs):
        col = 0
        for seg, tokens in enumerate(row_docs, start=1):
            n = min(len(tokens) - 1, seq_len - col)
            if n <= 0:
                break
            sl = slice(col, col + n)
            out["inputs"][row, sl] = tokens[:n]
            out["targets"][row, sl] = tokens[1:n + 1]
            out["segment_ids"][row, sl] = seg
            out["positions"][row, sl] = np.arange(n)
            out["weights"][row, sl] = 1.0
            col += n
    return out


class SyntheticIterator:
    """Batches of a family mixture; state = batches drawn."""

    def __init__(self, data: SyntheticData, ratios, batch: int, seq_len: int, seed: int,
                 shard_index: int, shard_count: int):
        self.data, self.batch, self.seq_len = data, batch, seq_len
        self.seed, self.shard = seed, (shard_index, shard_count)
        fams = [f for f in data.families if ratios.get(f, 0) > 0]
        p = np.array([ratios[f] for f in fams], np.float64)
        self.fams, self.p = fams, p / p.sum()
        self.index = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.shard[0], self.shard[1], self.index])
        self.index += 1
        rows, family_ids = [], []
        for _ in range(self.batch):
            fam = self.fams[rng.choice(len(self.fams), p=self.p)]
            family_ids.append(list(self.data.families).index(fam))
            langs = self.data.languages_of(fam)
            row, used = [], 0
            while used < self.seq_len:
                lang = langs[rng.integers(len(langs))]
                length = int(rng.integers(8, self.seq_len + 2))
                row.append(_document(self.data.chains[lang], length, rng))
                used += length - 1
            rows.append(row)
        out = _pack(rows, self.batch, self.seq_len)
        out["family_ids"] = np.asarray(family_ids, np.int32)
        return out

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: dict) -> None:
        self.index = int(state["index"])


class SyntheticEvalSet:
    """A fixed eval set: `rows_per_language` single-document rows per language."""

    def __init__(self, data: SyntheticData, seq_len: int, rows_per_language: int, seed: int):
        rng = np.random.default_rng([seed, 12345])
        self.languages = list(data.chains)
        self.family_of = dict(data.family_of)
        rows, ids = [], []
        for i, lang in enumerate(self.languages):
            for _ in range(rows_per_language):
                length = int(rng.integers(seq_len // 2, seq_len + 2))
                rows.append([_document(data.chains[lang], length, rng)])
                ids.append(i)
        self._packed = _pack(rows, len(rows), seq_len)
        self._packed["language_ids"] = np.asarray(ids, np.int32)
        # pretend each token is 1.5 UTF-8 bytes
        n_tok = self._packed["weights"].sum(axis=1)
        self.bytes_per_language = {lang: float(1.5 * n_tok[np.asarray(ids) == i].sum())
                                   for i, lang in enumerate(self.languages)}

    def batches(self, batch_size: int):
        n = len(self._packed["inputs"])
        for start in range(0, n, batch_size):
            chunk = {k: v[start:start + batch_size] for k, v in self._packed.items()}
            rows = len(chunk["inputs"])
            if rows < batch_size:  # pad with weight-0 rows, as the real eval set does
                chunk = {k: np.concatenate([v, np.zeros((batch_size - rows,) + v.shape[1:],
                                                        v.dtype)]) for k, v in chunk.items()}
            yield chunk


class SyntheticData:
    """Families of languages with their own Markov chains."""

    def __init__(self, families: dict[str, list[str]] | None = None, vocab_size: int = 259,
                 seed: int = 0):
        self.families = families or {"germanic": ["de", "nl"], "romance": ["fr", "es"],
                                     "slavic": ["ru"]}
        self.family_of = {lang: f for f, langs in self.families.items() for lang in langs}
        self.chains = {lang: _chain(vocab_size, seed * 1000 + i)
                       for i, lang in enumerate(self.family_of)}
        self.vocab_size = vocab_size

    def languages_of(self, family: str) -> list[str]:
        return self.families[family]

    def run_data(self, ratios, *, seq_len: int, seed: int = 0,
                 eval_rows_per_language: int = 8) -> RunData:
        eval_set = SyntheticEvalSet(self, seq_len, eval_rows_per_language, seed)

        def make_iterator(batch_size, shard_index, shard_count):
            return SyntheticIterator(self, ratios, batch_size, seq_len, seed, shard_index,
                                     shard_count)

        return RunData(family_names=tuple(self.families), vocab_size=self.vocab_size,
                       make_train_iterator=make_iterator, eval_set=eval_set)
