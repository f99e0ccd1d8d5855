import gzip
import json

import pytest

from multiscale.data.corpus import build_corpus
from multiscale.data.sources import (
    FilesSource,
    HFSource,
    ManpagesSource,
    SourceError,
    TFDSSource,
    get_source,
)
from multiscale.families import MANPAGES_GROUPING


def test_manpages_source_reads_real_prose():
    src = ManpagesSource()
    assert set(MANPAGES_GROUPING.languages) <= set(src.languages)
    docs = []
    for text in src.iter_documents("de"):
        docs.append(text)
        if len(docs) == 5:
            break
    assert len(docs) == 5
    joined = "\n".join(docs)
    assert ".TH" not in joined and "\\f" not in joined and ".SH" not in joined
    assert any(w in joined for w in (" der ", " die ", " und "))
    # a deterministic order: the same first page twice
    assert next(iter(src.iter_documents("de"))) == docs[0]
    ja = next(iter(src.iter_documents("ja")))
    assert any("\u3040" <= ch <= "\u30ff" for ch in ja)  # kana


def test_manpages_source_errors(tmp_path):
    with pytest.raises(SourceError, match="no language 'xx'"):
        ManpagesSource().page_paths("xx")
    empty = ManpagesSource(root=str(tmp_path))
    with pytest.raises(SourceError, match="apt-get install -y manpages-pt-br"):
        empty.page_paths("pt")


def test_files_source_text_jsonl_gz(tmp_path):
    (tmp_path / "a.txt").write_text("erste Seite\n\nzweiter Absatz")
    (tmp_path / "b.txt").write_text("   ")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"text": "un"}) + "\n\n" + json.dumps({"text": "deux", "id": 2}) + "\n")
    src = FilesSource({"de": str(tmp_path / "*.txt"), "fr": [str(tmp_path / "*.jsonl.gz")]})
    assert list(src.iter_documents("de")) == ["erste Seite\n\nzweiter Absatz"]
    assert list(src.iter_documents("fr")) == ["un", "deux"]
    para = FilesSource({"de": str(tmp_path / "a.txt")}, split_paragraphs=True)
    assert list(para.iter_documents("de")) == ["erste Seite", "zweiter Absatz"]


def test_files_source_errors(tmp_path):
    with pytest.raises(SourceError, match="at least one"):
        FilesSource({})
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(SourceError, match=r"bad\.jsonl:2: not valid JSON"):
        list(FilesSource({"de": str(tmp_path / "bad.jsonl")}).iter_documents("de"))
    (tmp_path / "nofield.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(SourceError, match="nofield.jsonl:1: no field 'text'"):
        list(FilesSource({"de": str(tmp_path / "nofield.jsonl")}).iter_documents("de"))
    (tmp_path / "latin1.txt").write_bytes("Gr\xf6\xdfe".encode("latin-1"))
    with pytest.raises(SourceError, match="not UTF-8"):
        list(FilesSource({"de": str(tmp_path / "latin1.txt")}).iter_documents("de"))
    with pytest.raises(SourceError, match="'fr': no file matches"):
        list(FilesSource({"fr": str(tmp_path / "*.none")}).iter_documents("fr"))
    with pytest.raises(SourceError, match="^inputs: no files given for language 'nl'"):
        list(FilesSource({"de": str(tmp_path / "*.txt")}).iter_documents("nl"))
    with pytest.raises(SourceError, match="unknown source 'web'"):
        get_source("web")


@pytest.mark.slow  # TensorFlow and seqio
def test_tfds_source_through_seqio_with_local_data(tmp_path):
    import seqio
    import tensorflow as tf

    data = {"de": ["Ein Haus.", "Zwei Häuser."] * 3, "fr": ["Une maison.", "Deux maisons.", "Trois."]}
    calls = []

    def factory(tfds_name, split):
        calls.append((tfds_name, split))

        def dataset_fn(split, shuffle_files, seed=None):
            return tf.data.Dataset.from_tensor_slices({"text": data[calls[-1][1]]})

        return seqio.FunctionDataSource(dataset_fn, splits=["train"])

    src = TFDSSource(["de", "fr"], data_source_factory=factory, max_docs_per_language=4)
    assert list(src.iter_documents("de")) == data["de"][:4]
    assert calls[-1] == ("c4/multilingual:3.1.0", "de")
    corpus = build_corpus(src, tmp_path / "c", grouping={"germanic": ["de"], "romance": ["fr"]},
                          eval_docs_per_language=1)
    # 4 documents read, 2 unique after deduplication
    assert corpus.documents("de", "train") + corpus.documents("de", "eval") == 2
    assert corpus.manifest["source"] == "tfds"
    with pytest.raises(SourceError, match="not given language 'nl'"):
        list(src.iter_documents("nl"))


def test_hf_source_with_injected_stream(tmp_path):
    rows = {"de": [{"text": f"Dokument {i}"} for i in range(10)], "fr": [{"text": "a"}, {"text": "b"}, {"text": ""}]}
    seen = []

    def load_fn(path, name, split):
        seen.append((path, name, split))
        return iter(rows[name])

    src = HFSource(["de", "fr"], path="allenai/c4", load_fn=load_fn, max_docs_per_language=5)
    assert list(src.iter_documents("de")) == [f"Dokument {i}" for i in range(5)]
    assert seen[-1] == ("allenai/c4", "de", "train")
    corpus = build_corpus(src, tmp_path / "h", grouping={"germanic": ["de"], "romance": ["fr"]},
                          eval_docs_per_language=1)
    assert corpus.documents("fr", "train") == 1 and corpus.documents("de", "train") == 4
    bad = HFSource(["de"], load_fn=lambda p, n, s: iter([{"content": "x"}]))
    with pytest.raises(SourceError, match="row 0: no field 'text'"):
        list(bad.iter_documents("de"))


def test_hf_source_without_datasets_package_says_how_to_install():
    try:
        import datasets  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(SourceError, match=r"multiscale\[hf\]"):
            list(HFSource(["de"]).iter_documents("de"))
    else:
        assert HFSource(["de"]).load_fn is not None
