"""Training on real text (the tiny manual-page corpus) through the data pipeline."""

import json
import math

import numpy as np
import pytest

from multiscale.train import Hook, TrainConfig, read_metrics, run_training


@pytest.mark.slow  # trains on the real corpus
def test_loss_falls_on_real_text(tiny_corpus, tmp_path):
    families = list(tiny_corpus.grouping.family_names)
    ratios = {f: 0.0 for f in families}
    ratios.update({families[0]: 0.5, families[1]: 0.5})
    cfg = TrainConfig(corpus=str(tiny_corpus.path),
                      model="cpu-100k", tokens=40 * 8 * 64, ratios=ratios, out=str(tmp_path / "run"),
                      seq_len=64, batch=8, lr=1e-2, eval_every=20, checkpoint_every=20,
                      eval_tokens_per_language=1024)
    summary = run_training(cfg, progress=False)
    evals = [m["eval"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "eval" in m]
    assert [e["step"] for e in evals] == [20, 40]
    train = [m["loss"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert np.mean(train[-5:]) < np.mean(train[:5]) - 1.0
    for fam in families[:2]:
        first, last = evals[0]["families"][fam]["loss"], evals[1]["families"][fam]["loss"]
        assert last < first < math.log(259)  # nats/token; uniform over bytes is ln 259
        assert 0 < summary["families"][fam]["bpb"] < 8
    # every family is scored on the same held-out text, trained on or not
    assert set(summary["families"]) == set(families)
    assert [r["family"] for r in summary["rows"]] == families[:2]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["D"] == 40 * 8 * 64


class _Crash(Hook):
    def on_step(self, info):
        if info.step == 7:
            raise RuntimeError("crash at step 7")


@pytest.mark.slow  # trains on the real corpus three times
def test_interrupted_run_on_real_text_resumes_exactly(tiny_corpus, tmp_path):
    # The grain mixture iterator's state travels with the checkpoint (the SIGKILL test in
    # test_train_resume.py does the same with synthetic data in a subprocess).
    families = list(tiny_corpus.grouping.family_names)
    ratios = {f: 1 / len(families) for f in families}

    def config(name):
        return TrainConfig(corpus=str(tiny_corpus.path), model="cpu-100k", tokens=10 * 8 * 32,
                           ratios=ratios, out=str(tmp_path / name), seq_len=32, batch=8,
                           checkpoint_every=5, eval_tokens_per_language=256)

    with pytest.raises(RuntimeError, match="crash at step 7"):
        run_training(config("a"), hooks=[_Crash()], progress=False)
    resumed = run_training(config("a"), progress=False)
    assert resumed["resumed_from_step"] == 5
    full = run_training(config("b"), progress=False)

    def losses(name):
        return [(m["step"], m["loss"]) for m in read_metrics(tmp_path / name / "metrics.jsonl")
                if "loss" in m]

    assert losses("a") == losses("b") and len(losses("a")) == 10
    assert resumed["rows"] == [dict(r, run="a") for r in full["rows"]]
