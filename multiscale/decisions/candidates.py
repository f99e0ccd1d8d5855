"""Candidate runs for `multiscale next` (docs/design.md, "Active design"): what could be trained.

A candidate is one training run: a model preset (N, its non-embedding parameters), a token budget
D and a mixture over the decision families, costing ``6 N D`` FLOPs. Candidates come from a sweep
plan (`multiscale.sweep.next_plan.from_plan`) or are generated from a fit (`generate`):

- presets: every preset whose N lies in the fitted range of N, and the next one or two above it
  (below the target N);
- budgets: the fitted budgets, and x2 and x4 the largest (at most the target D);
- mixtures: uniform; vary-one (each family at each ratio level, the others sharing the rest
  evenly); the current robust p* at the target; a few Dirichlet draws with a floor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from multiscale.errors import InputError

FLOPS_PER_PARAM_TOKEN = 6.0  # training FLOPs ~ 6 N D (Kaplan et al. 2020)
DEFAULT_LEVELS = (0.1, 0.3, 0.5)  # vary-one ratio levels when the fitted runs are not given
DIRICHLET_COUNT = 4
DIRICHLET_FLOOR = 0.02
ABOVE_RANGE = 2  # presets above the fitted range of N (below the target N)
D_FACTORS = (2, 4)  # budgets beyond the largest fitted one
_SIZE_SLACK = 0.1  # a preset "lies in" the fitted range within 10% of its ends


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One run that could be trained: `preset` of `N` non-embedding parameters, `D` tokens,
    `ratios` (family, ratio) summing to 1, named `label` (letters, digits, ``. _ + -``)."""

    preset: str
    N: float
    D: int
    label: str
    ratios: tuple[tuple[str, float], ...]

    @property
    def flops(self) -> float:
        return FLOPS_PER_PARAM_TOKEN * self.N * self.D

    @property
    def ratio_dict(self) -> dict[str, float]:
        return dict(self.ratios)

    def key(self) -> tuple:
        """What makes two candidates the same run (the label does not)."""
        return (self.preset, self.D, tuple((f, round(p, 6)) for f, p in self.ratios))


def preset_sizes() -> dict[str, float]:
    """Every model preset's non-embedding parameter count N, smallest first."""
    from multiscale.models.params import count_params
    from multiscale.models.presets import PRESETS

    sizes = {name: float(count_params(cfg).non_embedding) for name, cfg in PRESETS.items()}
    return dict(sorted(sizes.items(), key=lambda kv: kv[1]))


@dataclasses.dataclass(frozen=True)
class FittedRange:
    """The N and D levels a fit was made on (from its run table, or the ends of its ranges) and
    the ratio levels of vary-one candidates."""

    N: tuple[float, ...]
    D: tuple[float, ...]
    levels: tuple[float, ...] = DEFAULT_LEVELS

    @classmethod
    def of(cls, fit, runs: pd.DataFrame | None = None) -> FittedRange:
        """From the fitted run table `runs` when given, else from the fit's recorded ranges
        (`fit.extrapolation`); `InputError` when neither is known."""
        if runs is not None:
            p = runs["p"].to_numpy(float)
            levels = sorted({round(float(v), 2) for v in np.quantile(p, [0.1, 0.5, 0.9]) if 0 < round(v, 2) < 1})
            return cls(N=tuple(sorted(set(runs["N"].astype(float)))), D=tuple(sorted(set(runs["D"].astype(float)))),
                       levels=tuple(levels) or DEFAULT_LEVELS)
        ext = getattr(fit, "extrapolation", None) or {}
        if "log_N_range" not in ext or "log_D_range" not in ext:
            raise InputError("the fit does not record the N and D it was fitted on (fitted without the "
                             "extrapolation term?): give runs (the fitted run table) or the candidate runs")
        return cls(N=tuple(sorted(set(np.exp(ext["log_N_range"]).tolist()))),
                   D=tuple(sorted(set(np.exp(ext["log_D_range"]).tolist()))))


def candidate_presets(fitted: FittedRange, N_target: float) -> dict[str, float]:
    """Presets in the fitted range of N, then up to `ABOVE_RANGE` above it and below `N_target`."""
    lo, hi = min(fitted.N) * (1 - _SIZE_SLACK), max(fitted.N) * (1 + _SIZE_SLACK)
    sizes = preset_sizes()
    inside = {p: n for p, n in sizes.items() if lo <= n <= hi}
    if not inside:
        raise InputError(f"no model preset has N within the fitted range [{min(fitted.N):.4g}, {max(fitted.N):.4g}] "
                         "(runs from another trainer?): give the candidate runs")
    above = [(p, n) for p, n in sizes.items() if hi < n <= N_target][:ABOVE_RANGE]
    return {**inside, **dict(above)}


def candidate_budgets(fitted: FittedRange, D_target: float) -> tuple[int, ...]:
    """The fitted budgets, and x2, x4 the largest when at most `D_target`."""
    top = max(fitted.D)
    more = [top * f for f in D_FACTORS if top * f <= D_target * (1 + 1e-9)]
    return tuple(sorted({int(round(d)) for d in (*fitted.D, *more)}))


def mixtures(families: Sequence[str], levels: Sequence[float], robust: Mapping[str, float] | None,
             *, count: int = DIRICHLET_COUNT, seed: int = 0) -> dict[str, dict[str, float]]:
    """label -> ratios: uniform, vary-one at `levels`, the robust p* (when given), Dirichlet."""
    F = len(families)
    out = {"uniform": {f: 1.0 / F for f in families}}
    for f in families:
        for v in levels:
            if F > 1:
                out[f"{f}{v:g}"] = {g: (v if g == f else (1 - v) / (F - 1)) for g in families}
    if robust is not None:
        out["pstar"] = {f: float(robust[f]) for f in families}
    rng = np.random.default_rng(seed)
    for i in range(count):
        p = np.maximum(rng.dirichlet(np.ones(F)), DIRICHLET_FLOOR)
        out[f"dir{i}"] = dict(zip(families, (p / p.sum()).tolist()))
    return out


def generate(fitted: FittedRange, families: Sequence[str], N_target: float, D_target: float,
             robust: Mapping[str, float] | None = None) -> list[Candidate]:
    """Candidates from the fit: presets x budgets x mixtures (module docstring)."""
    mixes = mixtures(families, fitted.levels, robust)
    out = []
    for preset, n in candidate_presets(fitted, N_target).items():
        for d in candidate_budgets(fitted, D_target):
            out.extend(Candidate(preset, n, d, label, tuple(r.items())) for label, r in mixes.items())
    return dedupe(out)


def fitted_mixtures(runs: pd.DataFrame, families: Sequence[str]) -> list[tuple[float, float, np.ndarray]]:
    """(N, D, ratios over `families`) of every run of a run table (``p_<family>`` columns, else
    each row's own p for its family)."""
    out = []
    for _, g in runs.groupby("run", sort=False):
        first = g.iloc[0]
        own = dict(zip(g["family"].astype(str), g["p"].astype(float)))
        p = [float(first[f"p_{f}"]) if f"p_{f}" in g.columns else own.get(f, 0.0) for f in families]
        out.append((float(first["N"]), float(first["D"]), np.array(p)))
    return out


def drop_fitted(cands: Sequence[Candidate], runs: pd.DataFrame, families: Sequence[str], *,
                rel: float = 0.02, tol: float = 1e-4) -> tuple[list[Candidate], int]:
    """The candidates that repeat no fitted run (N and D within `rel`, ratios within `tol`), and
    how many were left out: with the plan's one seed such a run would be trained again as it was."""
    seen = fitted_mixtures(runs, families)
    keep = []
    for c in cands:
        r = np.array([c.ratio_dict.get(f, 0.0) for f in families])
        if not any(abs(n / c.N - 1) <= rel and abs(d / c.D - 1) <= rel and np.max(np.abs(p - r)) <= tol
                   for n, d, p in seen):
            keep.append(c)
    return keep, len(cands) - len(keep)


def dedupe(cands: Sequence[Candidate]) -> list[Candidate]:
    """The candidates in order, each run once (same preset, budget and rounded ratios)."""
    seen, out = set(), []
    for c in cands:
        if c.key() not in seen:
            seen.add(c.key())
            out.append(c)
    return out
