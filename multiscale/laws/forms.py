"""Law forms: what each scaling law predicts, and the registry of laws.

All losses are mean cross-entropies in nats per token.

- ``multilingual`` (He et al. 2024, arXiv 2410.12883):
  ``L_i(N, D, p_i) = (E_i + A_i / N^alpha_i + B_i / D^beta_i) * p_i^(-gamma_i)``.
- ``chinchilla`` (Hoffmann et al. 2022): ``L_i(N, D) = E_i + A_i / N^alpha_i + B_i / D^beta_i``,
  each family on its own; ``p`` is ignored.
- ``ratio``: ``L_i(p_i) = c_i * p_i^(-gamma_i)`` for runs that share one (N, D).

Laws of the whole mixture (``uses_mixture`` / ``uses_unique_tokens``; computed in
`multiscale.laws.mixture_forms`): ``transfer``, ``repetition``, ``transfer_repetition``,
``mixing``, ``ratio_transfer``, ``ratio_mixing``. Each maps (N, D, the run's whole mixture P
over the mixture families, the unique tokens U of every family) to each family's loss; the
three laws above are the special cases that read only p_i. See docs/design.md, "Laws of the
whole mixture".

Parameters are held as a dict ``name -> array`` with shape ``(S, F)``: S draws (1 for a point
fit) by F families. A parameter shared across families simply repeats along F. Every function
here works with numpy or jax.numpy arrays (``xp``) and broadcasts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multiscale.errors import InputError


@dataclass(frozen=True)
class Law:
    """A law form.

    Attributes:
      name: registry key.
      params: natural parameters per family, as reported (E, A, B positive; exponents >= 0).
      exponents: the parameters that may be shared across families.
      uses_scale: whether the law depends on N and D (``ratio`` does not: its ``c`` belongs
        to the one (N, D) of the runs it was fitted on).
      uses_ratio: whether the law depends on p (``chinchilla`` does not).
      uses_mixture: whether a family's loss depends on the ratios of other families (its
        `matrix` parameters hold one value per (family, mixture family)).
      uses_unique_tokens: whether the law reads the unique tokens U of each family.
      matrix: parameters of shape (S, F, M): family i's coefficient of mixture family j.
      base: the seed law it generalizes ("multilingual" or "ratio"; "" for the seed laws).
    """

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

    @property
    def is_seed(self) -> bool:
        """One of the three laws that read only the family's own ratio and no unique tokens."""
        return not (self.uses_mixture or self.uses_unique_tokens)

    @property
    def n_params(self) -> int:
        return len(self.params)

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
    """The law's contract as `multiscale laws --json` prints it."""
    return {"name": law.name, "form": law.doc, "params": list(law.params) + list(law.matrix),
            "matrix_params": list(law.matrix), "shareable": list(law.exponents),
            "uses_scale": law.uses_scale, "uses_ratio": law.uses_ratio,
            "uses_mixture": law.uses_mixture, "uses_unique_tokens": law.uses_unique_tokens}


def scale_term(law: Law, params: dict, N, D, xp=np):
    """The monolingual loss ``L_i(N, D, 1)`` in nats/token (``c_i`` for the ratio law)."""
    if not law.uses_scale:
        return params["c"] * xp.ones_like(xp.asarray(N, dtype=params["c"].dtype))
    return (params["E"] + params["A"] * xp.power(N, -params["alpha"])
            + params["B"] * xp.power(D, -params["beta"]))


def predict_loss(law: Law, params: dict, N, D, p, xp=np):
    """``L_i(N, D, p_i)`` in nats/token; arguments broadcast against the parameter arrays."""
    c = scale_term(law, params, N, D, xp)
    if not law.uses_ratio:
        return c
    return c * xp.power(p, -params["gamma"])


def log_loss_from_raw(law: Law, theta: dict, logN, logD, logp, xp=np):
    """Predicted ``log L`` from the approach-3 (log-scale) parameters.

    ``theta`` holds ``a = log A``, ``b = log B``, ``e = log E``, ``alpha``, ``beta``,
    ``gamma`` (multilingual), ``logc`` and ``gamma`` (ratio). The scale part is the
    log-sum-exp ``LSE(a - alpha log N, b - beta log D, e)`` of Hoffmann et al. (2022).
    """
    if law.uses_scale:
        stack = xp.stack(
            [theta["a"] - theta["alpha"] * logN, theta["b"] - theta["beta"] * logD,
             theta["e"] + 0.0 * logN], axis=0)
        m = xp.max(stack, axis=0)
        out = m + xp.log(xp.sum(xp.exp(stack - m), axis=0))
    else:
        out = theta["logc"] + 0.0 * logp
    if law.uses_ratio:
        out = out - theta["gamma"] * logp
    return out


RAW_NAMES = {
    "multilingual": ("a", "b", "e", "alpha", "beta", "gamma"),
    "chinchilla": ("a", "b", "e", "alpha", "beta"),
    "ratio": ("logc", "gamma"),
}


def natural_from_raw(law: Law, theta: dict, xp=np) -> dict:
    """Approach-3 parameters -> natural ones (``A = exp(a)``, ``B = exp(b)``, ``E = exp(e)``)."""
    if law.uses_scale:
        out = {"E": xp.exp(theta["e"]), "A": xp.exp(theta["a"]), "B": xp.exp(theta["b"]),
               "alpha": theta["alpha"], "beta": theta["beta"]}
    else:
        out = {"c": xp.exp(theta["logc"])}
    if law.uses_ratio:
        out["gamma"] = theta["gamma"]
    return out
