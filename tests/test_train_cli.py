"""`multiscale presets` and `multiscale train` from the command line."""

import json

import pytest

from multiscale.cli import main
from multiscale.models.params import count_params
from multiscale.models.presets import PRESETS


def test_presets_json(capsys):
    assert main(["presets", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = [p["name"] for p in out["presets"]]
    assert names == list(PRESETS)
    first = out["presets"][0]
    assert first["non_embedding_params"] == count_params(PRESETS[first["name"]]).non_embedding
    assert {"embedding_params", "layers", "d_model", "heads", "flops_per_token"} <= set(first)


def test_presets_table(capsys):
    assert main(["presets"]) == 0
    assert "cpu-100k" in capsys.readouterr().out


def _train_args(corpus, out, **kw):
    args = {"--corpus": corpus, "--model": "cpu-100k", "--tokens": "2048", "--ratios":
            "germanic=0.5,romance=0.5", "--out": str(out), "--seq-len": "32", "--batch": "8",
            "--eval-tokens-per-language": "256", "--no-progress": None}
    args.update(kw)
    argv = ["train"]
    for k, v in args.items():
        argv += [k] if v is None else [k, v]
    return argv


@pytest.mark.parametrize("change,message", [
    ({"--model": "cpu-5"}, "unknown model preset 'cpu-5'"),
    ({"--mesh": "data=3"}, "has 3 devices but 1 are available"),
    ({"--mesh": "tensor=2,data=2"}, "has 4 devices"),
    ({"--ratios": "germanic=0.5,celtic=0.5"}, "'celtic' that the corpus lacks"),
    ({"--ratios": "germanic=0.5,romance=0.2"}, "ratios must sum to 1"),
    ({"--tokens": "1e2"}, "less than one step"),
])
def test_bad_input_exits_2_with_a_message(tiny_corpus, tmp_path, capsys, change, message):
    out = tmp_path / "run"
    assert main(_train_args(str(tiny_corpus.path), out, **change)) == 2
    err = capsys.readouterr().err
    assert err.startswith("multiscale train: error: ") and message in err
    assert not out.exists()  # nothing was computed or written


def test_missing_corpus(tmp_path, capsys):
    assert main(_train_args(str(tmp_path / "nope"), tmp_path / "run")) == 2
    assert "no corpus" in capsys.readouterr().err


def test_train_json_prints_one_object_with_rows(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(str(tiny_corpus.path), out, **{"--json": None})) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 8 and summary["D"] == 2048
    assert [r["family"] for r in summary["rows"]] == ["germanic", "romance"]
    assert (out / "rows.csv").exists() and (out / "summary.json").exists()


def test_relative_run_folder_checkpoints_and_resumes(tiny_corpus, tmp_path, monkeypatch, capsys):
    # orbax needs absolute paths; a user's `--out runs/a` must work all the same.
    monkeypatch.chdir(tmp_path)
    args = _train_args(str(tiny_corpus.path), "runs/a", **{"--json": None, "--checkpoint-every": "4"})
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert (tmp_path / "runs" / "a" / "checkpoints").is_dir()
    assert main(args) == 0  # resumes from the finished run's checkpoint, same result
    again = json.loads(capsys.readouterr().out)
    assert [r["loss"] for r in again["rows"]] == [r["loss"] for r in first["rows"]]
