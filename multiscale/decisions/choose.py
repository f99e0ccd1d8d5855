"""Choosing among candidate mixtures that were trained at proxy scale, using what was measured of each.

A fitted law ranks measured mixtures worse than their measured loss does (DataDecide, Magnusson
et al., AI2 2025: ranking by the proxy-scale loss is the strong baseline) because it ignores each
mixture's residual at the proxy. Here the residual is a per-mixture effect shared across scales: a
random effect on log objective,

    log Obj_target(m) = log Obj_law(m; N, D) + u_m,   u_m ~ N(mu, tau^2),

observed as the mean over m's proxy runs of its residual r_m = u_m + eps_m, eps_m ~ N(0, s_m^2)
(per family: log loss minus the posterior mean of the law's log prediction, combined with the
objective's weights times the family's mean loss, so that r_m is the residual of log Obj to first
order). Empirical Bayes (method of moments): mu is the mean of r_m, tau^2 = max(0, var(r_m) -
mean(s_m^2)); each effect's posterior is N(mu + B_m (r_m - mu), B_m s_m^2) with shrinkage weight
B_m = tau^2 / (tau^2 + s_m^2) on what was measured. The run noise s^2 per run is the pooled
within-mixture spread of run residuals (mixtures with several runs), else a Bayesian fit's sigma.

Decisions are over the candidates' target objectives per draw (the law's draws times a draw of each
effect): the library's pick minimizes the mean (least expected regret against the best candidate),
beside the single-scale pick (least measured objective at the largest proxy N where every
candidate was measured at some budget D, averaged over those budgets), the law-only pick among the
candidates and the law's continuous p* (effect mu +- tau, unmeasured).

A law fitted to the candidates' own runs absorbs the part of their effects that its ratio term can
follow (and carries that part to the target itself), so the residuals understate the effects' spread
and tau by moments is too small: too much shrinkage. Given the fitted table, tau comes instead from
leave-one-mixture-out residuals (each candidate against a point refit without its runs), while the
effects stay those of the fit's own residuals (the refits' residuals would count the absorbed part
twice). On a synthetic truth this gives the regret of the true tau (benchmarks/FIT_RESULTS.md).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

from multiscale.decisions.recommend import decision_families, family_values, optimal_ratios
from multiscale.decisions.regret import ROBUST
from multiscale.errors import InputError
from multiscale.laws.fits import LOSS_UNITS, Fit
from multiscale.laws.point import fit_point_leave_out
from multiscale.laws.predict import predict_rows
from multiscale.runs import MIXTURE_PREFIX, mixture_columns, validate_runs

LIBRARY, SINGLE, LAW, LAW_P = "library", "single-scale", "law (candidates)", "law p*"
RATIO_DIGITS = 6  # a mixture is identified by its ratios rounded to this many digits
EFFECT_DRAWS = 400  # effect draws for a point fit (one law draw)


@dataclass
class Choice:
    """The choice among measured candidates at (N, D).

    Attributes:
      candidates: name -> {"ratios", "runs", "residual" (r_m), "shrinkage" (B_m), "effect" (posterior
        mean), "effect_sd", "measured" (objective at the single-scale N)}.
      objective_SxC: draws of each candidate's target objective (nats/token), columns in `candidates` order.
      options: name -> {"candidate" (None for p*), "ratios", "objective" (S,)} for LIBRARY, SINGLE, LAW
        and (a law with a ratio term) LAW_P.
      mu, tau, noise_sd: the effects' mean and sd, the run noise sd (log objective);
      proxy_N, proxy_D: the N of the single-scale choice and the budgets D at that N where every
        candidate was measured (its measured objective is the mean over them of its mean over seeds).
    """

    N: float
    D: float
    objective: str
    law: str
    method: str
    candidates: dict[str, dict[str, Any]]
    objective_SxC: np.ndarray
    options: dict[str, dict[str, Any]]
    mu: float
    tau: float
    noise_sd: float
    noise_source: str
    proxy_N: float
    proxy_D: tuple[float, ...]
    notes: list[str] = field(default_factory=list)

    @property
    def pick(self) -> str:
        return self.options[LIBRARY]["candidate"]

    def table(self) -> dict[str, dict[str, Any]]:
        """Per option: its candidate, ratios, mean objective, expected regret against the best
        candidate per draw (negative for a p* better than every candidate) and P(best of the options
        and candidates)."""
        best_S = self.objective_SxC.min(axis=1)
        every = np.column_stack([self.objective_SxC] + [o["objective"] for o in self.options.values()])
        top_S = every.min(axis=1)
        return {name: {"candidate": o["candidate"], "ratios": o["ratios"],
                       "objective": float(np.mean(o["objective"])),
                       "expected_regret": float(np.mean(o["objective"] - best_S)),
                       "prob_best": float(np.mean(o["objective"] <= top_S + 1e-12))}
                for name, o in self.options.items()}

    @property
    def advice(self) -> str:
        """The recommendation in words; says when the single-scale choice is advised over the law's."""
        t = self.table()
        mean_B = float(np.mean([c["shrinkage"] for c in self.candidates.values()]))
        text = (f"train {self.pick} (expected regret {t[LIBRARY]['expected_regret']:.2e} {LOSS_UNITS}; "
                f"mean weight on the measured effects {mean_B:.2f})")
        law_name = LAW_P if LAW_P in t else LAW
        law_worse = t[law_name]["expected_regret"] >= t[SINGLE]["expected_regret"]
        if self.options[SINGLE]["candidate"] == self.pick and (mean_B > 0.5 or law_worse):
            why = "the shrinkage puts most weight on the measured effects" if mean_B > 0.5 else \
                "the law's pick is not better in expectation"
            text += f"; the single-scale choice is advised over the law's ({law_name}): {why}"
        if LAW_P in t and t[LAW_P]["expected_regret"] < t[LIBRARY]["expected_regret"]:
            text += (f"; the law's p* (never measured, its effect drawn from the candidates' spread) is expected "
                     f"better by {t[LIBRARY]['expected_regret'] - t[LAW_P]['expected_regret']:.2e}: train it at "
                     "proxy scale to make it a candidate")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"N": self.N, "D": self.D, "objective": self.objective, "law": self.law, "method": self.method,
                "loss_units": LOSS_UNITS, "pick": self.pick, "advice": self.advice,
                "effects": {"mu": self.mu, "tau": self.tau, "noise_sd": self.noise_sd,
                            "noise_source": self.noise_source, "estimator": "empirical Bayes (method of moments)"},
                "proxy_N": self.proxy_N, "proxy_D": list(self.proxy_D), "candidates": self.candidates,
                "options": self.table(),
                "n_draws": int(self.objective_SxC.shape[0]), "notes": list(self.notes)}

    def __str__(self) -> str:
        lines = [f"choice among {len(self.candidates)} measured candidates at N = {self.N:.3g}, D = {self.D:.3g} "
                 f"({self.objective} objective, law {self.law}, {self.method}); {LOSS_UNITS}",
                 f"effects (log objective): mean {self.mu:.4f}, sd {self.tau:.4f}; run noise sd "
                 f"{self.noise_sd:.4f} ({self.noise_source})",
                 f"{'candidate':12s}{'runs':>5s}{'residual':>10s}{'weight':>8s}{'effect':>9s}{'measured':>10s}"]
        for name, c in self.candidates.items():
            lines.append(f"{name:12s}{c['runs']:5d}{c['residual']:10.4f}{c['shrinkage']:8.2f}{c['effect']:9.4f}"
                         f"{c['measured']:10.4f}")
        for name, o in self.table().items():
            lines.append(f"  {name:18s} {str(o['candidate']):10s} objective {o['objective']:.5f}; "
                         f"regret {o['expected_regret']:.2e}; P(best) {o['prob_best']:.2f}")
        lines.append(f"advice: {self.advice}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _check(fit, candidates, N, D) -> tuple[pd.DataFrame, tuple[str, ...]]:
    if not isinstance(fit, Fit):
        raise InputError(f"fit must be a PointFit or BayesFit (load_fit), got {type(fit).__name__}", arg="fit")
    for name, v in (("N", N), ("D", D)):
        if not (isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
            raise InputError(f"{name} must be a finite positive number, got {v!r}", arg=name)
    df = validate_runs(candidates)
    cols = mixture_columns(df)
    if not cols:
        raise InputError("candidates: no mixture columns (p_<family>); a candidate is identified by its whole mixture",
                         arg="candidates")
    mix = decision_families(fit)
    got = tuple(c[len(MIXTURE_PREFIX):] for c in cols)
    extra = sorted(set(got) - set(mix)) + sorted(set(df["family"].astype(str)) - set(fit.families))
    if extra:
        raise InputError(f"candidates: families {sorted(set(extra))} are not in the fit's {list(fit.families)}",
                         arg="candidates")
    missing = sorted(set(mix) - set(got))
    if missing:
        raise InputError(f"candidates: the mixtures lack families {missing} of the fit (p_<family> columns)",
                         arg="candidates")
    return df, mix


def _effects(r_C, n_C, noise_var) -> tuple[float, float, np.ndarray]:
    """(mu, tau^2, s^2 per candidate) by the method of moments."""
    s2_C = noise_var / n_C
    mu = float(np.mean(r_C))
    tau2 = max(0.0, float(np.var(r_C, ddof=1)) - float(np.mean(s2_C))) if len(r_C) > 1 else 0.0
    return mu, tau2, s2_C


def _noise(fit, run_r, run_mix, w_F) -> tuple[float, str]:
    """The run noise variance of a run's residual: pooled within-mixture spread, else the fit's sigma."""
    g = pd.DataFrame({"r": run_r, "m": run_mix}).groupby("m")["r"]
    dof = int((g.size() - 1).clip(lower=0).sum())
    if dof > 0:
        ss = float(((run_r - g.transform("mean").to_numpy()) ** 2).sum())
        return ss / dof, f"pooled within-mixture spread, {dof} degrees of freedom"
    idata = getattr(fit, "idata", None)
    if idata is not None and "sigma" in idata.posterior:
        sig = np.asarray(idata.posterior["sigma"].transpose("chain", "draw", "family").values, float)
        return float(np.sum(w_F ** 2 * np.mean(sig.reshape(-1, sig.shape[-1]) ** 2, axis=0))), "the fit's sigma"
    return 0.0, "unknown (each candidate has one run and the fit has no sigma): no shrinkage"


def _log_prediction_R(fit: Fit, df: pd.DataFrame) -> np.ndarray:
    """Per row: the mean over the law's draws (those finite at every row) of its log prediction; NaN
    where no draw is finite."""
    with np.errstate(all="ignore"):
        log_SxR = np.log(predict_rows(fit, df))
    ok_S = np.isfinite(log_SxR).all(axis=1)
    return log_SxR[ok_S].mean(axis=0) if ok_S.any() else np.full(log_SxR.shape[1], np.nan)


def _run_residuals(df: pd.DataFrame, logpred_R: np.ndarray) -> pd.Series:
    """Per run: the share-weighted mean over its families of log loss minus the log prediction."""
    x = df.assign(x=(np.log(df["loss"].to_numpy(float)) - logpred_R) * df["share"])
    return x.groupby("run")["x"].sum() / x.groupby("run")["share"].sum()


def _absorbed(fit: Fit, df: pd.DataFrame, fitted: pd.DataFrame, keys: dict, mix) -> tuple[pd.Series | None, str]:
    """Per candidate: the part of its residual that a fit including its runs absorbs, as the mean over
    its runs of (residual against a point refit of `fitted` without the candidate's runs) minus
    (residual against a point refit of all of `fitted`); None (and why) where a refit fails. The refits
    without a candidate run the starts that led the refit of all of `fitted` (`fit_point_leave_out`)."""
    fitted = validate_runs(fitted)
    lacking = sorted(set(mix) - {c[len(MIXTURE_PREFIX):] for c in mixture_columns(fitted)})
    if lacking:
        raise InputError(f"fitted: the table lacks the mixture columns of families {lacking} (p_<family>), which "
                         "identify the candidates' runs in it", arg="fitted")
    fkey = fitted[[MIXTURE_PREFIX + f for f in mix]].round(RATIO_DIGITS).apply(tuple, axis=1)

    def residuals(rows, refit):
        return _run_residuals(rows, _log_prediction_R(refit, rows))

    broken = ("the point refits predict non-finite losses (a parameter at a boundary of parameter space): tau "
              "from the fit's own residuals")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            whole, without = fit_point_leave_out(fitted, {m: (fkey == k).to_numpy() for k, m in keys.items()
                                                           if (fkey == k).any()}, law=fit.law.name, shared=fit.shared)
        r_all = residuals(df, whole)
        if not np.isfinite(r_all).all():
            return None, broken
        delta = {m: float((residuals(df[df["mixture"] == m], without[m]) - r_all).dropna().mean())
                 if m in without else 0.0 for m in keys.values()}
    except InputError as e:
        return None, f"a leave-one-mixture-out refit failed ({e}): tau from the fit's own residuals"
    return (pd.Series(delta), "") if np.all(np.isfinite(list(delta.values()))) else (None, broken)


def choose_candidates(fit: Fit, candidates: pd.DataFrame, N: float, D: float, *, objective: str = "raw",
                      weights=None, fitted: pd.DataFrame | None = None, seed: int = 0) -> Choice:
    """Choose among the mixtures measured in the run table `candidates` (rows with ``p_<family>``
    columns over the fit's decision families) for the target (N, D) (module docstring). `weights` are the
    objective's family weights (as `optimal_ratios`). Only the raw objective (weighted mean loss).
    `fitted`: the run table the law was fitted on; given, the effects' sd tau is estimated from
    leave-one-mixture-out residuals (one point refit per candidate whose runs it holds)."""
    if objective != "raw":
        raise InputError(f"objective must be 'raw' (the weighted mean loss), got {objective!r}", arg="objective")
    df, mix = _check(fit, candidates, N, D)
    w_F = family_values(weights, fit.families, arg="weights", default=1.0)
    if w_F.max() <= 0:
        raise InputError("weights must not all be zero", arg="weights")
    w_F = w_F / w_F.sum()
    key = df[[MIXTURE_PREFIX + f for f in mix]].round(RATIO_DIGITS).apply(tuple, axis=1)
    ids = {k: f"mix{i}" for i, k in enumerate(dict.fromkeys(key))}
    fam_R = np.array([fit.family_index(f) for f in df["family"]])
    share_F = w_F * df.groupby(fam_R)["loss"].mean().reindex(range(len(w_F))).fillna(0).to_numpy()
    share_F = share_F / share_F.sum()  # d log Obj / d log L_j at the proxies
    df = df.assign(mixture=key.map(ids).to_numpy(), share=share_F[fam_R], wl=w_F[fam_R] * df["loss"], wt=w_F[fam_R])
    runs = df.groupby("run").agg(mixture=("mixture", "first"), N=("N", "first"), D=("D", "first"),
                                 wl=("wl", "sum"), wt=("wt", "sum"))
    runs["r"] = _run_residuals(df, _log_prediction_R(fit, df))
    if not np.isfinite(runs["r"]).all():
        raise InputError(f"law {fit.law.name!r}: the loss is not finite at the candidates' runs for any draw (a "
                         "parameter at a boundary of parameter space): no residuals", arg="fit")
    runs["obj"] = runs["wl"] / runs["wt"]
    noise_var, noise_source = _noise(fit, runs["r"].to_numpy(), runs["mixture"].to_numpy(), share_F)
    names = list(ids.values())
    per = runs.groupby("mixture")
    r_C = per["r"].mean().reindex(names).to_numpy()
    n_C = per.size().reindex(names).to_numpy(float)
    mu, tau2, s2_C = _effects(r_C, n_C, noise_var)
    notes = [f"effects: empirical Bayes random effect (method of moments), tau = {math.sqrt(tau2):.4g}"]
    if fitted is not None:
        delta, why = _absorbed(fit, df, fitted, {k: ids[k] for k in ids}, mix)
        if delta is None:
            notes.append(why)
        else:
            _, tau2, _ = _effects(r_C + delta.reindex(names).to_numpy(), n_C, noise_var)
            notes.append(f"tau from leave-one-mixture-out residuals: {math.sqrt(tau2):.4g} (the fit absorbed "
                         f"{float(np.sqrt(np.mean(delta ** 2))):.3g} of the residuals, rms)")
    B_C = np.where(s2_C > 0, tau2 / np.maximum(tau2 + s2_C, 1e-300), 1.0)
    post_C, var_C = mu + B_C * (r_C - mu), B_C * s2_C
    complete = [nd for nd, g in runs.groupby(["N", "D"]) if set(g["mixture"]) == set(names)]
    if not complete:
        raise InputError("candidates: no proxy (N, D) at which every candidate was measured (the single-scale "
                         "choice needs one)", arg="candidates")
    proxy_N = max(n for n, _ in complete)
    proxy_D = sorted(d for n, d in complete if n == proxy_N)
    at = (runs["N"] == proxy_N) & runs["D"].isin(proxy_D)
    measured = runs[at].groupby(["mixture", "D"])["obj"].mean().groupby("mixture").mean().reindex(names)
    ratios = {ids[k]: dict(zip(mix, map(float, k))) for k in ids}
    target = pd.DataFrame([{"run": m, "family": f, "N": float(N), "D": float(D), "p": ratios[m][f],
                            **{MIXTURE_PREFIX + g: ratios[m][g] for g in mix}} for m in names for f in fit.families])
    law_SxR = predict_rows(fit, target)
    ok_S = np.flatnonzero(np.isfinite(law_SxR).all(axis=1))
    if not ok_S.size:
        raise InputError(f"law {fit.law.name!r}: the loss is not finite at N = {N:.3g}, D = {D:.3g} for any draw (a "
                         "parameter at a boundary of parameter space): no choice there", arg="fit")
    if ok_S.size < law_SxR.shape[0]:
        notes.append(f"the law's loss is not finite at the target for {law_SxR.shape[0] - ok_S.size} of "
                     f"{law_SxR.shape[0]} draws: the choice uses the other draws")
    S = ok_S.size if ok_S.size > 1 else EFFECT_DRAWS
    draw_S = ok_S[np.arange(S) % ok_S.size]
    law_SxC = (law_SxR.reshape(-1, len(names), len(fit.families)) * w_F).sum(axis=2)[draw_S]
    rng = np.random.default_rng(seed)
    obj_SxC = law_SxC * np.exp(post_C + np.sqrt(var_C) * rng.standard_normal((S, len(names))))
    cand = {m: {"ratios": ratios[m], "runs": int(n_C[c]), "residual": float(r_C[c]), "shrinkage": float(B_C[c]),
                "effect": float(post_C[c]), "effect_sd": float(np.sqrt(var_C[c])), "measured": float(measured[m])}
            for c, m in enumerate(names)}
    pick = {LIBRARY: int(np.argmin(obj_SxC.mean(axis=0))), SINGLE: names.index(str(measured.idxmin())),
            LAW: int(np.argmin(law_SxC.mean(axis=0)))}
    options = {k: {"candidate": names[c], "ratios": ratios[names[c]], "objective": obj_SxC[:, c]}
               for k, c in pick.items()}
    if fit.law.uses_ratio:
        try:
            rec = optimal_ratios(fit, N, D, objective="raw", weights=dict(zip(fit.families, w_F.tolist())))
        except InputError as e:
            notes.append(f"the law's p* is left out: {e}")
        else:
            obj = rec.candidates[ROBUST]["objective"][draw_S]
            options[LAW_P] = {"candidate": None, "ratios": rec.ratios,
                              "objective": obj * np.exp(mu + math.sqrt(tau2) * rng.standard_normal(S))}
    return Choice(N=float(N), D=float(D), objective=objective, law=fit.law.name, method=fit.method,
                  candidates=cand, objective_SxC=obj_SxC, options=options, mu=mu, tau=math.sqrt(tau2),
                  noise_sd=math.sqrt(noise_var), noise_source=noise_source, proxy_N=float(proxy_N),
                  proxy_D=tuple(map(float, proxy_D)), notes=notes)
