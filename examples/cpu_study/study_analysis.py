"""The CPU studies' analysis (docs/cpu_study, docs/cpu_study_v2): which rows a fit sees, what
each trained mixture measured, how mixtures compare over seeds, the transfer plan that trains
recommended mixtures, and the first study's summary. Loss in nats/token throughout.

Run ids are parsed by the sweep's one parser (`multiscale.sweep.parse_run_id`): a run's
*mixture label* (e.g. 'temp0.3', 'pstar-small3') and its *seed* come from its id, so runs
of one mixture with several seeds group together, and runs with the same seed (which share the
model's initialisation) pair up.

Statistics: over seeds, the mean and the sample SD (ddof 1); paired differences, seed by seed
against a reference mixture, their mean, sample SD, standard error SD/sqrt(n) and the
two-sided Student-t interval mean ± t(1 - (1 - level)/2, n - 1) · SE (90% by default), which
needs two or more seeds (None otherwise).

The summary (`summarize_study`) tests He et al.'s three claims on one run table:
1. independence: `independence_test` of the whole table;
2. fit and prediction: a law fitted on the sizes below `fit_max_N` (a Bayesian and a point
   fit), scored on the fitted and the held-out sizes (`multiscale.laws.score`) and its signed
   errors by size (`errors_by_size`);
3. transfer: the mixtures measured at the largest size (`measured_mixtures`, normalized by the
   monolingual losses c of a ratio-law fit there), over seeds and paired by seed against uniform
   and against 'pstar-small3' (p* from the small models), and at the size below it.
The transfer plan (`transfer_plan`) is how claim 3 is tested: p* found on small models is
trained at a larger size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from multiscale.errors import InputError
from multiscale.laws import independence_test, score
from multiscale.laws.predict import predictive_draws
from multiscale.sweep import parse_run_id

OBJECTIVES = ("mean_loss", "normalized_objective")
TRANSFER_REFERENCE = "pstar-small3"  # the study's p* from the small models, a second reference
RATIO_DIGITS = 6  # ratios are written to the plan rounded (the plan renormalizes them)


def mixture_label(run: str) -> str:
    """'cpu-800k-D200k-temp0.3-s0-4d5a9b65' -> 'temp0.3'."""
    return parse_run_id(run).label


def run_seed(run: str) -> int:
    """'cpu-800k-D200k-temp0.3-s1-4d5a9b65' -> 1."""
    return int(parse_run_id(run).seed)


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
            rid = parse_run_id(run)
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


# ------------------------------------------------------------------ the transfer plan


def transfer_plan(recs: Mapping[str, Mapping], template: Mapping, seeds: Sequence[int] | None = None) -> dict:
    """A copy of `template` (a sweep plan as a dict) whose mixtures are the recommended ones,
    one per {mixture name: recommendation} item, a recommendation being the JSON object of
    `multiscale recommend --json` (its `ratios`). With `seeds`, they replace the template's.
    The plan is named 'cpu-study-<names joined by +>[-seeds<s1-s2...>]'."""
    if not recs:
        raise InputError("transfer-plan needs at least one NAME=REC.json")
    plan = {k: v for k, v in template.items() if k not in ("mixtures", "name")}
    plan["name"] = "cpu-study-" + "+".join(recs) + (f"-seeds{'-'.join(map(str, seeds))}" if seeds else "")
    if seeds:
        plan["seeds"] = [int(s) for s in seeds]
    plan["mixtures"] = []
    for name, rec in recs.items():
        if not isinstance(rec, Mapping) or "ratios" not in rec:
            raise InputError(f"recommendation for {name!r} has no 'ratios' (is it `multiscale recommend --json` "
                             "output?)")
        ratios = {f: round(float(p), RATIO_DIGITS) for f, p in rec["ratios"].items()}
        plan["mixtures"].append({"name": name, "ratios": ratios, "normalize": True})
    return plan


# ------------------------------------------------------------------ prediction errors by size


def median_predictions(fit, rows: pd.DataFrame) -> np.ndarray:
    """The fit's median predicted loss (nats/token) per row of `rows`: the mean law's median over
    the fit's draws, without observation noise."""
    return np.median(predictive_draws(fit, rows, noise=False), axis=0)


def prediction_errors(rows: pd.DataFrame, predicted) -> dict:
    """Signed error of predictions of the losses of `rows`: the mean of (pred - obs) / obs
    overall and per family (the level shift), and per family the Spearman correlation of
    prediction with observation (whether the ordering of mixtures is right even when the level
    is off; None with fewer than 3 rows) and the row count."""
    from scipy.stats import spearmanr

    pred = np.asarray(predicted, float)
    obs = rows["loss"].to_numpy(float)
    if pred.shape != obs.shape:
        raise InputError(f"prediction_errors: {pred.shape[0] if pred.ndim else 0} predictions for {len(obs)} rows")
    rel = (pred - obs) / obs
    fams = rows["family"].to_numpy()
    out = {"mean_rel_error": float(rel.mean()), "per_family": {}}
    for f in dict.fromkeys(fams):
        m = fams == f
        rho = float(spearmanr(pred[m], obs[m]).statistic) if m.sum() > 2 else None
        out["per_family"][f] = {"mean_rel_error": float(rel[m].mean()), "spearman": rho, "n": int(m.sum())}
    return out


def errors_by_size(rows: pd.DataFrame, predicted) -> dict[str, dict]:
    """`prediction_errors` within each model size, keyed 'N<int(N)>' in increasing N."""
    pred = np.asarray(predicted, float)
    n = rows["N"].to_numpy(float)
    return {f"N{int(size)}": prediction_errors(rows[n == size], pred[n == size]) for size in np.unique(n)}


# ------------------------------------------------------------------ the study's summary


def summarize_study(runs: pd.DataFrame, *, fit_small, fit_small_point, fit_large,
                    rec_small: Mapping | None = None, rec_large: Mapping | None = None,
                    fit_max_N: float | None = None) -> dict:
    """The study's summary dict (see the module docstring). `runs`: the whole run table;
    `fit_small`, `fit_small_point`: the Bayesian and point fits of the rows with N < fit_max_N
    (default: every size but the largest); `fit_large`: the ratio-law fit at the largest size
    (its draws of c normalize the objective); `rec_small`, `rec_large`: `multiscale recommend
    --json` objects of p* from fit_small and fit_large."""
    n_large = float(runs["N"].max())
    fit_max = float(fit_max_N) if fit_max_N else n_large
    small, held = runs[runs["N"] < fit_max], runs[runs["N"] >= fit_max]
    large = runs[runs["N"] == n_large]
    out: dict = {"loss_units": "nats/token", "n_runs": int(runs["run"].nunique()), "n_rows": int(len(runs)),
                 "N_large": n_large, "D_large": float(large["D"].iloc[0]),
                 "sizes": {str(int(n)): sorted(int(d) for d in g["D"].unique()) for n, g in runs.groupby("N")}}
    out["independence"] = independence_test(runs).to_dict()
    out["fit_small"] = {"method": fit_small.method, "summary": fit_small.summary(),
                        "diagnostics": getattr(fit_small, "diagnostics", {}),
                        "options": getattr(fit_small, "options", {}),
                        "warnings": list(getattr(fit_small, "warnings", []))}
    out["fit_small_point"] = {"params": fit_small_point.params()}
    out["fit_max_N"] = fit_max
    out["scores"] = _scores(fit_small, fit_small_point, small, held)
    out["errors"] = errors_by_size(runs, median_predictions(fit_small, runs))
    out.update(_transfer(fit_large, large, held))
    out.update(_recommendations(rec_small, rec_large))
    return out


def _scores(fit_small, fit_point, small: pd.DataFrame, held: pd.DataFrame) -> dict:
    """`score` of both small-model fits on the held-out and the fitted rows, overall and by size."""
    out = {"nuts_heldout": score(fit_small, held).to_dict(), "nuts_fitted": score(fit_small, small).to_dict(),
           "point_heldout": score(fit_point, held).to_dict(), "point_fitted": score(fit_point, small).to_dict()}
    for n, sub in held.groupby("N"):
        out[f"nuts_heldout_N{int(n)}"] = score(fit_small, sub).to_dict()
        out[f"point_heldout_N{int(n)}"] = score(fit_point, sub).to_dict()
    for n, sub in small.groupby("N"):
        out[f"nuts_fitted_N{int(n)}"] = score(fit_small, sub).to_dict()
    return out


def monolingual_losses(fit_large) -> dict[str, float]:
    """c per family: the median of a ratio-law fit's draws of c (L_i at p_i = 1)."""
    return {f: float(np.median(fit_large.draws["c"][:, j])) for j, f in enumerate(fit_large.families)}


def _transfer(fit_large, large: pd.DataFrame, held: pd.DataFrame) -> dict:
    """Claim 3: the largest size's mixtures measured, over seeds and paired by seed; the size
    below it (the largest held-out size under the transfer size) in raw mean loss only."""
    out: dict = {"fit_large": {"method": fit_large.method, "summary": fit_large.summary(),
                               "n_runs": int(next(iter(fit_large.n_runs.values()))),
                               "diagnostics": getattr(fit_large, "diagnostics", {}),
                               "options": getattr(fit_large, "options", {})}}
    out["measured_large"] = measured_mixtures(large, monolingual_losses(fit_large))
    out["measured_large_over_seeds"] = over_seeds(out["measured_large"])
    out["paired_vs_uniform"] = paired_differences(out["measured_large"], "uniform")
    if TRANSFER_REFERENCE in out["measured_large_over_seeds"]:
        out["paired_vs_pstar_small3"] = paired_differences(out["measured_large"], TRANSFER_REFERENCE)
    sizes = sorted(held["N"].unique())
    if len(sizes) > 1:
        out["N_mid"] = float(sizes[-2])
        out["measured_mid"] = measured_mixtures(held[held["N"] == sizes[-2]], None)
        out["measured_mid_over_seeds"] = over_seeds(out["measured_mid"])
    return out


def _recommendations(rec_small: Mapping | None, rec_large: Mapping | None) -> dict:
    out: dict = {}
    for key, rec in (("rec_small", rec_small), ("rec_large", rec_large)):
        if rec:
            out[key] = {"ratios": rec["ratios"],
                        "p_star": {f: v["p_star"] for f, v in rec["families"].items()},
                        "objective_at_p_star": rec["objective_at_p_star"],
                        "baselines": rec.get("baselines", {})}
    if "rec_small" in out and "rec_large" in out:
        a, b = out["rec_small"]["ratios"], out["rec_large"]["ratios"]
        out["pstar_l1_small_vs_large"] = float(sum(abs(a[f] - b[f]) for f in a))
    return out


def format_study_summary(s: Mapping) -> str:
    """The summary as text: scores, level shifts, measured mixtures, seeds, paired differences."""
    lines = [f"# {s['n_runs']} runs, {s['n_rows']} rows; sizes (N: D values) {s['sizes']}"]
    lines += _format_scores(s)
    lines += ["", "held-out level shift (mean (pred - obs) / obs) and Spearman per family:"]
    for key, e in s["errors"].items():
        lines.append(f"  {key:10s} {100 * e['mean_rel_error']:+.2f}%  " + " ".join(
            f"{f}={v['spearman']:.2f}" for f, v in e["per_family"].items() if v["spearman"] is not None))
    lines += _format_transfer(s)
    for key in ("rec_small", "rec_large"):
        if key in s:
            lines += ["", f"{key}: " + ", ".join(f"{f}={p:.3f}" for f, p in s[key]["ratios"].items())]
    if "pstar_l1_small_vs_large" in s:
        lines.append(f"L1(p*_small, p*_large) = {s['pstar_l1_small_vs_large']:.3f}")
    return "\n".join(lines)


def _format_scores(s: Mapping) -> list[str]:
    lines = []
    for name in [k for k in s["scores"] if k.startswith(("nuts", "point_heldout"))]:
        sc = s["scores"][name]
        lines += ["", f"{name}: overall R2 {sc['overall']['r2']:.3f} MAPE {sc['overall']['mape']:.2f}% "
                  f"cov90 {sc['overall']['coverage']:.2f} (n={sc['overall']['n']})"]
        for f, v in sc["per_family"].items():
            lines.append(f"  {f:14s} R2 {v['r2']:7.3f}  MAPE {v['mape']:6.2f}%  cov90 {v['coverage']:.2f}  n={v['n']}")
    return lines


def _format_transfer(s: Mapping) -> list[str]:
    lines = ["", "measured at the largest size (mean loss nats/token, normalized objective):"]
    for label, m in sorted(s["measured_large"].items(), key=lambda kv: kv[1]["normalized_objective"]):
        lines.append(f"  {label:22s} {m['mean_loss']:.4f}  {m['normalized_objective']:.5f}  "
                     + " ".join(f"{f}={p:.3f}" for f, p in m["ratios"].items()))
    lines += ["", "over seeds (mean loss: mean, SD; normalized: mean):"]
    for label, g in sorted(s["measured_large_over_seeds"].items(), key=lambda kv: kv[1]["mean_loss_mean"]):
        sd = g["mean_loss_sd"]
        lines.append(f"  {label:22s} seeds {g['seeds']}  {g['mean_loss_mean']:.4f}  "
                     f"{'-' if sd is None else f'{sd:.4f}'}  {g['normalized_objective_mean']:.5f}")
    lines += ["", "paired by seed, minus uniform (mean loss: mean diff, SE, per-seed diffs):"]
    for label, e in sorted(s["paired_vs_uniform"].items(), key=lambda kv: kv[1]["mean_loss"]["mean"]):
        ml = e["mean_loss"]
        se = "-" if ml["se"] is None else f"{ml['se']:.4f}"
        lines.append(f"  {label:22s} seeds {e['seeds']}  {ml['mean']:+.4f}  {se}  "
                     + " ".join(f"{d:+.4f}" for d in ml["diffs"]))
    return lines
