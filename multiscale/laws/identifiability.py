"""Which fitted parameters the run table cannot pin down.

A law's scale part ``E + A / N^alpha + B / D^beta`` is, at a family's runs, known only at the
distinct N (and D) they were run at: at fixed D the N part is one number per distinct N, so E, A
and alpha (three numbers) need 3 distinct N, and 2 when alpha is shared (then identified by the
other families, provided one of them has 3); likewise E, B and beta with D, and gamma (the ratio
exponent) needs 2 distinct ratios p. A fit can also run a parameter to a boundary: an exponent at 0
(its term is a constant that E absorbs) or far above any measured one, or a log-scale coefficient
far outside the start grid (B = 1e170): the value is arbitrary along a flat valley.

`unidentified` lists each such family as one line; the fit records the lines (``identifiability``
in fit.json) and `Fit.warn_unidentified` repeats them as `UnidentifiedWarning`s wherever the fit is
used.
"""

from __future__ import annotations

import numpy as np

from multiscale.errors import InputError
from multiscale.laws.data import FitData
from multiscale.laws.forms import Law

LOG_COEF_LIMIT = 50.0  # |log A|, |log B|, |log E| beyond this (the start grid spans 0..25): exploded
EXPONENT_LOW = 1e-3  # an exponent below this sits at its bound 0 (its term is a constant)
EXPONENT_HIGH = 4.0  # ... above this (twice the grid's largest start, far above measured ones)
ADVICE = "add runs at more values, fit another law, or share fewer exponents"


def _distinct(values_R: np.ndarray, fam_R: np.ndarray, F: int) -> np.ndarray:
    return np.array([len(np.unique(np.round(values_R[fam_R == j], 9))) for j in range(F)])


def _axis_lines(law: Law, data: FitData, shared, axis: str, logs_R: np.ndarray) -> dict[int, list[str]]:
    """family index -> causes from the distinct values of one axis: ``N`` (A, alpha), ``D`` (B,
    beta) or ``p`` (gamma)."""
    coef, expo = {"N": ("A", "alpha"), "D": ("B", "beta"), "p": ("c", "gamma")}[axis]
    F = data.n_families
    n_F = _distinct(logs_R, data.fam_R, F)
    out: dict[int, list[str]] = {}
    if axis == "p":
        need = 2
        names = [] if expo in shared else ["gamma"] if law.uses_scale else ["c", "gamma"]
    else:
        need = 2 if expo in shared else 3
        names = ["E", coef] + ([] if expo in shared else [expo])
    for j in np.flatnonzero(n_F < need):
        if names:
            out.setdefault(int(j), []).append(
                f"{', '.join(names)} unidentified: its runs have {n_F[j]} distinct {axis} ({need} needed)")
    if expo in shared and n_F.max() < (2 if axis == "p" else 3):
        out.setdefault(0, []).append(f"the shared {expo} is unidentified: no family's runs have "
                                     f"{2 if axis == 'p' else 3} distinct {axis}")
    return out


def _boundary_lines(law: Law, draws: dict, families) -> dict[int, list[str]]:
    """family index -> parameters (median over draws) at a boundary or exploded (E only upwards:
    E = 0, a law without irreducible loss, is a valid fit)."""
    out: dict[int, list[str]] = {}
    for j in range(len(families)):
        for name in ("E", "A", "B"):
            v = float(np.median(draws[name][:, j])) if name in law.params else 1.0
            with np.errstate(divide="ignore"):
                lv = np.log(v) if v > 0 else -np.inf
            if lv > LOG_COEF_LIMIT or (name != "E" and lv < -LOG_COEF_LIMIT):
                how = "exploded" if lv > 0 else "vanished"
                out.setdefault(j, []).append(f"{name} = {v:.3g} {how} (|log {name}| > {LOG_COEF_LIMIT:g})")
        for name in ("alpha", "beta"):
            v = float(np.median(draws[name][:, j])) if name in law.params else 1.0
            if v < EXPONENT_LOW or v > EXPONENT_HIGH:
                where = "below 0" if v < 0 else "at its bound 0" if v < EXPONENT_LOW else f"above {EXPONENT_HIGH:g}"
                out.setdefault(j, []).append(f"{name} = {v:.3g} {where}")
    return out


def unidentified(law: Law, data: FitData, shared, draws: dict) -> list[str]:
    """One line per family whose parameters the table cannot pin down (module docstring): the
    family, the parameters, the cause, and what to do."""
    causes: dict[int, list[str]] = {}
    axes = [("N", data.logN_R), ("D", data.logD_R)] if law.uses_scale else []
    axes += [("p", data.logp_R)] if "gamma" in law.params else []
    for axis, logs in axes:
        for j, lines in _axis_lines(law, data, shared, axis, logs).items():
            causes.setdefault(j, []).extend(lines)
    for j, lines in _boundary_lines(law, draws, data.families).items():
        causes.setdefault(j, []).extend(lines)
    return [f"family {data.families[j]!r}: {'; '.join(c)}; {ADVICE}" for j, c in sorted(causes.items())]


def refuse_unidentified(law: Law, lines: list[str], strict: bool) -> None:
    """With `strict`, an `InputError` naming the first of `lines` (and how many there are)."""
    if strict and lines:
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise InputError(f"strict: the fit of law {law.name!r} is refused: {lines[0]}{more}", arg="strict")
