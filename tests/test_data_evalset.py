import numpy as np
import pytest

from multiscale.data.evalset import load_eval_set


def test_eval_rows_hold_one_language_and_cover_the_eval_split(tiny_corpus):
    L = 64
    ev = load_eval_set(tiny_corpus, seq_len=L, max_tokens_per_language=None)
    assert ev.languages == tiny_corpus.languages
    assert set(ev.family_of.values()) == set(tiny_corpus.families)
    vocab = tiny_corpus.vocab
    for lang_id, lang in enumerate(ev.languages):
        rows = ev.rows["language_ids"] == lang_id
        assert rows.any()
        fam = tiny_corpus.families.index(tiny_corpus.grouping.family_of(lang))
        assert np.all(ev.rows["family_ids"][rows] == fam)
        inputs = ev.rows["inputs"][rows]
        weights = ev.rows["weights"][rows]
        docs = tiny_corpus.read_tokens(lang, "eval")
        # all targets except each document's first token are scored once
        assert weights.sum() == sum(len(d) for d in docs) - len(docs)
        assert ev.tokens_per_language[lang] == weights.sum()
        assert ev.bytes_per_language[lang] == tiny_corpus.bytes(lang, "eval")
        # text of the rows (inputs of each row, without overlap) is the eval text
        stream = np.concatenate(docs)
        flat = inputs.reshape(-1)[: len(stream) - 1]
        np.testing.assert_array_equal(flat, stream[:-1])
        assert vocab.decode(docs[0]) in tiny_corpus.read_texts(lang, "eval")
    # padding only in the last row of a language: segment id 0 and weight 0 together
    pad = ev.rows["segment_ids"] == 0
    assert np.all(ev.rows["weights"][pad] == 0)


def test_cap_and_bytes(tiny_corpus):
    ev = load_eval_set(tiny_corpus, seq_len=32, max_tokens_per_language=500)
    for lang in ev.languages:
        assert ev.tokens_per_language[lang] <= 500
        assert 0 < ev.bytes_per_language[lang] <= 500
    # byte vocabulary: kept bytes = kept tokens minus EOS tokens (minus cut partial characters)
    de = ev.bytes_per_language["de"]
    assert 490 <= de <= 500


def test_batches_are_deterministic_and_padded(tiny_corpus):
    ev = load_eval_set(tiny_corpus, seq_len=32, max_tokens_per_language=300)
    a = list(ev.batches(7))
    b = list(ev.batches(7))
    assert len(a) == -(-ev.num_rows // 7)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    last = a[-1]
    assert all(v.shape[0] == 7 for v in last.values())
    assert set(last) == {"inputs", "targets", "segment_ids", "positions", "weights", "language_ids", "family_ids"}
    short = ev.num_rows % 7
    if short:
        assert last["weights"][short:].sum() == 0
    total = sum(x["weights"].sum() for x in a)
    assert total == sum(ev.tokens_per_language.values())
    assert a[0]["inputs"].dtype == np.int32 and a[0]["weights"].dtype == np.float32


def test_same_eval_set_for_any_mixture_and_bad_args(tiny_corpus):
    a = load_eval_set(tiny_corpus, seq_len=16, max_tokens_per_language=200)
    b = load_eval_set(tiny_corpus, seq_len=16, max_tokens_per_language=200)
    np.testing.assert_array_equal(a.rows["inputs"], b.rows["inputs"])
    with pytest.raises(ValueError, match="seq_len"):
        load_eval_set(tiny_corpus, seq_len=0)
    with pytest.raises(ValueError, match="batch_size"):
        next(a.batches(0))
