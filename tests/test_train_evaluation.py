"""Held-out statistics: token-weighted loss, sequence-level SEM, bits per byte, micro/macro."""

import math

import numpy as np
import pytest

from multiscale.train.evaluation import ratio_stats


def test_ratio_stats_by_hand():
    nll = np.array([10.0, 30.0, 0.0, 25.0])
    tok = np.array([5.0, 10.0, 0.0, 10.0])  # the empty (padding) row is ignored
    s = ratio_stats(nll, tok, n_bytes=50.0)
    assert s.loss == pytest.approx(65 / 25)
    assert s.tokens == 25 and s.sequences == 3
    resid = np.array([10 - 2.6 * 5, 30 - 2.6 * 10, 25 - 2.6 * 10])
    assert s.loss_sem == pytest.approx(math.sqrt(3 / 2 * (resid ** 2).sum()) / 25)
    assert s.bpb == pytest.approx(65 / math.log(2) / 50)


def test_sem_matches_the_spread_of_resampled_means():
    # With equal-length rows the ratio SEM reduces to std(row means) / sqrt(n).
    rng = np.random.default_rng(0)
    per_row = rng.normal(3.0, 0.5, size=200)
    s = ratio_stats(per_row * 20, np.full(200, 20.0), n_bytes=1.0)
    assert s.loss == pytest.approx(per_row.mean())
    assert s.loss_sem == pytest.approx(per_row.std(ddof=1) / math.sqrt(200), rel=1e-9)


def test_single_row_has_no_sem():
    s = ratio_stats(np.array([4.0]), np.array([2.0]), n_bytes=3.0)
    assert s.loss == 2.0 and math.isnan(s.loss_sem)
    assert s.to_json()["loss_sem"] is None


def test_eval_rows_follow_the_sequence_length_and_the_memory_budget():
    from multiscale.train import TrainConfig

    def rows(**kw):
        base = dict(corpus="c", model="cpu-100k", tokens=10**7, ratios={"germanic": 1.0}, out="o")
        return TrainConfig(**{**base, **kw}).eval_rows

    assert rows() == 32                                  # seq_len 128: the eval_batch cap
    assert rows(seq_len=1024) == 8 and rows(seq_len=8192, batch=1) == 1  # 8192 tokens per batch
    assert rows(seq_len=100_000, batch=1) == 1           # never below one row
    assert rows(seq_len=64, eval_batch=64) == 64         # the demo's settings are unchanged
    assert rows(seq_len=512, eval_memory_tokens=1 << 20) == 32
    with pytest.raises(ValueError, match="eval_memory_tokens"):
        rows(eval_memory_tokens=0)


def _eval_fixture():
    from fixtures.synthetic_data import SyntheticData

    from multiscale.models.presets import get_preset
    from multiscale.train.step import OptimizerSpec, compiled_steps

    steps = compiled_steps(get_preset("cpu-100k", compute_dtype="float32"),
                           (("data", 1), ("fsdp", 1), ("tensor", 1)),
                           OptimizerSpec(0.9, 0.95, 1e-8, 0.1, 1.0, 1))
    data = SyntheticData().run_data({"germanic": 0.5, "romance": 0.5}, seq_len=64,
                                    eval_rows_per_language=7)
    return steps, data.eval_set, steps.init(0).params


def test_eval_batching_does_not_change_the_losses():
    from multiscale.train.evaluation import Evaluator

    steps, eval_set, params = _eval_fixture()
    results = {rows: Evaluator(eval_set, steps, rows)(params, 0) for rows in (1, 3, 32)}
    for rows, evaluator_rows in ((1, 1), (3, 3), (32, 32)):
        ev = Evaluator(eval_set, steps, rows)
        assert {b["inputs"].shape for b in ev._batches} == {(evaluator_rows, 64)}  # bounded batches
    # per-row sums are independent of the other rows of a batch: identical statistics (not just close)
    assert results[1].languages == results[3].languages == results[32].languages
    assert results[1].families == results[32].families
    assert all(math.isfinite(s.loss) and s.tokens > 0 for s in results[1].languages.values())
