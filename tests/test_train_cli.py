"""`multiscale presets` and `multiscale train` from the command line."""

import argparse
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
            "germanic=0.5,romance=0.5", "--out": str(out), "--seq-len": "32", "--batch-size": "8",
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
    ({"--ratios": "germanic=0.5,celtic=0.5"}, "--ratios: unknown family 'celtic'"),
    ({"--ratios": "germanic=0.5,romance=0.2"}, "ratios sum to 0.7"),
    ({"--ratios": "germanic=0.5,germanic=0.5"}, "'germanic'"),
    ({"--tokens": "1e2"}, "less than one step"),
    ({"--seq-len": "0"}, "--seq-len must be a positive int, got 0"),
    ({"--eval-batch-size": "0"}, "--eval-batch-size must be a positive int, got 0"),
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


def test_every_train_config_field_has_a_flag_with_its_default(capsys):
    import dataclasses

    from multiscale.cli import build_parser
    from multiscale.train import TrainConfig

    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    flags = {a.dest: a for a in train._actions}
    args = parser.parse_args(["train", "--corpus", "c", "--model", "m", "--tokens", "1e3",
                              "--ratios", "a=1", "--out", "o"])
    for field in dataclasses.fields(TrainConfig):
        assert field.name in flags and flags[field.name].option_strings, field.name
        if field.default is dataclasses.MISSING:
            assert flags[field.name].required, field.name
        else:
            assert getattr(args, field.name) == field.default, field.name
    assert args.tokens == 1000
    changed = parser.parse_args(["train", "--corpus", "c", "--model", "m", "--tokens", "1e3", "--ratios", "a=1",
                                 "--out", "o", "--batch-size", "4", "--warmup-steps", "7", "--tie-embeddings",
                                 "--min-lr-ratio", "0.5", "--keep-checkpoints", "3"])
    assert (changed.batch, changed.warmup_steps, changed.tie_embeddings) == (4, 7, True)
    assert (changed.min_lr_ratio, changed.keep_checkpoints) == (0.5, 3)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    help_text = capsys.readouterr().out
    assert "--batch-size" in help_text and "--warmup-steps" in help_text and "--eval-memory-tokens" in help_text
    assert "--batch " not in help_text and "--warmup " not in help_text


def test_resumed_runs_must_keep_the_fields_that_change_what_is_trained():
    from multiscale.train import TrainConfig

    assert set(TrainConfig.resume_fields()) == {
        "model", "tokens", "ratios", "seq_len", "batch", "lr", "warmup_steps", "min_lr_ratio", "weight_decay",
        "b1", "b2", "eps", "clip", "grad_accum", "seed", "compute_dtype", "tie_embeddings"}


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_out_that_is_or_lies_under_a_file_is_refused_before_work(tiny_corpus, tmp_path, capsys, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "run"
    assert main(_train_args(str(tiny_corpus.path), out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("multiscale train: error: ") and "blocker" in err and len(err.splitlines()) == 1
    assert blocker.read_text() == "not a folder"


def _damaged_copy(tiny_corpus, tmp_path, how):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus.path, corpus)
    shard = corpus / "train" / "de-00000-of-00001.tokens"
    if how == "missing":
        shard.unlink()
    else:
        with open(shard, "r+b") as fh:
            fh.truncate(shard.stat().st_size // 2)
    return corpus


@pytest.mark.parametrize("how", ["missing", "truncated"])
def test_damaged_corpus_shard_is_named_and_nothing_is_trained(tiny_corpus, tmp_path, capsys, how):
    corpus = _damaged_copy(tiny_corpus, tmp_path, how)
    out = tmp_path / "run"
    assert main(_train_args(str(corpus), out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("multiscale train: error: ") and len(err.splitlines()) == 1
    assert "train/de-00000-of-00001.tokens" in err and ("missing" in err if how == "missing" else "truncated" in err)
    assert not out.exists()
