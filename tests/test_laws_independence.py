"""Independence test: honest both ways on synthetic data, and on the real RegMix runs."""

import numpy as np
import pandas as pd
import pytest

from multiscale.datasets import load_regmix, regmix_run_table
from multiscale.laws.independence import independence_test
from multiscale.runs import RunTableError


def _mixture_runs(transfer: float, n=200, seed=0):
    """4 families; family 'b' gains from 'a' when transfer > 0 (log L_b -= transfer * p_a)."""
    rng = np.random.default_rng(seed)
    fams = ["a", "b", "c", "d"]
    gam = {"a": 0.2, "b": 0.15, "c": 0.3, "d": 0.1}
    rows = []
    for r in range(n):
        p = rng.dirichlet(np.ones(4))
        for j, f in enumerate(fams):
            logL = np.log(3.0) - gam[f] * np.log(p[j]) + 0.01 * rng.standard_normal()
            if f == "b":
                logL -= transfer * p[0]
            rows.append({"run": f"r{r}", "family": f, "N": 1e7, "D": 1e9, "p": p[j],
                         "loss": float(np.exp(logL)), **{f"p_{g}": p[i] for i, g in enumerate(fams)}})
    return pd.DataFrame(rows)


def test_independent_mixture_passes():
    res = independence_test(_mixture_runs(0.0))
    for fam, r in res.families.items():
        assert r.verdict == "own ratio suffices", (fam, r)
        assert r.share_own > 0.97
        assert r.top_interval[0] <= 0 <= r.top_interval[1] or abs(r.top_effect) < 0.01
    assert res.families["c"].gamma_own == pytest.approx(0.3, abs=0.02)


def test_transfer_is_detected():
    res = independence_test(_mixture_runs(0.5))
    b = res.families["b"]
    assert b.verdict == "depends on other families"
    assert b.top_family == "a" and b.top_effect < -0.02 and b.top_interval[1] < 0
    assert res.families["c"].verdict == "own ratio suffices"


def test_needs_mixture_columns():
    df = _mixture_runs(0.0)[["run", "family", "N", "D", "p", "loss"]]
    with pytest.raises(RunTableError, match="p_<family>"):
        independence_test(df)


def test_regmix_real_runs_show_both_outcomes():
    df, dropped = regmix_run_table(split="train")  # the tables shipped in the package
    assert dropped > 0 and (df["p"] > 0).all()
    assert df["family"].nunique() == 13 and df["run"].nunique() == 512
    res = independence_test(df)
    verdicts = {f: r.verdict for f, r in res.families.items()}
    assert "own ratio suffices" in verdicts.values()
    assert "depends on other families" in verdicts.values()
    # Code and maths domains follow their own ratio; PubMed abstracts learn from NIH ExPORTER
    # (both biomedical abstracts), a neighbour effect the law cannot see.
    assert verdicts["dm_mathematics"] == "own ratio suffices"
    pa = res.families["pubmed_abstracts"]
    assert pa.verdict == "depends on other families" and pa.top_family == "nih_exporter"
    assert pa.top_interval[1] < 0
    assert dropped == 512 * 13 - len(df)  # every (run, domain) with weight 0 was left out
    # the held-out RegMix runs agree on the clear cases
    test_df = load_regmix("test")
    res2 = independence_test(test_df)
    assert res2.families["dm_mathematics"].share_own > 0.9
