import json

import pytest

from multiscale.cli import main


def test_corpus_info_json(tiny_corpus, capsys):
    assert main(["corpus", "info", tiny_corpus.path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["families"]) == set(tiny_corpus.families)
    assert out["languages"]["de"]["train"]["tokens"] == tiny_corpus.tokens("de")
    assert main(["corpus", "info", tiny_corpus.path]) == 0
    assert "germanic" in capsys.readouterr().out


def test_corpus_build_manpages_and_files(tmp_path, capsys):
    assert main(["corpus", "build", "--source", "manpages", "--out", str(tmp_path / "m"),
                 "--max-docs", "3", "--eval-docs", "1", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["languages"]["zh"]["eval"]["documents"] == 1
    assert out["languages"]["zh"]["train"]["documents"] == 2

    for lang, word in (("de", "Haus"), ("fr", "maison")):
        d = tmp_path / "docs" / lang
        d.mkdir(parents=True)
        for i in range(6):
            (d / f"{i}.txt").write_text(f"{word} {i} " * 30)
    fam = tmp_path / "fam.yaml"
    fam.write_text("families:\n  germanic: [de]\n  romance: [fr]\n")
    assert main(["corpus", "build", "--source", "files", "--input", f"de={tmp_path}/docs/de/*.txt",
                 "--input", f"fr={tmp_path}/docs/fr/*.txt", "--families", str(fam),
                 "--out", str(tmp_path / "f"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["families"]["romance"]["train"]["documents"] + out["families"]["romance"]["eval"]["documents"] == 6
    # without --families: languages go to their genealogical families
    assert main(["corpus", "build", "--source", "files", "--input", f"fr={tmp_path}/docs/fr/*.txt",
                 "--input", f"de={tmp_path}/docs/de/*.txt", "--out", str(tmp_path / "g"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["families"]) == ["romance", "germanic"]


def test_corpus_build_errors(tmp_path, capsys):
    assert main(["corpus", "build", "--source", "files", "--input", "de", "--grouping", "paper",
                 "--out", str(tmp_path)]) == 2
    assert "'de' is not LANG=GLOB" in capsys.readouterr().err
    fam = tmp_path / "fam.yaml"
    fam.write_text("families:\n  germanic: [de, zz]\n")
    assert main(["corpus", "build", "--source", "files", "--input", "de=/x/*.txt", "--families", str(fam),
                 "--out", str(tmp_path / "o")]) == 2
    assert "'zz'" in capsys.readouterr().err
    assert main(["corpus", "build", "--source", "files", "--input", "de=/nonexistent/*.txt",
                 "--grouping", "paper", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "multiscale corpus build: error:" in err and "no file matches" in err
    assert main(["corpus", "build", "--source", "files", "--input", "xx=/x/*.txt",
                 "--grouping", "paper", "--out", str(tmp_path / "o")]) == 2
    assert "'xx' in no family" in capsys.readouterr().err
    assert main(["corpus", "build", "--source", "files", "--input", "qq=/x/*.txt", "--out", str(tmp_path / "o")]) == 2
    assert "'qq' has no known family" in capsys.readouterr().err
    assert main(["corpus", "info", str(tmp_path / "none")]) == 2
    assert "no corpus" in capsys.readouterr().err


def test_mixture_sample_json(tiny_corpus, capsys):
    assert main(["mixture", "sample", "--corpus", tiny_corpus.path, "--ratios",
                 "germanic=0.5,romance=0.3,slavic=0.2", "--seq-len", "64", "--sequences", "3000",
                 "--seed", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sequences"] == 3000 and out["tokens"] == 3000 * 64
    assert out["tokens_per_second"] > 0
    for fam, want in (("germanic", 0.5), ("romance", 0.3), ("slavic", 0.2), ("japonic", 0.0)):
        v = out["families"][fam]
        assert v["requested_ratio"] == want
        assert abs(v["measured_token_share"] - want) < 0.01
    assert sum(v["tokens"] for v in out["families"].values()) == out["tokens"]


@pytest.mark.parametrize("ratios, needle", [
    ("germanic=0.5,romance=0.3", "sum to 0.8"),
    ("germanic=0.5,celtic=0.5", "'celtic'"),
    ("germanic=-1,romance=2", "'germanic' is negative"),
])
def test_mixture_sample_bad_ratios(tiny_corpus, capsys, ratios, needle):
    assert main(["mixture", "sample", "--corpus", tiny_corpus.path, "--ratios", ratios, "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("multiscale mixture sample: error:") and needle in err


def test_human_readable_outputs_and_bare_groups(tiny_corpus, capsys):
    assert main(["mixture", "sample", "--corpus", tiny_corpus.path, "--ratios", "japonic=1",
                 "--seq-len", "32", "--sequences", "100"]) == 0
    out = capsys.readouterr().out
    assert "japonic" in out and "tokens/s" in out and "1.0000" in out
    assert main(["corpus"]) == 2
    assert main(["mixture"]) == 2


# -- damaged corpora -------------------------------------------------------------------------------

SHARD = "train/de-00000-of-00001.tokens"
OTHER = "eval/fr-00000-of-00001.text"


def _damaged(tiny_corpus, tmp_path):
    """A copy of the corpus with one shard missing and one cut short."""
    import shutil

    dst = tmp_path / "damaged"
    shutil.copytree(tiny_corpus.path, dst)
    (dst / SHARD).unlink()
    with open(dst / OTHER, "r+b") as fh:
        fh.truncate((dst / OTHER).stat().st_size // 2)
    return dst


def test_corpus_verify_intact(tiny_corpus, capsys):
    assert main(["corpus", "verify", tiny_corpus.path]) == 0
    assert "all 72 files intact (SHA-256 and size)" in capsys.readouterr().out
    assert main(["corpus", "verify", tiny_corpus.path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"path": tiny_corpus.path, "files": 72, "check": "sha256", "intact": True, "damaged": []}


def test_corpus_verify_and_info_name_every_damaged_file(tiny_corpus, tmp_path, capsys):
    corpus = _damaged(tiny_corpus, tmp_path)
    assert main(["corpus", "verify", str(corpus)]) == 1
    err = capsys.readouterr().err
    assert f"damaged: {corpus}/{SHARD}: missing" in err
    assert f"damaged: {corpus}/{OTHER}: " in err and "(truncated)" in err
    assert "2 damaged file(s)" in err
    assert main(["corpus", "verify", str(corpus), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["intact"] is False and [d["file"] for d in out["damaged"]] == [SHARD, OTHER]
    # info: the cheap check (sizes) reports the same files instead of a clean bill of health
    assert main(["corpus", "info", str(corpus)]) == 1
    captured = capsys.readouterr()
    assert "germanic" in captured.out and f"{SHARD}: missing" in captured.err
    assert main(["corpus", "info", str(corpus), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["check"] == "sizes" and [d["file"] for d in out["damaged"]] == [SHARD, OTHER]


def test_corpus_verify_catches_a_changed_byte_that_info_cannot(tiny_corpus, tmp_path, capsys):
    import shutil

    dst = tmp_path / "flipped"
    shutil.copytree(tiny_corpus.path, dst)
    with open(dst / SHARD, "r+b") as fh:
        fh.seek(20)
        b = fh.read(1)
        fh.seek(20)
        fh.write(bytes([b[0] ^ 1]))
    assert main(["corpus", "info", str(dst), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["intact"] is True
    assert main(["corpus", "verify", str(dst)]) == 1
    assert f"{SHARD}: its SHA-256 differs" in capsys.readouterr().err


def test_mixture_sample_on_a_damaged_corpus_names_the_file(tiny_corpus, tmp_path, capsys):
    corpus = _damaged(tiny_corpus, tmp_path)
    assert main(["mixture", "sample", "--corpus", str(corpus), "--ratios", "germanic=0.5,romance=0.5",
                 "--sequences", "10", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("multiscale mixture sample: error: ") and len(err.splitlines()) == 1
    assert SHARD in err and "missing" in err


def test_corpus_build_with_a_broken_families_yaml_names_file_and_line(tmp_path, capsys):
    fam = tmp_path / "fam.yaml"
    fam.write_text("families:\n  germanic: [de\n  romance: [fr]\n")
    assert main(["corpus", "build", "--source", "files", "--input", "de=/x/*.txt", "--families", str(fam),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("multiscale corpus build: error: ") and f"{fam}:3: not valid YAML" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "o").exists()


def test_failed_corpus_build_leaves_no_folder(tmp_path, capsys):
    assert main(["corpus", "build", "--source", "files", "--input", "de=/nonexistent/*.txt",
                 "--grouping", "paper", "--out", str(tmp_path / "o")]) == 2
    assert "no file matches" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_corpus_build_max_train_tokens(tmp_path, capsys):
    for lang, word in (("de", "Haus"), ("fr", "maison")):
        d = tmp_path / "docs" / lang
        d.mkdir(parents=True)
        for i in range(12):
            (d / f"{i}.txt").write_text(f"{word} {i} " * 30)
    base = ["corpus", "build", "--source", "files", "--input", f"de={tmp_path}/docs/de/*.txt",
            "--input", f"fr={tmp_path}/docs/fr/*.txt", "--eval-docs", "2", "--json"]
    assert main(base + ["--out", str(tmp_path / "full")]) == 0
    full = json.loads(capsys.readouterr().out)
    assert main(base + ["--out", str(tmp_path / "cap"), "--max-train-tokens", "germanic=1e3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["max_train_tokens"] == {"germanic": 1000}
    assert out["families"]["germanic"]["train"]["tokens"] <= 1000 < full["families"]["germanic"]["train"]["tokens"]
    assert out["families"]["germanic"]["eval"] == full["families"]["germanic"]["eval"]
    assert out["families"]["romance"] == full["families"]["romance"]
    for flag, message in (("germanic", "is not FAMILY=N"), ("germanic=0", "whole number >= 1"),
                          ("germanic=1e3,germanic=2e3", "names family 'germanic' twice"),
                          ("martian=1000", "family 'martian' is not in the grouping")):
        assert main(base + ["--out", str(tmp_path / "bad"), "--max-train-tokens", flag]) != 0
        err = capsys.readouterr().err
        assert "multiscale corpus build: error:" in err and message in err, err
        assert not (tmp_path / "bad").exists()
