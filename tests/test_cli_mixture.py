"""`multiscale mixture sample`: the flags of docs/design.md ("Command line and errors") and its refusals."""

import json

import numpy as np
import pytest

from multiscale.cli import main


def _sample(capsys, tiny_corpus, *flags):
    assert main(["mixture", "sample", "--corpus", tiny_corpus.path, "--sequences", "240", "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_defaults_and_the_sampled_mixture(tiny_corpus, capsys):
    out = _sample(capsys, tiny_corpus, "--ratios", "germanic=0.75, romance=0.25", "--batch-size", "48",
                  "--no-progress")
    assert out["seq_len"] == 128  # TrainConfig's default
    assert out["sequences"] == 240 and out["tokens"] == 240 * 128
    assert out["mixture"] == {"ratios": {"germanic": 0.75, "romance": 0.25}, "within": "proportional", "tau": 0.3}
    assert list(out["families"]) == list(tiny_corpus.families)
    assert {f: v["requested_ratio"] for f, v in out["families"].items()} == {
        f: {"germanic": 0.75, "romance": 0.25}.get(f, 0.0) for f in tiny_corpus.families}


def test_tau_sets_the_within_family_temperature(tiny_corpus, capsys):
    out = _sample(capsys, tiny_corpus, "--ratios", "germanic=1", "--within", "temperature", "--tau", "0",
                  "--seq-len", "16")
    assert out["mixture"]["tau"] == 0.0
    langs = tiny_corpus.grouping.family("germanic").languages
    shares = np.array([out["languages"][lang] for lang in langs], float) / out["tokens"]
    np.testing.assert_allclose(shares, 1 / len(langs), atol=0.05)  # tau = 0: uniform over the languages


def test_normalize(tiny_corpus, capsys):
    out = _sample(capsys, tiny_corpus, "--ratios", "germanic=3,romance=1", "--normalize", "--seq-len", "16")
    assert out["families"]["germanic"]["requested_ratio"] == 0.75


@pytest.mark.parametrize("flags, needle", [
    (["--ratios", "germanic=0.5,germanic=0.5"], "--ratios: family 'germanic' is given twice"),
    (["--ratios", "germanic=nan,romance=1"], "--ratios: the value of family 'germanic' is not finite"),
    (["--ratios", "germanic=1,celtic=0"], "--ratios: unknown family 'celtic'; the known families are: germanic"),
    (["--ratios", "germanic=0.5", "--sequences", "0"], "--sequences must be >= 1"),
    (["--ratios", "germanic=1", "--seq-len", "0"], "--seq-len must be >= 1"),
    (["--ratios", "germanic=1", "--shard", "2/2"], "--shard"),
    (["--ratios", "germanic=1", "--within", "temperature", "--tau", "-1"], "tau"),
])
def test_refusals_are_one_line(tiny_corpus, capsys, flags, needle):
    assert main(["mixture", "sample", "--corpus", tiny_corpus.path, "--json", *flags]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err and captured.out == "" and "Traceback" not in captured.err
