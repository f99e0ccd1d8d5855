"""Predictions of a fitted law at any (N, D, p), with 90% credible intervals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from multiscale.errors import InputError
from multiscale.laws.fits import LOSS_UNITS, Fit
from multiscale.laws.forms import predict_loss
from multiscale.laws.summary import interval
from multiscale.mixture import RATIO_TOLERANCE, Mixture, parse_pairs


@dataclass
class Prediction:
    """Per family: posterior median of the law's loss and its 90% credible interval, in
    nats/token (the interval of the mean law, without run-to-run noise; a point fit gives the
    same number three times). `draws` holds the (S, F') loss draws."""

    families: tuple[str, ...]
    N: float
    D: float
    ratios: dict[str, float]
    draws: np.ndarray
    law: str
    method: str

    def table(self) -> dict[str, dict[str, float]]:
        out = {}
        for j, f in enumerate(self.families):
            out[f] = {"p": self.ratios[f], **interval(self.draws[:, j])}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"law": self.law, "method": self.method, "N": self.N, "D": self.D,
                "loss_units": LOSS_UNITS, "families": self.table()}

    def __str__(self) -> str:
        lines = [f"predicted loss ({LOSS_UNITS}) at N = {self.N:.3g}, D = {self.D:.3g} "
                 f"(law {self.law}, {self.method})",
                 f"{'family':16s}{'p':>8s}{'median':>10s}{'5%':>10s}{'95%':>10s}"]
        for f, r in self.table().items():
            lines.append(f"{f[:16]:16s}{r['p']:8.4f}{r['median']:10.4f}{r['q05']:10.4f}{r['q95']:10.4f}")
        return "\n".join(lines)


def check_ratios(fit: Fit, ratios: str | Mapping[str, float], *, what: str = "ratios") -> dict[str, float]:
    """The family ratios to predict at, checked: ``'FAM=P,...'`` text or a mapping, read by
    `multiscale.mixture.parse_pairs` (no duplicates, NaN, inf, negatives, or families outside
    the fit); each ratio in (0, 1]; ratios of every family of the fit sum to 1, ratios of some
    of them to at most 1 (both within `multiscale.mixture.RATIO_TOLERANCE`). `InputError`s
    name `what` (e.g. ``--ratios``) and the family."""
    p = parse_pairs(ratios, what=what, known=fit.families)
    for f, v in p.items():
        if not 0 < v <= 1:
            raise InputError(f"{what}: the ratio of family {f!r} must lie in (0, 1], got {v:g}")
    if set(p) == set(fit.families):
        Mixture.parse(p, what=what)  # all families: they must sum to 1
    elif sum(p.values()) > 1 + RATIO_TOLERANCE:
        raise InputError(f"{what}: the ratios sum to {sum(p.values()):.9g} > 1 (a mixture's ratios sum to 1)")
    return p


def predict(fit: Fit, N: float, D: float, p_by_family: str | Mapping[str, float] | None = None) -> Prediction:
    """Loss of each family in `p_by_family` (default: every family at p = 1 / F) for a model of
    N non-embedding parameters trained on D tokens. `p_by_family` is checked by `check_ratios`.

    The ratio law only predicts at the (N, D) it was fitted on; elsewhere an `InputError`.
    """
    if not all(isinstance(v, (int, float, np.number)) and np.isfinite(v) and v > 0 for v in (N, D)):
        raise InputError(f"N and D must be finite positive numbers, got N={N!r}, D={D!r}")
    if p_by_family is None:
        p_by_family = {f: 1.0 / len(fit.families) for f in fit.families}
    p_by_family = check_ratios(fit, p_by_family, what="p_by_family")
    if not fit.law.uses_scale and not (np.isclose(N, fit.N_ref, rtol=1e-6) and np.isclose(D, fit.D_ref, rtol=1e-6)):
        raise InputError(f"law 'ratio' was fitted at N={fit.N_ref:.4g}, D={fit.D_ref:.4g} and cannot "
                         f"predict at N={N:.4g}, D={D:.4g}")
    fams = tuple(p_by_family)
    idx = [fit.family_index(f) for f in fams]
    params = {k: v[:, idx] for k, v in fit.draws.items()}
    p = np.array([p_by_family[f] for f in fams])
    draws = np.asarray(predict_loss(fit.law, params, N, D, p[None, :]), dtype=float)
    return Prediction(families=fams, N=float(N), D=float(D), ratios=dict(p_by_family), draws=draws,
                      law=fit.law.name, method=fit.method)


def predict_rows(fit: Fit, df) -> np.ndarray:
    """Loss draws (S, R) for every row of a run table (families must be in the fit)."""
    idx = np.array([fit.family_index(f) for f in df["family"].astype(str)])
    params = {k: v[:, idx] for k, v in fit.draws.items()}
    N = df["N"].to_numpy(float)[None, :]
    D = df["D"].to_numpy(float)[None, :]
    p = df["p"].to_numpy(float)[None, :]
    return np.asarray(predict_loss(fit.law, params, N, D, p), dtype=float)
