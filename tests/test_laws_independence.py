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


def _ols_with_dummies(df, fam):
    """Reference: OLS of log L on log p_i (and the other ratios) with one explicit intercept
    column per (N, D), as the test was first written."""
    sub = df[df["family"] == fam]
    g = sub.groupby(["N", "D"]).ngroup().to_numpy()
    dummies = (g[:, None] == np.unique(g)[None, :]).astype(float)
    y = np.log(sub["loss"].to_numpy())
    X_own = np.column_stack([dummies, np.log(sub[f"p_{fam}"].to_numpy())])
    others = [c for c in ("p_a", "p_b", "p_c", "p_d") if c != f"p_{fam}"]
    X_full = np.column_stack([X_own, sub[others].to_numpy()])
    tss = sum(((y[g == k] - y[g == k].mean()) ** 2).sum() for k in np.unique(g))
    r2 = [1 - ((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2).sum() / tss for X in (X_own, X_full)]
    return -np.linalg.lstsq(X_own, y, rcond=None)[0][-1], r2[0], r2[1]


def test_one_intercept_per_scale_matches_the_explicit_regression():
    """The per-(N, D) intercepts are taken out by demeaning (no n x G design matrix): the slopes
    and R^2 equal those of the regression with one explicit intercept column per (N, D)."""
    df = _mixture_runs(0.5, n=300, seed=3)
    scale = np.repeat(np.arange(300) % 3, 4)  # three model sizes, each with its own loss level
    df["N"] = 1e7 * (1 + scale)
    df["D"] = 1e9 * (1 + scale)
    df["loss"] = df["loss"] * (1 + 0.2 * scale)
    res = independence_test(df)
    for fam in "abcd":
        gamma, r2_own, r2_full = _ols_with_dummies(df, fam)
        r = res.families[fam]
        assert r.gamma_own == pytest.approx(gamma, rel=1e-9)
        assert r.r2_own == pytest.approx(r2_own, rel=1e-9) and r.r2_full == pytest.approx(r2_full, rel=1e-9)
    assert res.families["b"].verdict == "depends on other families"


def test_a_loss_that_never_varies_is_refused():
    df = _mixture_runs(0.0, n=40)
    df.loc[df["family"] == "c", "loss"] = 3.0  # a broken evaluation writing one number
    with pytest.raises(RunTableError, match="family 'c': its loss is the same in every run"):
        independence_test(df)


def test_cli_reads_old_mac_text_and_refuses_a_column_named_twice(tmp_path, capsys):
    from multiscale.cli import main

    df = _mixture_runs(0.0, n=40)
    text = df.to_csv(index=False)
    (tmp_path / "lf.csv").write_text(text)
    (tmp_path / "cr.csv").write_bytes(text.replace("\n", "\r").encode())
    assert main(["independence", str(tmp_path / "lf.csv"), "--json"]) == 0
    lf = capsys.readouterr().out
    assert main(["independence", str(tmp_path / "cr.csv"), "--json"]) == 0
    assert capsys.readouterr().out == lf
    lines = text.splitlines()
    (tmp_path / "dup.csv").write_text("\n".join([lines[0] + ",loss"] + [x + ",1.0" for x in lines[1:]]) + "\n")
    assert main(["independence", str(tmp_path / "dup.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "dup.csv: the header (line 1) names column(s) ['loss']" in err
