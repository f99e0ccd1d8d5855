import json

import pytest

from multiscale.data.corpus import Corpus, CorpusError, build_corpus, doc_hash
from multiscale.data.sources import FilesSource
from multiscale.families import MANPAGES_GROUPING, Grouping


def test_tiny_corpus_manifest_is_consistent(tiny_corpus):
    c = tiny_corpus
    assert c.grouping == MANPAGES_GROUPING
    assert len(c.families) >= 5 and len(c.languages) >= 15
    vocab = c.vocab
    for lang in c.languages:
        for split in ("train", "eval"):
            docs = c.read_tokens(lang, split)
            texts = c.read_texts(lang, split)
            assert len(docs) == len(texts) == c.documents(lang, split) > 0
            assert sum(len(d) for d in docs) == c.tokens(lang, split)
            assert sum(len(t.encode("utf-8")) for t in texts) == c.bytes(lang, split)
            for d, t in zip(docs, texts):
                assert d[-1] == vocab.eos_id and vocab.decode(d) == t
    for fam in c.families:
        langs = c.grouping.family(fam).languages
        assert c.train_tokens(fam) == sum(c.tokens(lang) for lang in langs)
    reopened = Corpus.open(c.path)
    assert reopened.manifest == c.manifest


def test_no_eval_document_in_training(tiny_corpus):
    for lang in tiny_corpus.languages:
        train = set(tiny_corpus.read_texts(lang, "train"))
        held = set(tiny_corpus.read_texts(lang, "eval"))
        assert held and not (train & held)
        # held-out documents are the ones with the smallest content hashes
        assert max(doc_hash(t) for t in held) < min(doc_hash(t) for t in train)


def _files(tmp_path, docs_by_lang):
    inputs = {}
    for lang, docs in docs_by_lang.items():
        d = tmp_path / lang
        d.mkdir()
        for i, text in enumerate(docs):
            (d / f"{i}.txt").write_text(text)
        inputs[lang] = str(d / "*.txt")
    return inputs


def test_split_is_stable_across_builds_and_caps(tmp_path):
    docs = {"de": [f"Dokument Nummer {i} " * 20 for i in range(40)],
            "fr": [f"Document numéro {i} " * 20 for i in range(40)]}
    inputs = _files(tmp_path, docs)
    g = Grouping.from_mapping({"germanic": ["de"], "romance": ["fr"]})
    a = build_corpus(FilesSource(inputs), tmp_path / "a", grouping=g, eval_fraction=0.2)
    b = build_corpus(FilesSource(inputs), tmp_path / "b", grouping=g, eval_fraction=0.2, seed=7)
    c = build_corpus(FilesSource(inputs), tmp_path / "c", grouping=g, eval_fraction=0.2, max_docs_per_language=20)
    for lang in ("de", "fr"):
        assert a.read_texts(lang, "eval") == b.read_texts(lang, "eval")
        # a smaller corpus holds out a subset of the same documents, never trains on them
        assert set(c.read_texts(lang, "train")).isdisjoint(a.read_texts(lang, "eval"))
    k = build_corpus(FilesSource(inputs), tmp_path / "k", grouping=g, eval_docs_per_language=3)
    assert k.documents("de", "eval") == 3 and k.documents("de", "train") == 37


def test_duplicates_removed(tmp_path):
    inputs = _files(tmp_path, {"de": ["gleich  text"] * 3 + ["anders", "noch  anders"]})
    c = build_corpus(FilesSource(inputs), tmp_path / "c", grouping={"germanic": ["de"]}, eval_docs_per_language=1)
    assert c.manifest["languages"]["de"]["duplicates_removed"] == 2
    assert c.documents("de", "train") + c.documents("de", "eval") == 3


def test_bad_inputs(tmp_path):
    inputs = _files(tmp_path, {"de": ["a b c", "d e f"]})
    with pytest.raises(CorpusError, match="no language.*fr.*'romance'"):
        build_corpus(FilesSource(inputs), tmp_path / "x", grouping={"germanic": ["de"], "romance": ["fr"]})
    assert build_corpus(FilesSource(inputs), tmp_path / "x", eval_docs_per_language=1).families == ("germanic",)
    with pytest.raises(ValueError, match="'qq' has no known family"):
        build_corpus(FilesSource({"qq": "/x"}), tmp_path / "x")
    with pytest.raises(CorpusError, match="eval_fraction"):
        build_corpus(FilesSource(inputs), tmp_path / "x", grouping={"g": ["de"]}, eval_fraction=1.5)
    with pytest.raises(CorpusError, match="'de'.*leave none"):
        build_corpus(FilesSource(inputs), tmp_path / "x", grouping={"g": ["de"]}, eval_docs_per_language=2)
    (tmp_path / "one").mkdir()
    one = _files(tmp_path / "one", {"nl": ["alleen"]})
    with pytest.raises(CorpusError, match="'nl' has 1 document"):
        build_corpus(FilesSource(one), tmp_path / "y", grouping={"g": ["nl"]})
    with pytest.raises(FileNotFoundError, match="no corpus"):
        Corpus.open(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="needs arguments"):
        build_corpus("files", tmp_path / "z")


def test_corpus_queries_name_bad_keys(tiny_corpus):
    with pytest.raises(CorpusError, match="family 'celtic'"):
        tiny_corpus.train_tokens("celtic")
    with pytest.raises(CorpusError, match="language 'ga'"):
        tiny_corpus.tokens("ga")
    with pytest.raises(CorpusError, match="split"):
        tiny_corpus.tokens("de", "test")
    s = tiny_corpus.summary()
    json.dumps(s)
    assert set(s["languages"]) == set(tiny_corpus.languages)


def test_sentencepiece_corpus_trained_while_building(tmp_path, tiny_corpus):
    docs = {lang: tiny_corpus.read_texts(lang)[:4] for lang in ("de", "fr", "ru")}
    inputs = _files(tmp_path, docs)
    g = {"germanic": ["de"], "romance": ["fr"], "slavic": ["ru"]}
    c = build_corpus(FilesSource(inputs), tmp_path / "sp", grouping=g, vocab="spm:800", eval_docs_per_language=1)
    v = c.vocab
    assert type(v).__name__ == "SentencePieceVocabulary" and c.manifest["vocab"]["model"] == "vocab.model"
    assert (v.pad_id, v.eos_id) == (0, 1)
    for lang in ("de", "fr", "ru"):
        for ids, text in zip(c.read_tokens(lang), c.read_texts(lang)):
            assert ids[-1] == 1 and v.decode(ids) == text
        # pieces are shorter than bytes: fewer tokens than UTF-8 bytes
        assert c.tokens(lang) < c.bytes(lang)
    reopened = Corpus.open(c.path)
    assert reopened.vocab.vocab_size == v.vocab_size
    with pytest.raises(CorpusError, match="spm:8000"):
        build_corpus(FilesSource(inputs), tmp_path / "bad", grouping=g, vocab="spm:x")
    from multiscale.data.vocab import VocabularyError

    with pytest.raises(VocabularyError, match="vocab_size 300"):
        build_corpus(FilesSource(inputs), tmp_path / "small", grouping=g, vocab="spm:300")
