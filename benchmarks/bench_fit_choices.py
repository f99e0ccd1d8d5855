"""Which fitting choices extrapolate best: leave-largest-out errors on the public ladders (issue 22).

For each ladder of `multiscale.datasets.LADDERS`, each family and each hold-out factor H, fit a law
on the family's runs with N <= N_max / H and predict every run of that family with larger N; the
log error ``e = log(pred / obs)`` (> 0: over-prediction) is scored as its mean (the bias), MAPE,
and its growth with ``log k = log(N / N_hi)`` (the least-squares slope of e on log k through 0).
``--per-hi 1`` adds rolling windows (`bench_extrapolation_field.windows`, the widest window of each
N_hi: fit on N in [N_lo, N_hi], predict N > N_hi); ``--holds ''`` leaves the hold-outs out. Run time
on 2 shared cores (load ~19): about 26 min for the hold-outs with every choice, 8 min per two
ladders of windows with three choices (benchmarks/FIT_CHOICES.md).

The choices (one changed at a time from the library's default, plus the combinations named):

- ``default``: the library's point fit, `fit_point(law="chinchilla")`: Huber (delta = 1e-3) on
  log-loss residuals (Hoffmann et al. 2022, approach 3), no weights, no prior, the full start grid;
- ``huber``: the same objective with this file's multi-start search (below), to show the search
  matches the library's;
- ``gaussian``: least squares on log loss; ``student_t``: Student-t (nu = 5, the library's NUTS
  likelihood) with its scale fitted;
- ``w_compute``, ``w_N``: Huber with each row weighted by 6ND, or by N (normalized to mean 1);
- ``gaussian_Eprior``, ``student_t_Eprior``, ``student_t_Eprior_tight``: maximum a posteriori with
  the library's NUTS prior on log E (Normal(ybar - 0.7, 1), ybar the family's mean log loss), or
  a tight one (sd 0.25); the Gaussian's scale is profiled out (``n/2 log RSS``);
  ``student_t_map`` adds the NUTS priors on the exponents, log alpha, log beta ~ Normal(log 0.3, 0.5);
- ``varpro``: variable projection (Golub & Pereyra 1973): for fixed (alpha, beta) the law is
  linear in (E, A, B), solved by non-negative least squares on relative loss residuals ((L_hat -
  L) / L, Gaussian on log loss to first order); only the exponents are searched (a grid of
  0.02..1.5 in 75 steps each, then Nelder-Mead from the 3 best points);
- ``kaplan``, ``kaplan_student_t``: the library's `kaplan` law (Kaplan et al. 2020 eq. 1.5 plus E)
  instead of the chinchilla sum, Huber (through `fit_point`) or Student-t (this file's search).

This file's search (all but ``default``, ``kaplan`` and ``varpro``): the library's start grid
(`start_grid`, 4,500 starts; Student-t adds log scale = log 0.02), log N and log D centred, every
start SCREEN L-BFGS evaluations (`multiscale.laws.lbfgs`), the KEEP best on to convergence, float64.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize

import multiscale.laws.lbfgs as lbfgs
from multiscale.datasets import LADDERS, load_ladder
from multiscale.laws import fit_point, get_law
from multiscale.laws.forms import log_scale, predict_loss
from multiscale.laws.point import start_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_extrapolation_field as field  # noqa: E402  (a sibling script, not a package)

HOLDS = (4.0, 10.0)
MIN_SIZES = 3  # distinct fitted sizes (5 parameters per family)
HUBER_DELTA = 1e-3
NU = 5.0
E_PRIOR = (-0.7, 1.0)  # log E ~ Normal(ybar + loc, sd): the library's NUTS prior (bayes.PRIORS["log_E"])
TIGHT_E_SD = 0.25
EXPO_PRIOR = (float(np.log(0.3)), 0.5)  # log alpha, log beta ~ Normal: bayes.PRIORS["log_alpha"], ["log_beta"]
SCREEN, KEEP, MAX_EVALS = 20, 128, 3000
R_PAD = 256  # rows every table is padded to (weight 0), so each choice compiles once
VARPRO_GRID = np.linspace(0.02, 1.5, 75)


@dataclass(frozen=True)
class Choice:
    law: str = "chinchilla"
    loss: str = "huber"  # huber | gaussian | student_t
    weight: str = "none"  # none | compute | N
    e_prior_sd: float = 0.0  # 0: no prior on log E
    expo_prior: bool = False  # the library's NUTS priors on log alpha, log beta too
    engine: str = "local"  # library (fit_point) | local (this file's search) | varpro


CHOICES = {
    "default": Choice(engine="library"),
    "huber": Choice(),
    "gaussian": Choice(loss="gaussian"),
    "student_t": Choice(loss="student_t"),
    "w_compute": Choice(weight="compute"),
    "w_N": Choice(weight="N"),
    "gaussian_Eprior": Choice(loss="gaussian", e_prior_sd=E_PRIOR[1]),
    "student_t_Eprior": Choice(loss="student_t", e_prior_sd=E_PRIOR[1]),
    "student_t_Eprior_tight": Choice(loss="student_t", e_prior_sd=TIGHT_E_SD),
    "student_t_map": Choice(loss="student_t", e_prior_sd=E_PRIOR[1], expo_prior=True),
    "varpro": Choice(engine="varpro", loss="gaussian"),
    "kaplan": Choice(law="kaplan", engine="library"),
    "kaplan_student_t": Choice(law="kaplan", loss="student_t"),
}

_PROGRAMS: dict = {}


def _programs(c: Choice):
    """Jitted (init, run) of the choice's objective ``f(x_PxG, rows) -> f_G`` (cached)."""
    import jax
    import jax.numpy as jnp

    key = (c.law, c.loss, c.e_prior_sd > 0, c.expo_prior)
    if key in _PROGRAMS:
        return _PROGRAMS[key]
    law = get_law(c.law)

    def objective(x, rows):
        lN, lD, lL, w, e0, e_sd = rows
        th = {"a": x[0], "b": x[1], "e": x[2], "alpha": x[3], "beta": x[4]}
        r = log_scale(law, th, lN, lD, jnp) - lL  # R x G
        prior = 0.5 * ((x[2] - e0) / e_sd) ** 2 if c.e_prior_sd > 0 else 0.0
        if c.expo_prior:
            prior = prior + sum(0.5 * ((jnp.log(jnp.maximum(v, 1e-8)) - EXPO_PRIOR[0]) / EXPO_PRIOR[1]) ** 2
                                for v in (x[3], x[4]))
        if c.loss == "huber":
            a = jnp.abs(r)
            return jnp.sum(w * jnp.where(a <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (a - 0.5 * HUBER_DELTA)), 0)
        if c.loss == "gaussian":
            rss = jnp.sum(w * r * r, 0)
            return 0.5 * jnp.sum(w) * jnp.log(rss) + prior if c.e_prior_sd > 0 else 0.5 * rss
        ls = x[5]
        z2 = (r / jnp.exp(ls)) ** 2
        return jnp.sum(w * (0.5 * (NU + 1) * jnp.log1p(z2 / NU) + ls), 0) + prior

    def vg(rows):
        return lbfgs.batched_value_and_grad(lambda x: objective(x, rows))

    init = jax.jit(lambda x0, rows: lbfgs.init_state(vg(rows), x0))
    run = jax.jit(lambda st, rows, k: lbfgs.run(vg(rows), st, k))
    _PROGRAMS[key] = (init, run)
    return init, run


def row_weights(N, D, how: str) -> np.ndarray:
    v = {"none": np.ones_like(N), "compute": 6.0 * N * D, "N": N}[how]
    return v / v.mean()


def local_fit(c: Choice, N, D, L) -> dict:
    """Raw parameters on centred log N, log D (``lN0``, ``lD0`` included) by this file's search."""
    import jax
    import jax.numpy as jnp

    lN0, lD0 = np.log(N).mean(), np.log(D).mean()
    n = len(L)
    pad = np.zeros(R_PAD - n)
    col = [np.concatenate([v, pad])[:, None] for v in (np.log(N) - lN0, np.log(D) - lD0, np.log(L),
                                                       row_weights(N, D, c.weight))]
    e0 = float(np.log(L).mean() + E_PRIOR[0])
    names, G = start_grid(get_law(c.law))
    X0 = G.T.copy()  # K x G over (a, b, e, alpha, beta)
    X0[0] -= X0[3] * lN0
    X0[1] -= X0[4] * lD0
    if c.loss == "student_t":
        X0 = np.vstack([X0, np.full((1, X0.shape[1]), np.log(0.02))])
    init, run = _programs(c)
    with jax.enable_x64(True):
        rows = tuple(jnp.asarray(v) for v in col) + (jnp.asarray(e0), jnp.asarray(c.e_prior_sd or 1.0))
        st = run(init(jnp.asarray(X0), rows), rows, jnp.asarray(SCREEN)).map(np.asarray)
        f = np.where(np.isfinite(st.f), st.f, np.inf)
        idx = np.argsort(f)[:KEEP]
        st = st.map(lambda v: jnp.asarray(v[..., idx]))
        st = run(st, rows, jnp.asarray(MAX_EVALS)).map(np.asarray)
    f = np.where(np.isfinite(st.f), st.f, np.inf)
    j = int(np.argmin(f))
    x = st.x[:, j]
    return {"th": dict(zip(names, x[:5])), "lN0": lN0, "lD0": lD0, "f": float(f[j]),
            "grad_norm": float(np.linalg.norm(st.g[:, j])), "sigma": float(np.exp(x[5])) if len(x) > 5 else None}


def local_predict(c: Choice, fit: dict, N, D) -> np.ndarray:
    th = {k: np.asarray(v) for k, v in fit["th"].items()}
    return np.exp(log_scale(get_law(c.law), th, np.log(N) - fit["lN0"], np.log(D) - fit["lD0"]))


def varpro_fit(N, D, L, w) -> dict:
    """(E, A, B, alpha, beta): NNLS of (E, A, B) at each exponent pair, exponents searched."""
    sw = np.sqrt(w) / L

    def inner(ab):
        X = np.column_stack([np.ones_like(N), N ** -ab[0], D ** -ab[1]])
        s = X.max(axis=0)
        coef, rnorm = optimize.nnls(X / s * sw[:, None], L * sw)
        return rnorm ** 2, coef / s

    grid = [(inner((a, b))[0], a, b) for a in VARPRO_GRID for b in VARPRO_GRID]
    best = None
    for _, a, b in sorted(grid)[:3]:
        res = optimize.minimize(lambda ab: inner(ab)[0] if min(ab) > 0 else np.inf, [a, b], method="Nelder-Mead",
                                options={"xatol": 1e-7, "fatol": 1e-14, "maxiter": 2000})
        if best is None or res.fun < best.fun:
            best = res
    coef = inner(best.x)[1]
    return {"E": coef[0], "A": coef[1], "B": coef[2], "alpha": best.x[0], "beta": best.x[1], "f": float(best.fun)}


def fit_and_predict(c: Choice, train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, dict]:
    """Predicted losses of `test`'s rows from a fit on `train` (one family), and a record."""
    N, D, L = (train[k].to_numpy(float) for k in ("N", "D", "loss"))
    Nt, Dt = test["N"].to_numpy(float), test["D"].to_numpy(float)
    if c.engine == "library":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_point(train, law=c.law)
        nat = {k: v[0, 0] for k, v in fit.draws.items()}
        rec = {"grad_norm": float(next(iter(fit.grad_norm.values())))}
        return np.asarray(predict_loss(get_law(c.law), nat, Nt, Dt, 1.0)), {**rec, **_nat(nat)}
    if c.engine == "varpro":
        nat = varpro_fit(N, D, L, row_weights(N, D, c.weight))
        return np.asarray(predict_loss(get_law("chinchilla"), nat, Nt, Dt, 1.0)), _nat(nat)
    fit = local_fit(c, N, D, L)
    th = fit["th"]
    nat = {"E": np.exp(th["e"]), "alpha": th["alpha"], "beta": th["beta"]}
    return local_predict(c, fit, Nt, Dt), {**_nat(nat), "grad_norm": fit["grad_norm"], "sigma": fit["sigma"]}


def _nat(nat: dict) -> dict:
    return {k: round(float(v), 5) for k, v in nat.items() if k in ("E", "alpha", "beta")}


def scores(e: np.ndarray, log_k: np.ndarray) -> dict:
    return {"rows": int(len(e)), "bias": float(np.mean(e)), "mape": float(np.mean(np.abs(np.expm1(e)))),
            "slope": float(np.sum(e * log_k) / np.sum(log_k * log_k)),
            "bias_far": float(np.mean(e[log_k >= np.median(log_k)]))}


def splits(ladder: str, per_hi: int, holds=HOLDS):
    """(setting name, family, train rows, test rows, N_hi) of every hold-out split of a ladder."""
    df = load_ladder(ladder)
    out = []
    for H in holds:
        n_hi = df["N"].max() / H
        out.append((f"H{H:g}", df[df["N"] <= n_hi], df[df["N"] > n_hi]))
    if per_hi:
        for n_lo, n_hi in field.windows(df, per_hi):
            out.append((f"win[{n_lo:.3g},{n_hi:.3g}]", df[(df["N"] >= n_lo) & (df["N"] <= n_hi)], df[df["N"] > n_hi]))
    for name, train, test in out:
        for fam, tr in train.groupby("family"):
            te = test[test["family"] == fam]
            if tr["N"].nunique() >= MIN_SIZES and len(te) and len(tr) >= get_law("chinchilla").min_runs():
                yield name, fam, tr, te, float(tr["N"].max())


def run_all(choices: list[str], ladders: list[str], per_hi: int, holds=HOLDS) -> pd.DataFrame:
    parts = []
    for ladder in ladders:
        for setting, fam, tr, te, n_hi in splits(ladder, per_hi, holds):
            print(f"{time.strftime('%H:%M:%S')} {ladder} {setting} {fam}", file=sys.stderr, flush=True)
            for name in choices:
                t0 = time.perf_counter()
                pred, rec = fit_and_predict(CHOICES[name], tr, te)
                e = np.log(pred / te["loss"].to_numpy(float))
                parts.append(pd.DataFrame({"ladder": ladder, "setting": setting, "family": fam, "choice": name,
                                           "N": te["N"].to_numpy(), "e": e, "log_k": np.log(te["N"].to_numpy() / n_hi),
                                           "fit": json.dumps(rec), "seconds": time.perf_counter() - t0}))
    return pd.concat(parts, ignore_index=True)


def summarise(errs: pd.DataFrame) -> dict:
    """Per (setting kind, ladder, choice): scores pooled over the rows (H settings) or each window
    weighing 1 (rolling windows); and per H setting and family."""
    out = {"per_setting": [], "per_family": [], "windows": []}
    holds = errs[errs["setting"].str.startswith("H")]
    for (setting, ladder, choice), g in holds.groupby(["setting", "ladder", "choice"], sort=False):
        out["per_setting"].append({"setting": setting, "ladder": ladder, "choice": choice,
                                   **scores(g["e"].to_numpy(), g["log_k"].to_numpy())})
    for (setting, ladder, fam, choice), g in holds.groupby(["setting", "ladder", "family", "choice"], sort=False):
        out["per_family"].append({"setting": setting, "ladder": ladder, "family": fam, "choice": choice,
                                  **scores(g["e"].to_numpy(), g["log_k"].to_numpy()),
                                  "fit": json.loads(g["fit"].iloc[0])})
    wins = errs[errs["setting"].str.startswith("win")]
    for (ladder, choice), g in wins.groupby(["ladder", "choice"], sort=False):
        per = g.groupby(["setting", "family"])
        w = 1.0 / per["e"].transform("size").to_numpy() / per.ngroups
        e, k = g["e"].to_numpy(), g["log_k"].to_numpy()
        out["windows"].append({"ladder": ladder, "choice": choice, "windows": int(per.ngroups), "rows": len(g),
                               "bias": float(np.sum(w * e)), "mean_abs_e": float(np.sum(w * np.abs(e))),
                               "mape": float(np.sum(w * np.abs(np.expm1(e)))),
                               "slope": float(np.sum(w * e * k) / np.sum(w * k * k))})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--choices", default=",".join(CHOICES), help="comma-separated choices (default all)")
    ap.add_argument("--ladders", default=",".join(LADDERS))
    ap.add_argument("--per-hi", type=int, default=0,
                    help="rolling windows per N_hi (0: none, the default; 1: the widest)")
    ap.add_argument("--holds", default=",".join(f"{h:g}" for h in HOLDS),
                    help="hold-out factors H, comma-separated ('' for none; default 4,10)")
    ap.add_argument("--errors", default="", help="also write every held-out error to this CSV")
    args = ap.parse_args()
    t0 = time.perf_counter()
    holds = [float(h) for h in args.holds.split(",") if h.strip()]
    errs = run_all(args.choices.split(","), args.ladders.split(","), args.per_hi, holds)
    if args.errors:
        errs.to_csv(args.errors, index=False)
    secs = errs.groupby(["ladder", "setting", "family", "choice"])["seconds"].first().groupby("choice").sum()
    print(json.dumps({"benchmark": "fit_choices", "cpu": field.cpu_model(), "load_1min": os.getloadavg()[0],
                      "wall_s": round(time.perf_counter() - t0, 1), "fit_seconds": secs.round(1).to_dict(),
                      "choices": {k: vars(v) for k, v in CHOICES.items() if k in args.choices.split(",")},
                      **summarise(errs)}))


if __name__ == "__main__":
    main()
