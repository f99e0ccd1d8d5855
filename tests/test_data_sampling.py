
import numpy as np
import pytest

from multiscale.data.sampling import (
    MixtureError,
    MixtureSpec,
    RepetitionWarning,
    language_documents,
    language_stream,
    make_train_iterator,
    repetition_report,
)
from multiscale.mixture import Mixture

RATIOS = {"germanic": 0.45, "romance": 0.3, "slavic": 0.15, "sino_tibetan": 0.06, "japonic": 0.04}


def test_token_share_matches_request_over_20000_sequences(tiny_corpus):
    spec = MixtureSpec(RATIOS)
    it = make_train_iterator(tiny_corpus, spec, seq_len=32, batch_size=250, seed=0, shard_index=0, shard_count=1)
    fam_tokens = np.zeros(len(tiny_corpus.families))
    for _ in range(80):  # 20,000 sequences
        b = next(it)
        np.add.at(fam_tokens, b["family_ids"], (b["segment_ids"] > 0).sum(1))
    acc = it.accounting()
    assert acc.sequences == 20_000 and acc.tokens == 20_000 * 32
    shares = acc.family_shares()
    for i, fam in enumerate(tiny_corpus.families):
        assert abs(shares[fam] - RATIOS[fam]) < 0.01, fam
        assert acc.tokens_per_family[fam] == fam_tokens[i]
    # languages inside a family: proportional to their unique training tokens
    w = spec.language_weights(tiny_corpus)
    lshares = acc.language_shares()
    for lang in tiny_corpus.languages:
        assert abs(lshares[lang] - w[lang]) < 0.005, lang


def test_within_family_policies(tiny_corpus):
    fam = tiny_corpus.grouping.family("germanic")
    n = np.array([tiny_corpus.tokens(l) for l in fam.languages], float)
    for within, expect in [
        ("proportional", n / n.sum()),
        ("uniform", np.full(len(n), 1 / len(n))),
        ("temperature", n ** 0.3 / (n ** 0.3).sum()),
    ]:
        w = MixtureSpec({"germanic": 1.0}, within=within, tau=0.3).language_weights(tiny_corpus)
        np.testing.assert_allclose([w[l] for l in fam.languages], expect, rtol=1e-12)
        assert sum(w.values()) == pytest.approx(1.0)
        assert w["fr"] == 0.0


def test_rows_are_packed_correctly(tiny_corpus):
    lang, L = "nb", 16
    docs = list(language_documents(tiny_corpus, lang, seed=3, shard_index=0, shard_count=1, num_epochs=1))
    stream = np.concatenate(docs)
    rows = list(language_stream(tiny_corpus, lang, seq_len=L, seed=3, num_epochs=1))
    assert len(rows) == (len(stream) - 1) // L
    eos = tiny_corpus.vocab.eos_id
    for r, row in enumerate(rows):
        np.testing.assert_array_equal(row["inputs"], stream[r * L : r * L + L])
        np.testing.assert_array_equal(row["targets"], stream[r * L + 1 : r * L + L + 1])
        # no prediction across a document boundary: weight 0 exactly where the input is an EOS
        np.testing.assert_array_equal(row["weights"] == 0, row["inputs"] == eos)
        seg, pos = row["segment_ids"], row["positions"]
        assert seg[0] == 1 and np.all(np.diff(seg) >= 0) and np.all(seg > 0)
        new = np.flatnonzero(np.diff(seg)) + 1
        assert np.all(row["inputs"][new - 1] == eos)  # a segment starts right after an EOS
        assert np.all(pos[new] == 0) and pos[0] == 0
        assert row["language_ids"] == tiny_corpus.languages.index(lang)
    # every document exactly once per epoch, in a seed-dependent order
    assert sorted(map(len, docs)) == sorted(map(len, tiny_corpus.read_tokens(lang)))
    other = list(language_documents(tiny_corpus, lang, seed=4, shard_index=0, shard_count=1, num_epochs=1))
    assert [len(d) for d in docs] != [len(d) for d in other]


def _batches(it, n):
    return [next(it) for _ in range(n)]


def test_restore_gives_identical_next_100_batches(tiny_corpus):
    spec = MixtureSpec(RATIOS)
    kw = dict(seq_len=24, batch_size=6, seed=11, shard_index=0, shard_count=1)
    it = make_train_iterator(tiny_corpus, spec, **kw)
    _batches(it, 37)
    state = it.get_state()
    acc_before = it.accounting()
    expected = _batches(it, 100)
    import json

    fresh = make_train_iterator(tiny_corpus, spec, **kw)
    fresh.set_state(json.loads(json.dumps(state)))  # the state is plain JSON (checkpointable)
    assert fresh.accounting() == acc_before
    got = _batches(fresh, 100)
    for a, b in zip(expected, got):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert fresh.accounting() == it.accounting()


def test_deterministic_for_seed_and_language_order_independent_of_ratios(tiny_corpus):
    kw = dict(seq_len=16, batch_size=8, shard_index=0, shard_count=1)
    a = _batches(make_train_iterator(tiny_corpus, MixtureSpec(RATIOS), seed=5, **kw), 20)
    b = _batches(make_train_iterator(tiny_corpus, MixtureSpec(RATIOS), seed=5, **kw), 20)
    c = _batches(make_train_iterator(tiny_corpus, MixtureSpec(RATIOS), seed=6, **kw), 20)
    assert all(np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(a, b))
    assert not all(np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(a, c))

    def rows_of(batches, lang_id):
        return [x["inputs"][i] for x in batches for i in np.flatnonzero(x["language_ids"] == lang_id)]

    other = MixtureSpec({"germanic": 0.9, "romance": 0.1})
    d = _batches(make_train_iterator(tiny_corpus, other, seed=5, **kw), 20)
    de = tiny_corpus.languages.index("de")
    ra, rd = rows_of(a, de), rows_of(d, de)
    n = min(len(ra), len(rd))
    assert n > 3 and all(np.array_equal(x, y) for x, y in zip(ra[:n], rd[:n]))
    assert all(x["family_ids"].max() <= 1 for x in d)


def test_two_hosts_are_disjoint_and_complete(tiny_corpus):
    for lang in ("de", "zh", "mk"):
        all_docs = {d.tobytes() for d in tiny_corpus.read_tokens(lang)}
        per_host = [
            [d.tobytes() for d in language_documents(tiny_corpus, lang, seed=0, shard_index=h,
                                                     shard_count=2, num_epochs=1)]
            for h in range(2)
        ]
        h0, h1 = set(per_host[0]), set(per_host[1])
        assert len(h0) == len(per_host[0]) and len(h1) == len(per_host[1])
        assert not (h0 & h1)
        assert h0 | h1 == all_docs
    kw = dict(seq_len=32, batch_size=4, seed=0, shard_count=2)
    b0 = _batches(make_train_iterator(tiny_corpus, MixtureSpec(RATIOS), shard_index=0, **kw), 10)
    b1 = _batches(make_train_iterator(tiny_corpus, MixtureSpec(RATIOS), shard_index=1, **kw), 10)
    rows0 = {r.tobytes() for b in b0 for r in b["inputs"]}
    rows1 = {r.tobytes() for b in b1 for r in b["inputs"]}
    assert not (rows0 & rows1)
    # same deterministic family schedule on both hosts
    assert all(np.array_equal(x["family_ids"], y["family_ids"]) for x, y in zip(b0, b1))


def test_shard_defaults_to_jax_process():
    import jax

    from multiscale.data.sampling import _resolve_shard

    assert _resolve_shard(None, None) == (jax.process_index(), jax.process_count())


def test_repetition_report(tiny_corpus):
    spec = MixtureSpec(RATIOS)
    small = repetition_report(tiny_corpus, spec, 1000)
    assert all(e < 1 for e in small.values())
    total = 4 * tiny_corpus.train_tokens("japonic") / RATIOS["japonic"]
    with pytest.warns(RepetitionWarning, match=r"japonic 4\.00 epochs"):
        epochs = repetition_report(tiny_corpus, spec, total)
    assert epochs["japonic"] == pytest.approx(4.0)
    assert epochs["germanic"] == pytest.approx(RATIOS["germanic"] * total / tiny_corpus.train_tokens("germanic"))
    zero = repetition_report(tiny_corpus, MixtureSpec({"germanic": 1.0}), 10)
    assert zero["slavic"] == 0.0
    with pytest.raises(MixtureError, match="total_tokens"):
        repetition_report(tiny_corpus, spec, 0)


@pytest.mark.parametrize(
    "ratios, match",
    [
        ({"germanic": 0.5, "romance": 0.3}, r"ratios: the ratios sum to 0\.8, not 1 \(germanic=0\.5, romance=0\.3\)"),
        ({"germanic": 1.2, "romance": -0.2}, "'romance' is negative"),
        ({"germanic": float("nan"), "romance": 1.0}, "'germanic' is not finite"),
        ({"germanic": float("inf")}, "'germanic' is not finite"),
        ({"germanic": "x"}, "'germanic' is not a number"),
        ({"germanic": 0.5, " germanic": 0.5}, "'germanic' is given twice"),
        ({}, "ratios is empty"),
    ],
)
def test_bad_ratios_name_the_family(ratios, match):
    with pytest.raises(MixtureError, match=match):
        MixtureSpec(ratios)


def test_spec_is_built_on_the_one_mixture_value(tiny_corpus):
    mixture = Mixture.parse("germanic=0.5,romance=0.5")
    spec = MixtureSpec(mixture)
    assert spec.mixture is mixture and dict(spec.ratios) == {"germanic": 0.5, "romance": 0.5}
    assert MixtureSpec("germanic=0.5,romance=0.5") == spec
    assert MixtureSpec.parse("germanic=0.5, romance=0.3,slavic=0.2").ratios["slavic"] == 0.2
    assert MixtureSpec(mixture, within="temperature", tau=0.5).to_dict() == {
        "ratios": {"germanic": 0.5, "romance": 0.5}, "within": "temperature", "tau": 0.5}
    # what the pipeline samples: every family of the corpus, in its order, 0 for the absent ones
    assert spec.family_ratios(tiny_corpus) == {f: mixture.get(f) for f in tiny_corpus.families}
    assert list(spec.family_ratios(tiny_corpus)) == list(tiny_corpus.families)


def test_iterator_reports_the_family_ratios_it_samples(tiny_corpus):
    ratios = {"romance": 0.25, "germanic": 0.75}
    spec = MixtureSpec(ratios, within="uniform")
    it = make_train_iterator(tiny_corpus, spec, seq_len=16, batch_size=4, seed=0, shard_index=0, shard_count=1)
    assert it.family_ratios == {f: ratios.get(f, 0.0) for f in tiny_corpus.families}
    # the language weights of a family add up to its ratio: the family ratio is what is sampled
    w = spec.language_weights(tiny_corpus)
    for fam in tiny_corpus.grouping.families:
        assert sum(w[lang] for lang in fam.languages) == pytest.approx(it.family_ratios[fam.name], abs=1e-15)


def test_normalize_and_parse_and_options(tiny_corpus):
    spec = MixtureSpec({"germanic": 2, "romance": 2}, normalize=True)
    assert dict(spec.ratios) == {"germanic": 0.5, "romance": 0.5}
    assert MixtureSpec({"germanic": 0.5, "romance": 0.5 + 5e-7}).ratios["germanic"] == 0.5
    with pytest.raises(MixtureError, match="'germanic' is given twice"):
        MixtureSpec.parse("germanic=0.5,germanic=0.5")
    with pytest.raises(MixtureError, match="not FAMILY=VALUE"):
        MixtureSpec.parse("germanic")
    with pytest.raises(MixtureError, match="'romance' is not a number"):
        MixtureSpec.parse("germanic=0.5,romance=x")
    with pytest.raises(MixtureError, match="within"):
        MixtureSpec({"germanic": 1.0}, within="sqrt")
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(MixtureError, match="tau"):
            MixtureSpec({"germanic": 1.0}, within="temperature", tau=bad)
    with pytest.raises(MixtureError, match="cannot normalize"):
        MixtureSpec({"germanic": 0.0}, normalize=True)
    with pytest.raises(MixtureError, match="ratios: unknown family 'celtic'; the known families are: germanic"):
        make_train_iterator(tiny_corpus, MixtureSpec({"celtic": 1.0}), seq_len=8, batch_size=2, seed=0)
    good = MixtureSpec({"germanic": 1.0})
    with pytest.raises(MixtureError, match="shard_index"):
        make_train_iterator(tiny_corpus, good, seq_len=8, batch_size=2, seed=0, shard_index=2, shard_count=2)
    with pytest.raises(MixtureError, match="'de' has .* too few for 100 hosts"):
        make_train_iterator(tiny_corpus, good, seq_len=8, batch_size=2, seed=0, shard_index=99, shard_count=100)
    for bad in (dict(seq_len=0, batch_size=2), dict(seq_len=8, batch_size=0)):
        with pytest.raises(MixtureError):
            make_train_iterator(tiny_corpus, good, seed=0, shard_index=0, shard_count=1, **bad)
