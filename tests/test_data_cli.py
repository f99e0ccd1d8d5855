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
