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
1.5)``, ``t_ij ~ N(0, 1)``, and for transfer the shrinkage prior ``tau_ij = s z_ij``,
``z_ij ~ HalfNormal(1)``, ``s ~ HalfNormal(0.05)`` (one global scale: tau is pulled to 0 unless
the data need it). The likelihood is `multiscale.laws.bayes`'s Student-t on log-loss; the
InferenceData carries its pointwise ``log_likelihood`` (for PSIS-LOO).
"""

from __future__ import annotations

import itertools
import time
import warnings

import numpy as np
import pandas as pd

from multiscale.laws import lbfgs
from multiscale.laws.data import FitData, prepare
from multiscale.laws.fits import BayesFit, PointFit
from multiscale.laws.forms import Law, get_law
from multiscale.laws.mixture_forms import log_loss, natural_from_raw, offdiag_mask, raw_names
from multiscale.laws.point import HUBER_DELTA, fit_arrays

MAX_EVALS = 3000
EXTRA_STARTS = {"lrs": (np.log(5.0), np.log(15.0), np.log(50.0)), "ltau": (-6.0, -2.5),
                "t": (0.0, 1.5), "lk": (-3.0, -1.0)}  # lk relative to the family's mean log-loss
EXTRA_PRIORS = {"log_Rstar": (float(np.log(15.0)), 1.0), "log_k": (-1.5, 1.5), "t": 1.0, "tau_scale": 0.05}


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
    """(K, F, G) starts: the seed law's best fit per family crossed with `EXTRA_STARTS`."""
    base = fit_arrays(get_law(law.base), data)
    F = data.n_families
    ybar_F = np.array([data.logL_R[data.fam_R == j].mean() for j in range(F)])
    extra_names = [n for n in names if n in EXTRA_STARTS] + list(matrix)
    combos = list(itertools.product(*[EXTRA_STARTS[n] for n in extra_names])) or [()]
    X = np.zeros((len(names) + M * len(matrix), F, len(combos)))
    for g, combo in enumerate(combos):
        v = dict(zip(extra_names, combo))
        for k, n in enumerate(names):
            if n in base.raw:
                X[k, :, g] = base.raw[n]
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
