"""Active design: which runs to train next, by what they would teach about p* per FLOP
(`multiscale next`; docs/design.md, "Active design", and
docs/decisions/2026-11-30-active-design-bayes-linear.md).

A batch of runs B is valued by the Bayes-linear drop of ``U = sum_i a_i Var(p*_i)`` at the target
(N, D): over the fit's draws, the per-draw optima ``p*_s`` and the mean law's log-losses of every
candidate row have a covariance Sigma, and observing rows B (with the fit's Student-t noise
variance ``sigma^2 nu / (nu - 2)`` as R_B) leaves p* ``Sigma_zz - Sigma_zB (Sigma_BB + R_B)^-1
Sigma_Bz``. Criterion ``regret``: ``a_i`` by non-negative least squares of each draw's regret of
the robust p* on ``(p*_si - q_i)^2`` (U then estimates the expected regret, objective units);
``width``: ``a_i = 1``. Batches are greedy by value per FLOP, Sigma conditioned on each pick,
until k runs or the FLOP budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from multiscale.decisions.candidates import Candidate, FittedRange, dedupe, drop_fitted, generate
from multiscale.decisions.recommend import decision_families, optimal_ratios
from multiscale.decisions.regret import ROBUST
from multiscale.errors import InputError
from multiscale.laws.noise import SIZE_OFFSET, SIZE_SD
from multiscale.laws.predict import STUDENT_NU, noise_draws, predict_rows, row_sigma
from multiscale.laws.summary import Q_HIGH, Q_LOW

CRITERIA = ("regret", "width")
OBJECTIVES = ("raw", "normalized")
_PAD_NOISE = 1e30  # noise variance of a padding row: it carries no information


@dataclasses.dataclass
class TargetState:
    """What is uncertain at the target: per-draw optima `P_SxF` over the decision `families`,
    the recommended (robust) mixture, the criterion weights `a_F`, the exact expected regret of
    the recommended mixture (None where the recommendation has no regret), notes, and which
    draws have a finite p* (`keep_S`)."""

    families: tuple[str, ...]
    P_SxF: np.ndarray
    robust: dict[str, float]
    a_F: np.ndarray
    criterion: str
    expected_regret: float | None
    notes: list[str]
    keep_S: np.ndarray  # the draws with a finite p* (P_SxF holds only these)


def _regret_weights(P_SxF: np.ndarray, q_F: np.ndarray, regret_S: np.ndarray) -> np.ndarray:
    """Non-negative a_F with regret_s ~ sum_i a_i (p*_si - q_i)^2 (least squares over draws)."""
    from scipy.optimize import nnls

    X = (P_SxF - q_F) ** 2
    scale = np.maximum(X.max(axis=0), 1e-300)
    a, _ = nnls(X / scale, np.asarray(regret_S, float))
    return a / scale


def target_state(fit, N: float, D: float, objective: str, criterion: str) -> TargetState:
    """p* draws at the target by `optimal_ratios`, and the criterion's weights."""
    rec = optimal_ratios(fit, N, D, objective=objective, baselines=False)
    fams = decision_families(fit)
    P = np.asarray(rec.p_star, float)
    robust = dict(rec.ratios)
    notes: list[str] = []
    regret = _regret(rec, ROBUST)
    keep = np.all(np.isfinite(P), axis=1) & (np.isfinite(regret) if regret is not None else True)
    if not keep.all():
        notes.append(f"{int((~keep).sum())} of {len(keep)} draws without a finite p* at the target are left out")
        P, regret = P[keep], (regret[keep] if regret is not None else None)
    if criterion == "regret" and regret is None:
        notes.append(f"criterion width: the recommendation of law {fit.law.name} reports no regret per draw")
        criterion = "width"
    a = np.ones(len(fams))
    if criterion == "regret":
        a = _regret_weights(P, np.array([robust[f] for f in fams]), regret)
        if not np.any(a > 0):
            notes.append("criterion width: the regret of the recommended mixture is 0 in every draw")
            criterion, a = "width", np.ones(len(fams))
    exact = float(np.mean(regret)) if regret is not None else None
    return TargetState(fams, P, robust, a, criterion, exact, notes, keep)


def _regret(rec, name: str) -> np.ndarray | None:
    """Per draw, the regret of the recommended mixture (None where the recommendation has none)."""
    try:
        return np.asarray(rec.regret(name), float) if hasattr(rec, "regret") else None
    except KeyError:
        return None


def candidate_rows(fit, cands: Sequence[Candidate], families: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows a candidate's run would add (one per fitted family with a ratio > 0; whole
    mixture in ``p_<family>`` columns) and each row's candidate index."""
    rows, owner = [], []
    for i, c in enumerate(cands):
        r = c.ratio_dict
        for f in fit.families:
            if r.get(f, 0.0) > 0:
                rows.append({"run": f"cand{i}", "family": f, "N": c.N, "D": float(c.D), "p": r[f],
                             **{f"p_{g}": float(r.get(g, 0.0)) for g in families}})
                owner.append(i)
    return pd.DataFrame(rows), np.array(owner, dtype=int)


def noise_variance(fit, rows: pd.DataFrame) -> np.ndarray:
    """Per row, the posterior mean variance of the fit's log-loss noise (Student-t) at the row's N
    and p (`row_sigma`: the fit's noise model); under the "size" model plus the variance of the
    row's size offset: its level's posterior variance at a fitted (family, N), the mean tau_f^2 at
    a new size (rows at one new size share that offset; counted here as if each had its own)."""
    noise = noise_draws(fit)
    fam_R = np.array([fit.family_index(f) for f in rows["family"]])
    logN_R = np.log(rows["N"].to_numpy(float))
    sig_SxR = row_sigma(fit, noise, fam_R, logN_R, np.log(rows["p"].to_numpy(float)))
    var_R = np.mean(sig_SxR ** 2, axis=0) * STUDENT_NU / (STUDENT_NU - 2)
    if SIZE_OFFSET in noise:
        lev_R = fit.noise.level_of(fam_R, logN_R)
        var_R = var_R + np.where(lev_R >= 0, np.var(noise[SIZE_OFFSET], axis=0)[np.maximum(lev_R, 0)],
                                 np.mean(noise[SIZE_SD] ** 2, axis=0)[fam_R])
    return var_R


def joint_covariance(fit, P_SxF: np.ndarray, rows: pd.DataFrame, keep_S: np.ndarray | None = None) -> np.ndarray:
    """Covariance over the draws (those in `keep_S`) of [p*_s (F), log-loss of every row (R)]."""
    Y = np.log(np.asarray(predict_rows(fit, rows), float))
    Y = Y if keep_S is None else Y[keep_S]
    X = np.concatenate([P_SxF, Y], axis=1)
    X = X - X.mean(axis=0)
    return X.T @ X / max(X.shape[0] - 1, 1)


def _blocks(owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(row indices (n, W), mask (n, W)) of each candidate's rows, padded to the widest."""
    rows = [np.flatnonzero(owner == i) for i in range(n)]
    W = max((len(r) for r in rows), default=1)
    idx, mask = np.zeros((n, W), int), np.zeros((n, W), bool)
    for i, r in enumerate(rows):
        idx[i, :len(r)], mask[i, :len(r)] = r, True
    return idx, mask


def values(Sigma: np.ndarray, F: int, idx: np.ndarray, mask: np.ndarray, noise_R: np.ndarray,
           a_F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every candidate alone, given `Sigma`: (value = drop of U, the variance drop per family)."""
    Y = F + idx
    S_cc = Sigma[Y[:, :, None], Y[:, None, :]] * (mask[:, :, None] & mask[:, None, :])
    S_cc = S_cc + np.eye(idx.shape[1]) * np.where(mask, noise_R[idx], _PAD_NOISE)[:, None, :]
    S_cz = Sigma[Y, :F] * mask[:, :, None]
    drop = np.einsum("cwf,cwf->cf", S_cz, np.linalg.solve(S_cc, S_cz))
    return drop @ a_F, drop


def condition(Sigma: np.ndarray, F: int, rows: np.ndarray, noise_R: np.ndarray) -> np.ndarray:
    """Sigma after observing the log-losses of `rows` (with their noise): the Kalman update."""
    B = F + rows
    G = Sigma[:, B]
    S_bb = Sigma[np.ix_(B, B)] + np.diag(noise_R[rows])
    out = Sigma - G @ np.linalg.solve(S_bb, G.T)
    return (out + out.T) / 2


def values_alone(fit, N: float, D: float, cands: Sequence[Candidate], *, objective: str = "raw",
                 criterion: str = "regret") -> np.ndarray:
    """Each candidate's value on its own (the drop of U it is expected to bring), no FLOPs."""
    state = target_state(fit, N, D, objective, criterion)
    rows, owner = candidate_rows(fit, cands, state.families)
    Sigma = joint_covariance(fit, state.P_SxF, rows, state.keep_S)
    return values(Sigma, len(state.families), *_blocks(owner, len(cands)), noise_variance(fit, rows), state.a_F)[0]


@dataclasses.dataclass(frozen=True)
class Step:
    """One greedy choice: candidate `index`, its `value` given the earlier choices, and the
    variance of p* per family after it and every earlier choice."""

    index: int
    value: float
    var_after_F: np.ndarray


def greedy(Sigma: np.ndarray, F: int, owner: np.ndarray, noise_R: np.ndarray, costs: np.ndarray,
           a_F: np.ndarray, k: int, budget: float, *, progress: bool = False) -> list[Step]:
    """Up to k candidates, each the best value per FLOP given those before, within `budget`
    FLOPs in all; stops early when no affordable candidate teaches anything."""
    from tqdm.auto import tqdm

    costs = np.asarray(costs, float)
    idx, mask = _blocks(owner, len(costs))
    taken = np.zeros(len(costs), bool)
    left, steps = float(budget), []
    for _ in tqdm(range(k), desc="choosing runs", disable=not progress, leave=False):
        ok = ~taken & (costs <= left * (1 + 1e-12))
        if not ok.any():
            break
        v, _ = values(Sigma, F, idx, mask, noise_R, a_F)
        score = np.where(ok, v / costs, -np.inf)
        best = int(np.argmax(score))
        if not v[best] > 0:
            break
        Sigma = condition(Sigma, F, idx[best][mask[best]], noise_R)
        taken[best], left = True, left - costs[best]
        steps.append(Step(best, float(v[best]), np.diag(Sigma)[:F].copy()))
    return steps


@dataclasses.dataclass
class NextResult:
    """The chosen runs and what each is expected to teach (see `plan_next`)."""

    law: str
    N: float
    D: float
    objective: str
    criterion: str
    families: tuple[str, ...]
    budget_flops: float
    k: int
    n_candidates: int
    n_draws: int
    uncertainty_now: float
    width_now: dict[str, float]
    expected_regret_now: float | None
    recommended: dict[str, float]
    chosen: list[dict[str, Any]]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"flops": float(sum(c["flops"] for c in self.chosen)),
                                           "method": "bayes-linear preposterior over the posterior draws"}

    def __str__(self) -> str:
        unit = "objective units (expected regret, 2nd order)" if self.criterion == "regret" else "summed Var(p*)"
        lines = [f"next runs for p* at N = {self.N:.3g}, D = {self.D:.3g} (law {self.law}, {self.objective} "
                 f"objective, criterion {self.criterion}; {self.n_candidates} candidates, {self.n_draws} draws)",
                 f"uncertainty now: {self.uncertainty_now:.3e} {unit}; p* 90% widths: "
                 + ", ".join(f"{f} {w:.3f}" for f, w in self.width_now.items())]
        if self.expected_regret_now is not None:
            lines.append(f"expected regret of the recommended mixture now (exact, over the draws): "
                         f"{self.expected_regret_now:.3e}")
        lines.append(f"{'#':>2s} {'preset':10s}{'D':>10s} {'mixture':22s}{'FLOPs':>10s}{'value':>11s}"
                     f"{'left after':>11s}{'width sum':>10s}")
        for c in self.chosen:
            lines.append(f"{c['rank']:2d} {c['preset']:10s}{c['D']:10.3g} {c['label'][:22]:22s}{c['flops']:10.3g}"
                         f"{c['value']:11.3e}{c['uncertainty_after']:11.3e}{c['width_sum_after']:10.3f}")
        lines.append(f"total {sum(c['flops'] for c in self.chosen):.3g} FLOPs of {self.budget_flops:.3g}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def check_request(fit, N: float, D: float, budget_flops: float, k: int, objective: str, criterion: str) -> None:
    """One-line `InputError`s for what `plan_next` cannot do."""
    if getattr(fit, "idata", None) is None or fit.n_draws < 2 or "sigma" not in fit.idata.posterior:
        raise InputError(f"the fit is a point fit ({fit.method}): it has no posterior, so no run can be valued by "
                         "what it would teach; fit with NUTS")
    if not fit.law.uses_scale or not fit.law.uses_ratio:
        raise InputError(f"law {fit.law.name!r} does not depend on both the scale (N, D) and the mixture: next needs "
                         "a law such as multilingual or a law of the whole mixture")
    for name, v in (("N", N), ("D", D), ("budget_flops", budget_flops)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
            raise InputError(f"{name} must be a finite positive number, got {v!r}", arg=name)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be an integer >= 1, got {k!r}", arg="k")
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}", arg="objective")
    if criterion not in CRITERIA:
        raise InputError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}", arg="criterion")


def plan_next(fit, N: float, D: float, budget_flops: float, *, candidates: Sequence[Candidate] | None = None,
              k: int = 8, objective: str = "raw", criterion: str = "regret", runs: pd.DataFrame | None = None,
              progress: bool = False) -> NextResult:
    """The runs to train next for p* at (N, D): greedy batches of up to `k` candidates within
    `budget_flops` (module docstring). `candidates` default: generated from the fit
    (`multiscale.decisions.candidates.generate`; `runs`, the fitted table, gives its levels)."""
    check_request(fit, N, D, budget_flops, k, objective, criterion)
    try:
        fitted = FittedRange.of(fit, runs)
    except InputError:
        if candidates is None:
            raise
        fitted = None
    for name, v, levels in (("N", N, fitted.N), ("D", D, fitted.D)) if fitted is not None else ():
        if v < min(levels) * (1 - 1e-9):  # the target lies at or beyond the fitted runs
            raise InputError(f"{name} {v:.4g} is below every fitted value (smallest {min(levels):.4g}): next plans "
                             "runs that teach p* at a target at or beyond the fitted runs", arg=name)
    state = target_state(fit, N, D, objective, criterion)
    if candidates is None:
        candidates = generate(fitted, state.families, N, D, state.robust)
    cands = dedupe(candidates)
    if runs is None:
        state.notes.append("no fitted table given (runs): a candidate that repeats a fitted run at its seed is "
                           "valued as new information, though trained again it would only repeat that run")
    else:
        cands, dropped = drop_fitted(cands, runs, state.families)
        if dropped:
            state.notes.append(f"{dropped} candidates repeat a fitted run (runs) and were left out: trained again "
                               "with the same seed they would teach nothing new (another seed would)")
    if not cands:
        raise InputError("there are no candidate runs")
    costs = np.array([c.flops for c in cands])
    if budget_flops < costs.min():
        cheap = cands[int(np.argmin(costs))]
        raise InputError(f"budget_flops {budget_flops:.3g} is below the cheapest candidate run ({costs.min():.3g} "
                         f"FLOPs = 6 N D: {cheap.preset} at D = {cheap.D:.3g})", arg="budget_flops")
    rows, owner = candidate_rows(fit, cands, state.families)
    noise = noise_variance(fit, rows)
    Sigma = joint_covariance(fit, state.P_SxF, rows, state.keep_S)
    F = len(state.families)
    steps = greedy(Sigma, F, owner, noise, costs, state.a_F, int(k), float(budget_flops), progress=progress)
    var0 = np.diag(Sigma)[:F].copy()
    return _result(fit, N, D, objective, budget_flops, k, cands, state, steps, var0)


def _result(fit, N, D, objective, budget_flops, k, cands, state: TargetState, steps, var0) -> NextResult:
    lo, hi = np.quantile(state.P_SxF, [Q_LOW, Q_HIGH], axis=0)
    width0 = hi - lo
    notes = list(state.notes)
    if len(steps) < k:
        notes.append(f"{len(steps)} of k = {k} runs chosen: the FLOP budget or the candidates' information ran out")
    spent = sum(float(cands[s.index].flops) for s in steps)
    if len(steps) == k and spent < budget_flops / 2:
        share = spent / budget_flops
        notes.append(f"the k = {k} runs spend {spent:.3g} of the {budget_flops:.3g} FLOPs ({share:.1%}): "
                     "raise k to spend more now, or train these, refit and ask `next` again")
    S = state.P_SxF.shape[0]
    rows_seen = sum(sum(1 for f in fit.families if cands[s.index].ratio_dict.get(f, 0) > 0) for s in steps)
    if rows_seen > S / 10:
        notes.append(f"{rows_seen} observed losses against {S} posterior draws: the covariances behind the later "
                     "values are noisy; sample more draws for a larger batch")
    U0 = float(np.clip(var0, 0, None) @ state.a_F)
    chosen, total = [], 0.0
    for rank, st in enumerate(steps, 1):
        c = cands[st.index]
        total += c.flops
        ratio = np.sqrt(np.where(var0 > 0, np.clip(st.var_after_F, 0, None) / np.where(var0 > 0, var0, 1), 1.0))
        width = width0 * ratio
        chosen.append({"rank": rank, "preset": c.preset, "N": c.N, "D": c.D, "label": c.label,
                       "ratios": c.ratio_dict, "flops": c.flops, "flops_cumulative": total, "value": st.value,
                       "value_per_flop": st.value / c.flops,
                       "uncertainty_after": float(np.clip(st.var_after_F, 0, None) @ state.a_F),
                       "width_after": dict(zip(state.families, width.tolist())),
                       "width_sum_after": float(width.sum())})
    return NextResult(law=fit.law.name, N=float(N), D=float(D), objective=objective, criterion=state.criterion,
                      families=state.families, budget_flops=float(budget_flops), k=int(k), n_candidates=len(cands),
                      n_draws=S, uncertainty_now=U0, width_now=dict(zip(state.families, width0.tolist())),
                      expected_regret_now=state.expected_regret, recommended=state.robust,
                      chosen=chosen, notes=notes)
