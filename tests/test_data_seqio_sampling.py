import numpy as np
import pytest

from multiscale.data.sampling import MixtureSpec, make_train_iterator

RATIOS = {"germanic": 0.5, "romance": 0.3, "slavic": 0.2}


@pytest.fixture(scope="module")
def tf_quiet():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tf


@pytest.mark.slow  # TensorFlow and seqio
def test_seqio_task_tokens_match_the_corpus(tiny_corpus, tf_quiet):
    from multiscale.data.seqio_sampling import seqio_mixture

    L = 48
    mixture = seqio_mixture(tiny_corpus, MixtureSpec({"sino_tibetan": 1.0}))
    (task,) = mixture.tasks
    ds = task.get_dataset({"targets": L}, split="train", shuffle=False, num_epochs=1, use_cached=False)
    rows = [ex for ex in ds.as_numpy_iterator()]
    stream = np.concatenate(tiny_corpus.read_tokens("zh"))
    got = np.stack([r["targets"] for r in rows])
    assert len(rows) == len(stream) // L
    # seqio's own ByteVocabulary + EOS + packing reproduce the stored token stream exactly
    np.testing.assert_array_equal(got.reshape(-1), stream[: len(rows) * L])
    for r in rows[:20]:
        seg, pos, t = r["targets_segment_ids"], r["targets_positions"], r["targets"]
        np.testing.assert_array_equal(seg, 1 + np.concatenate([[0], np.cumsum(t[:-1] == 1)]))
        starts = np.flatnonzero(np.diff(seg)) + 1
        assert pos[0] == 0 and np.all(pos[starts] == 0)
        assert r["language_id"] == tiny_corpus.languages.index("zh")


@pytest.mark.slow  # TensorFlow and seqio
def test_seqio_mixture_token_shares_agree_with_grain(tiny_corpus, tf_quiet):
    from multiscale.data.seqio_sampling import seqio_dataset

    L, B, steps = 32, 200, 100  # 20,000 sequences each
    spec = MixtureSpec(RATIOS)
    fam_of_lang = np.array([tiny_corpus.families.index(tiny_corpus.grouping.family_of(l))
                            for l in tiny_corpus.languages])
    seq_tokens = np.zeros(len(tiny_corpus.families))
    it = seqio_dataset(tiny_corpus, spec, seq_len=L, batch_size=B, seed=0).as_numpy_iterator()
    for _ in range(steps):
        b = next(it)
        assert b["targets"].shape == (B, L)
        np.add.at(seq_tokens, fam_of_lang[b["language_id"]], (b["targets_segment_ids"] > 0).sum(1))
    seq_share = seq_tokens / seq_tokens.sum()
    g = make_train_iterator(tiny_corpus, spec, seq_len=L, batch_size=B, seed=0, shard_index=0, shard_count=1)
    for _ in range(steps):
        next(g)
    grain_share = g.accounting().family_shares()
    for i, fam in enumerate(tiny_corpus.families):
        want = RATIOS.get(fam, 0.0)
        assert abs(seq_share[i] - want) < 0.01, (fam, seq_share[i])
        assert abs(seq_share[i] - grain_share[fam]) < 0.01, fam
