"""The study analysis: which rows a fit sees, what each trained mixture measured, and how
mixtures compare over seeds. Loss in nats/token throughout.

Run ids are parsed by the sweep's one parser (`multiscale.sweep.plan.parse_run_id`): a run's
*mixture label* (e.g. 'temp0.3', 'pstar-small3') and its *seed* come from its id, so runs
of one mixture with several seeds group together, and runs with the same seed (which share the
model's initialisation) pair up.

Statistics: over seeds, the mean and the sample SD (ddof 1); paired differences, seed by seed
against a reference mixture, their mean, sample SD, standard error SD/sqrt(n) and the
two-sided Student-t interval mean ± t(1 - (1 - level)/2, n - 1) · SE (90% by default), which
needs two or more seeds (None otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from multiscale.errors import InputError

OBJECTIVES = ("mean_loss", "normalized_objective")


def _parse(run: str):
    from multiscale.sweep.plan import parse_run_id

    return parse_run_id(run)


def mixture_label(run: str) -> str:
    """'cpu-800k-D200k-temp0.3-s0-4d5a9b65' -> 'temp0.3'."""
    return _parse(run).label


def run_seed(run: str) -> int:
    """'cpu-800k-D200k-temp0.3-s1-4d5a9b65' -> 1."""
    return int(_parse(run).seed)


def select_runs(runs: pd.DataFrame, *, max_N: float | None = None, min_N: float | None = None,
                exclude: Iterable[str] = ()) -> pd.DataFrame:
    """Rows with min_N <= N < max_N whose runs are not excluded. An excluded item is a mixture
    label (every seed: 'pstar-small3') or a label and one seed ('temp0.3-s1')."""
    exclude = frozenset(exclude)
    keep = np.ones(len(runs), bool)
    if max_N is not None:
        keep &= runs["N"].to_numpy(float) < max_N
    if min_N is not None:
        keep &= runs["N"].to_numpy(float) >= min_N
    if exclude:
        def excluded(run: str) -> bool:
            rid = _parse(run)
            return rid.label in exclude or f"{rid.label}-s{int(rid.seed)}" in exclude
        keep &= ~runs["run"].map(excluded).to_numpy(bool)
    out = runs[keep]
    if out.empty:
        raise InputError(f"no rows with {min_N} <= N < {max_N} outside labels {sorted(exclude)}")
    return out


def measured_mixtures(runs: pd.DataFrame, c_by_family: dict[str, float] | None = None) -> dict[str, dict]:
    """Per run (of one (N, D)), keyed by mixture label (plus -s<seed> for seeds other than 0):
    run id, seed, ratios, per-family losses, raw mean loss and normalized objective.

    raw: equal-weight mean of the families' held-out losses (nats/token).
    normalized: equal-weight mean of L_i / c_i, c_i the monolingual loss L_i(N, D, p=1)
      (e.g. a ratio-law fit's c at this size: He et al.'s normalized objective, with the
      measured losses in place of the law's predictions); None without `c_by_family`.
    """
    out = {}
    for run, sub in runs.groupby("run", sort=False):
        fams = sub["family"].tolist()
        loss = sub["loss"].to_numpy(float)
        seed = run_seed(run)
        norm = None
        if c_by_family is not None:
            missing = sorted(set(fams) - set(c_by_family))
            if missing:
                raise InputError(f"measured_mixtures: no monolingual loss c for families {missing}")
            norm = float(np.mean([L / c_by_family[f] for f, L in zip(fams, loss)]))
        out[mixture_label(run) + (f"-s{seed}" if seed else "")] = {
            "run": run, "seed": seed, "ratios": dict(zip(fams, sub["p"].astype(float).round(6).tolist())),
            "losses": dict(zip(fams, loss.tolist())),
            "mean_loss": float(loss.mean()), "normalized_objective": norm,
        }
    return out


def over_seeds(measured: dict[str, dict]) -> dict[str, dict]:
    """The runs of `measured_mixtures` grouped by mixture label over seeds: the seeds, each
    seed's value, and their mean and sample SD (None with one seed), for the raw mean loss and
    the normalized objective (left out when not measured)."""
    groups: dict[str, list[dict]] = {}
    for m in measured.values():
        groups.setdefault(mixture_label(m["run"]), []).append(m)
    out = {}
    for label, ms in groups.items():
        ms = sorted(ms, key=lambda m: m["seed"])
        entry: dict = {"seeds": [m["seed"] for m in ms]}
        for name in OBJECTIVES:
            vals = [m[name] for m in ms]
            if any(v is None for v in vals):
                continue
            entry[name] = vals
            entry[f"{name}_mean"] = float(np.mean(vals))
            entry[f"{name}_sd"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        out[label] = entry
    return out


def paired_differences(measured: dict[str, dict], reference: str = "uniform", *,
                       level: float = 0.90) -> dict[str, dict]:
    """Each mixture minus `reference`, seed by seed over the seeds both have, in mean loss and
    normalized objective: the per-seed differences, their mean and, with two or more seeds,
    their sample SD, standard error and `level` Student-t interval (see the module docstring)."""
    if not 0 < level < 1:
        raise InputError(f"paired_differences: level must be in (0, 1), got {level}")
    by_label: dict[str, dict[int, dict]] = {}
    for m in measured.values():
        by_label.setdefault(mixture_label(m["run"]), {})[m["seed"]] = m
    if reference not in by_label:
        raise InputError(f"paired_differences: no {reference!r} run to compare with; "
                         f"mixtures: {sorted(by_label)}")
    ref = by_label[reference]
    out = {}
    for label, seeds in by_label.items():
        common = sorted(set(seeds) & set(ref))
        if label == reference or not common:
            continue
        entry: dict = {"seeds": common}
        for name in OBJECTIVES:
            if any(seeds[s][name] is None or ref[s][name] is None for s in common):
                continue
            entry[name] = paired_statistics([seeds[s][name] - ref[s][name] for s in common], level)
        out[label] = entry
    return out


def paired_statistics(diffs, level: float = 0.90) -> dict:
    """Mean, sample SD, standard error and Student-t `level` interval of paired differences
    (SD, SE and interval None for a single difference)."""
    from scipy.stats import t

    d = np.asarray(diffs, float)
    out = {"diffs": d.tolist(), "mean": float(d.mean()), "sd": None, "se": None, "interval": None}
    if len(d) > 1:
        sd = float(d.std(ddof=1))
        se = float(d.std(ddof=1) / np.sqrt(len(d)))
        half = float(t.ppf(0.5 + level / 2, len(d) - 1)) * se
        out.update(sd=sd, se=se, interval=[out["mean"] - half, out["mean"] + half])
    return out
