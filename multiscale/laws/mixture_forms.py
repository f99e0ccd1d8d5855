"""Laws of the whole mixture: one log-loss function for every registered law.

A law of the whole mixture maps (N, D, the run's mixture P over all M mixture families, the
unique tokens U of each family) to each family's loss. With ``s_i`` the scale part and ``pe_i``
the effective ratio:

- scale part (``uses_scale``): ``s_i = E_i + A_i / N^alpha_i + B_i / D^beta_i``; else ``c_i``.
- repetition (``uses_unique_tokens``; Muennighoff et al. 2023): family i reads ``p_i D`` tokens
  of ``U_i`` unique ones; ``R_i = max(0, p_i D / U_i - 1)`` epochs beyond the first and the
  effective tokens ``D'_i = U_i + U_i R*_i (1 - exp(-R_i / R*_i))``. Family i effectively
  receives ``D'_i`` tokens, so its effective ratio ``p'_i = D'_i / D`` replaces ``p_i`` wherever
  the ratio enters: ``L_i = s_i * p'_i^(-gamma_i)`` (with transfer, ``p'_i + sum_j tau_ij p_j``:
  the other families' ratios as given). Where ``p_i D <= U_i`` it is exactly ``p_i``, so the
  law is exactly the seed's. An exhausted family stops gaining from more sampling (``D'_i``
  saturates at ``U_i (1 + R*_i)``), and at a fixed ratio its loss rises with D once
  ``p'_i``'s fall outpaces the D term's (the overfitting of many epochs). The other form, ``D'_i
  / p_i`` in the D term with ``p_i^(-gamma)`` kept, was measured and dropped: its ``p_i^-gamma``
  still rewards sampling an exhausted family (its optimum gave a 1e7-token family 18% of a 1e12
  budget, 18,000 epochs; docs/design.md, "Laws of the whole mixture").
- transfer (matrix ``tau``, tau >= 0): ``pe_i = p_i + sum_{j != i} tau_ij p_j`` and
  ``L_i = s_i * pe_i^(-gamma_i)``; tau = 0 is exactly the seed's law.
- mixing (matrix ``t``; Ye et al. 2024, Data Mixing Laws): ``L_i = s_i + k_i exp(sum_{j != i}
  t_ij p_j)``. ``t_ii`` is fixed at 0: since the ratios sum to 1, a constant added to every
  ``t_ij`` only rescales ``k_i``, so the diagonal is not identified.
- otherwise (the seed laws): ``L_i = s_i * p_i^(-gamma_i)`` (``chinchilla``: ``s_i``).

`log_loss` works on the approach-3 (log-scale) parameters with numpy or jax.numpy, and the
mixture axis M FIRST on the matrix parameters, the mixture P and the off-diagonal mask.
"""

from __future__ import annotations

import numpy as np

from multiscale.laws.forms import RAW_NAMES, Law, predict_loss

# raw (approach-3) names: per-family scalars, then matrix parameters (one value per mixture family)
_BASE_RAW = {"multilingual": ("a", "b", "e", "alpha", "beta"), "ratio": ("logc",)}


def raw_names(law: Law) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(per-family raw names, matrix raw names) of the point fit's parametrization."""
    if law.is_seed:
        return RAW_NAMES[law.name], ()
    names = list(_BASE_RAW[law.base])
    if "gamma" in law.params:
        names.append("gamma")
    if law.uses_unique_tokens:
        names.append("lrs")
    if "k" in law.params:
        names.append("lk")
    matrix = tuple("ltau" if m == "tau" else m for m in law.matrix)
    return tuple(names), matrix


def effective_logD(lrs, logD, logp, logU, xp=np):
    """log(D'_i / p_i) where family i repeats (p_i D > U_i), else exactly log D: the run length
    at which fresh data would give family i its effective tokens D'_i."""
    logtok = logp + logD
    rep = logtok > logU
    safe_logU = xp.where(rep, logU, logtok)
    R = xp.exp(logtok - safe_logU) - 1.0
    Rs = xp.exp(lrs)
    logDp = safe_logU + xp.log1p(Rs * (-xp.expm1(-R / Rs)))
    return xp.where(rep, logDp - logp, logD)


def log_effective_own_ratio(lrs, logD, logp, logU, xp=np):
    """log p'_i = log(D'_i / D) where family i repeats (p_i D > U_i), else exactly log p_i."""
    rep = logp + logD > logU
    return xp.where(rep, effective_logD(lrs, logD, logp, logU, xp) + logp - logD, logp)


def log_effective_ratio(logp, tp, xp=np):
    """log(p_i + tp) with tp = sum_j tau_ij p_j, as ``log p_i + log1p(tp / p_i)`` so that tp = 0
    gives exactly log p_i; log(tp) where p_i = 0 (a family absent from the mixture)."""
    own = xp.exp(logp)
    has = own > 0
    safe_own = xp.where(has, own, 1.0)
    return xp.where(has, logp + xp.log1p(tp / safe_own), xp.log(xp.where(has, 1.0, tp)))


def _scale(law: Law, th: dict, logN, logD, logp, lN0, lD0, xp):
    if not law.uses_scale:
        return xp.broadcast_arrays(th["logc"], logp)[0]
    terms = xp.broadcast_arrays(th["a"] - th["alpha"] * (logN - lN0), th["b"] - th["beta"] * (logD - lD0),
                                th["e"], logp)[:3]
    stack = xp.stack(terms, axis=0)
    m = xp.max(stack, axis=0)
    return m + xp.log(xp.sum(xp.exp(stack - m), axis=0))


def log_loss(law: Law, th: dict, logN, logD, logp, logU=np.inf, P=None, offdiag=None, *,
             lN0=0.0, lD0=0.0, xp=np):
    """Predicted log-loss of each row's own family.

    th: raw parameters broadcastable against the rows (``a``, ``b``, ``e``, ``alpha``, ``beta``,
      ``gamma``, ``logc``, ``lrs = log R*``, ``lk = log k``); matrix ones (``ltau = log tau`` or
      ``tau`` itself, ``t``) with the mixture axis first.
    logN, logD, logp, logU: the row's log N, log D, log of its family's ratio, log of its
      family's unique tokens (+inf: unlimited).
    P, offdiag: the run's mixture and the mask of the other families, mixture axis first.
    lN0, lD0: centring of log N and log D (``a`` and ``b`` are then the centred ones).
    """
    out = _scale(law, th, logN, logD, logp, lN0, lD0, xp)
    if law.uses_unique_tokens:  # family i effectively reads D'_i tokens: its ratio is D'_i / D
        logp = log_effective_own_ratio(th["lrs"], logD, logp, logU, xp)
    if "t" in law.matrix:
        tp = xp.sum(th["t"] * offdiag * P, axis=0)
        return xp.logaddexp(out, th["lk"] + tp)
    if "tau" in law.matrix:
        tau = th["tau"] if "tau" in th else xp.exp(th["ltau"])
        return out - th["gamma"] * log_effective_ratio(logp, xp.sum(tau * offdiag * P, axis=0), xp)
    if law.uses_ratio:
        out = out - th["gamma"] * logp
    return out


def natural_from_raw(law: Law, th: dict, offdiag_MxF=None, xp=np) -> dict:
    """Raw (uncentred) parameters -> natural ones; matrix ones (M, ..., F) -> (..., F, M) with
    the diagonal 0."""
    out = {}
    if law.uses_scale:
        out.update(E=xp.exp(th["e"]), A=xp.exp(th["a"]), B=xp.exp(th["b"]), alpha=th["alpha"],
                   beta=th["beta"])
    else:
        out["c"] = xp.exp(th["logc"])
    for raw, nat in (("gamma", "gamma"), ("lrs", "R_star"), ("lk", "k")):
        if raw in th:
            out[nat] = th[raw] if raw == "gamma" else xp.exp(th[raw])
    for m in law.matrix:
        v = xp.exp(th["ltau"]) if m == "tau" else th["t"]
        out[m] = xp.moveaxis(v * offdiag_MxF, 0, -1)
    return out


def raw_from_natural(law: Law, nat: dict) -> dict:
    """Natural parameters (per family ``(..., F)``, matrix ``(..., F, M)``) -> raw ones, the
    matrix ones with the mixture axis first (``tau`` kept as is, so that tau = 0 stays exact)."""
    th = {}
    with np.errstate(divide="ignore"):
        if law.uses_scale:
            th.update(e=np.log(nat["E"]), a=np.log(nat["A"]), b=np.log(nat["B"]), alpha=nat["alpha"],
                      beta=nat["beta"])
        else:
            th["logc"] = np.log(nat["c"])
        if "gamma" in nat:
            th["gamma"] = nat["gamma"]
        if "R_star" in nat:
            th["lrs"] = np.log(nat["R_star"])
        if "k" in nat:
            th["lk"] = np.log(nat["k"])
    for m in law.matrix:
        th[m] = np.moveaxis(np.asarray(nat[m], float), -1, 0)
    return th


def offdiag_mask(fam_in_mix_F, M: int) -> np.ndarray:
    """(M, F): 1 where mixture family j is not family i itself."""
    return (np.arange(M)[:, None] != np.asarray(fam_in_mix_F)[None, :]).astype(float)


def mixture_loss(law: Law, nat: dict, N, D, P, fam_in_mix_F, U_F=None) -> np.ndarray:
    """Every family's loss (S, F) in nats/token at one (N, D) and mixture P ((M,) or (S, M),
    over the fit's mixture families), with unique tokens U_F per family (None: unlimited).
    The seed laws read only each family's own ratio (`multiscale.laws.forms.predict_loss`)."""
    P = np.atleast_2d(np.asarray(P, dtype=float))
    fam_in_mix_F = np.asarray(fam_in_mix_F)
    p_own = P[:, fam_in_mix_F]
    if law.is_seed:
        out = np.asarray(predict_loss(law, nat, N, D, p_own), dtype=float)
        return np.broadcast_to(out, np.broadcast_shapes(out.shape, p_own.shape)).copy()
    F = len(fam_in_mix_F)
    U = np.full(F, np.inf) if U_F is None else np.asarray(U_F, dtype=float)
    th = raw_from_natural(law, nat)  # matrix ones (M, S, F)
    M = P.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ll = log_loss(law, th, np.log(N), np.log(D), np.log(p_own), np.log(U),
                      np.moveaxis(P, -1, 0)[..., None], offdiag_mask(fam_in_mix_F, M)[:, None, :])
    return np.exp(ll)
