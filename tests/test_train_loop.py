"""A whole run on synthetic data: outputs, resume, hooks, the non-finite guard, bad inputs."""

import csv
import dataclasses
import json

import numpy as np
import pytest
from fixtures.synthetic_data import SyntheticData

from multiscale.models.params import count_params
from multiscale.models.presets import get_preset
from multiscale.train import (
    Hook,
    NonFiniteLossError,
    ResumeMismatchError,
    TrainConfig,
    TrainConfigError,
    UnknownFamilyError,
    read_metrics,
    run_training,
)
from multiscale.train.checkpoint import Checkpointer
from multiscale.train.data_source import RunData

RATIOS = {"germanic": 0.6, "romance": 0.4, "slavic": 0.0}
SEQ, BATCH = 32, 8


def _config(tmp_path, name="run", **kw):
    base = dict(corpus="unused", model="cpu-100k", tokens=12 * BATCH * SEQ, ratios=RATIOS,
                out=str(tmp_path / name), seq_len=SEQ, batch=BATCH, eval_every=6,
                checkpoint_every=4, eval_batch=8)
    base.update(kw)
    return TrainConfig(**base)


def _data(ratios=RATIOS):
    return SyntheticData().run_data(ratios, seq_len=SEQ)


class Recorder(Hook):
    def __init__(self):
        self.steps, self.evals = [], []

    def on_step(self, info):
        self.steps.append(info.step)

    def on_eval(self, result):
        self.evals.append(result.step)


def test_run_writes_all_outputs_and_resumes_as_a_no_op(tmp_path):
    cfg = _config(tmp_path)
    rec = Recorder()
    summary = run_training(cfg, data=_data(), progress=False, hooks=[rec])
    out = tmp_path / "run"
    assert rec.steps == list(range(1, 13)) and rec.evals == [6, 12]

    # rows.csv: one row per family with p > 0, in the run-table schema
    with open(out / "rows.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["family"] for r in rows] == ["germanic", "romance"]
    assert list(rows[0]) == ["run", "family", "N", "D", "p", "loss", "loss_sem", "bpb",
                             "eval_tokens", "step", "model", "seed", "p_germanic", "p_romance",
                             "p_slavic"]
    n = count_params(get_preset("cpu-100k")).non_embedding
    for r in rows:
        assert int(r["N"]) == n and int(r["D"]) == 12 * BATCH * SEQ and int(r["step"]) == 12
        assert float(r["p"]) == RATIOS[r["family"]] and float(r["p_slavic"]) == 0.0
        assert 0 < float(r["loss_sem"]) < 0.2 * float(r["loss"]) and int(r["eval_tokens"]) > 0
        assert r["run"] == "run" and r["model"] == "cpu-100k"
    # the p = 0 family is evaluated and kept in summary.json only
    saved = json.loads((out / "summary.json").read_text())
    assert set(saved["zero_ratio_families"]) == {"slavic"}
    assert saved["families"]["slavic"]["loss"] > 0
    assert set(saved["languages"]) == {"de", "nl", "fr", "es", "ru"}
    fam = saved["families"]["germanic"]
    langs = [saved["languages"][x] for x in ("de", "nl")]
    # micro = token-weighted over languages; macro = plain mean
    micro = sum(x["loss"] * x["tokens"] for x in langs) / sum(x["tokens"] for x in langs)
    assert fam["loss"] == pytest.approx(micro) and fam["tokens"] == sum(x["tokens"] for x in langs)
    assert fam["loss_macro"] == pytest.approx(np.mean([x["loss"] for x in langs]))
    assert summary["rows"][0]["loss"] == pytest.approx(float(rows[0]["loss"]))

    metrics = read_metrics(out / "metrics.jsonl")
    train = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in train] == list(range(1, 13))
    assert [m["step"] for m in metrics if "eval" in m] == [6, 12]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    # re-running the same config finds the final checkpoint: no training, same results
    again = run_training(cfg, data=_data(), progress=False)
    assert again["resumed_from_step"] == 12
    assert again["rows"] == summary["rows"]
    assert len(read_metrics(out / "metrics.jsonl")) == len(metrics) + 1  # + the final eval

    # the same folder with another seed is refused before any compute
    with pytest.raises(ResumeMismatchError, match="seed=0"):
        run_training(dataclasses.replace(cfg, seed=1), data=_data(), progress=False)
    # a damaged config.json is named, not a JSON traceback
    from multiscale.errors import DamagedFileError

    (out / "config.json").write_text('{"model": "cpu-1')
    with pytest.raises(DamagedFileError, match="run configuration .*config.json.* is damaged"):
        run_training(cfg, data=_data(), progress=False)


def test_loss_falls_on_synthetic_text(tmp_path):
    cfg = _config(tmp_path, tokens=40 * BATCH * SEQ, lr=1e-2, eval_every=0, checkpoint_every=0)
    run_training(cfg, data=_data(), progress=False)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


class _NaNAt:
    """Wraps an iterator; from batch `k` (1-based) on, the weights are NaN."""

    def __init__(self, it, k):
        self.it, self.k = it, k

    def __next__(self):
        batch = next(self.it)
        if self.it.index >= self.k:
            batch = dict(batch, weights=np.full_like(batch["weights"], np.nan))
        return batch

    def get_state(self):
        return self.it.get_state()

    def set_state(self, state):
        self.it.set_state(state)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    data = _data()
    poisoned = dataclasses.replace(
        data, make_train_iterator=lambda *a: _NaNAt(data.make_train_iterator(*a), 7))
    cfg = _config(tmp_path, checkpoint_every=3, eval_every=0)
    with pytest.raises(NonFiniteLossError, match="at step 7 "):
        run_training(cfg, data=poisoned, progress=False)
    assert Checkpointer(tmp_path / "run" / "checkpoints").latest_step() == 6
    steps = [m["step"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert steps == list(range(1, 7))
    # with clean data the same command resumes from step 6 and finishes
    summary = run_training(cfg, data=data, progress=False)
    assert summary["resumed_from_step"] == 6 and summary["steps"] == 12


def test_absurd_learning_rate_is_caught(tmp_path):
    cfg = _config(tmp_path, lr=1e30, clip=0.0, weight_decay=0.0, warmup_steps=0,
                  checkpoint_every=0, eval_every=0)
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss .* at step \d+"):
        run_training(cfg, data=_data(), progress=False)


@pytest.mark.parametrize("change,error,match", [
    (dict(model="cpu-7"), ValueError, "unknown model preset 'cpu-7'"),
    (dict(mesh="data=2"), ValueError, "mesh data=2,fsdp=1,tensor=1 has 2 devices but 1"),
    (dict(mesh="data=1,fsdp=1,tensor=1", grad_accum=3, batch=9), None, None),
    (dict(ratios={"germanic": 0.5, "celtic": 0.5}), UnknownFamilyError, "'celtic'"),
])
def test_bad_inputs_fail_before_any_compute(tmp_path, change, error, match):
    if error is None:  # a valid corner: batch 9 in 3 micro-batches
        cfg = _config(tmp_path, tokens=9 * SEQ, **change)
        assert cfg.steps == 1
        return
    cfg = _config(tmp_path, **change)
    with pytest.raises(error, match=match):
        run_training(cfg, data=_data(), progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change,match", [
    (dict(ratios={"germanic": 0.5, "romance": 0.3}), "sum to 1"),
    (dict(ratios={"germanic": 1.2, "romance": -0.2}), "'romance' is negative"),
    (dict(tokens=100), "less than one step"),
    (dict(batch=8, grad_accum=3), "not divisible by grad_accum=3"),
    (dict(eval_every=-1), "eval_every"),
    (dict(ratios="germanic0.5"), "FAMILY=VALUE"),
])
def test_config_errors_name_the_field(tmp_path, change, match):
    with pytest.raises(TrainConfigError, match=match):
        _config(tmp_path, **change)


def test_step_count_from_token_budget(tmp_path):
    cfg = _config(tmp_path, tokens=1000 * SEQ + 5, batch=8)
    assert cfg.steps == 125 and cfg.tokens_trained == 1000 * SEQ
    assert cfg.warmup == 6  # 5% of the steps
    assert dataclasses.replace(cfg, ratios="germanic=0.25,romance=0.75").ratios.to_dict() == {
        "germanic": 0.25, "romance": 0.75}


def test_rundata_contract_is_checked(tmp_path):
    data = _data()
    short = dataclasses.replace(data, make_train_iterator=lambda b, i, n: data.make_train_iterator(
        b - 1, i, n))
    with pytest.raises(ValueError, match="expected the per-host batch 8"):
        run_training(_config(tmp_path), data=short, progress=False)
    assert isinstance(data, RunData)
