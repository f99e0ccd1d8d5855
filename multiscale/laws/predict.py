"""Predictions of a fitted law at any (N, D, p), with 90% credible intervals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from multiscale.laws.fits import LOSS_UNITS, Fit
from multiscale.laws.forms import predict_loss


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
            v = self.draws[:, j]
            out[f] = {"p": self.ratios[f], "median": float(np.median(v)),
                      "q05": float(np.quantile(v, 0.05)), "q95": float(np.quantile(v, 0.95))}
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


def predict(fit: Fit, N: float, D: float, p_by_family: Mapping[str, float] | None = None) -> Prediction:
    """Loss of each family in `p_by_family` (default: every family at p = 1 / F) for a model of
    N non-embedding parameters trained on D tokens.

    The ratio law only predicts at the (N, D) it was fitted on; elsewhere a ValueError.
    """
    if not (np.isfinite(N) and N > 0 and np.isfinite(D) and D > 0):
        raise ValueError(f"N and D must be positive, got N={N}, D={D}")
    if p_by_family is None:
        p_by_family = {f: 1.0 / len(fit.families) for f in fit.families}
    if not p_by_family:
        raise ValueError("predict: no family ratios given")
    for f, p in p_by_family.items():
        fit.family_index(f)
        if not (0 < float(p) <= 1):
            raise ValueError(f"ratio for family {f!r} must lie in (0, 1], got {p}")
    if not fit.law.uses_scale and not (np.isclose(N, fit.N_ref, rtol=1e-6) and np.isclose(D, fit.D_ref, rtol=1e-6)):
        raise ValueError(f"law 'ratio' was fitted at N={fit.N_ref:.4g}, D={fit.D_ref:.4g} and cannot "
                         f"predict at N={N:.4g}, D={D:.4g}")
    fams = tuple(p_by_family)
    idx = [fit.family_index(f) for f in fams]
    params = {k: v[:, idx] for k, v in fit.draws.items()}
    p = np.array([float(p_by_family[f]) for f in fams])
    draws = np.asarray(predict_loss(fit.law, params, N, D, p[None, :]), dtype=float)
    return Prediction(families=fams, N=float(N), D=float(D),
                      ratios={f: float(p_by_family[f]) for f in fams}, draws=draws,
                      law=fit.law.name, method=fit.method)


def predict_rows(fit: Fit, df) -> np.ndarray:
    """Loss draws (S, R) for every row of a run table (families must be in the fit)."""
    idx = np.array([fit.family_index(f) for f in df["family"].astype(str)])
    params = {k: v[:, idx] for k, v in fit.draws.items()}
    N = df["N"].to_numpy(float)[None, :]
    D = df["D"].to_numpy(float)[None, :]
    p = df["p"].to_numpy(float)[None, :]
    return np.asarray(predict_loss(fit.law, params, N, D, p), dtype=float)
