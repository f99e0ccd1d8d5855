"""`multiscale next` measured; prints ONE JSON object.

Three parts (docs/design.md, "Active design"):

- ``speed``: `plan_next` on a hand-made posterior of the multilingual law (5 families, `--draws` draws,
  unidentified in D like tests/test_decisions_next_runs.py) with the candidates it generates (presets
  in and above the fitted range x budgets x mixtures), k = 8: seconds, candidates, draws.
- ``ess``: why the value is Bayes-linear and not importance reweighting. For the top candidate
  of the synthetic NUTS fit (``refit`` below), simulate its losses from 64 posterior draws with the
  fit's Student-t noise, weight every draw by the likelihood of those losses, and report the
  effective sample size (sum w)^2 / sum w^2 of the weights (median over the 64 outcomes).
- ``refit``: the synthetic case of the tests with NUTS (3 families, runs at cpu-100k/200k/400k,
  every run at D0 = 2e5, 6 mixtures each, 1% noise, 2 chains x `--nuts-draws`): `next` ranks the
  candidates; then the top pick and the best candidate at D0 are each trained in silico (their
  losses drawn from the truth with the same noise), the table refitted, and the posterior
  uncertainty U of p* at the target measured: predicted (Bayes-linear) against refitted.

Usage: python benchmarks/bench_next.py [--part speed|ess|refit|all] [--draws 1000] [--nuts-draws 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

# the synthetic run tables (tests/fixtures), shared with the tests
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

TARGET = (1.55e6, 3.2e6)
D0 = 2e5


def _fake_fit(S: int, F: int = 5, seed: int = 0):
    """A posterior of the multilingual law from runs at one budget D0 (beta free, the D term pinned)."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    import test_decisions_next_runs as t

    t.FAMS = tuple(f"fam{i}" for i in range(F))
    return t._fake_fit(S=S, seed=seed)


def speed(draws: int) -> dict:
    from multiscale.decisions.next_runs import plan_next

    fit = _fake_fit(draws)
    plan_next(fit, *TARGET, 1e13, k=1)  # imports and first calls
    t0 = time.perf_counter()
    res = plan_next(fit, *TARGET, 1e13, k=8)
    return {"seconds": time.perf_counter() - t0, "candidates": res.n_candidates, "draws": res.n_draws,
            "families": len(res.families), "chosen": len(res.chosen),
            "first": {k: res.chosen[0][k] for k in ("preset", "D", "label")}}


def _table():
    from fixtures.synthetic import synthetic_runs, synthetic_truth

    from multiscale.decisions.candidates import preset_sizes

    sizes = preset_sizes()
    truth = synthetic_truth(3, seed=1)
    N = tuple(sizes[p] for p in ("cpu-100k", "cpu-200k", "cpu-400k"))
    return truth, synthetic_runs(truth, N=N, D=(D0,), n_mixtures=6, noise=0.01, seed=0)


def _fit(df, draws: int):
    from multiscale.laws import fit_bayes

    return fit_bayes(df, chains=2, draws=draws, warmup=draws, seed=0, warn=False, extrapolation=False)


def _uncertainty(fit, a_F) -> dict:
    from multiscale.decisions.next_runs import target_state

    st = target_state(fit, *TARGET, "raw", "regret")
    lo, hi = np.quantile(st.P_SxF, [0.05, 0.95], axis=0)
    return {"U": float(np.var(st.P_SxF, axis=0, ddof=1) @ a_F), "width_sum": float((hi - lo).sum()),
            "expected_regret": st.expected_regret}


def _trained(truth, df, cand, seed: int):
    """`df` plus the candidate's run, its losses drawn from the truth with 1% noise."""
    import pandas as pd

    from multiscale.laws.forms import get_law, predict_loss

    rng = np.random.default_rng(seed)
    rows = []
    for f, p in cand.ratios:
        mean = float(predict_loss(get_law("multilingual"), {k: np.float64(v) for k, v in truth[f].items()},
                                  cand.N, cand.D, p))
        rows.append({"run": "new", "family": f, "N": cand.N, "D": float(cand.D), "p": p,
                     "loss": mean * float(np.exp(0.01 * rng.standard_normal())),
                     **{f"p_{g}": q for g, q in cand.ratios}})
    return pd.concat([df, pd.DataFrame(rows)], ignore_index=True)


def _ranked(fit, df):
    from multiscale.decisions.candidates import FittedRange, generate
    from multiscale.decisions.next_runs import target_state, values_alone

    st = target_state(fit, *TARGET, "raw", "regret")
    cands = generate(FittedRange.of(fit, df), st.families, *TARGET, st.robust)
    v = values_alone(fit, *TARGET, cands)
    return st, cands, v


def ess(fit, df) -> dict:
    from multiscale.decisions.next_runs import candidate_rows
    from multiscale.laws.bayes import STUDENT_NU
    from multiscale.laws.predict import predict_rows

    st, cands, v = _ranked(fit, df)
    top = cands[int(np.argmax(v / np.array([c.flops for c in cands])))]
    rows, _ = candidate_rows(fit, [top], st.families)
    mu = np.log(predict_rows(fit, rows))  # (S, R)
    sig_SxF = fit.idata.posterior["sigma"].transpose("chain", "draw", "family").values.reshape(-1, len(fit.families))
    sig = sig_SxF[:, [fit.family_index(f) for f in rows.family]]
    rng = np.random.default_rng(0)
    out = []
    for s in rng.choice(mu.shape[0], 64, replace=False):
        y = mu[s] + sig[s] * rng.standard_t(STUDENT_NU, mu.shape[1])
        z = (y - mu) / sig
        logw = (-(STUDENT_NU + 1) / 2 * np.log1p(z ** 2 / STUDENT_NU) - np.log(sig)).sum(axis=1)
        w = np.exp(logw - logw.max())
        out.append(w.sum() ** 2 / (w ** 2).sum())
    return {"candidate": {"preset": top.preset, "D": top.D, "label": top.label}, "draws": int(mu.shape[0]),
            "ess_median": float(np.median(out)), "ess_q10": float(np.quantile(out, 0.1)),
            "ess_q90": float(np.quantile(out, 0.9))}


def refit(fit, df, truth, draws: int) -> dict:
    st, cands, v = _ranked(fit, df)
    costs = np.array([c.flops for c in cands])
    top = int(np.argmax(v / costs))
    at_d0 = [i for i, c in enumerate(cands) if c.D == int(D0)]
    best_d0 = at_d0[int(np.argmax(v[at_d0] / costs[at_d0]))]
    now = _uncertainty(fit, st.a_F)
    out = {"now": now, "candidates": len(cands)}
    for name, i in (("top", top), ("best_at_D0", best_d0)):
        t0 = time.perf_counter()
        after = _uncertainty(_fit(_trained(truth, df, cands[i], seed=1), draws), st.a_F)
        out[name] = {"preset": cands[i].preset, "D": cands[i].D, "label": cands[i].label,
                     "flops": cands[i].flops, "predicted_U_after": now["U"] - float(v[i]),
                     "refit": after, "refit_seconds": time.perf_counter() - t0}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["speed", "ess", "refit", "all"])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--nuts-draws", type=int, default=300)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    out: dict = {"load_before": os.getloadavg()}
    if args.part in ("speed", "all"):
        out["speed"] = speed(args.draws)
    if args.part in ("ess", "refit", "all"):
        truth, df = _table()
        t0 = time.perf_counter()
        fit = _fit(df, args.nuts_draws)
        out["fit_seconds"] = time.perf_counter() - t0
        out["ess"] = ess(fit, df)
        if args.part in ("refit", "all"):
            out["refit"] = refit(fit, df, truth, args.nuts_draws)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
