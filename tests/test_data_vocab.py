import pytest

from multiscale.data.vocab import ByteVocabulary, VocabularyError, get_vocabulary

TEXTS = [
    "Verzeichnisinhalte auflisten: Größe",
    "Référence française, où ça?",
    "Русский текст и ёжик",
    "ディレクトリの内容をリスト表示する",
    "列出目录内容 🙂",
    "",
]


def test_byte_layout():
    v = get_vocabulary("byte")
    assert (v.pad_id, v.eos_id, v.unk_id, v.vocab_size) == (0, 1, 2, 259)
    assert v.encode("A") == [ord("A") + 3]
    for text in TEXTS:
        ids = v.encode(text)
        assert all(3 <= i < 259 for i in ids)
        assert v.decode(ids) == text
    assert v.decode([ord("a") + 3, 1, ord("b") + 3]) == "a"  # stops at EOS


@pytest.mark.slow  # a subprocess, then TensorFlow
def test_byte_vocab_matches_seqio_without_importing_tensorflow():
    import subprocess
    import sys

    code = ("import sys, multiscale.data.vocab as v; v.get_vocabulary('byte').encode('x'); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

    import seqio

    ref = seqio.ByteVocabulary()
    ours = ByteVocabulary()
    assert ref.vocab_size == ours.vocab_size
    assert (ref.pad_id, ref.eos_id, ref.unk_id) == (ours.pad_id, ours.eos_id, ours.unk_id)
    for text in TEXTS:
        assert ours.encode(text) == list(ref.encode(text))
        assert ours.decode(ours.encode(text)) == ref.decode(ref.encode(text))
    mixed = [ord("h") + 3, 0, 2, ord("i") + 3, 300, 1, ord("x") + 3]
    assert ours.decode(mixed) == ref.decode(mixed)


def test_unknown_vocabulary_name():
    with pytest.raises(VocabularyError, match="'bytes'"):
        get_vocabulary("bytes")
    with pytest.raises(FileNotFoundError):
        get_vocabulary("/nonexistent/x.model")


def test_sentencepiece_trained_family_balanced(tmp_path, tiny_corpus):
    from multiscale.data.vocab import SentencePieceConfig, family_balanced_sample, train_sentencepiece

    texts = {lang: tiny_corpus.read_texts(lang) for lang in tiny_corpus.languages}
    family_of = {lang: tiny_corpus.grouping.family_of(lang) for lang in texts}
    sample = family_balanced_sample(texts, family_of, bytes_per_family=20_000)
    fam_bytes = {f: 0 for f in tiny_corpus.families}
    for lang, pieces in sample.items():
        fam_bytes[family_of[lang]] += sum(len(p.encode("utf-8")) for p in pieces)
    # every family gets (nearly) the same budget, whatever its size in the corpus
    assert min(fam_bytes.values()) > 0.95 * 20_000 and max(fam_bytes.values()) <= 20_000
    v = train_sentencepiece(texts, family_of, tmp_path / "sp",
                            SentencePieceConfig(vocab_size=2000, bytes_per_family=20_000))
    assert (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)
    assert get_vocabulary(str(tmp_path / "sp.model")).vocab_size == v.vocab_size
    for text in TEXTS[:5]:
        ids = v.encode(text)
        assert v.decode(ids) == text
        assert 1 not in ids and 0 not in ids
