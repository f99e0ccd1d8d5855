"""Point and Bayesian fits of the laws of the whole mixture (`multiscale.laws.mixture_forms`).

Point fit (approach 3, as `multiscale.laws.point`): per family, minimize
``sum_rows Huber_1e-3(log_loss - log L)`` with the batched L-BFGS of `multiscale.laws.lbfgs`.
Every family is its own problem (a family's parameters, its matrix row included, reach only its
own rows), all families and starts side by side in one compiled program. Starts: the law's seed
law (``multilingual`` or ``ratio``) fitted on the same table over its full start grid, crossed
with a small grid of the new parameters (`EXTRA_STARTS`): tau = 0 (and no repetition) is the
seed's law, so its optimum is the natural origin.

NUTS: the priors of `multiscale.laws.bayes` for the seed's sites, and (`EXTRA_PRIORS`)
``log R* ~ N(log 15, 1)`` (Muennighoff et al. 2023 fit R*_D ~ 15), ``log k ~ N(ybar - 1.5,
1.5)``, ``t_ij ~ N(0, 1)`` (a prior on the slopes ``k_i t_ij`` instead was measured and
dropped: E's 20-seed coverage fell to 0.80), and for transfer the shrinkage prior ``tau_ij ~ HalfCauchy(0.05)``
(mode at 0 and half its mass below 0.05, so a weak transfer is pulled to 0; its heavy tail
leaves a strong one, 0.2-1, almost unshrunk, where the first prior, HalfNormal(0.1), put 0.3 at
3 scales. A hierarchical global scale mixed badly, R-hat 1.07 on 5 families x 100 runs). NUTS
samples the mixing law's E and k as the level ``log(E + k)`` and the share ``logit(k / (E +
k))`` (Jacobian 1, so the priors above are kept: `_prior_e_k`): the data fix the level, and the
share moves along the ridge ``E + k = const`` without bending it (R-hat 1.30 -> 1.01 on a seed
that sampled log E and log k directly). The likelihood is
`multiscale.laws.bayes`'s Student-t on log-loss; the InferenceData carries its pointwise
``log_likelihood`` (for PSIS-LOO).
"""

from __future__ import annotations

import itertools
import time
import warnings

import numpy as np
import pandas as pd

from multiscale.errors import InputError
from multiscale.laws import lbfgs
from multiscale.laws.data import FitData, prepare
from multiscale.laws.fits import BayesFit, PointFit
from multiscale.laws.forms import RAW_NAMES, Law, get_law
from multiscale.laws.mixture_forms import log_loss, natural_from_raw, offdiag_mask, raw_names
from multiscale.laws.point import HUBER_DELTA, fit_arrays
from multiscale.laws.repetition_starts import base_fits

MAX_EVALS = 3000
EXTRA_STARTS = {"lrs": tuple(np.log([5.0, 8.0, 12.0, 18.0, 27.0, 40.0])), "ltau": (-6.0, -2.5),
                "t": (0.0, 1.5), "lk": (-3.0, -1.0)}  # lk relative to the family's mean log-loss
# tau: (kind, scale): tau ~ HalfCauchy(0.05), sampled as scale * z with z ~ HalfCauchy(1)
EXTRA_PRIORS = {"log_Rstar": (float(np.log(15.0)), 1.0), "log_k": (-1.5, 1.5), "t": 1.0,
                "tau": ("halfcauchy", 0.05)}


def family_layout(data: FitData) -> tuple[np.ndarray, np.ndarray]:
    """(mask F x Rmax, slot of each row in its family's row list)."""
    F, counts = data.n_families, data.counts_F()
    slot_R = np.zeros(data.n_rows, int)
    for j in range(F):
        sel = np.flatnonzero(data.fam_R == j)
        slot_R[sel] = np.arange(len(sel))
    mask = np.zeros((F, int(counts.max())), bool)
    mask[data.fam_R, slot_R] = True
    return mask, slot_R


def _lay(data: FitData, mask, slot_R, v_R, fill=0.0) -> np.ndarray:
    out = np.full(mask.shape, fill, dtype=float)
    out[data.fam_R, slot_R] = v_R
    return out


def fit_rows(law: Law, data: FitData) -> dict:
    """The table laid out per family for `log_loss`: F x R arrays (padding weighs 0) and, for
    the matrix laws, the mixture (M, F, R) and the off-diagonal mask (M, F, 1)."""
    mask, slot = family_layout(data)
    w = data.weight_R if data.weight_R is not None else np.ones(data.n_rows)
    rows = {"w": _lay(data, mask, slot, w), "logN": _lay(data, mask, slot, data.logN_R),
            "logD": _lay(data, mask, slot, data.logD_R), "logp": _lay(data, mask, slot, data.logp_R),
            "logL": _lay(data, mask, slot, data.logL_R), "sem": _lay(data, mask, slot, data.sem_rel_R),
            "logU": _lay(data, mask, slot, data.logU_R if data.logU_R is not None else np.inf, np.inf),
            "mask": mask}
    if law.matrix:
        M = len(data.mixture_families)
        rows["P"] = np.stack([_lay(data, mask, slot, data.P_RxM[:, m]) for m in range(M)])
        rows["offdiag"] = offdiag_mask(data.fam_in_mix_F, M)[:, :, None]
    return rows


def _split(law: Law, names, matrix, x, M: int) -> dict:
    """Flat parameters (K, ...) -> raw dict; matrix entries (M, ...)."""
    th = {n: x[k] for k, n in enumerate(names)}
    o = len(names)
    for m in matrix:
        th[m] = x[o:o + M]
        o += M
    return th


def _starts(law: Law, data: FitData, names, matrix, M: int) -> np.ndarray:
    """(K, F, G) starts: the seed law's best fit per family crossed with `EXTRA_STARTS` (for the
    repetition laws, fitted on the effective ratios at each start R*: `repetition_starts`)."""
    at_rs = base_fits(law, data, EXTRA_STARTS["lrs"])  # repetition: the base law on p'(R*)
    base = fit_arrays(get_law(law.base), data) if not at_rs else None
    F = data.n_families
    ybar_F = np.array([data.logL_R[data.fam_R == j].mean() for j in range(F)])
    extra_names = [n for n in names if n in EXTRA_STARTS] + list(matrix)
    combos = list(itertools.product(*[EXTRA_STARTS[n] for n in extra_names])) or [()]
    X = np.zeros((len(names) + M * len(matrix), F, len(combos)))
    for g, combo in enumerate(combos):
        v = dict(zip(extra_names, combo))
        for k, n in enumerate(names):
            if n in RAW_NAMES[law.base]:
                X[k, :, g] = at_rs.get(v.get("lrs"), base).raw[n]
            elif n == "lk":
                X[k, :, g] = ybar_F + v[n]
            else:
                X[k, :, g] = v[n]
        for i, m in enumerate(matrix):
            X[len(names) + i * M:len(names) + (i + 1) * M, :, g] = v[m]
    return X


def _centre(names, X, lN0, lD0, sign: float) -> np.ndarray:
    """a -> a - alpha lN0 and b -> b - beta lD0 (sign -1: back)."""
    X = X.copy()
    col = {n: k for k, n in enumerate(names)}
    if "a" in col:
        X[col["a"]] -= sign * X[col["alpha"]] * lN0
        X[col["b"]] -= sign * X[col["beta"]] * lD0
    return X


def _huber(r, delta, xp):
    a = xp.abs(r)
    return xp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def minimize_rows(law: Law, data: FitData, X0, max_evals: int = MAX_EVALS):
    """Multi-start L-BFGS of every family from the centred starts X0 (K, F, G)."""
    import jax
    import jax.numpy as jnp

    names, matrix = raw_names(law)
    M = len(data.mixture_families) if law.matrix else 0
    lN0, lD0 = np.log(data.N_ref), np.log(data.D_ref)
    with jax.enable_x64(True):
        r = {k: jnp.asarray(v[..., None]) for k, v in fit_rows(law, data).items() if k != "mask"}

        def objective(x):  # (K, F, G) -> (F, G)
            th = {n: v[..., None, :] for n, v in _split(law, names, matrix, x, M).items()}
            pred = log_loss(law, th, r["logN"], r["logD"], r["logp"], r["logU"], r.get("P"),
                            r.get("offdiag"), lN0=lN0, lD0=lD0, xp=jnp)
            return jnp.sum(r["w"] * _huber(pred - r["logL"], HUBER_DELTA, jnp), axis=1)

        res = lbfgs.minimize(objective, jnp.asarray(X0), max_evals=max_evals)
    return res


def _natural(law: Law, data: FitData, x_KxF, names, matrix, lN0, lD0) -> dict:
    """Best raw per family -> natural draws (1, F) and (1, F, M)."""
    M = len(data.mixture_families) if law.matrix else 0
    x = _centre(names, x_KxF[:, :, None], lN0, lD0, -1.0)[:, :, 0]
    th = _split(law, names, matrix, x, M)
    off = offdiag_mask(data.fam_in_mix_F, M) if law.matrix else None
    nat = natural_from_raw(law, th, off)
    return {n: np.asarray(v, dtype=float)[None] for n, v in nat.items()}


def fit_point_mixture(df: pd.DataFrame, law: Law, shared=(), *, max_evals: int = MAX_EVALS) -> PointFit:
    """Approach-3 point fit of a law of the whole mixture (see the module docstring)."""
    t0 = time.perf_counter()
    df, data, shared = prepare(df, law, shared)
    names, matrix = raw_names(law)
    M = len(data.mixture_families) if law.matrix else 0
    lN0, lD0 = np.log(data.N_ref), np.log(data.D_ref)
    X0 = _centre(names, _starts(law, data, names, matrix, M), lN0, lD0, 1.0)
    res = minimize_rows(law, data, X0, max_evals)
    f = np.where(np.isfinite(res.f), res.f, np.inf)
    best = np.argmin(f, axis=-1)
    F = data.n_families
    x_best = res.x[:, np.arange(F), best]
    fams = data.families
    slow = [fm for j, fm in enumerate(fams) if not res.grad_norm[j, best[j]] < 1e-6]
    if slow:
        warnings.warn(f"L-BFGS stopped with gradient norm above 1e-6 for {slow} after {max_evals} "
                      "evaluations", RuntimeWarning, stacklevel=3)
    counts = data.counts_F()
    return PointFit(
        law=law, families=fams, shared=(), draws=_natural(law, data, x_best, names, matrix, lN0, lD0),
        N_ref=data.N_ref, D_ref=data.D_ref, n_runs={fm: int(counts[j]) for j, fm in enumerate(fams)},
        objective={fm: float(f[j, best[j]]) for j, fm in enumerate(fams)},
        start={fm: {"start": int(best[j])} for j, fm in enumerate(fams)},
        grad_norm={fm: float(res.grad_norm[j, best[j]]) for j, fm in enumerate(fams)},
        n_starts=int(X0.shape[-1]), seconds=time.perf_counter() - t0,
        search={"starts": "the seed law's best fit crossed with EXTRA_STARTS", "max_evals": int(max_evals)},
        mixture_families=tuple(data.mixture_families) if law.matrix else (),
        unique_tokens=data.unique_tokens_F())


# ------------------------------------------------------------------------------ NUTS

_BASE_SITES = {"log_E": ("e", False), "log_Nterm": ("a", False), "log_Dterm": ("b", False),
               "log_alpha": ("alpha", True), "log_beta": ("beta", True), "log_gamma": ("gamma", True),
               "log_c": ("logc", False)}  # site -> (raw name, exponentiated)
_PARAM_SITE = {"E": "log_E", "A": "log_Nterm", "B": "log_Dterm", "alpha": "log_alpha", "beta": "log_beta",
               "gamma": "log_gamma", "c": "log_c"}


# mixing: E and k are sampled as the level log(E + k) and the share logit(k / (E + k)),
# (loc relative to ybar, scale) each; the prior stays log E's and log k's (`_prior_e_k`)
LEVEL_SITES = {"level": (-0.3, 0.5), "share": (-1.5, 1.5)}


def _e_and_k(ybar: float, z_level, z_share, xp):
    """(log E, log k) from the standard level and share sites."""
    (l0, ls), (s0, ss) = LEVEL_SITES["level"], LEVEL_SITES["share"]
    lc, u = ybar + l0 + ls * z_level, s0 + ss * z_share
    return lc - xp.logaddexp(0.0, u), lc - xp.logaddexp(0.0, -u)


def _prior_e_k(ybar: float, z_level, z_share, le, lk, xp):
    """log prior of (log E, log k) (bayes.PRIORS["log_E"], EXTRA_PRIORS["log_k"]) minus the
    sites' own standard normal densities: the map (log(E + k), logit(k / (E + k))) -> (log E,
    log k) has Jacobian 1, so the posterior is the one with E and k sampled directly."""
    from multiscale.laws.bayes import PRIORS

    def lognorm(x, m, s):
        return -0.5 * ((x - m) / s) ** 2 - xp.log(s)

    (e0, es, _), (k0, ks) = PRIORS["log_E"], EXTRA_PRIORS["log_k"]
    own = lognorm(z_level, 0.0, 1.0) + lognorm(z_share, 0.0, 1.0)
    own = own + xp.log(LEVEL_SITES["level"][1] * LEVEL_SITES["share"][1])
    return xp.sum(lognorm(le, ybar + e0, es) + lognorm(lk, ybar + k0, ks) - own)


def offdiag_slots(law: Law, data: FitData) -> np.ndarray | None:
    """Flat positions, in the (M, F) layout, of the matrix entries the laws use: every pair but
    a family with itself (None for a law without a matrix). NUTS samples a matrix parameter's
    site at these entries only (the diagonal, which `log_loss` masks out, would be a free prior
    dimension)."""
    if not law.matrix:
        return None
    M = len(data.mixture_families)
    return np.flatnonzero(offdiag_mask(data.fam_in_mix_F, M).ravel() > 0)


def _matrix_of_sites(z, slots: np.ndarray, M: int, F: int, xp):
    """Site values at `slots` (..., n_slots) laid into (..., M, F), 0 elsewhere."""
    pad = xp.concatenate([z, xp.zeros(z.shape[:-1] + (1,))], axis=-1)
    where = np.full(M * F, len(slots))
    where[slots] = np.arange(len(slots))
    return pad[..., where].reshape(z.shape[:-1] + (M, F))


def _sample_sites(law: Law, F: int, M: int, ybar: float, xp, sample, fam, mat, slots=None) -> dict:
    """Raw (centred) parameters from the prior sites. `sample(name, kind, shape)` draws a
    standard site ("normal", "halfnormal" or "halfcauchy"); `fam` and `mat` shape a per-family
    and a matrix value for `log_loss` (the model: (F, 1) and (M, F, 1)); a matrix site is
    sampled at `slots` only (`offdiag_slots`)."""
    from multiscale.laws.bayes import PRIORS

    th = {}
    level = "E" in law.params and "k" in law.params  # mixing: E and k from the (level, share) sites
    for n in law.params:
        if n in _PARAM_SITE and not (level and n == "E"):
            site = _PARAM_SITE[n]
            loc, scale, rel = PRIORS[site]
            v = (loc + ybar if rel else loc) + scale * sample(f"z_{site}", "normal", (F,))
            raw, expo = _BASE_SITES[site]
            th[raw] = fam(xp.exp(v) if expo else v)
    if "R_star" in law.params:
        loc, scale = EXTRA_PRIORS["log_Rstar"]
        th["lrs"] = fam(loc + scale * sample("z_log_Rstar", "normal", (F,)))
    if level:
        le, lk = _e_and_k(ybar, sample("z_level", "normal", (F,)), sample("z_share", "normal", (F,)), xp)
        th["e"], th["lk"] = fam(le), fam(lk)
    elif "k" in law.params:
        loc, scale = EXTRA_PRIORS["log_k"]
        lk = ybar + loc + scale * sample("z_log_k", "normal", (F,))
        th["lk"] = fam(lk)
    if "t" in law.matrix:
        z = sample("z_t", "normal", (len(slots),))
        th["t"] = mat(EXTRA_PRIORS["t"] * _matrix_of_sites(z, slots, M, F, xp))
    if "tau" in law.matrix:
        kind, scale = EXTRA_PRIORS["tau"]
        th["tau"] = mat(scale * _matrix_of_sites(sample("z_tau", kind, (len(slots),)), slots, M, F, xp))
    return th


def _nuts_model(law: Law, F: int, M: int, ybar: float, lN0: float, lD0: float, slots=None):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    from multiscale.laws.bayes import SIGMA_PRIOR, STUDENT_NU

    drawn = {}

    def sample(name, kind, shape):
        d = {"normal": dist.Normal(0.0, 1.0), "halfnormal": dist.HalfNormal(1.0),
             "halfcauchy": dist.HalfCauchy(1.0)}[kind]
        drawn[name] = numpyro.sample(name, d.expand(shape).to_event(len(shape)) if shape else d)
        return drawn[name]

    def model(mask, logN, logD, logp, logU, logL, sem, P=None, offdiag=None):
        th = _sample_sites(law, F, M, ybar, jnp, sample, fam=lambda v: v[:, None], mat=lambda v: v[..., None],
                           slots=slots)
        if "E" in law.params and "k" in law.params:
            numpyro.factor("prior_E_k", _prior_e_k(ybar, drawn["z_level"], drawn["z_share"], th["e"][:, 0],
                                                   th["lk"][:, 0], jnp))
        sigma = numpyro.sample("sigma", dist.HalfNormal(SIGMA_PRIOR).expand((F,)).to_event(1))
        mu = log_loss(law, th, logN, logD, logp, logU, P, offdiag, lN0=lN0, lD0=lD0, xp=jnp)
        scale = jnp.sqrt(sigma[:, None] ** 2 + sem ** 2)
        numpyro.sample("y", dist.StudentT(STUDENT_NU, mu, scale).mask(mask), obs=logL)

    return model


def _natural_draws(law: Law, data: FitData, z: dict, ybar: float) -> dict:
    """Posterior samples (chain, draw, ...) -> natural parameters (chain, draw, F[, M])."""
    F, M = data.n_families, len(data.mixture_families) if law.matrix else 0
    chains = np.shape(next(iter(z.values())))[0]
    flat = {k: np.asarray(v, float).reshape((-1,) + np.shape(v)[2:]) for k, v in z.items()}

    def sample(name, kind, shape):  # draws first; a scalar site broadcasts against (S, M, F)
        return flat[name] if shape else flat[name][:, None, None]

    th = _sample_sites(law, F, M, ybar, np, sample, fam=lambda v: v, mat=lambda v: np.moveaxis(v, 1, 0),
                       slots=offdiag_slots(law, data))
    if "a" in th:
        th["a"] = th["a"] + th["alpha"] * np.log(data.N_ref)
        th["b"] = th["b"] + th["beta"] * np.log(data.D_ref)
    if "tau" in th:
        with np.errstate(divide="ignore"):
            th["ltau"] = np.log(th.pop("tau"))
    off = offdiag_mask(data.fam_in_mix_F, M)[:, None, :] if law.matrix else None
    nat = natural_from_raw(law, th, off)
    return {k: v.reshape((chains, -1) + v.shape[1:]) for k, v in nat.items()}


def _nuts_args(law: Law, data: FitData) -> tuple:
    rows = fit_rows(law, data)
    args = [rows["mask"]] + [rows[k] for k in ("logN", "logD", "logp", "logU", "logL", "sem")]
    if law.matrix:
        args += [rows["P"], rows["offdiag"]]
    return tuple(args)


def _row_log_loss(fit, fam_R, logN, logD, logp, logU, P_RxM, draws: slice) -> np.ndarray:
    """log L (S', R) of the draws `draws` for rows of fit families `fam_R` (indices into
    fit.families), with each row's mixture P_RxM over fit.mixture_families (None: no matrix)."""
    from multiscale.laws.mixture_forms import raw_from_natural

    law = fit.law
    nat = {k: v[draws] for k, v in fit.draws.items()}
    th = {k: (v[:, :, fam_R] if k in law.matrix else v[:, fam_R]) for k, v in raw_from_natural(law, nat).items()}
    P = off = None
    if law.matrix:
        M = len(fit.mixture_families)
        fam_in_mix = np.array([list(fit.mixture_families).index(f) for f in fit.families])
        off = offdiag_mask(fam_in_mix, M)[:, None, :][:, :, fam_R]
        P = P_RxM.T[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return log_loss(law, th, logN, logD, logp, logU, P, off)


def _fit_mixture_of(fit, data: FitData) -> np.ndarray | None:
    """data.P_RxM reordered to the fit's mixture families (InputError if they differ)."""
    if not fit.law.matrix:
        return None
    if data.P_RxM is None or set(data.mixture_families) - set(fit.mixture_families):
        raise InputError(f"the table's mixture families {list(data.mixture_families)} are not among the "
                         f"fit's {list(fit.mixture_families)} (law {fit.law.name!r} needs p_<family> columns)")
    P = np.zeros((data.n_rows, len(fit.mixture_families)))
    for m, g in enumerate(data.mixture_families):
        P[:, list(fit.mixture_families).index(g)] = data.P_RxM[:, m]
    return P


def pointwise_loglik(fit, data: FitData, sigma_SxF: np.ndarray, chunk: int = 200) -> np.ndarray:
    """log p(y_r | draw s) (S, R) of the Student-t likelihood of `multiscale.laws.bayes`, for
    any registered law (the seed laws included), rows in `data`'s order."""
    from scipy import stats

    from multiscale.laws.bayes import STUDENT_NU

    fam_R = np.array([fit.family_index(f) for f in data.families])[data.fam_R]
    logU = data.logU_R if data.logU_R is not None else np.full(data.n_rows, np.inf)
    P = _fit_mixture_of(fit, data)
    out = np.empty((fit.n_draws, data.n_rows))
    for s0 in range(0, fit.n_draws, chunk):
        sl = slice(s0, s0 + chunk)
        mu = _row_log_loss(fit, fam_R, data.logN_R, data.logD_R, data.logp_R, logU, P, sl)
        scale = np.sqrt(sigma_SxF[sl][:, fam_R] ** 2 + data.sem_rel_R ** 2)
        out[sl] = stats.t.logpdf(data.logL_R, STUDENT_NU, loc=mu, scale=scale)
    return out


def predict_rows_mixture(fit, df: pd.DataFrame, chunk: int = 500) -> np.ndarray:
    """Loss draws (S, R) of the mean law for every row of a run table: each row's family at its
    run's whole mixture (``p_<family>`` columns) and unique tokens (its ``unique_tokens``, else
    the U the fit saw)."""
    from multiscale.laws.data import mixture_arrays
    from multiscale.runs import UNIQUE_TOKENS

    df = df.reset_index(drop=True)
    fam_R = np.array([fit.family_index(f) for f in df["family"].astype(str)])
    arr = mixture_arrays(df, fit.families)
    U_fit = np.array([fit.unique_tokens.get(f, np.inf) for f in fit.families])[fam_R]
    logU = arr["logU_R"] if UNIQUE_TOKENS in df.columns else np.log(U_fit)
    logU = np.where(np.isfinite(logU), logU, np.log(U_fit))
    data = FitData(families=tuple(fit.families), fam_R=fam_R, logN_R=np.log(df["N"].to_numpy(float)),
                   logD_R=np.log(df["D"].to_numpy(float)), logp_R=np.log(df["p"].to_numpy(float)),
                   logL_R=np.zeros(len(df)), sem_rel_R=np.zeros(len(df)), N_ref=fit.N_ref, D_ref=fit.D_ref,
                   mixture_families=arr.get("mixture_families", ()), P_RxM=arr.get("P_RxM"), logU_R=logU)
    P = _fit_mixture_of(fit, data)
    out = np.empty((fit.n_draws, len(df)))
    for s0 in range(0, fit.n_draws, chunk):
        sl = slice(s0, s0 + chunk)
        out[sl] = np.exp(_row_log_loss(fit, fam_R, data.logN_R, data.logD_R, data.logp_R, logU, P, sl))
    return out


def _diagnostics(idata, names, chains: int) -> tuple[dict, list[str]]:
    import arviz as az

    from multiscale.laws.bayes import ESS_MIN_PER_CHAIN, RHAT_MAX

    rhat = az.rhat(idata, var_names=names) if chains > 1 else None
    ess = az.ess(idata, var_names=names, method="bulk")
    max_rhat = max(float(np.nanmax(rhat[n].values)) for n in names) if chains > 1 else float("nan")
    min_ess = min(float(np.nanmin(ess[n].values)) for n in names)
    div = int(np.asarray(idata.sample_stats["diverging"].values).sum())
    msgs = []
    if chains > 1 and max_rhat > RHAT_MAX:
        msgs.append(f"R-hat {max_rhat:.3f} > {RHAT_MAX}: the chains disagree; run longer (--draws, --num-warmup)")
    if min_ess < ESS_MIN_PER_CHAIN * chains:
        msgs.append(f"bulk ESS {min_ess:.0f} < {ESS_MIN_PER_CHAIN * chains}: increase --draws")
    if div:
        msgs.append(f"{div} divergent transitions: raise target_accept or add runs")
    return {"max_rhat": max_rhat, "min_ess_bulk": min_ess, "divergences": div}, msgs


def _init_from_point(law: Law, data: FitData, ybar: float) -> dict:
    """Every chain starts at the point fit's optimum (as standard-normal sites): the posterior
    of these laws can have far modes (an unidentified E or B) where a chain started at random
    stays (R-hat 1.6 on a 5 x 96 table)."""
    from multiscale.laws.bayes import PRIORS

    names, matrix = raw_names(law)
    M = len(data.mixture_families) if law.matrix else 0
    lN0, lD0 = np.log(data.N_ref), np.log(data.D_ref)
    X0 = _centre(names, _starts(law, data, names, matrix, M), lN0, lD0, 1.0)
    res = minimize_rows(law, data, X0)
    f = np.where(np.isfinite(res.f), res.f, np.inf)
    x = res.x[:, np.arange(data.n_families), np.argmin(f, axis=-1)]
    th = _split(law, names, matrix, x, M)
    init = {}
    for n in law.params:
        if n in _PARAM_SITE:
            site = _PARAM_SITE[n]
            loc, scale, rel = PRIORS[site]
            raw, expo = _BASE_SITES[site]
            v = np.log(np.maximum(th[raw], 1e-6)) if expo else th[raw]
            init[f"z_{site}"] = np.clip((v - (loc + ybar if rel else loc)) / scale, -4, 4)
    if "lrs" in th:
        loc, scale = EXTRA_PRIORS["log_Rstar"]
        init["z_log_Rstar"] = np.clip((th["lrs"] - loc) / scale, -4, 4)
    if "lk" in th and "e" in th:
        (l0, ls), (s0, ss) = LEVEL_SITES["level"], LEVEL_SITES["share"]
        init.pop("z_log_E")
        init["z_level"] = np.clip((np.logaddexp(th["e"], th["lk"]) - ybar - l0) / ls, -4, 4)
        init["z_share"] = np.clip((th["lk"] - th["e"] - s0) / ss, -4, 4)
    elif "lk" in th:
        loc, scale = EXTRA_PRIORS["log_k"]
        init["z_log_k"] = np.clip((th["lk"] - ybar - loc) / scale, -4, 4)
    slots = offdiag_slots(law, data)
    if "t" in th:
        init["z_t"] = np.clip(np.ravel(th["t"])[slots] / EXTRA_PRIORS["t"], -4, 4)
    if "ltau" in th:  # HalfCauchy: a point-fit tau up to 100 scales (5.0) is kept as is
        init["z_tau"] = np.clip(np.exp(np.ravel(th["ltau"])[slots]) / EXTRA_PRIORS["tau"][1], 1e-3, 100)
    init["sigma"] = np.full(data.n_families, 0.01)
    return {k: np.asarray(v, dtype=float) for k, v in init.items()}


def fit_bayes_mixture(df: pd.DataFrame, law: Law, shared=(), *, chains: int = 4, draws: int = 1000,
                      warmup: int | None = None, seed: int = 0, target_accept: float | None = None,
                      progress: bool = False, warn: bool = True, dense_mass: bool | None = None,
                      chain_method: str = "auto", extrapolation: bool = False) -> BayesFit:
    """NUTS posterior of a law of the whole mixture (see the module docstring); the
    InferenceData carries ``log_likelihood`` (variable ``y``, one entry per table row). These
    laws have no extrapolation term (`extrapolation` is accepted for the signature of
    `fit_bayes` and ignored)."""
    import arviz as az
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS, init_to_value

    from multiscale.laws.bayes import DENSE_MAX_DIMS, WARMUP, _chain_method, check_settings, default_target_accept

    check_settings(chains, draws, warmup)
    target_accept = default_target_accept(law) if target_accept is None else target_accept
    warmup = WARMUP if warmup is None else warmup
    df, data, shared = prepare(df, law, shared)
    F, M = data.n_families, len(data.mixture_families) if law.matrix else 0
    ybar = float(np.mean(data.logL_R))
    slots = offdiag_slots(law, data)
    model = _nuts_model(law, F, M, ybar, float(np.log(data.N_ref)), float(np.log(data.D_ref)), slots)
    dims = F * (len(law.params) + 1) + (len(slots) * len(law.matrix) if law.matrix else 0)
    dense = dims <= DENSE_MAX_DIMS if dense_mass is None else dense_mass
    method = _chain_method(chain_method, chains)
    t0 = time.perf_counter()
    init = _init_from_point(law, data, ybar)
    mcmc = MCMC(NUTS(model, target_accept_prob=target_accept, dense_mass=dense,
                     init_strategy=init_to_value(values=init)), num_warmup=warmup,
                num_samples=draws, num_chains=chains, chain_method=method, progress_bar=progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mcmc.run(jax.random.PRNGKey(seed), *(jnp.asarray(a) for a in _nuts_args(law, data)),
                 extra_fields=("diverging",))
    z = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    seconds = time.perf_counter() - t0  # sampling done (the samples are on the host)
    nat = _natural_draws(law, data, z, ybar)
    draws_S = {k: v.reshape((-1,) + v.shape[2:]) for k, v in nat.items()}
    sigma = z["sigma"]
    fit = BayesFit(law=law, families=data.families, shared=(), draws=draws_S, N_ref=data.N_ref,
                   D_ref=data.D_ref, n_runs={f: int(c) for f, c in zip(data.families, data.counts_F())},
                   mixture_families=tuple(data.mixture_families) if law.matrix else (),
                   unique_tokens=data.unique_tokens_F())
    ll = pointwise_loglik(fit, data, sigma.reshape(-1, F)).reshape(chains, draws, -1)
    dims_of = {n: ["family"] for n in law.params} | {n: ["family", "source"] for n in law.matrix}
    fit.idata = az.from_dict(
        posterior={**nat, "sigma": sigma}, log_likelihood={"y": ll},
        sample_stats={"diverging": np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"], bool)},
        coords={"family": list(data.families), "source": list(fit.mixture_families) or ["-"],
                "row": np.arange(data.n_rows)},
        dims={**dims_of, "sigma": ["family"], "y": ["row"]})
    fit.diagnostics, fit.warnings = _diagnostics(fit.idata, list(law.params) + list(law.matrix) + ["sigma"], chains)
    fit.diagnostics["seconds"] = seconds
    fit.options = {"chains": chains, "draws": draws, "warmup": warmup, "dense_mass": bool(dense),
                   "chain_method": method, "seed": seed, "target_accept": target_accept}
    if warn:
        for m in fit.warnings:
            warnings.warn(m, RuntimeWarning, stacklevel=2)
    return fit


def predict_mixture(fit, N: float, D: float, ratios: dict, unique_tokens: dict | None = None) -> np.ndarray:
    """Loss draws (S, F') of the families of `ratios` at one (N, D), for a law of the whole
    mixture: `ratios` must give the whole mixture (every mixture family of the fit)."""
    from multiscale.laws.mixture_forms import mixture_loss

    mix = tuple(fit.mixture_families) if fit.law.matrix else tuple(fit.families)
    missing = [f for f in mix if f not in ratios]
    if missing:
        raise InputError(f"law {fit.law.name!r} needs the whole mixture: give the ratio of {missing} too")
    P = np.array([ratios[f] for f in mix])
    U = {**fit.unique_tokens, **(unique_tokens or {})}
    U_F = np.array([U.get(f, np.inf) for f in fit.families])
    L = mixture_loss(fit.law, fit.draws, N, D, P, np.array([mix.index(f) for f in fit.families]), U_F)
    return L[:, [fit.family_index(f) for f in ratios if f in fit.families]]
