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
        build_corpus(FilesSource(inputs), tmp_path / "x", grouping={"g": ["de"]}, eval_docs_per_language=2,
                     overwrite=True)
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


# -- integrity ------------------------------------------------------------------------------------

SHARD = "train/de-00000-of-00001.tokens"


def _copy(corpus, tmp_path, name="copy"):
    import shutil

    dst = tmp_path / name
    shutil.copytree(corpus.path, dst)
    return Corpus.open(dst)


def test_manifest_records_the_size_and_sha256_of_every_file(tiny_corpus):
    import hashlib
    import os

    files = tiny_corpus.manifest["files"]
    assert SHARD in files
    assert len(files) == 4 * len(tiny_corpus.languages)  # tokens + text, train + eval
    for name, record in files.items():
        data = open(os.path.join(tiny_corpus.path, name), "rb").read()
        assert record == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert tiny_corpus.check() == [] and tiny_corpus.check(full=True) == []


def _damage(corpus, how):
    import os

    path = os.path.join(corpus.path, SHARD)
    if how == "missing":
        os.remove(path)
    elif how == "truncated":
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) - 100)
    else:  # same size, one byte changed: only the SHA-256 tells
        with open(path, "r+b") as fh:
            fh.seek(10)
            byte = fh.read(1)
            fh.seek(10)
            fh.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("how, cheap", [("missing", True), ("truncated", True), ("flipped", False)])
def test_damaged_shard_is_found_and_named(tiny_corpus, tmp_path, how, cheap):
    from multiscale.errors import DamagedFileError

    c = _copy(tiny_corpus, tmp_path)
    _damage(c, how)
    full = c.check(full=True)
    assert [p.file for p in full] == [SHARD]
    assert [p.file for p in c.check()] == ([SHARD] if cheap else [])
    if cheap:  # reading the shard refuses it, naming the file, instead of an array_record error
        with pytest.raises(DamagedFileError, match=f"{SHARD}: {'missing' if how == 'missing' else '.*truncated'}"):
            c.read_tokens("de")
        with pytest.raises(DamagedFileError, match=SHARD):
            c.require_intact()
        assert len(c.read_tokens("fr")) == c.documents("fr")  # the other shards still read


def test_an_edited_manifest_is_refused(tiny_corpus, tmp_path):
    """The manifest records its own SHA-256: edited token counts (which no shard checksum covers)
    are refused at open, naming the manifest; the corpus fingerprint ignores the build time."""
    import json
    import os

    from multiscale.errors import DamagedFileError

    assert len(tiny_corpus.manifest["manifest_sha256"]) == 64
    c = _copy(tiny_corpus, tmp_path)
    path = os.path.join(c.path, "manifest.json")
    manifest = json.load(open(path))
    assert Corpus.open(c.path).fingerprint == tiny_corpus.fingerprint
    manifest["families"]["germanic"]["train"]["tokens"] += 1000
    json.dump(manifest, open(path, "w"))
    with pytest.raises(DamagedFileError, match=r"manifest.json.*edited or damaged"):
        Corpus.open(c.path)
    manifest["families"]["germanic"]["train"]["tokens"] -= 1000
    manifest["build_seconds"] = 99.0  # a build time differs from build to build: not in the fingerprint
    from multiscale.data.corpus import manifest_digest

    manifest["manifest_sha256"] = manifest_digest(manifest)
    json.dump(manifest, open(path, "w"))
    assert Corpus.open(c.path).fingerprint == tiny_corpus.fingerprint


def test_damaged_manifest_is_named(tmp_path):
    from multiscale.errors import DamagedFileError

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "manifest.json").write_text('{"format": 1, "sour')
    with pytest.raises(DamagedFileError, match="manifest.json.*not valid JSON"):
        Corpus.open(tmp_path / "c")
    (tmp_path / "c" / "manifest.json").write_text('{"format": 1}')
    with pytest.raises(DamagedFileError, match="manifest.json.*damaged: no source"):
        Corpus.open(tmp_path / "c")


class _FailingSource(FilesSource):
    """Serves the first language, then fails on the second (as a broken input file would)."""

    def iter_documents(self, lang):
        if lang == "fr":
            raise RuntimeError("the source broke")
        yield from super().iter_documents(lang)


GROUPING = {"germanic": ["de"], "romance": ["fr"]}


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "docs").mkdir()
    return _files(tmp_path / "docs", {"de": [f"Haus {i} " * 10 for i in range(4)],
                                      "fr": [f"maison {i} " * 10 for i in range(4)]})


@pytest.mark.parametrize("existing", ["new", "empty", "corpus"])
def test_failed_build_leaves_nothing_behind(tmp_path, inputs, existing):
    import os

    out = tmp_path / "out" / "corpus"
    if existing == "empty":
        out.mkdir(parents=True)
    if existing == "corpus":
        good = build_corpus(FilesSource(inputs), out, grouping=GROUPING, eval_docs_per_language=1)
        before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(RuntimeError, match="the source broke"):
        build_corpus(_FailingSource(inputs), out, grouping=GROUPING, eval_docs_per_language=1, overwrite=True)
    if existing == "new":
        assert not (tmp_path / "out").exists()  # not even the parent it would have created
    elif existing == "empty":
        assert out.is_dir() and os.listdir(out) == []
        assert os.listdir(out.parent) == ["corpus"]  # no temporary folder left
    else:
        assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
        assert Corpus.open(out).manifest == good.manifest
        assert os.listdir(out.parent) == ["corpus"]


def test_rebuild_replaces_a_corpus_and_keeps_other_files(tmp_path, inputs):
    out = tmp_path / "c"
    build_corpus(FilesSource(inputs), out, grouping=GROUPING, eval_docs_per_language=1)
    (out / "notes.txt").write_text("mine")
    again = build_corpus(FilesSource(inputs), out, grouping={"germanic": ["de"]}, eval_docs_per_language=1,
                         overwrite=True)
    assert again.families == ("germanic",) and (out / "notes.txt").read_text() == "mine"
    assert not list((out / "train").glob("fr-*")) and again.check(full=True) == []
    with pytest.raises(CorpusError, match="already holds a corpus"):
        build_corpus(FilesSource(inputs), out, grouping=GROUPING, overwrite=False)


def test_out_folder_that_is_not_a_corpus_is_refused_before_reading(tmp_path, inputs):
    from multiscale.errors import InputError

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("x")
    with pytest.raises(CorpusError, match="busy.*not empty"):
        build_corpus(_FailingSource(inputs), tmp_path / "busy", grouping=GROUPING)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="lies under .*file.*which is a file"):
        build_corpus(_FailingSource(inputs), tmp_path / "file" / "c", grouping=GROUPING)
    with pytest.raises(InputError, match="is a file"):
        build_corpus(_FailingSource(inputs), tmp_path / "file", grouping=GROUPING)


def test_max_train_tokens_caps_a_family_and_leaves_eval_alone(tmp_path):
    docs = {"de": [f"Dokument Nummer {i} " * (5 + i % 7) for i in range(40)],
            "nl": [f"Document nummer {i} " * (3 + i % 5) for i in range(30)],
            "fr": [f"Document numéro {i} " * 20 for i in range(40)]}
    inputs = _files(tmp_path, docs)
    g = Grouping.from_mapping({"germanic": ["de", "nl"], "romance": ["fr"]})
    full = build_corpus(FilesSource(inputs), tmp_path / "full", grouping=g, eval_fraction=0.2)
    cap = full.train_tokens("germanic") // 3
    capped = build_corpus(FilesSource(inputs), tmp_path / "cap", grouping=g, eval_fraction=0.2,
                          max_train_tokens={"germanic": cap})
    smaller = build_corpus(FilesSource(inputs), tmp_path / "small", grouping=g, eval_fraction=0.2,
                           max_train_tokens={"germanic": cap // 2})
    assert capped.manifest["max_train_tokens"] == {"germanic": cap} and capped.train_cap("germanic") == cap
    assert capped.train_cap("romance") is None and full.train_cap("germanic") is None
    assert capped.summary()["max_train_tokens"] == {"germanic": cap}
    longest = max(len(t.encode("utf-8")) + 1 for t in docs["de"] + docs["nl"])
    assert cap - 2 * longest < capped.train_tokens("germanic") <= cap
    for lang in ("de", "nl"):
        kept = set(capped.read_texts(lang))
        assert kept < set(full.read_texts(lang))  # a strict subset of the uncapped training set
        assert set(smaller.read_texts(lang)) <= kept  # a smaller cap keeps a subset (hash order)
        assert capped.manifest["languages"][lang]["train"]["uncapped"] == {
            "documents": full.documents(lang), "tokens": full.tokens(lang)}
        # the cap is shared by the languages' token counts (within one document of the share)
        share = cap * full.tokens(lang) / full.train_tokens("germanic")
        assert share - longest < capped.tokens(lang) <= share
    for lang in ("de", "nl", "fr"):  # eval untouched, the uncapped family untouched
        assert capped.read_texts(lang, "eval") == full.read_texts(lang, "eval")
    assert capped.read_texts("fr") == full.read_texts("fr")
    assert "uncapped" not in capped.manifest["languages"]["fr"]["train"]


def test_max_train_tokens_keeps_one_document_and_refuses_bad_caps(tmp_path):
    inputs = _files(tmp_path, {"de": [f"Wort {i} " * 30 for i in range(10)]})
    g = {"germanic": ["de"]}
    tiny = build_corpus(FilesSource(inputs), tmp_path / "t", grouping=g, eval_docs_per_language=2,
                        max_train_tokens={"germanic": 1})
    assert tiny.documents("de") == 1 and tiny.train_tokens("germanic") > 1
    for caps, match in (({"romance": 10}, "family 'romance' is not in the grouping"),
                        ({"germanic": 0}, "cap of 'germanic' must be a whole number"),
                        ({"germanic": 2.5}, "whole number"), ({"germanic": float("inf")}, "whole number"),
                        ({"germanic": "many"}, "whole number")):
        with pytest.raises(CorpusError, match=match):
            build_corpus(FilesSource(inputs), tmp_path / "x", grouping=g, max_train_tokens=caps)
        assert not (tmp_path / "x").exists()
