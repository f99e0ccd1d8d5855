"""Which law to believe: fit several laws on the same runs, score them on held-out runs.

`compare_laws(df, laws, holdout)` splits the run table (`split`), fits every law on the training
runs (L-BFGS point fits, or NUTS with ``method="nuts"``), and reports per law and family:

- held-out MAPE (percent), R^2 and 90% coverage (`multiscale.laws.validation.score`: the
  posterior-predictive interval of a Bayesian fit, as `predict` gives it: with the extrapolation
  term beyond the fitted N and D where the law learns one (`Law.learns_extrapolation`; its kappa is
  reported), none for the others; NaN for a point fit);
- Spearman's rank correlation of predicted and observed loss within each (N, D) cell of the
  held-out runs (cells of at least 3 runs), averaged over the cells: how well the law ranks
  mixtures, which is what choosing a mixture needs (NaN for a family without such a cell; the
  overall value averages the families that have one, NaN if none does);
- PSIS-LOO elpd with its SE on the training runs (ArviZ ``az.loo``; NUTS only);
- the p* each law recommends at the largest (N, D) of the table (normalized objective).

With NUTS, ``noise`` names the noise models to fit each law with (`multiscale.laws.noise`); with
more than one, every (law, noise model) pair is a candidate, named ``law/noise``, and the rule below
chooses among them: the PSIS-LOO comparison of the noise models.

The rule (`choose`): with PSIS-LOO for every law, the law with the highest elpd, unless its lead
over the runner-up is within 2 SE of the difference (``az.compare``'s ``dse``); without it, the
law with the lowest held-out MAPE over all rows, unless its lead over the runner-up is within 2
standard errors of the mean paired difference of the rows' absolute percentage errors. Within
those bounds the data cannot tell the two apart, and the rule says so (and names the simpler law,
the one with fewer parameters).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multiscale.decisions.recommend import decision_families, optimal_ratios
from multiscale.errors import InputError
from multiscale.fileio import atomic_write_bytes, atomic_write_text, json_safe, write_json
from multiscale.laws.bayes import fit_bayes
from multiscale.laws.data import prepare
from multiscale.laws.fits import LOSS_UNITS
from multiscale.laws.forms import get_law
from multiscale.laws.noise import DEFAULT_NOISE, check_noise
from multiscale.laws.point import fit_point
from multiscale.laws.predict import pointwise_loglik, predict_rows
from multiscale.laws.validation import score
from multiscale.runs import mixture_columns, validate_runs

HOLDOUTS = ("largest-N", "largest-D", "mixtures", "seeds")
MIN_CELL = 3  # held-out runs per (family, N, D) cell for a Spearman correlation
MIXTURE_HOLDOUT_FRACTION = 1 / 3


def _mixture_keys(df: pd.DataFrame) -> pd.Series:
    """A key per run naming its mixture (its p_<family> values, else its family=p pairs)."""
    cols = mixture_columns(df)
    if cols:
        per_run = df.groupby("run", sort=False)[cols].first().round(9)
        return per_run.astype(str).agg(",".join, axis=1)
    return df.sort_values("family").groupby("run", sort=False).apply(
        lambda g: ",".join(f"{f}={p:.9g}" for f, p in zip(g["family"], g["p"])), include_groups=False)


def split(df: pd.DataFrame, holdout: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows). largest-N / largest-D: the runs at the largest N / D;
    mixtures: a third of the distinct mixtures (drawn with `seed`), at every (N, D); seeds: the
    runs of the largest value of the ``seed`` column."""
    if holdout not in HOLDOUTS:
        raise InputError(f"holdout must be one of {list(HOLDOUTS)}, got {holdout!r}")
    if holdout in ("largest-N", "largest-D"):
        col = holdout[-1]
        test = (df[col] == df[col].max()).to_numpy()
        if test.all():
            raise InputError(f"holdout {holdout}: every run has the same {col}; nothing is left to fit")
    elif holdout == "seeds":
        if "seed" not in df.columns or df["seed"].nunique() < 2:
            raise InputError("holdout seeds: the table needs a 'seed' column with at least two seeds")
        test = (df["seed"] == df["seed"].max()).to_numpy()
    else:
        keys = _mixture_keys(df)
        mixes = np.array(sorted(set(keys)))
        if len(mixes) < 3:
            raise InputError(f"holdout mixtures: the table has {len(mixes)} distinct mixtures; need >= 3")
        rng = np.random.default_rng(seed)
        held = set(rng.choice(mixes, size=max(1, int(round(len(mixes) * MIXTURE_HOLDOUT_FRACTION))),
                              replace=False))
        test = df["run"].map(keys).isin(held).to_numpy()
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True)


def spearman_within_cells(df: pd.DataFrame, pred: np.ndarray) -> dict[str, float]:
    """family -> mean Spearman correlation of predicted and observed loss over the (N, D) cells
    with at least MIN_CELL held-out runs (NaN where there are none)."""
    from scipy.stats import spearmanr

    out = {}
    d = df.assign(_pred=pred)
    for fam, g in d.groupby("family", sort=False):
        rhos = []
        for _, cell in g.groupby(["N", "D"]):
            if len(cell) >= MIN_CELL and cell["loss"].nunique() > 1 and np.isfinite(cell["_pred"]).all():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    rhos.append(float(spearmanr(cell["_pred"], cell["loss"]).statistic))
        out[str(fam)] = mean_finite(rhos)
    return out


def mean_finite(values) -> float:
    """The mean of the finite values, NaN (without numpy's "Mean of empty slice" warning) when
    there are none: a family with no (N, D) cell of MIN_CELL held-out runs, or whose correlations
    are all undefined (a constant prediction), has no Spearman to average."""
    x = np.asarray(list(values), dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


@dataclass
class LawResult:
    """One law's scores: held-out MAPE/R^2/coverage/Spearman per family and overall, PSIS-LOO
    (None for a point fit), p* at the target (None where the law cannot recommend), and the
    rows' absolute percentage errors (for the rule). `name` is the candidate's: the law's, or
    ``law/noise`` when several noise models are compared."""

    law: str
    n_params: int
    per_family: dict[str, dict[str, float]]
    overall: dict[str, float]
    loo: dict[str, float] | None
    p_star: dict[str, float] | None
    seconds: float
    extrapolation_kappa: float | None = None
    ape_R: np.ndarray = field(repr=False, default=None)
    idata: Any = field(repr=False, default=None)
    noise: str | None = None
    name: str = ""

    def __post_init__(self):
        self.name = self.name or self.law

    def to_dict(self) -> dict[str, Any]:
        return {"law": self.law, "name": self.name, "noise": self.noise, "n_params": self.n_params,
                "overall": self.overall, "per_family": self.per_family, "loo": self.loo, "p_star": self.p_star,
                "seconds": self.seconds, "extrapolation_kappa": self.extrapolation_kappa}


def _fit(train: pd.DataFrame, law: str, method: str, draws: int, chains: int, seed: int, noise: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if method == "lbfgs":
            return fit_point(train, law=law)
        # with the extrapolation term where the law learns one: held-out coverage is then that of the
        # intervals the fit gives (`predict`); the rule reads LOO on the fitted rows or the medians, which it
        # leaves as they are
        return fit_bayes(train, law=law, draws=draws, chains=chains, warmup=draws, seed=seed, warn=False,
                         noise=noise)


def _loo(fit, train: pd.DataFrame) -> tuple[dict[str, float] | None, Any]:
    """PSIS-LOO of a Bayesian fit on its training rows (log_likelihood added where missing)."""
    import arviz as az


    idata = getattr(fit, "idata", None)
    if idata is None:
        return None, None
    if "log_likelihood" not in idata.groups():
        _, data, _ = prepare(train, fit.law, fit.shared)
        ll = pointwise_loglik(fit, data)  # the fit's noise model
        post = idata.posterior
        idata.add_groups(log_likelihood={"y": ll.reshape(post.sizes["chain"], post.sizes["draw"], -1)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = az.loo(idata, var_name="y")
    return {"elpd": float(res.elpd_loo), "se": float(res.se), "p_loo": float(res.p_loo),
            "max_pareto_k": float(np.max(res.pareto_k.values))}, idata


def _p_star(fit, N: float, D: float) -> dict[str, float] | None:
    """The recommended mixture at (N, D); NaN ratios where the fit's loss is not finite there for
    any draw (a point fit at a boundary of parameter space, which `recommend` refuses)."""
    if not fit.law.uses_ratio:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            rec = optimal_ratios(fit, N, D, objective="normalized", baselines=False)
        except InputError as e:
            if "not finite" not in str(e):
                raise
            return dict.fromkeys(decision_families(fit), float("nan"))
    return {k: float(v) for k, v in rec.ratios.items()}


def _score_law(law: str, train, test, method, draws, chains, seed, N, D, noise: str, name: str) -> LawResult:
    t0 = time.perf_counter()
    fit = _fit(train, law, method, draws, chains, seed, noise)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sc = score(fit, test, seed=seed)
    med = np.median(predict_rows(fit, test), axis=0)
    rho = spearman_within_cells(test, med)
    per = {f: {**s, "spearman": rho.get(f, float("nan"))} for f, s in sc.per_family.items()}
    overall = {**sc.overall, "spearman": mean_finite(rho.values())}
    loo, idata = _loo(fit, train)
    y = test["loss"].to_numpy(float)
    n_params = len(fit.law.params) + len(fit.law.matrix) * max(len(fit.mixture_families) - 1, 0)
    if method == "nuts":
        n_params += len(fit.noise.slopes) + (len(fit.families) if fit.noise.model == "size" else 0)
    return LawResult(law=law, noise=noise if method == "nuts" else None, name=name, n_params=n_params,
                     per_family=per, overall=overall, loo=loo,
                     p_star=_p_star(fit, N, D), seconds=time.perf_counter() - t0,
                     extrapolation_kappa=(getattr(fit, "extrapolation", None) or {}).get("kappa"),
                     ape_R=np.abs(med - y) / y * 100.0, idata=idata)


def _choose_loo(results: list[LawResult]) -> dict[str, Any]:
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare({r.name: r.idata for r in results}, var_name="y")
    best, second = table.index[0], table.index[1]
    diff, dse = float(table.loc[second, "elpd_diff"]), float(table.loc[second, "dse"])
    return {"by": "PSIS-LOO elpd", "best": best, "runner_up": second, "difference": diff, "se": dse,
            "distinguishable": bool(diff > 2 * dse)}


def _choose_mape(results: list[LawResult]) -> dict[str, Any]:
    order = sorted(results, key=lambda r: r.overall["mape"])
    best, second = order[0], order[1]
    d = second.ape_R - best.ape_R
    se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")
    return {"by": "held-out MAPE", "best": best.name, "runner_up": second.name, "difference": float(d.mean()),
            "se": se, "distinguishable": bool(d.mean() > 2 * se)}


def choose(results: list[LawResult]) -> dict[str, Any]:
    """The rule of the module docstring: which law to use, and whether the data can tell. A law
    whose fit predicts a non-finite loss on some held-out row is left out (and named)."""
    broken = [r.name for r in results if not np.all(np.isfinite(r.ape_R))]
    results = [r for r in results if r.name not in broken]
    note = (f"; left out, predicting non-finite losses (a fit at a boundary of parameter space): {broken}"
            if broken else "")
    if len(results) < 2:
        law = results[0].name if results else None
        return {"by": "only one usable law", "best": law, "use": law, "distinguishable": False,
                "left_out": broken, "text": (f"only {law!r} is usable" if law else "no law is usable") + note}
    out = _choose_loo(results) if all(r.loo is not None for r in results) else _choose_mape(results)
    by_law = {r.name: r for r in results}
    if out["distinguishable"]:
        out["use"] = out["best"]
        out["text"] = (f"use {out['best']!r}: by {out['by']} it leads {out['runner_up']!r} by "
                       f"{out['difference']:.4g} (more than 2 SE, {2 * out['se']:.3g})")
    else:
        simpler = min((by_law[out["best"]], by_law[out["runner_up"]]), key=lambda r: r.n_params).name
        out["use"] = simpler
        out["text"] = (f"the data cannot tell {out['best']!r} and {out['runner_up']!r} apart (by {out['by']}, "
                       f"difference {out['difference']:.4g} within 2 SE = {2 * out['se']:.3g}); "
                       f"use the simpler {simpler!r}")
    out["left_out"] = broken
    out["text"] += note
    return out


@dataclass
class Comparison:
    """The result of `compare_laws`."""

    holdout: str
    method: str
    n_train: int
    n_test: int
    N: float
    D: float
    results: list[LawResult]
    rule: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"holdout": self.holdout, "method": self.method, "n_train_rows": self.n_train,
                "n_heldout_rows": self.n_test, "loss_units": LOSS_UNITS, "target": {"N": self.N, "D": self.D},
                "laws": [r.to_dict() for r in self.results], "rule": self.rule}

    def __str__(self) -> str:
        lines = [f"law comparison: {self.method} fits on {self.n_train} rows, scored on {self.n_test} held-out "
                 f"rows ({self.holdout}); loss in {LOSS_UNITS}",
                 f"{'law':20s}{'MAPE %':>9s}{'R^2':>9s}{'Spearman':>10s}{'cov90':>8s}{'kappa':>8s}{'elpd_loo':>12s}"
                 f"{'SE':>8s}"]
        for r in self.results:
            o, lo = r.overall, r.loo or {}
            kappa = "-" if r.extrapolation_kappa is None else f"{r.extrapolation_kappa:.4f}"
            lines.append(f"{r.name:20s}{o['mape']:9.3f}{o['r2']:9.4f}{o['spearman']:10.4f}{o['coverage']:8.3f}"
                         f"{kappa:>8s}{lo.get('elpd', float('nan')):12.1f}{lo.get('se', float('nan')):8.1f}")
        lines.append(f"rule: {self.rule['text']}")
        return "\n".join(lines)


def compare_laws(df: pd.DataFrame, laws, holdout: str = "largest-N", *, method: str = "lbfgs",
                 draws: int = 500, chains: int = 4, seed: int = 0, N: float | None = None,
                 D: float | None = None, heldout: pd.DataFrame | None = None, noise=DEFAULT_NOISE) -> Comparison:
    """Fit every law of `laws` (names, or 'a,b,c'; each once: a law named twice is an
    `InputError`, as in the command) on the training split of `df` and score it
    on the held-out split (see the module docstring). With `heldout` (a run table), fit on all
    of `df` and score on `heldout` instead (`holdout` is then ignored; an `InputError` if any of
    its runs is in `df`). p* is computed at (N, D), default the table's largest N and D. `noise`: the
    noise model of the NUTS fits, or several (names, or 'a,b'; NUTS only) to compare them too."""
    if isinstance(laws, str):
        laws = [s.strip() for s in laws.split(",") if s.strip()]
    laws = list(laws)
    if not laws:
        raise InputError("laws: name at least one law")
    twice = sorted({n for n in laws if laws.count(n) > 1})
    if twice:
        raise InputError(f"laws: {', '.join(map(repr, twice))} named twice; give each law once")
    for name in laws:
        get_law(name)
    if method not in ("lbfgs", "nuts"):
        raise InputError(f"method must be 'lbfgs' or 'nuts', got {method!r}")
    noises = [s.strip() for s in noise.split(",") if s.strip()] if isinstance(noise, str) else list(noise)
    if not noises or len(set(noises)) < len(noises):
        raise InputError(f"noise: name each noise model once, got {noise!r}", arg="noise")
    for n in noises:
        check_noise(n)
    if len(noises) > 1 and method != "nuts":
        raise InputError("noise: the noise models are compared by NUTS fits only (method='nuts')", arg="noise")
    df = validate_runs(df)
    if heldout is not None:
        train, test, holdout = df, validate_runs(heldout), "a separate table"
        seen = test["run"].isin(set(train["run"])).to_numpy()
        if seen.any():
            runs = sorted(set(test["run"][seen]))
            raise InputError(f"heldout: {int(seen.sum())} of its {len(test)} rows ({len(runs)} runs, e.g. "
                             f"{runs[:3]}) are runs of the fitted table, so their scores would be in-sample; "
                             "hold out runs the fit does not see", arg="heldout")
    else:
        train, test = split(df, holdout, seed)
    N = float(df["N"].max()) if N is None else float(N)
    D = float(df["D"].max()) if D is None else float(D)
    results = [_score_law(name, train, test, method, draws, chains, seed, N, D, nz,
                          f"{name}/{nz}" if len(noises) > 1 else name) for name in laws for nz in noises]
    return Comparison(holdout=holdout, method=method, n_train=len(train), n_test=len(test), N=N, D=D,
                      results=results, rule=choose(results))


def _plot(cmp: Comparison, path) -> None:
    """Per family: held-out MAPE and within-(N, D) Spearman of every law (grouped bars)."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fams = list(cmp.results[0].per_family)
    x = np.arange(len(fams))
    width = 0.8 / len(cmp.results)
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.6 * len(fams) + 2), 6.5), sharex=True)
    for k, r in enumerate(cmp.results):
        for ax, key in zip(axes, ("mape", "spearman")):
            ax.bar(x + (k - (len(cmp.results) - 1) / 2) * width, [r.per_family[f][key] for f in fams], width,
                   label=r.name)
    axes[0].set_ylabel("held-out MAPE (%)")
    axes[1].set_ylabel("Spearman within (N, D)")
    axes[1].set_xticks(x, fams, rotation=45, ha="right")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"held out: {cmp.holdout} ({cmp.n_test} rows)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _markdown(cmp: Comparison) -> str:
    lines = ["# Law comparison", "", f"{cmp.method} fits on {cmp.n_train} rows; scored on {cmp.n_test} held-out "
             f"rows (held out: {cmp.holdout}). Loss in {LOSS_UNITS}.", "",
             "| law | params | MAPE % | R^2 | Spearman | cov90 | extrapolation kappa | elpd_loo (SE) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in cmp.results:
        o = r.overall
        loo = f"{r.loo['elpd']:.1f} ({r.loo['se']:.1f})" if r.loo else "-"
        kappa = "-" if r.extrapolation_kappa is None else f"{r.extrapolation_kappa:.4f}"
        lines.append(f"| {r.name} | {r.n_params} | {o['mape']:.3f} | {o['r2']:.4f} | {o['spearman']:.4f} | "
                     f"{o['coverage']:.3f} | {kappa} | {loo} |")
    lines += ["", f"**Rule:** {cmp.rule['text']}.", "", "![held-out scores per family](compare.png)", "",
              "## Per family", "", "| law | family | MAPE % | R^2 | Spearman | cov90 |", "|---|---|---|---|---|---|"]
    for r in cmp.results:
        for f, s in r.per_family.items():
            lines.append(f"| {r.name} | {f} | {s['mape']:.3f} | {s['r2']:.4f} | {s['spearman']:.4f} | "
                         f"{s['coverage']:.3f} |")
    lines += ["", f"## p* at N = {cmp.N:.3g}, D = {cmp.D:.3g} (normalized objective)", ""]
    for r in cmp.results:
        ps = ", ".join(f"{f}={v:.3f}" for f, v in r.p_star.items()) if r.p_star else "(no ratio term)"
        lines.append(f"- {r.name}: {ps}")
    return "\n".join(lines) + "\n"


def write_comparison(cmp: Comparison, directory) -> None:
    """compare.json, compare.md and compare.png in `directory` (created)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / "compare.json", json_safe(cmp.to_dict()))
    _plot(cmp, d / "compare.png")
    atomic_write_text(d / "compare.md", _markdown(cmp))
