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
