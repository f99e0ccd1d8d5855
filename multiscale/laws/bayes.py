"""Bayesian fit of a law with numpyro NUTS; diagnostics through ArviZ.

Model, per family i (a parameter named in ``shared`` is one scalar for all families), with
``y = log L`` (L in nats/token), ``ybar`` the mean of y over the table, and log N, log D
centred on the table's geometric means N_ref, D_ref:

    y_r ~ StudentT(nu = 5, mu_r, sqrt(sigma_r^2 + s_r^2)),   s_r = loss_sem_r / loss_r
    sigma_r = sigma_i                                                      (noise "constant")
    log sigma_r = log sigma_i + s_N (log N_r - c_N,i) + s_p (log p_r - c_p,i)   (noise "scale")
    mu_r + u_{i,N_r}, u_i = tau_i P_i z_i, z ~ N(0, 1), sigma_r = sigma_i       (noise "size")
    mu_r = log(E_i + A_i N^-alpha_i + B_i D^-beta_i) - gamma_i log p      (multilingual)
    mu_r = log(c_i) - gamma_i log p                                        (ratio)

Parameters live on the log scale. Weakly informative priors (normal on the log scale):

    log E_i              ~ N(ybar - 0.7, 1.0)   E about half the typical loss, within e^(+-2)
    log(A_i N_ref^-alpha_i) ~ N(ybar - 1.5, 1.5)   the N term at the reference size
    log(B_i D_ref^-beta_i)  ~ N(ybar - 1.5, 1.5)   the D term at the reference budget
    log alpha_i, log beta_i ~ N(log 0.3, 0.5)      Chinchilla-like exponents, 95% in [0.11, 0.8]
    log gamma_i          ~ N(log 0.15, 1.0)        95% in [0.02, 1.1] (He et al.: gamma well below 1)
    log c_i              ~ N(ybar, 1.0)            (ratio law)
    sigma_i              ~ HalfNormal(0.05)        relative loss noise (log scale)
    s_N, s_p             ~ N(0, 0.5)               noise "scale" only (`multiscale.laws.noise`)
    tau_i                ~ HalfNormal(0.05)        noise "size" only: sd of the per-size offsets

The N and D terms are parameterized at the reference size (not as log A, log B) because
``a - alpha log N`` makes log A and alpha almost perfectly correlated when log N ~ 20;
at the reference the two decouple and NUTS mixes. Every site is sampled as a standard
normal and shifted/scaled (non-centred), so the diagonal mass matrix adapts easily.
The Student-t (nu = 5, fixed) keeps a few bad runs from dragging the fit.

A law started from a base law (the laws of the whole mixture) keeps the base's sites and priors
and adds (`EXTRA_PRIORS`) ``log R* ~ N(log 15, 1)`` (Muennighoff et al. 2023 fit R*_D ~ 15),
``log k ~ N(ybar - 1.5, 1.5)``, ``t_ij ~ N(0, 1)`` (a prior on the slopes ``k_i t_ij`` instead
was measured and dropped: E's 20-seed coverage fell to 0.80), and for transfer the shrinkage
prior ``tau_ij ~ HalfCauchy(0.05)`` (mode at 0 and half its mass below 0.05, so a weak transfer
is pulled to 0; its heavy tail leaves a strong one, 0.2-1, almost unshrunk, where the first
prior, HalfNormal(0.1), put 0.3 at 3 scales. A hierarchical global scale mixed badly, R-hat 1.07
on 5 families x 100 runs). NUTS samples the mixing law's E and k as the level ``log(E + k)`` and
the share ``logit(k / (E + k))`` (Jacobian 1, so the priors above are kept: `_prior_e_k`): the
data fix the level, and the share moves along the ridge ``E + k = const`` without bending it
(R-hat 1.30 -> 1.01 on a seed that sampled log E and log k directly). Every chain starts at the
point fit's optimum, and the InferenceData carries the pointwise ``log_likelihood`` (for PSIS-LOO).
A table of at least LAPLACE_MIN_ROWS rows, whose posterior is far narrower than the sites' unit
scale, is sampled whitened around its posterior mode instead (`laplace_whitening`).
"""

from __future__ import annotations

import gc
import math
import time
import warnings as _warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from multiscale.errors import InputError
from multiscale.host_devices import request_host_devices
from multiscale.laws.data import FitData, prepare
from multiscale.laws.extrapolation import FieldPrior, leave_largest_out
from multiscale.laws.fits import BayesFit
from multiscale.laws.forms import Law, get_law, log_loss, natural_from_raw, offdiag_mask
from multiscale.laws.identifiability import refuse_unidentified, unidentified
from multiscale.laws.noise import (
    DEFAULT_NOISE,
    SIZE_OFFSET,
    SIZE_PRIOR,
    SIZE_SD,
    SLOPE_PRIOR,
    NoiseSpec,
    check_noise,
    slope_name,
)
from multiscale.laws.point import fit_arrays
from multiscale.laws.predict import STUDENT_NU, pointwise_loglik, predictive_draws

RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100
SIGMA_PRIOR = 0.05
# Sampler settings (measured in benchmarks/FIT_RESULTS.md). Within a family, log E and the N
# and D terms and exponents are strongly correlated: a dense mass matrix cuts the leapfrog
# steps per draw about 5x (5 families x 100 runs: ~39 instead of ~200). Its cost is O(d^2)
# per step and it needs about d warm-up draws to estimate, so above DENSE_MAX_DIMS sampled
# dimensions the mass matrix stays diagonal. "auto" runs the chains in parallel, one per XLA
# device, when the process has at least as many devices as chains (on a CPU host:
# `host_devices_for_chains` before jax starts; 2.6x faster than one after another on 2
# cores), else one after another ("sequential"). Not "vectorized": it runs the chains in
# lockstep, each step waiting for the longest tree, and was 1.4-2.7x slower on CPU.
# Warm-up is WARMUP steps per chain (on top of the draws).
DENSE_MAX_DIMS = 200
CHAIN_METHOD = "auto"
WARMUP = 500
# NUTS's target acceptance probability (`target_accept=None`): TARGET_ACCEPT, and for the laws
# with the exp-linear mixing term (a matrix `t`: `mixing`, `ratio_mixing`) TARGET_ACCEPT_MIXING.
# Their posterior has a curved ridge (E against k, k against the t_ij); at 0.85, 15 of 100
# synthetic seeds diverged and 16 had R-hat > 1.01, and the four worst seeds refitted at 0.95
# went from 132/45/4/5 divergences to 0/0/0/1 (R-hat 1.167 -> 1.020), at about 1.2x the time.
TARGET_ACCEPT = 0.85
TARGET_ACCEPT_MIXING = 0.95
# The extrapolation refits (`refit_settings`): this many draws in all, over the fit's chains.
REFIT_DRAWS = 1000
# ... on at most this many chains for a table of LAPLACE_MIN_ROWS rows or more: chains run in
# parallel take memory that grows with their number (15,000 rows: 2.5 GB more for 4 parallel
# chains than sequential ones), and 2 chains x 500 draws cost less warm-up than 4 x 250.
LARGE_REFIT_CHAINS = 2
# The refits run as one stacked NUTS program (one compilation, one warm-up) only while the tables
# together have at most this many rows: on 7 families x 1,080 runs (7,560 rows) the stacked program
# took 130 s and 6.1 GB for 4 chains x 250 draws after 250 warm-up, one after another 38.5 s and
# 0.9 GB (benchmarks/FIT_RESULTS.md, "Large tables").
STACK_MAX_ROWS = 2000
# From LAPLACE_MIN_ROWS rows on, NUTS samples the sites whitened around the posterior mode
# (`laplace_whitening`), found in at most LAPLACE_MAX_ITERS Newton (trust-region) steps from the
# point fit.
LAPLACE_MIN_ROWS = 5000
LAPLACE_MAX_ITERS = 50


def host_devices_for_chains(chains: int) -> bool:
    """Ask XLA for `chains` CPU devices so that NUTS chains run in parallel threads (numpyro's
    "parallel"). Only possible before jax is first imported, and only when XLA_FLAGS does not
    already set a device count; returns whether the flag was added. The CLI calls this before a
    NUTS fit; a Python user calls it first thing, before importing jax."""
    return chains >= 2 and request_host_devices(int(chains))


def _chain_method(method: str, chains: int) -> str:
    import jax

    if method != "auto":
        return method
    return "parallel" if chains > 1 and jax.local_device_count() >= chains else "sequential"


def default_target_accept(law) -> float:
    """NUTS's target acceptance probability for `law` (a `Law`) when none is given."""
    return TARGET_ACCEPT_MIXING if "t" in law.matrix else TARGET_ACCEPT


# site -> (loc relative to ybar or absolute, scale, is_relative_to_ybar)
PRIORS = {
    "log_E": (-0.7, 1.0, True),
    "log_Nterm": (-1.5, 1.5, True),
    "log_Dterm": (-1.5, 1.5, True),
    "log_alpha": (float(np.log(0.3)), 0.5, False),
    "log_beta": (float(np.log(0.3)), 0.5, False),
    "log_gamma": (float(np.log(0.15)), 1.0, False),
    "log_c": (0.0, 1.0, True),
}
# tau: (kind, scale): tau ~ HalfCauchy(0.05), sampled as scale * z with z ~ HalfCauchy(1)
EXTRA_PRIORS = {"log_Rstar": (float(np.log(15.0)), 1.0), "log_k": (-1.5, 1.5), "t": 1.0,
                "tau": ("halfcauchy", 0.05)}
# mixing: E and k are sampled as the level log(E + k) and the share logit(k / (E + k)),
# (loc relative to ybar, scale) each; the prior stays log E's and log k's (`_prior_e_k`)
LEVEL_SITES = {"level": (-0.3, 0.5), "share": (-1.5, 1.5)}
_SITE_OF = {"E": "log_E", "A": "log_Nterm", "B": "log_Dterm", "alpha": "log_alpha",
            "beta": "log_beta", "gamma": "log_gamma", "c": "log_c"}
# site -> (raw name, exponentiated): log_Nterm and log_Dterm are the raw a and b centred on the reference
_RAW_OF = {"log_E": ("e", False), "log_Nterm": ("a", False), "log_Dterm": ("b", False),
           "log_alpha": ("alpha", True), "log_beta": ("beta", True), "log_gamma": ("gamma", True),
           "log_c": ("logc", False)}


@dataclass(frozen=True)
class Layout:
    """Which group each family belongs to, for one NUTS program that fits several tables at once
    (the extrapolation refits): per group G the mean log-loss the priors are centred on and the
    log reference size and budget the N and D terms are centred on; a shared exponent is one value
    per group. One group (the usual fit) keeps scalar sites and locations."""

    ybar_G: np.ndarray
    lN0_G: np.ndarray
    lD0_G: np.ndarray
    group_F: np.ndarray

    @classmethod
    def single(cls, data: FitData) -> Layout:
        return cls(np.array([float(np.mean(data.logL_R))]), np.array([np.log(data.N_ref)]),
                   np.array([np.log(data.D_ref)]), np.zeros(data.n_families, int))

    @property
    def n_groups(self) -> int:
        return len(self.ybar_G)

    def per_family(self, v_G):
        """A value per group (a float for one group) as one per family (F,)."""
        return float(v_G[0]) if self.n_groups == 1 else v_G[self.group_F]

    def loc(self, site: str, shared: bool):
        """A site's prior location: a float for one group, else per group (shared) or family."""
        loc, _, rel = PRIORS[site]
        loc_G = loc + self.ybar_G if rel else np.full(self.n_groups, loc)
        if self.n_groups == 1:
            return float(loc_G[0])
        return loc_G if shared else loc_G[self.group_F]

    def shape(self, shared: bool) -> tuple[int, ...]:
        if not shared:
            return (len(self.group_F),)
        return () if self.n_groups == 1 else (self.n_groups,)

    def spread(self, v, xp):
        """A shared site's value (scalar or per group, draws first) as one per family (..., F)."""
        F = len(self.group_F)
        if self.n_groups > 1:
            return v[..., self.group_F]
        return xp.broadcast_to(xp.asarray(v)[..., None], xp.shape(v) + (F,))


def _e_and_k(ybar, z_level, z_share, xp):
    """(log E, log k) from the standard level and share sites."""
    (l0, ls), (s0, ss) = LEVEL_SITES["level"], LEVEL_SITES["share"]
    lc, u = ybar + l0 + ls * z_level, s0 + ss * z_share
    return lc - xp.logaddexp(0.0, u), lc - xp.logaddexp(0.0, -u)


def _prior_e_k(ybar, z_level, z_share, le, lk, xp):
    """log prior of (log E, log k) (PRIORS["log_E"], EXTRA_PRIORS["log_k"]) minus the sites' own
    standard normal densities: the map (log(E + k), logit(k / (E + k))) -> (log E, log k) has
    Jacobian 1, so the posterior is the one with E and k sampled directly."""
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


def _sample_sites(law: Law, shared, lay: Layout, M: int, xp, sample, fam, mat, slots=None) -> dict:
    """Raw (centred) parameters from the prior sites. `sample(name, kind, shape)` draws a
    standard site ("normal", "halfnormal" or "halfcauchy"); `fam` and `mat` shape a per-family
    (..., F) and a matrix (..., M, F) value for `log_loss` (the model: (F, 1) and (M, F, 1)); a
    shared site is one value (per group), a matrix site is sampled at `slots` only."""
    F, ybar = len(lay.group_F), lay.per_family(lay.ybar_G)
    th = {}
    level = "E" in law.params and "k" in law.params  # mixing: E and k from the (level, share) sites
    for n in law.params:
        if n in _SITE_OF and not (level and n == "E"):
            site, sh = _SITE_OF[n], n in shared
            v = lay.loc(site, sh) + PRIORS[site][1] * sample(f"z_{site}", "normal", lay.shape(sh))
            raw, expo = _RAW_OF[site]
            v = lay.spread(v, xp) if sh else v
            th[raw] = fam(xp.exp(v) if expo else v)
    if "R_star" in law.params:
        loc, scale = EXTRA_PRIORS["log_Rstar"]
        th["lrs"] = fam(loc + scale * sample("z_log_Rstar", "normal", (F,)))
    if level:
        le, lk = _e_and_k(ybar, sample("z_level", "normal", (F,)), sample("z_share", "normal", (F,)), xp)
        th["e"], th["lk"] = fam(le), fam(lk)
    elif "k" in law.params:
        loc, scale = EXTRA_PRIORS["log_k"]
        th["lk"] = fam(ybar + loc + scale * sample("z_log_k", "normal", (F,)))
    if "t" in law.matrix:
        z = sample("z_t", "normal", (len(slots),))
        th["t"] = mat(EXTRA_PRIORS["t"] * _matrix_of_sites(z, slots, M, F, xp))
    if "tau" in law.matrix:
        kind, scale = EXTRA_PRIORS["tau"]
        th["tau"] = mat(scale * _matrix_of_sites(sample("z_tau", kind, (len(slots),)), slots, M, F, xp))
    return th


def fit_rows(law: Law, data: FitData, lay: Layout, noise: NoiseSpec | None = None) -> tuple[np.ndarray, ...]:
    """The table laid out per family (F x R, R the most rows of any family; the mask drops the
    padding), so that every family parameter reaches its rows by broadcasting (no gather, whose
    gradient is a slow scatter): mask, log N and log D centred on their group's reference (in
    float64, before the model's precision), log p, log U, log L, the standard error of log L; for
    a law with a matrix, the mixture (M, F, R) and the off-diagonal mask (M, F, 1); for a noise
    model with size levels, each row's level among its family's (F, R, K) one-hot, K the most
    levels of any family (`size_slots`)."""
    F, counts = data.n_families, data.counts_F()
    slot_R = np.zeros(data.n_rows, int)
    for j in range(F):
        sel = np.flatnonzero(data.fam_R == j)
        slot_R[sel] = np.arange(len(sel))
    mask = np.zeros((F, int(counts.max())), bool)
    mask[data.fam_R, slot_R] = True

    def lay_out(v_R, fill=0.0):
        out = np.full(mask.shape, fill, dtype=float)
        out[data.fam_R, slot_R] = v_R
        return out

    logU = data.logU_R if data.logU_R is not None and law.uses_unique_tokens else np.full(data.n_rows, np.inf)
    grp_R = lay.group_F[data.fam_R]
    rows = [mask, lay_out(data.logN_R - lay.lN0_G[grp_R]), lay_out(data.logD_R - lay.lD0_G[grp_R]),
            lay_out(data.logp_R), lay_out(logU, np.inf), lay_out(data.logL_R), lay_out(data.sem_rel_R)]
    if law.matrix:
        M = len(data.mixture_families)
        rows += [np.stack([lay_out(data.P_RxM[:, m]) for m in range(M)]),
                 offdiag_mask(data.fam_in_mix_F, M)[:, :, None]]
    if noise is not None and noise.levels:
        lev_R = noise.level_of(data.fam_R, data.logN_R)
        first_F = np.searchsorted(noise.level_family, np.arange(F))  # each family's first level
        k_R = lev_R - first_F[data.fam_R]
        onehot = np.zeros(mask.shape + (int(np.bincount(noise.level_family, minlength=F).max()),))
        onehot[data.fam_R, slot_R, k_R] = 1.0
        rows.append(onehot)
    return tuple(rows)


def size_slots(noise: NoiseSpec, n_families: int) -> np.ndarray:
    """(F, K) index into the levels (L,), padded with L: family f's k-th level, its offset's
    place in the (F, K) layout of `fit_rows`'s one-hot."""
    lev_F = noise.level_family
    counts = np.bincount(lev_F, minlength=n_families)
    out = np.full((n_families, max(int(counts.max()), 1)), len(lev_F))
    for j in range(n_families):
        out[j, :counts[j]] = np.flatnonzero(lev_F == j)
    return out


def _model(law: Law, shared, lay: Layout, M: int, slots, noise: NoiseSpec):
    """The numpyro model of any law; arrays (`fit_rows`) enter as arguments so one trace serves
    any data. log N and log D enter centred; the repetition term reads log D with the reference
    added back. `noise` gives the slopes of log sigma and each family's centres."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    drawn, F = {}, len(lay.group_F)
    # per covariate of noise.slopes: what to add to the rows (log N centred on the reference,
    # raw log p) to centre them on each family's own centre, (F, 1)
    lN0 = lay.per_family(lay.lN0_G)
    shift = {"N": lambda c: lN0 - c, "p": lambda c: -c}
    offsets = [np.reshape(shift[c](np.asarray(noise.centres[c])), (-1, 1)) for c in noise.slopes]
    lD0 = np.reshape(lay.per_family(lay.lD0_G), (-1, 1)) if law.uses_unique_tokens else 0.0
    where_FxK = size_slots(noise, F) if noise.levels else None
    proj_LxL = noise.projection() if noise.levels else None

    def sample(name, kind, shape):
        d = {"normal": dist.Normal(0.0, 1.0), "halfnormal": dist.HalfNormal(1.0),
             "halfcauchy": dist.HalfCauchy(1.0)}[kind]
        drawn[name] = numpyro.sample(name, d.expand(shape).to_event(len(shape)) if shape else d)
        return drawn[name]

    def model(mask, logN, logD, logp, logU, logL, sem, *more):
        P, offdiag = more[:2] if law.matrix else (None, None)
        th = _sample_sites(law, shared, lay, M, jnp, sample, fam=lambda v: jnp.broadcast_to(v, (F,))[:, None],
                           mat=lambda v: v[..., None], slots=slots)
        if "z_level" in drawn:
            numpyro.factor("prior_E_k", _prior_e_k(lay.per_family(lay.ybar_G), drawn["z_level"], drawn["z_share"],
                                                   th["e"][:, 0], th["lk"][:, 0], jnp))
        sigma = numpyro.sample("sigma", dist.HalfNormal(SIGMA_PRIOR).expand((F,)).to_event(1))[:, None]
        for c, off in zip(noise.slopes, offsets):
            s = SLOPE_PRIOR * sample(f"z_{slope_name(c)}", "normal", lay.shape(True))
            sigma = sigma * jnp.exp(lay.spread(s, jnp)[:, None] * ({"N": logN, "p": logp}[c] + off))
        mu = log_loss(law, th, logN, logD + lD0, logp, logU, P, offdiag, lD0=lD0, xp=jnp)
        if where_FxK is not None:  # the size offsets: (F, K) by family and level, to rows by the one-hot
            tau = numpyro.sample(SIZE_SD, dist.HalfNormal(SIZE_PRIOR).expand((F,)).to_event(1))
            z = sample("z_size", "normal", (len(noise.levels),))
            u_FxK = tau[:, None] * jnp.concatenate([proj_LxL @ z, jnp.zeros(1)])[where_FxK]
            mu = mu + jnp.einsum("frk,fk->fr", more[-1], u_FxK)
        scale = jnp.sqrt(sigma ** 2 + sem ** 2)
        numpyro.sample("y", dist.StudentT(STUDENT_NU, mu, scale).mask(mask), obs=logL)

    return model


def _natural(law: Law, z: dict, lay: Layout, shared, M: int, slots, off_MxF) -> dict:
    """Standard draws (chain, draw, ...) -> natural parameters (chain, draw, F[, M])."""
    chains = np.shape(next(iter(z.values())))[0]
    flat = {k: np.asarray(v, float).reshape((-1,) + np.shape(v)[2:]) for k, v in z.items()}
    th = _sample_sites(law, shared, lay, M, np, lambda name, kind, shape: flat[name], fam=lambda v: v,
                       mat=lambda v: np.moveaxis(v, 1, 0), slots=slots)
    if "a" in th:
        th["a"] = th["a"] + th["alpha"] * lay.per_family(lay.lN0_G)
        th["b"] = th["b"] + th["beta"] * lay.per_family(lay.lD0_G)
    if "tau" in th:
        with np.errstate(divide="ignore"):
            th["ltau"] = np.log(th.pop("tau"))
    nat = natural_from_raw(law, th, None if off_MxF is None else off_MxF[:, None, :])
    return {k: v.reshape((chains, -1) + v.shape[1:]) for k, v in nat.items()}


def _noise_draws(z: dict, lay: Layout, spec: NoiseSpec) -> dict:
    """``sigma`` and each slope of `spec` (``noise_slope_<covariate>``), (chain, draw, F): a slope,
    one value per group, repeated over the group's families; under "size" ``size_sd`` (chain,
    draw, F) and the offsets ``size_offset`` (chain, draw, L)."""
    out = {"sigma": np.asarray(z["sigma"], float)}
    for c in spec.slopes:
        out[slope_name(c)] = SLOPE_PRIOR * lay.spread(np.asarray(z[f"z_{slope_name(c)}"], float), np)
    if spec.levels:
        out[SIZE_SD] = np.asarray(z[SIZE_SD], float)
        out[SIZE_OFFSET] = out[SIZE_SD][..., spec.level_family] * (np.asarray(z["z_size"], float) @ spec.projection().T)
    return out


def n_dims(law: Law, shared, n_families: int, n_groups: int = 1, n_slots: int = 0, n_levels: int = 0) -> int:
    """Number of sampled (unconstrained) dimensions: per-family sites, shared sites (one per
    group of a stacked program), matrix sites (`n_slots` each), sigma; with `n_levels` size
    offsets, those and their sd per family."""
    return (sum(n_groups if n in shared else n_families for n in law.params) + n_families
            + n_slots * len(law.matrix) + (n_levels + n_families if n_levels else 0))


def _init_from_point(law: Law, data: FitData, ybar: float, noise_slopes=(), n_levels: int = 0) -> dict:
    """Sites (standard) at the point fit's optimum: a law started from its base law starts every
    chain there, since its posterior can have far modes (an unidentified E or B) where a chain
    started at random stays (R-hat 1.6 on a 5 x 96 table). The noise slopes named (one scalar
    each, a single table) start at 0, the constant noise; `n_levels` size offsets at 0, their sd
    at 0.01."""
    th = dict(fit_arrays(law, data).raw)
    init = {}
    if "a" in th:  # the N and D terms at the reference size, as the sites are
        th["a"] = th["a"] - th["alpha"] * np.log(data.N_ref)
        th["b"] = th["b"] - th["beta"] * np.log(data.D_ref)
    for n in law.params:
        if n in _SITE_OF:
            site = _SITE_OF[n]
            loc, scale, rel = PRIORS[site]
            raw, expo = _RAW_OF[site]
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
    init.update({f"z_{slope_name(c)}": 0.0 for c in noise_slopes})
    if n_levels:
        init[SIZE_SD], init["z_size"] = np.full(data.n_families, 0.01), np.zeros(n_levels)
    return {k: np.asarray(v, dtype=float) for k, v in init.items()}


def _split(u_xD, spec, xp=np) -> dict:
    """One vector (..., D) back into its sites (..., *shape); `spec`: (name, shape) in order."""
    out, o = {}, 0
    for name, shape in spec:
        n = math.prod(shape)
        out[name] = u_xD[..., o:o + n].reshape(u_xD.shape[:-1] + shape)
        o += n
    return out


def laplace_whitening(model, rows, start: dict):
    """NUTS's unconstrained sites around the posterior mode, whitened: (mode m_D, W_DxD with
    W W^T the inverse Hessian of the potential at m, (name, shape) of the sites, their
    constraining transforms). NUTS then samples u with z = m + W u, where the posterior is close
    to N(0, I) however small the table leaves it: numpyro's mass-matrix estimate (Stan's) is
    shrunk towards 1e-3 I, which on a large table is far wider than the posterior and forced
    hundreds of leapfrog steps per draw (benchmarks/FIT_RESULTS.md, "Large tables"). The mode is
    found in float64 from `start` (the point fit); W is the identity where the Hessian there is
    not positive definite."""
    import jax
    import jax.numpy as jnp
    import numpyro.handlers as handlers
    import scipy.linalg
    import scipy.optimize
    from numpyro.distributions import biject_to
    from numpyro.infer.util import init_to_value, initialize_model

    with jax.enable_x64(True):
        args = tuple(jnp.asarray(a) for a in rows)
        info = initialize_model(jax.random.PRNGKey(0), model, model_args=args,
                                init_strategy=init_to_value(values=start))
        spec = [(k, np.shape(v)) for k, v in info.param_info.z.items()]  # the sites, in one vector
        z0 = np.concatenate([np.ravel(np.asarray(v, float)) for v in info.param_info.z.values()])
        pot = jax.jit(lambda u: info.potential_fn(_split(u, spec, jnp)))
        grad, hess = jax.jit(jax.grad(pot)), jax.jit(jax.hessian(pot))
        res = scipy.optimize.minimize(lambda u: float(pot(u)), z0, jac=lambda u: np.asarray(grad(u)),
                                      hess=lambda u: np.asarray(hess(u)), method="trust-exact",
                                      options={"maxiter": LAPLACE_MAX_ITERS})
        m = res.x if np.isfinite(res.fun) else z0
        H = np.asarray(hess(m))
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(*args)
    try:
        R = np.linalg.cholesky(H)  # H = R R^T, H^-1 = R^-T R^-1
        W = scipy.linalg.solve_triangular(R, np.eye(len(m)), lower=True).T
    except np.linalg.LinAlgError:
        W = np.eye(len(m))
    transforms = {k: biject_to(s["fn"].support) for k, s in tr.items()
                  if s["type"] == "sample" and not s["is_observed"]}
    return m, W, spec, transforms


def run_nuts(law: Law, data: FitData, shared=(), *, chains: int = 4, draws: int = 1000,
             warmup: int | None = None, seed: int = 0, target_accept: float = TARGET_ACCEPT,
             chain_method: str = CHAIN_METHOD, progress: bool = False, x64: bool = False,
             dense_mass: bool | None = None, layout: Layout | None = None, noise: str = DEFAULT_NOISE):
    """Run NUTS on prepared arrays. Returns (natural params (chain, draw, F[, M]), the noise draws
    (`_noise_draws`), extra sample stats dict, seconds). `dense_mass` None: dense up to
    DENSE_MAX_DIMS sampled dimensions, diagonal above; `warmup` None: WARMUP; `layout` None: one
    table. A table of at least LAPLACE_MIN_ROWS rows is sampled whitened around its posterior
    mode (`laplace_whitening`), chain c starting at u_c ~ N(0, I), a draw of the Laplace
    approximation; a smaller one in the sites themselves, every chain starting at the point fit
    where the law says so (`nuts_from_point_fit`, `_init_from_point`), else at random."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS, init_to_uniform, init_to_value
    from numpyro.infer.util import potential_energy

    warmup = WARMUP if warmup is None else warmup
    lay = Layout.single(data) if layout is None else layout
    slots = offdiag_slots(law, data)
    M, n_slots = (len(data.mixture_families), len(slots)) if law.matrix else (0, 0)
    spec = NoiseSpec.of_rows(noise, data.n_families, data.fam_R, data.logN_R, data.logp_R)
    if dense_mass is None:
        dense_mass = n_dims(law, shared, data.n_families, lay.n_groups, n_slots, len(spec.levels)) <= DENSE_MAX_DIMS
    chain_method = _chain_method(chain_method, chains)
    slopes = spec.slopes if lay.n_groups == 1 else ()  # stacked: (G,) slopes, at random
    whiten = lay.n_groups == 1 and data.n_rows >= LAPLACE_MIN_ROWS
    start = (_init_from_point(law, data, float(lay.ybar_G[0]), slopes, len(spec.levels))
             if whiten or law.nuts_from_point_fit else None)
    t0 = time.perf_counter()
    model, rows = _model(law, shared, lay, M, slots, spec), fit_rows(law, data, lay, spec)
    if whiten:
        m_D, W_DxD, sites, transforms = laplace_whitening(model, rows, start)
        u0_CxD = np.random.default_rng(seed).standard_normal((chains, len(m_D)))
    with jax.enable_x64(x64):
        args = tuple(jnp.asarray(a) for a in rows)
        if whiten:
            real = np.float64 if x64 else np.float32
            m, W, u0_CxD = jnp.asarray(m_D, real), jnp.asarray(W_DxD, real), u0_CxD.astype(real)
            kernel = NUTS(potential_fn=lambda u_D: potential_energy(model, args, {}, _split(m + W @ u_D, sites, jnp)),
                          target_accept_prob=target_accept, dense_mass=dense_mass)
            run_args, run_kw = (), {"init_params": jnp.asarray(u0_CxD if chains > 1 else u0_CxD[0])}
        else:
            kernel = NUTS(model, target_accept_prob=target_accept, dense_mass=dense_mass,
                          init_strategy=init_to_uniform if start is None else init_to_value(values=start))
            run_args, run_kw = args, {}
        mcmc = MCMC(kernel, num_warmup=warmup, num_samples=draws, num_chains=chains,
                    chain_method=chain_method, progress_bar=progress)
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", UserWarning)  # "not enough devices" notice
            mcmc.run(jax.random.PRNGKey(seed), *run_args, extra_fields=("diverging", "num_steps"), **run_kw)
        samples = mcmc.get_samples(group_by_chain=True)
        extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    seconds = time.perf_counter() - t0
    if whiten:  # a large table: free its compiled programs and buffers before the next fit
        del mcmc, kernel, args
        jax.clear_caches()
        gc.collect()
        u = np.asarray(samples, float)
        z = {k: np.asarray(transforms[k](v)) for k, v in _split(m_D + u @ W_DxD.T, sites).items()}
    else:
        z = {k: np.asarray(v) for k, v in samples.items()}
    extra.update(dense_mass=bool(dense_mass), chain_method=chain_method, warmup=warmup, whitened=whiten)
    off = offdiag_mask(data.fam_in_mix_F, M) if law.matrix else None
    return _natural(law, z, lay, shared, M, slots, off), _noise_draws(z, lay, spec), extra, seconds


def _worst(values, labels, pick) -> tuple[str, float]:
    """(label, value) of the largest (`pick` max) or smallest finite value."""
    v = np.asarray(values, float).reshape(-1)
    ok = np.flatnonzero(np.isfinite(v))
    if not len(ok):
        return "", float("nan")
    k = ok[np.argmax(v[ok])] if pick is max else ok[np.argmin(v[ok])]
    return labels[k], float(v[k])


def _diagnose(idata, law: Law, families, sources, chains: int, noise_names=("sigma",),
              levels=()) -> tuple[dict, list[str]]:
    """R-hat, bulk and tail ESS per parameter (the law's and the noise's; the size offsets by
    their `levels` labels) and overall, divergences; and what to do about them."""
    import arviz as az

    names = list(law.params) + list(law.matrix) + list(noise_names)
    rhat = az.rhat(idata, var_names=names)
    ess_b = az.ess(idata, var_names=names, method="bulk")
    ess_t = az.ess(idata, var_names=names, method="tail")
    worst_rhat, worst_ess, per = ("", -np.inf), ("", np.inf), {}
    for n in names:
        labels = ([f"{n}[{f},{g}]" for f in families for g in sources] if n in law.matrix
                  else [f"{n}[{v}]" for v in levels] if n == SIZE_OFFSET else [f"{n}[{f}]" for f in families])
        r, e = rhat[n].values, ess_b[n].values
        per[n] = {"max_rhat": float(np.nanmax(r)) if chains > 1 else float("nan"),
                  "min_ess_bulk": float(np.nanmin(e)), "min_ess_tail": float(np.nanmin(ess_t[n].values))}
        worst_rhat = max(worst_rhat, _worst(r, labels, max), key=lambda t: t[1] if np.isfinite(t[1]) else -np.inf)
        worst_ess = min(worst_ess, _worst(e, labels, min), key=lambda t: t[1] if np.isfinite(t[1]) else np.inf)
    div = int(np.asarray(idata.sample_stats["diverging"].values).sum())
    diag = {"max_rhat": worst_rhat[1] if chains > 1 else float("nan"), "worst_rhat": worst_rhat[0],
            "min_ess_bulk": worst_ess[1], "worst_ess": worst_ess[0],
            "min_ess_tail": float(min(v["min_ess_tail"] for v in per.values())),
            "divergences": div, "per_parameter": per}
    msgs = []
    if chains < 2:
        msgs.append("only one chain: R-hat cannot be computed; run 4 chains (chains=4) to check convergence")
    elif worst_rhat[1] > RHAT_MAX:
        msgs.append(f"R-hat {worst_rhat[1]:.3f} > {RHAT_MAX} for {worst_rhat[0]}: the chains disagree. "
                    "Run longer (more draws and warm-up), or share exponents across families "
                    "(shared=('alpha', 'beta')) when the table is small.")
    if worst_ess[1] < ESS_MIN_PER_CHAIN * max(chains, 1):
        msgs.append(f"bulk ESS {worst_ess[1]:.0f} < {ESS_MIN_PER_CHAIN * max(chains, 1)} for {worst_ess[0]}: "
                    "too few effective draws for stable 90% intervals. Increase the draws.")
    if div > 0:
        msgs.append(f"{div} divergent transitions: the posterior has regions NUTS cannot follow. "
                    "Raise target_accept (e.g. 0.95), share exponents, or add runs that vary N and D.")
    return diag, msgs


def fit_bayes(df: pd.DataFrame, law: str = "multilingual", shared=(), *, chains: int = 4,
              draws: int = 1000, warmup: int | None = None, seed: int = 0,
              target_accept: float | None = None, progress: bool = False, warn: bool = True,
              dense_mass: bool | None = None, chain_method: str = CHAIN_METHOD,
              extrapolation: bool = True, extrapolation_prior: FieldPrior | None = None,
              strict: bool = False, noise: str = DEFAULT_NOISE) -> BayesFit:
    """Posterior of `law`'s parameters given a run table (see module docstring for the model).

    Args:
      df: run table; ``loss_sem`` (nats/token) is added to the noise in quadrature where given.
      shared: exponents shared by all families, e.g. ("alpha", "beta").
      warmup: warm-up draws per chain, extra to the draws (None: WARMUP).
      dense_mass: None: dense up to DENSE_MAX_DIMS sampled dimensions, else diagonal.
      chain_method: "auto" ("parallel" when there are at least `chains` devices, see
        `host_devices_for_chains`, else "sequential"), or numpyro's own.
      target_accept: None: `default_target_accept(law)`.
      warn: emit a Python warning for failed diagnostics (they are kept in `.warnings` too).
      extrapolation: also learn the extrapolation term (`multiscale.laws.extrapolation`) where the
        law does (`learns_extrapolation`): one refit per axis (N, D) with at least 3 levels, leaving
        its largest level out, with the fit's chains and warm-up but REFIT_DRAWS draws in all
        (`refit_settings`), the refits run as one NUTS program; recorded in
        ``options["extrapolation_refit"]``.
      extrapolation_prior: the term's field prior, which the refits update (None: the shipped
        `multiscale.laws.extrapolation.field_prior()`); saved in ``extrapolation["prior"]``.
      strict: refuse a fit the table cannot pin down (`multiscale.laws.identifiability`) instead
        of warning (`UnidentifiedWarning`, recorded in ``identifiability``).
      noise: the noise model (`multiscale.laws.noise.NOISE_MODELS`): "constant" (sigma per family)
        or "scale" (log sigma also linear in log N and log p, slopes shared by the families) or
        "size" (the runs of one (family, N) share an offset of sd tau_f); the fit's ``noise`` and
        saved options say which; "size" is refused from LAPLACE_MIN_ROWS rows on (it does not
        converge there). Compare them by PSIS-LOO with
        `multiscale.decisions.compare.compare_laws(..., noise=("constant", "scale"))`; PSIS-LOO leaves
        out a row, not a size, so it favours "size" wherever a size's runs agree, which says nothing
        of its prediction at a new size.

    Returns:
      `BayesFit` with draws per family/parameter, an ArviZ InferenceData (with the pointwise
      ``log_likelihood`` of every table row), R-hat, ESS and divergences.
    """
    law_obj = get_law(law)
    # whole-number NUTS settings (warmup None: WARMUP)
    for name, v, low in (("chains", chains, 1), ("draws", draws, 1), ("warmup", warmup, 0)):
        if (name != "warmup" or v is not None) and (
                isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low):
            raise InputError(f"{name} must be an integer >= {low}, got {v!r}")
    target_accept = default_target_accept(law_obj) if target_accept is None else target_accept
    check_noise(noise)
    df, data, shared = prepare(df, law_obj, shared)
    if noise == "size" and data.n_rows >= LAPLACE_MIN_ROWS:
        raise InputError(f"noise 'size' is not available for a table of {data.n_rows} rows (from "
                         f"{LAPLACE_MIN_ROWS} on): NUTS does not converge there (R-hat 2.5 on 6,000 rows, "
                         "docs/decisions/2026-12-07-size-offsets.md); use noise 'constant' or 'scale'", arg="noise")
    settings = dict(chains=chains, draws=draws, warmup=warmup, seed=seed, target_accept=target_accept,
                    dense_mass=dense_mass, chain_method=chain_method, noise=noise)
    fit = _fit_prepared(law_obj, data, shared, settings, progress=progress, warn=warn, loglik=True)
    fit.identifiability = unidentified(law_obj, data, shared, fit.draws)
    refuse_unidentified(law_obj, fit.identifiability, strict)
    if warn:
        fit.warn_unidentified()
    fit.options["extrapolation"] = bool(extrapolation and law_obj.learns_extrapolation)
    if fit.options["extrapolation"]:
        refit = refit_settings(settings, data.n_rows)
        fit.options["extrapolation_refit"] = {k: refit[k] for k in ("chains", "draws", "warmup", "seed")}
        # The refits run as one NUTS program over both sub-tables (`Layout`: the posterior
        # factorizes over the tables) unless that program would lose the dense mass matrix the
        # tables alone get; no warnings: the refits are diagnostics of the final fit, not results.
        seconds, stacked = [], []

        def fit_many(tables):
            fits, sec, stack = _refits(law_obj, tables, shared, refit)
            seconds.extend(sec)
            stacked.append(stack)
            return fits

        fit.extrapolation = leave_largest_out(
            df, None, lambda f, rows: predictive_draws(f, rows, extrapolation=False), fit_many=fit_many,
            prior=extrapolation_prior)
        fit.diagnostics["seconds_extrapolation"] = sum(seconds)
        fit.options["extrapolation_refit"]["stacked"] = bool(stacked and stacked[0])
    return fit


def refit_settings(settings: dict, rows: int = 0) -> dict:
    """The sampler settings of the extrapolation refits of a table of `rows` rows: the final fit's,
    with REFIT_DRAWS draws in all (split over the chains, at most the fit's own draws per chain)
    after the same warm-up; from LAPLACE_MIN_ROWS rows on, at most LARGE_REFIT_CHAINS chains.
    The refits only feed the 5/50/95% predictive quantiles of the left-out rows, for which about
    1,000 draws suffice; the warm-up is kept whole, since a refit must converge as well as the fit."""
    chains = min(settings["chains"], LARGE_REFIT_CHAINS) if rows >= LAPLACE_MIN_ROWS else settings["chains"]
    per_chain = min(settings["draws"], math.ceil(REFIT_DRAWS / chains))
    warmup = WARMUP if settings["warmup"] is None else settings["warmup"]
    return {**settings, "chains": chains, "draws": per_chain, "warmup": warmup}


def _refits(law_obj: Law, tables, shared, refit: dict) -> tuple[list, list[float], bool]:
    """Fit each table (an `InputError` in place of a table that cannot be fitted): one stacked
    NUTS program when the tables together have at most STACK_MAX_ROWS rows and stay within
    DENSE_MAX_DIMS (or every one alone is above it), else one after another.
    Returns (fits, seconds per NUTS run, stacked)."""
    prepared = []
    for t in tables:
        try:
            prepared.append(prepare(t, law_obj, shared)[1])
        except InputError as err:
            prepared.append(err)
    datas = [d for d in prepared if isinstance(d, FitData)]
    if not datas:
        return prepared, [], False
    levels = [len(NoiseSpec.of_rows(refit["noise"], d.n_families, d.fam_R, d.logN_R, d.logp_R).levels)
              for d in datas]
    dims = [n_dims(law_obj, shared, d.n_families, n_levels=n) for d, n in zip(datas, levels)]
    together = n_dims(law_obj, shared, sum(d.n_families for d in datas), len(datas), n_levels=sum(levels))
    dense = refit["dense_mass"]
    stack = (len(datas) > 1 and sum(d.n_rows for d in datas) <= STACK_MAX_ROWS
             and (dense is not None or together <= DENSE_MAX_DIMS or min(dims) > DENSE_MAX_DIMS))
    if stack:
        fits = _fit_stacked(law_obj, datas, shared, refit)
    else:
        fits = [_fit_prepared(law_obj, d, shared, refit, progress=False, warn=False) for d in datas]
    it = iter(fits)
    out = [next(it) if isinstance(d, FitData) else d for d in prepared]
    seconds = [fits[0].diagnostics["seconds"]] if stack else [f.diagnostics["seconds"] for f in fits]
    return out, seconds, stack


def _fit_stacked(law_obj: Law, datas: list[FitData], shared, settings: dict) -> list[BayesFit]:
    """One NUTS run over several prepared tables (group g = table g), split into one fit each."""
    offsets = np.cumsum([0] + [d.n_families for d in datas])
    cat = lambda name: np.concatenate([getattr(d, name) for d in datas])  # noqa: E731
    data = FitData(families=tuple(f"{g}:{f}" for g, d in enumerate(datas) for f in d.families),
                   fam_R=np.concatenate([d.fam_R + o for d, o in zip(datas, offsets)]),
                   logN_R=cat("logN_R"), logD_R=cat("logD_R"), logp_R=cat("logp_R"), logL_R=cat("logL_R"),
                   sem_rel_R=cat("sem_rel_R"), N_ref=float("nan"), D_ref=float("nan"))
    lay = Layout(np.array([float(np.mean(d.logL_R)) for d in datas]), np.log([d.N_ref for d in datas]),
                 np.log([d.D_ref for d in datas]), np.repeat(np.arange(len(datas)), np.diff(offsets)))
    nat, noise, extra, seconds = run_nuts(law_obj, data, shared, layout=lay, **settings)
    lev_F = NoiseSpec.of_rows(settings["noise"], data.n_families, data.fam_R, data.logN_R, data.logp_R).level_family

    def part(k, v, o, n):  # table g's families, or its levels
        return v[..., (lev_F >= o) & (lev_F < o + n)] if k == SIZE_OFFSET else v[..., o:o + n]

    return [_as_fit(law_obj, d, shared, settings, {k: v[..., o:o + d.n_families] for k, v in nat.items()},
                    {k: part(k, v, o, d.n_families) for k, v in noise.items()}, extra, seconds, warn=False)
            for d, o in zip(datas, offsets)]


def _fit_prepared(law_obj: Law, data: FitData, shared, settings: dict, *, progress: bool,
                  warn: bool, loglik: bool = False) -> BayesFit:
    """NUTS on prepared arrays, ArviZ diagnostics, and the `BayesFit`."""
    nat, noise, extra, seconds = run_nuts(law_obj, data, shared, progress=progress, **settings)
    fit = _as_fit(law_obj, data, shared, settings, nat, noise, extra, seconds, warn=warn, loglik=loglik)
    fit.options["whitened"] = extra["whitened"]
    return fit


def _as_fit(law_obj: Law, data: FitData, shared, settings: dict, nat: dict, noise: dict, extra: dict,
            seconds: float, *, warn: bool, loglik: bool = False) -> BayesFit:
    """The `BayesFit` of NUTS draws (chain, draw, F[, M]) of `data`'s families and their noise
    draws (`_noise_draws`; a slope whose covariate is constant within each of `data`'s families, as
    in one table of a stacked program, is dropped), with diagnostics and, with `loglik`, the
    pointwise log-likelihood of every table row."""
    import arviz as az

    chains, draws, seed, target_accept = (settings[k] for k in ("chains", "draws", "seed", "target_accept"))
    fams, mix = list(data.families), tuple(data.mixture_families) if law_obj.matrix else ()
    counts = data.counts_F()
    fit = BayesFit(law=law_obj, families=tuple(fams), shared=shared,
                   draws={n: v.reshape((-1,) + v.shape[2:]) for n, v in nat.items()}, N_ref=data.N_ref,
                   D_ref=data.D_ref, n_runs={f: int(counts[j]) for j, f in enumerate(fams)},
                   mixture_families=mix, unique_tokens=data.unique_tokens_F(),
                   noise=NoiseSpec.of_rows(settings["noise"], len(fams), data.fam_R,
                                           data.logN_R, data.logp_R))
    noise = {k: v for k, v in noise.items() if k in fit.noise.draw_names()}
    more = {}
    if loglik:
        ll = pointwise_loglik(fit, data, {k: v.reshape(-1, v.shape[-1]) for k, v in noise.items()})
        more = {"log_likelihood": {"y": ll.reshape(noise["sigma"].shape[:2] + (-1,))}}
    fit.idata = az.from_dict(
        posterior={**nat, **noise}, **more,
        sample_stats={"diverging": extra["diverging"].astype(bool), "n_steps": extra["num_steps"].astype(np.int64)},
        coords={"family": fams, "source": list(mix) or ["-"], "row": np.arange(data.n_rows)}
        | ({"level": fit.noise.level_labels(fams)} if fit.noise.levels else {}),
        dims={n: ["family"] for n in law_obj.params} | {m: ["family", "source"] for m in law_obj.matrix}
        | dict.fromkeys(noise, ["family"]) | {SIZE_OFFSET: ["level"], "y": ["row"]})
    fit.diagnostics, fit.warnings = _diagnose(fit.idata, law_obj, fams, mix, chains, list(noise),
                                              fit.noise.level_labels(fams))
    fit.diagnostics["seconds"] = seconds
    if warn:
        for m in fit.warnings:
            _warnings.warn(m, RuntimeWarning, stacklevel=4)
    fit.options = {"chains": chains, "draws": draws, "warmup": extra["warmup"], "dense_mass": extra["dense_mass"],
                   "chain_method": extra["chain_method"], "seed": seed, "target_accept": target_accept,
                   "student_nu": STUDENT_NU, "sigma_prior": SIGMA_PRIOR}
    return fit
