"""How often does a perfectly calibrated 90% interval land in 80-95% coverage on every ladder?

Issue 22 judges the extrapolation term by leave-one-ladder-out: on each shipped ladder, the 90%
intervals should cover 80-95% of the larger sizes, pooled over the splits of
benchmarks/bench_ladder_holdout.py (fit on N <= N_max / H, H = 2, 4, 10; a ladder's identical
splits counted once). The held-out runs of one split share one fit, so their errors share that
fit's miss: a ladder's coverage is far more variable than a binomial count of its runs.

This simulates intervals that are calibrated by construction. The log error of held-out run r of
split s, in units of its own predictive sd, is

    u_sr = sqrt(rho) z_s + sqrt(1 - rho) eps_sr,      eps_sr ~ N(0, 1)
    z_s  = sqrt(rho_split) w + sqrt(1 - rho_split) v_s,   w, v_s ~ N(0, 1)   (w: one per ladder)

so every u_sr is N(0, 1) and the central 90% interval (|u| <= 1.645) covers each run with
probability 0.90 exactly; rho is the share of a run's error variance that its split's runs share,
rho_split the correlation of that shared miss between the splits of one ladder (they are nested
windows of the same runs). The row counts are the ladders' (loaded with the library, split as the
holdout benchmark splits them). With ``--errors CSV`` (written by ``python
benchmarks/bench_extrapolation_field.py --errors CSV``) it also estimates rho from the field's
point-fit errors: errors standardised by the field band's sd (c + d log k, pooled), the share of
their variance between windows (one-way ANOVA, each window's errors about their mean), pooled and
per ladder; the simulation then runs at the pooled rho and at each ladder's own.

Prints one JSON object: per (rho, rho_split), per ladder the probability that its pooled coverage
lies in [0.80, 0.95], and the probability that all ladders do at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from multiscale.datasets import LADDERS, load_ladder
from multiscale.laws.extrapolation import FIELD_PRIOR_PATH

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402  (a sibling script, not a package)

HOLDS = (2.0, 4.0, 10.0)
Z90 = 1.6448536269514722  # the central 90% interval of a standard normal
LOW, HIGH = 0.80, 0.95


def split_rows(name: str) -> list[int]:
    """Held-out row counts of the ladder's distinct splits (N > N_max / H), as bench_ladder_holdout."""
    df = load_ladder(name)
    seen, out = set(), []
    for h in HOLDS:
        fitted = df["N"] <= df["N"].max() / h
        key = tuple(np.flatnonzero(fitted.to_numpy()))
        if key not in seen and (~fitted).any():
            seen.add(key)
            out.append(int((~fitted).sum()))
    return out


def reach(rows: dict[str, list[int]], rho: float | dict[str, float], rho_split: float, sims: int, seed: int) -> dict:
    """Per ladder P(pooled coverage in [LOW, HIGH]) of calibrated intervals, and P(every ladder);
    `rho` one value, or one per ladder."""
    rng = np.random.default_rng(seed)
    ok = {}
    for name, counts in rows.items():
        r = rho[name] if isinstance(rho, dict) else rho
        w = rng.standard_normal(sims)
        covered = np.zeros(sims)
        for n in counts:
            z = np.sqrt(rho_split) * w + np.sqrt(1 - rho_split) * rng.standard_normal(sims)
            u = np.sqrt(r) * z[:, None] + np.sqrt(1 - r) * rng.standard_normal((sims, n))
            covered += (np.abs(u) <= Z90).sum(axis=1)
        share = covered / sum(counts)
        ok[name] = (share >= LOW - 1e-12) & (share <= HIGH + 1e-12)
    every = np.logical_and.reduce(list(ok.values()))
    return {"rho": rho, "rho_split": rho_split, "per_ladder": {k: round(float(v.mean()), 4) for k, v in ok.items()},
            "every_ladder": round(float(every.mean()), 4)}


def rho_from_errors(path: Path, field_prior: Path) -> dict:
    """rho of the field's point-fit errors, pooled and per ladder (see the module docstring)."""
    errs = pd.read_csv(path)
    band = json.loads(field_prior.read_text())["summary"]["log_k"]["pooled"]
    errs["u"] = errs["e"] / (band["c"] + band["d"] * errs["log_k"])

    def icc(d: pd.DataFrame) -> float:
        g = d.groupby(["ladder", "window"])["u"]
        within = float(((d["u"] - g.transform("mean")) ** 2).sum() / (len(d) - g.ngroups))
        n0 = float(g.size().mean())
        between = max(0.0, float(g.mean().var(ddof=1)) - within / n0)
        return between / (between + within)

    return {"pooled": round(icc(errs), 3), **{k: round(icc(d), 3) for k, d in errs.groupby("ladder")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=20000, help="simulated sets of ladders (default 20000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--errors", default="", help="the field's errors CSV, to estimate rho from them")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = {name: split_rows(name) for name in LADDERS}
    out = {"benchmark": "coverage_reach", "cpu": cpu_model(), "target": [LOW, HIGH], "held_out_rows": rows}
    rhos = [0.0, 0.25, 0.5, 0.75, 0.9]
    if args.errors:
        out["rho_from_field_errors"] = est = rho_from_errors(Path(args.errors), FIELD_PRIOR_PATH)
        rhos = sorted(set(rhos) | {est["pooled"]}) + [{k: est[k] for k in rows}]
    out["runs"] = [reach(rows, r, rs, args.sims, args.seed) for r in rhos for rs in (0.0, 0.5)]
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
