"""Independence test: does a family's loss depend only on its own sampling ratio?

He et al. (2024) assume ``L_i`` depends on the mixture only through ``p_i``. Per family i, on the
rows with ``p_i > 0`` (``p_<family>`` columns; one intercept per (N, D)), OLS of
``log L_i = a + b log p_i`` (own) against ``... + sum_{j != i} c_j p_j`` (full). Reported: both
R^2, the share ``R2_own / R2_full``, the nested F test, and the largest cross-family effect
``0.1 * (c_j - mean_k c_k)`` (0.1 of the mixture moved to j from the others, p_i fixed) with a
90% Student-t interval, preferring effects whose interval excludes 0. Verdict "own ratio
suffices" when the share is >= 0.9 and no effect is both clearly nonzero and over 1% of the loss;
else "depends on other families" (docs/design.md, "Independence test and law comparison").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multiscale.runs import MIXTURE_PREFIX, RunTableError, mixture_columns, validate_runs

SHIFT = 0.1
SHARE_MIN = 0.9
MATERIAL = 0.01  # log-loss, i.e. about 1% of the loss


@dataclass
class FamilyIndependence:
    family: str
    n_runs: int
    n_dropped_zero_p: int
    r2_own: float
    r2_full: float
    share_own: float
    f_pvalue: float
    gamma_own: float
    top_family: str
    top_effect: float
    top_interval: tuple[float, float]
    verdict: str
    left_out: list[str]  # mixture columns constant over the family's usable runs: not in its regression

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["top_interval"] = list(self.top_interval)
        d.pop("left_out")
        if self.left_out:  # only where some column was left out: other tables' JSON is unchanged
            d["left_out"] = list(self.left_out)
        return d


@dataclass
class IndependenceResult:
    families: dict[str, FamilyIndependence]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"shift": SHIFT, "share_min": SHARE_MIN, "material_log_loss": MATERIAL,
                "families": {f: r.to_dict() for f, r in self.families.items()},
                "notes": list(self.notes)}

    def __str__(self) -> str:
        lines = ["independence test: log L_i on log p_i alone vs adding the other families' ratios",
                 f"(cross effect: change in log-loss when {SHIFT} of the mixture moves to that family, p_i fixed)",
                 f"{'family':22s}{'runs':>5s}{'R2 own':>8s}{'R2 full':>8s}{'share':>7s}"
                 f"  {'largest cross effect':>44s}  verdict"]
        for f, r in self.families.items():
            eff = f"{r.top_family[:16]} {r.top_effect:+.4f} [{r.top_interval[0]:+.4f},{r.top_interval[1]:+.4f}]"
            lines.append(f"{f[:22]:22s}{r.n_runs:5d}{r.r2_own:8.3f}{r.r2_full:8.3f}{r.share_own:7.2f}"
                         f"  {eff:>44s}  {r.verdict}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _ols(X, y, n_groups: int):
    """OLS of group-demeaned y on group-demeaned X (Frisch-Waugh-Lovell: the same slopes,
    residuals and slope covariance as adding one intercept per group, without an n x G design)."""
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    rss = float(resid @ resid)
    rank = n_groups + np.linalg.matrix_rank(X)
    dof = len(y) - rank
    s2 = rss / dof if dof > 0 else np.nan
    cov = s2 * np.linalg.pinv(X.T @ X)
    return beta, rss, rank, dof, cov


def _demean(A_NxK: np.ndarray, g_N: np.ndarray, n_groups: int) -> np.ndarray:
    """Each column of `A_NxK` minus its mean over the rows of the same group (g_N in 0..G-1)."""
    count_G = np.bincount(g_N, minlength=n_groups)
    means_GxK = np.column_stack([np.bincount(g_N, weights=a, minlength=n_groups) for a in A_NxK.T]) / count_G[:, None]
    return A_NxK - means_GxK[g_N]


def _nested_fits(X_own, X_full, y, g) -> dict[str, Any]:
    """OLS of y on the own-ratio design and on the full design, each with one intercept per
    (N, D) group g; R^2 of both (after the per-(N, D) means), the share own-p explains and the
    nested-model F test."""
    from scipy import stats

    g_n = np.unique(g, return_inverse=True)[1]  # groups numbered 0..G-1
    n_groups = int(g_n.max()) + 1
    y = _demean(y[:, None], g_n, n_groups)[:, 0]
    b_own, rss_own, r_own, _, _ = _ols(_demean(X_own, g_n, n_groups), y, n_groups)
    b_full, rss_full, r_full, dof_full, cov = _ols(_demean(X_full, g_n, n_groups), y, n_groups)
    tss = float(y @ y)
    r2_own = 1 - rss_own / tss if tss > 0 else np.nan
    r2_full = 1 - rss_full / tss if tss > 0 else np.nan
    share = r2_own / r2_full if r2_full > 0 else np.nan
    q = r_full - r_own
    Fstat = ((rss_own - rss_full) / q) / (rss_full / dof_full) if q > 0 and dof_full > 0 else np.nan
    pval = float(stats.f.sf(Fstat, q, dof_full)) if np.isfinite(Fstat) else np.nan
    return {"b_own": b_own, "b_full": b_full, "dof_full": dof_full, "cov": cov, "r2_own": r2_own,
            "r2_full": r2_full, "share": share, "pval": pval}


def _cross_effects(c_M, cov_MxM, dof: int) -> tuple[int, float, float, float, bool]:
    """The contrasts ``SHIFT * (c_j - mean_k c_k)`` with 90% Student-t intervals: (index of the
    largest effect among the clearly nonzero ones, or of all when none is; the effect; its
    interval; whether any effect is both clearly nonzero and material)."""
    from scipy import stats

    m = len(c_M)
    Cm = SHIFT * (np.eye(m) - np.full((m, m), 1.0 / m))
    eff = Cm @ c_M
    var = np.einsum("ij,jk,ik->i", Cm, cov_MxM, Cm)
    se = np.sqrt(np.maximum(var, 0))
    tq = stats.t.ppf(0.95, dof)
    clear = (eff - tq * se > 0) | (eff + tq * se < 0)
    j = int(np.argmax(np.where(clear, np.abs(eff), -1.0))) if clear.any() else int(np.argmax(np.abs(eff)))
    lo, hi = float(eff[j] - tq * se[j]), float(eff[j] + tq * se[j])
    return j, float(eff[j]), lo, hi, bool(np.any((np.abs(eff) > MATERIAL) & clear))


def _test_family(fam: str, sub: pd.DataFrame, g: np.ndarray, mix: list[str],
                 mix_fams: list[str]) -> FamilyIndependence:
    """The test for one family's rows `sub` (g: their (N, D) group)."""
    own_col = f"{MIXTURE_PREFIX}{fam}"
    p_own = sub[own_col].to_numpy(float) if own_col in sub.columns else sub["p"].to_numpy(float)
    keep = p_own > 0
    dropped = int((~keep).sum())
    sub, p_own, g = sub[keep], p_own[keep], g[keep]
    others = [c for c in mix if c != own_col and np.ptp(sub[c].to_numpy(float)) > 0]
    left_out = [c for c in mix if c != own_col and c not in others]
    if not others:
        raise RunTableError(f"family {fam!r}: no other family's ratio varies over its runs "
                            f"({', '.join(left_out)} constant); the independence test needs varied mixtures")
    y = np.log(sub["loss"].to_numpy(float))
    n, n_groups = len(y), len(np.unique(g))
    X_own = np.log(p_own)[:, None]  # the intercepts, one per (N, D) group, are _nested_fits' own
    X_full = np.column_stack([X_own, sub[others].to_numpy(float)])
    if n <= n_groups + X_full.shape[1] + 2:
        raise RunTableError(f"family {fam!r}: {n} usable runs (p > 0) are too few for the "
                            f"independence test with {len(others)} other families")
    if pd.Series(y).groupby(g).nunique().max() <= 1:
        raise RunTableError(f"family {fam!r}: its loss is the same in every run of each (N, D) "
                            f"({np.exp(y[0]):.6g} in the first): nothing for the mixture to explain")
    fits = _nested_fits(X_own, X_full, y, g)
    k0 = X_own.shape[1]
    j, eff, lo, hi, material_clear = _cross_effects(fits["b_full"][k0:], fits["cov"][k0:, k0:], fits["dof_full"])
    ok = (fits["share"] >= SHARE_MIN) and not material_clear
    return FamilyIndependence(
        family=fam, n_runs=n, n_dropped_zero_p=dropped, r2_own=float(fits["r2_own"]),
        r2_full=float(fits["r2_full"]), share_own=float(fits["share"]), f_pvalue=fits["pval"],
        gamma_own=float(-fits["b_own"][-1]), top_family=mix_fams[mix.index(others[j])],
        top_effect=eff, top_interval=(lo, hi),
        verdict="own ratio suffices" if ok else "depends on other families", left_out=left_out)


def independence_test(df: pd.DataFrame) -> IndependenceResult:
    """Run the test on a run table carrying ``p_<family>`` mixture columns (see module doc).
    A mixture column constant over a family's runs is left out of its regression, with a note."""
    df = validate_runs(df)
    mix = mixture_columns(df)
    if len(mix) < 2:
        raise RunTableError("independence test needs the whole mixture: at least two 'p_<family>' columns")
    mix_fams = [c[len(MIXTURE_PREFIX):] for c in mix]
    groups = df.groupby(["N", "D"]).ngroup().to_numpy()
    notes, out = [], {}
    for fam in dict.fromkeys(df["family"]):
        rows = (df["family"] == fam).to_numpy()
        out[fam] = _test_family(fam, df[rows], groups[rows], mix, mix_fams)
        dropped = out[fam].n_dropped_zero_p
        if dropped:
            notes.append(f"{fam}: {dropped} runs with p = 0 dropped (log p undefined; the law "
                         "cannot describe a family absent from training)")
    notes.extend(_left_out_notes(df, out))
    return IndependenceResult(families=out, notes=notes)


def _left_out_notes(df: pd.DataFrame, out: dict[str, FamilyIndependence]) -> list[str]:
    """One note per mixture column left out of some family's regression (constant there)."""
    notes = []
    for col in dict.fromkeys(c for r in out.values() for c in r.left_out):
        fams = [f for f, r in out.items() if col in r.left_out]
        values = np.unique(df[col].to_numpy(float))
        where = "every run" if len(values) == 1 else f"the runs of {', '.join(fams)}"
        shown = f" ({values[0]:g})" if len(values) == 1 else ""
        notes.append(f"{col} is constant over {where}{shown}: left out of the regression of "
                     f"{', '.join(fams)}; no cross effect can be measured for it")
    return notes
