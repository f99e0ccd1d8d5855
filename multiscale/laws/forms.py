"""Law definitions: what every scaling law is, predicts and needs; the registry of laws.

All losses are mean cross-entropies in nats per token.

The law interface. A law is ONE `Law` value in `LAWS`; everything below the registry reads it:

- its parameters: `params` (per family, natural: E, A, B, exponents, gamma, c, R_star, k) and
  `matrix` (one value per (family, mixture family): tau, t), the shareable `exponents`;
  `raw_names` are the log-scale (approach-3) parameters the fits optimize and sample;
- its log-loss over the rows of a run table: `log_loss` (numpy or jax.numpy), and every family's
  loss at one (N, D) and mixture: `mixture_loss`;
- its start grid: the point fit (`multiscale.laws.point`) starts a law with no `base` from the
  Cartesian grid `GRID` of its raw names, and a law with a `base` from its base law's fit crossed
  with `EXTRA_STARTS` of the parameters the base lacks (`max_evals` evaluations per start);
- its priors: `multiscale.laws.bayes` samples each raw name from `PRIORS` / `EXTRA_PRIORS`, every
  chain from the point fit where `nuts_from_point_fit`, and learns the extrapolation term where
  `learns_extrapolation`;
- its p* solver: `separable` laws (each family's loss reads only its own ratio and no unique
  tokens: multilingual, chinchilla, ratio) have the closed-form water-filling solution, the
  fast path of the general projected-gradient solver (`multiscale.decisions.ratios`).

The forms:

- ``multilingual`` (He et al. 2024, arXiv 2410.12883):
  ``L_i(N, D, p_i) = (E_i + A_i / N^alpha_i + B_i / D^beta_i) * p_i^(-gamma_i)``.
- ``chinchilla`` (Hoffmann et al. 2022): ``L_i(N, D) = E_i + A_i / N^alpha_i + B_i / D^beta_i``,
  each family on its own; ``p`` is ignored.
- ``kaplan`` (Kaplan et al. 2020, arXiv 2001.08361, eq. 1.5, with an irreducible loss E added):
  ``L_i(N, D) = E_i + ((A_i / N^alpha_i)^(1/beta_i) + (B_i / D^beta_i)^(1/beta_i))^beta_i``, i.e.
  ``E + (A'/N^(alpha/beta) + B'/D)^beta`` with ``A' = A^(1/beta)``, ``B' = B^(1/beta)`` (Kaplan's
  ``alpha_N = alpha``, ``alpha_D = beta``, ``N_c = A^(1/alpha)``, ``D_c = B^(1/beta)``). Written so,
  A, B, alpha, beta mean what they mean in chinchilla (the N and D terms alone), so it shares
  chinchilla's raw names, start grid and priors: the two terms combine as a 1/beta-norm instead of
  a sum (for beta < 1 the joint term is below the sum, by at most a factor 2^(1 - beta), where
  the two terms are equal).
- ``ratio``: ``L_i(p_i) = c_i * p_i^(-gamma_i)`` for runs that share one (N, D).
- laws of the whole mixture, each generalizing its `base` (see docs/design.md, "Laws of the whole
  mixture"). With ``s_i`` the scale part (``E_i + A_i / N^alpha_i + B_i / D^beta_i``, or ``c_i``):
  - repetition (``uses_unique_tokens``; Muennighoff et al. 2023): family i reads ``p_i D`` tokens
    of ``U_i`` unique ones; ``R_i = max(0, p_i D / U_i - 1)`` epochs beyond the first and the
    effective tokens ``D'_i = U_i + U_i R*_i (1 - exp(-R_i / R*_i))``; the effective ratio ``p'_i
    = D'_i / D`` replaces ``p_i`` wherever the ratio enters, so where ``p_i D <= U_i`` the law is
    exactly its base's. An exhausted family stops gaining from more sampling (``D'_i`` saturates at
    ``U_i (1 + R*_i)``; docs/decisions/2026-11-30-repetition-effective-ratio.md).
  - transfer (matrix ``tau`` >= 0): ``pe_i = p_i + sum_{j != i} tau_ij p_j`` and ``L_i = s_i *
    pe_i^(-gamma_i)``; tau = 0 is exactly the base law.
  - mixing (matrix ``t``; Ye et al. 2024, Data Mixing Laws): ``L_i = s_i + k_i exp(sum_{j != i}
    t_ij p_j)``; ``t_ii`` is fixed at 0 (a constant added to every ``t_ij`` only rescales ``k_i``).

Natural parameters are held as a dict ``name -> array`` of shape ``(S, F)`` (S draws, F families;
matrix ones ``(S, F, M)``). `log_loss` works on the raw parameters with the mixture axis M FIRST
on the matrix parameters, the mixture P and the off-diagonal mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multiscale.errors import InputError

# The point fit's start grid of the raw names (docs/design.md, "Laws: forms, fits, optimal ratios"):
# alpha, beta in {0, 0.5, ..., 2}; e in {-1, ..., 1}; a, b in {0, 5, ..., 25}; gamma {0, 0.3}
# (log-loss is linear in gamma given the rest, so two starts suffice); log c from the e grid.
GRID = {
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
    "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.01, 5.0),
    "b": np.arange(0.0, 25.01, 5.0),
    "gamma": np.array([0.0, 0.3]),
    "logc": np.arange(-1.0, 1.01, 0.5),
}
# Starts of the parameters a law adds to its base (lk relative to the family's mean log-loss).
EXTRA_STARTS = {"lrs": tuple(np.log([5.0, 8.0, 12.0, 18.0, 27.0, 40.0])), "ltau": (-6.0, -2.5),
                "t": (0.0, 1.5), "lk": (-3.0, -1.0)}
JOINT_BETA_MIN = 1e-3  # the joint (kaplan) form's smallest outer exponent (`_log_joint`)
MAX_EVALS = 600  # objective evaluations per start of a law fitted from the grid
MAX_EVALS_FROM_BASE = 3000  # ... of a law started from its base law's fit


@dataclass(frozen=True)
class Law:
    """A law form (see the module docstring). ``ratio`` has no `uses_scale` (its ``c`` belongs
    to the one (N, D) it was fitted on); `matrix` parameters are (S, F, M): family i's coefficient
    of mixture family j; `base` is the separable law it generalizes and starts from ("" for the
    separable laws, which start from `GRID`)."""

    name: str
    params: tuple[str, ...]
    exponents: tuple[str, ...]
    uses_scale: bool
    uses_ratio: bool
    doc: str
    uses_mixture: bool = False
    uses_unique_tokens: bool = False
    matrix: tuple[str, ...] = ()
    base: str = ""
    joint: bool = False  # the scale part is Kaplan et al.'s joint form (`log_scale`), not the sum

    @property
    def separable(self) -> bool:
        """Each family's loss reads only its own ratio and no unique tokens: p* has a closed form."""
        return not (self.uses_mixture or self.uses_unique_tokens)

    @property
    def n_params(self) -> int:
        return len(self.params)

    @property
    def raw_names(self) -> tuple[str, ...]:
        """The per-family raw (log-scale) parameters the fits work on, in order."""
        names = ["a", "b", "e", "alpha", "beta"] if self.uses_scale else ["logc"]
        names += [raw for raw, nat in (("gamma", "gamma"), ("lrs", "R_star"), ("lk", "k")) if nat in self.params]
        return tuple(names)

    @property
    def raw_matrix(self) -> tuple[str, ...]:
        """The raw matrix parameters (tau as log tau)."""
        return tuple("ltau" if m == "tau" else m for m in self.matrix)

    @property
    def nuts_from_point_fit(self) -> bool:
        """NUTS starts every chain at the point fit: the laws started from a base law, whose
        posterior can have far modes (an unidentified E or B) where a chain started at random stays."""
        return bool(self.base)

    @property
    def learns_extrapolation(self) -> bool:
        """A Bayesian fit also learns the extrapolation term (`multiscale.laws.extrapolation`): the
        laws with N and D started from the grid (a law started from its base law would need a
        point fit per refit)."""
        return self.uses_scale and not self.base

    @property
    def max_evals(self) -> int:
        """The point fit's objective evaluations per start."""
        return MAX_EVALS_FROM_BASE if self.base else MAX_EVALS

    def min_runs(self, n_families: int = 1, shared: tuple[str, ...] = ()) -> int:
        """Fewest runs per family so that the law has fewer parameters than data points."""
        free = self.n_params - len(shared)
        per_family_shared = len(shared) / max(n_families, 1)
        return int(np.floor(free + per_family_shared)) + 1


LAWS: dict[str, Law] = {
    "multilingual": Law(
        "multilingual", ("E", "A", "B", "alpha", "beta", "gamma"), ("alpha", "beta", "gamma"),
        True, True, "(E + A/N^alpha + B/D^beta) * p^(-gamma)  (He et al. 2024)"),
    "chinchilla": Law(
        "chinchilla", ("E", "A", "B", "alpha", "beta"), ("alpha", "beta"),
        True, False, "E + A/N^alpha + B/D^beta  (Hoffmann et al. 2022), p ignored"),
    "ratio": Law(
        "ratio", ("c", "gamma"), ("gamma",),
        False, True, "c * p^(-gamma)  at one fixed (N, D)"),
    "kaplan": Law(
        "kaplan", ("E", "A", "B", "alpha", "beta"), ("alpha", "beta"), True, False,
        "E + ((A/N^alpha)^(1/beta) + (B/D^beta)^(1/beta))^beta  (Kaplan et al. 2020, eq. 1.5, "
        "plus E), p ignored", joint=True),
    "transfer": Law(
        "transfer", ("E", "A", "B", "alpha", "beta", "gamma"), (), True, True,
        "(E + A/N^alpha + B/D^beta) * (p_i + sum_j tau_ij p_j)^(-gamma), tau >= 0",
        uses_mixture=True, matrix=("tau",), base="multilingual"),
    "repetition": Law(
        "repetition", ("E", "A", "B", "alpha", "beta", "gamma", "R_star"), (), True, True,
        "(E + A/N^alpha + B/D^beta) * (D'_i/D)^(-gamma), D'_i = U_i + U_i R* (1 - exp(-R_i/R*)) "
        "(Muennighoff et al. 2023)", uses_unique_tokens=True, base="multilingual"),
    "transfer_repetition": Law(
        "transfer_repetition", ("E", "A", "B", "alpha", "beta", "gamma", "R_star"), (), True, True,
        "repetition's effective data with transfer's effective ratio",
        uses_mixture=True, uses_unique_tokens=True, matrix=("tau",), base="multilingual"),
    "mixing": Law(
        "mixing", ("E", "A", "B", "alpha", "beta", "k"), (), True, True,
        "E + A/N^alpha + B/D^beta + k * exp(sum_{j != i} t_ij p_j)  (Ye et al. 2024)",
        uses_mixture=True, matrix=("t",), base="multilingual"),
    "ratio_transfer": Law(
        "ratio_transfer", ("c", "gamma"), (), False, True,
        "c * (p_i + sum_j tau_ij p_j)^(-gamma) at one fixed (N, D), tau >= 0",
        uses_mixture=True, matrix=("tau",), base="ratio"),
    "ratio_mixing": Law(
        "ratio_mixing", ("c", "k"), (), False, True,
        "c + k * exp(sum_{j != i} t_ij p_j) at one fixed (N, D)  (Ye et al. 2024)",
        uses_mixture=True, matrix=("t",), base="ratio"),
}


def get_law(name: str) -> Law:
    """The law registered under `name`; an `InputError` naming the choices otherwise."""
    try:
        return LAWS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown law {name!r}; choose one of {sorted(LAWS)}") from None


def check_shared(law: Law, shared) -> tuple[str, ...]:
    """Normalize a `shared` option ("alpha,beta", a tuple, or None) and check it."""
    if shared is None or shared == "":
        return ()
    if isinstance(shared, str):
        shared = [s.strip() for s in shared.split(",") if s.strip()]
    shared = tuple(dict.fromkeys(shared))
    bad = [s for s in shared if s not in law.exponents]
    if bad:
        raise InputError(
            f"law {law.name!r} cannot share {bad}; shareable exponents are {list(law.exponents)}")
    return shared


def law_info(law: Law) -> dict:
    """The law's contract as a JSON-ready dict (what the `laws` command prints)."""
    return {"name": law.name, "form": law.doc, "params": list(law.params) + list(law.matrix),
            "matrix_params": list(law.matrix), "shareable": list(law.exponents),
            "uses_scale": law.uses_scale, "uses_ratio": law.uses_ratio,
            "uses_mixture": law.uses_mixture, "uses_unique_tokens": law.uses_unique_tokens}


def scale_term(law: Law, params: dict, N, D, xp=np):
    """The monolingual loss ``L_i(N, D, 1)`` in nats/token (``c_i`` for the ratio law)."""
    if not law.uses_scale:
        return params["c"] * xp.ones_like(xp.asarray(N, dtype=params["c"].dtype))
    if law.joint:
        with np.errstate(divide="ignore"):
            lN_term = xp.log(params["A"]) - params["alpha"] * xp.log(N)
            lD_term = xp.log(params["B"]) - params["beta"] * xp.log(D)
        return params["E"] + xp.exp(_log_joint(lN_term, lD_term, params["beta"], xp))
    return (params["E"] + params["A"] * xp.power(N, -params["alpha"])
            + params["B"] * xp.power(D, -params["beta"]))


def predict_loss(law: Law, params: dict, N, D, p, xp=np):
    """``L_i(N, D, p_i)`` in nats/token of a separable law; arguments broadcast against the
    parameter arrays."""
    c = scale_term(law, params, N, D, xp)
    if not law.uses_ratio:
        return c
    return c * xp.power(p, -params["gamma"])


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


def _log_joint(lN_term, lD_term, beta, xp=np):
    """log of Kaplan's joint term ``(X^(1/beta) + Y^(1/beta))^beta`` from ``log X``, ``log Y``:
    ``beta * LSE(log X / beta, log Y / beta)``, with beta taken as at least `JOINT_BETA_MIN` (the
    form needs beta > 0; below it the term is already max(X, Y) to within a factor 2^beta)."""
    bb = xp.maximum(beta, JOINT_BETA_MIN)
    m = xp.maximum(lN_term, lD_term)
    return m + bb * xp.logaddexp((lN_term - m) / bb, (lD_term - m) / bb)


def log_scale(law: Law, th: dict, logN, logD, xp=np):
    """The log of the scale part: ``LSE(a - alpha log N, b - beta log D, e)`` (Hoffmann et al.
    2022), ``LSE(e, joint(a - alpha log N, b - beta log D))`` for a `joint` law (`_log_joint`), or
    ``log c``; broadcast against log N and log D."""
    if not law.uses_scale:
        return xp.broadcast_arrays(th["logc"], logN, logD)[0]
    if law.joint:
        lN_term, lD_term, e = xp.broadcast_arrays(th["a"] - th["alpha"] * logN, th["b"] - th["beta"] * logD,
                                                  th["e"] + 0.0 * logN)
        return xp.logaddexp(e, _log_joint(lN_term, lD_term, th["beta"], xp))
    terms = xp.broadcast_arrays(th["a"] - th["alpha"] * logN, th["b"] - th["beta"] * logD, th["e"] + 0.0 * logN)
    stack = xp.stack(terms, axis=0)
    m = xp.max(stack, axis=0)
    return m + xp.log(xp.sum(xp.exp(stack - m), axis=0))


def log_loss_at_scale(law: Law, th: dict, scale, logD, logp, logU=np.inf, P=None, offdiag=None, xp=np):
    """Predicted log-loss of each row's own family given its log scale part `scale` (`log_scale`);
    the arguments of `log_loss`."""
    if law.uses_unique_tokens:  # family i effectively reads D'_i tokens: its ratio is D'_i / D
        logp = log_effective_own_ratio(th["lrs"], logD, logp, logU, xp)
    if "t" in law.matrix:
        return xp.logaddexp(scale, th["lk"] + xp.sum(th["t"] * offdiag * P, axis=0))
    if "tau" in law.matrix:
        tau = th["tau"] if "tau" in th else xp.exp(th["ltau"])
        return scale - th["gamma"] * log_effective_ratio(logp, xp.sum(tau * offdiag * P, axis=0), xp)
    if law.uses_ratio:
        return scale - th["gamma"] * logp
    return scale + 0.0 * logp


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
    scale = log_scale(law, th, logN - lN0, logD - lD0, xp)
    scale = xp.broadcast_arrays(scale, logp)[0]
    return log_loss_at_scale(law, th, scale, logD, logp, logU, P, offdiag, xp)


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
        for raw, name in (("gamma", "gamma"), ("lrs", "R_star"), ("lk", "k")):
            if name in nat:
                th[raw] = nat[name] if raw == "gamma" else np.log(nat[name])
    for m in law.matrix:
        th[m] = np.moveaxis(np.asarray(nat[m], float), -1, 0)
    return th


def offdiag_mask(fam_in_mix_F, M: int) -> np.ndarray:
    """(M, F): 1 where mixture family j is not family i itself."""
    return (np.arange(M)[:, None] != np.asarray(fam_in_mix_F)[None, :]).astype(float)


def mixture_loss(law: Law, nat: dict, N, D, P, fam_in_mix_F, U_F=None) -> np.ndarray:
    """Every family's loss (S, F) in nats/token at one (N, D) and mixture P ((M,) or (S, M),
    over the fit's mixture families), with unique tokens U_F per family (None: unlimited).
    A separable law reads only each family's own ratio (`predict_loss`)."""
    P = np.atleast_2d(np.asarray(P, dtype=float))
    fam_in_mix_F = np.asarray(fam_in_mix_F)
    p_own = P[:, fam_in_mix_F]
    if law.separable:
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
