"""Glue for the CPU-scale study (run_study.sh): table selection, the transfer plans, the summary.

Everything that trains or fits goes through the `multiscale` commands in run_study.sh; this file
only selects rows, turns a recommendation into a sweep plan, and gathers the headline numbers
(loss in nats/token throughout) into one JSON file that report.md and tests/test_cpu_study.py read.

    python study_tools.py select RUNS.csv --out FIT.csv --max-N 500000
    python study_tools.py transfer-plan pstar-small3=REC.json [pstar-at1.6m=REC2.json] \
        --template large.yaml --seeds 0,1 --out PLAN.yaml
    python study_tools.py summarize --runs RUNS.csv --fit-small DIR --fit-small-point DIR \
        --fit-large DIR --rec-small REC.json [--rec-large REC.json] --fit-max-N 500000 --out summary.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import numpy as np
import pandas as pd

# run ids are "<preset>-D<tokens>-<mixture label>-s<seed>-<8 hex digits>" (multiscale.plan)
RUN_ID = re.compile(r"^(?P<preset>cpu-[^-]+)-D(?P<tokens>[^-]+)-(?P<label>.+)-s(?P<seed>\d+)-[0-9a-f]{8}$")


def mixture_label(run: str) -> str:
    """'cpu-800k-D200k-temp0.3-s0-4d5a9b65' -> 'temp0.3'."""
    m = RUN_ID.match(run)
    if not m:
        raise ValueError(f"run id {run!r} does not look like a sweep run id (<preset>-D<tokens>-<label>-s<seed>-<hash>)")
    return m.group("label")


def select(runs: pd.DataFrame, *, max_N: float | None = None, min_N: float | None = None,
           exclude_labels: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows with min_N <= N < max_N whose runs are not excluded. An excluded item is a mixture
    label (every seed: 'pstar-small3') or a label and one seed ('temp0.3-s1')."""
    keep = np.ones(len(runs), bool)
    if max_N is not None:
        keep &= runs["N"].to_numpy(float) < max_N
    if min_N is not None:
        keep &= runs["N"].to_numpy(float) >= min_N
    if exclude_labels:
        def excluded(run: str) -> bool:
            label = mixture_label(run)
            return label in exclude_labels or f"{label}-s{RUN_ID.match(run).group('seed')}" in exclude_labels
        keep &= ~runs["run"].map(excluded).to_numpy(bool)
    out = runs[keep]
    if out.empty:
        raise ValueError(f"no rows with {min_N} <= N < {max_N} outside labels {list(exclude_labels)}")
    return out


def transfer_plan(recs: dict[str, dict], template: dict, seeds: list[int] | None = None) -> dict:
    """A copy of `template` (a sweep plan) whose mixtures are the recommended ones, one per
    {mixture name: recommendation} item (with `seeds` in place of the template's, when given)."""
    if not recs:
        raise ValueError("transfer-plan needs at least one NAME=REC.json")
    plan = {k: v for k, v in template.items() if k not in ("mixtures", "name")}
    plan["name"] = "cpu-study-" + "+".join(recs) + (f"-seeds{'-'.join(map(str, seeds))}" if seeds else "")
    if seeds:
        plan["seeds"] = list(seeds)
    plan["mixtures"] = []
    for name, rec in recs.items():
        if "ratios" not in rec:
            raise ValueError(f"recommendation for {name!r} has no 'ratios' (is it `multiscale recommend --json` output?)")
        ratios = {f: round(float(p), 6) for f, p in rec["ratios"].items()}
        plan["mixtures"].append({"name": name, "ratios": ratios, "normalize": True})
    return plan


def _interval(x) -> dict[str, float]:
    x = np.asarray(x, float)
    return {"median": float(np.median(x)), "q05": float(np.quantile(x, 0.05)),
            "q95": float(np.quantile(x, 0.95))}


def measured_mixtures(runs: pd.DataFrame, c_by_family: dict[str, float] | None) -> dict[str, dict]:
    """Per run of one (N, D), keyed by mixture label (plus -s<seed> for seeds other than 0):
    mixture, raw mean loss and normalized objective.

    raw: equal-weight mean of the families' held-out losses (nats/token).
    normalized: equal-weight mean of L_i / c_i, c_i the monolingual loss L_i(N, D, p=1)
      estimated by the ratio-law fit at this size (He et al.'s normalized objective, with
      the measured losses in place of the law's predictions); None without `c_by_family`.
    """
    out = {}
    for run, sub in runs.groupby("run", sort=False):
        fams = sub["family"].tolist()
        loss = sub["loss"].to_numpy(float)
        seed = int(RUN_ID.match(run).group("seed"))
        norm = None
        if c_by_family is not None:
            norm = float(np.mean([L / c_by_family[f] for f, L in zip(fams, loss)]))
        out[mixture_label(run) + (f"-s{seed}" if seed else "")] = {
            "run": run, "seed": seed, "ratios": dict(zip(fams, sub["p"].astype(float).round(6).tolist())),
            "losses": dict(zip(fams, loss.tolist())),
            "mean_loss": float(loss.mean()), "normalized_objective": norm,
        }
    return out


def over_seeds(measured: dict[str, dict]) -> dict[str, dict]:
    """The runs of `measured_mixtures` grouped by mixture label over seeds: the seeds, each
    seed's mean loss, and their mean and sample SD (None with one seed), for the raw mean loss
    and the normalized objective."""
    groups: dict[str, list[dict]] = {}
    for key, m in measured.items():
        groups.setdefault(mixture_label(m["run"]), []).append(m)
    out = {}
    for label, ms in groups.items():
        ms = sorted(ms, key=lambda m: m["seed"])
        entry = {"seeds": [m["seed"] for m in ms]}
        for name in ("mean_loss", "normalized_objective"):
            vals = [m[name] for m in ms]
            if any(v is None for v in vals):
                continue
            entry[name] = vals
            entry[f"{name}_mean"] = float(np.mean(vals))
            entry[f"{name}_sd"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        out[label] = entry
    return out


def paired_differences(measured: dict[str, dict], reference: str = "uniform") -> dict[str, dict]:
    """Each mixture minus `reference`, seed by seed (runs with the same seed share the model's
    initialisation), in mean loss and normalized objective: per-seed differences, their mean, and
    with two or more seeds their sample SD and standard error."""
    by_label: dict[str, dict[int, dict]] = {}
    for m in measured.values():
        by_label.setdefault(mixture_label(m["run"]), {})[m["seed"]] = m
    if reference not in by_label:
        raise ValueError(f"paired_differences: no {reference!r} run to compare with")
    ref = by_label[reference]
    out = {}
    for label, seeds in by_label.items():
        common = sorted(set(seeds) & set(ref))
        if label == reference or not common:
            continue
        entry: dict = {"seeds": common}
        for name in ("mean_loss", "normalized_objective"):
            if any(seeds[s][name] is None or ref[s][name] is None for s in common):
                continue
            d = np.array([seeds[s][name] - ref[s][name] for s in common])
            entry[name] = {"diffs": d.tolist(), "mean": float(d.mean()),
                           "sd": float(d.std(ddof=1)) if len(d) > 1 else None,
                           "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None}
        out[label] = entry
    return out


def prediction_errors(fit, rows: pd.DataFrame) -> dict:
    """Signed error of the fit's median prediction on `rows`: mean of (pred - obs) / obs overall
    and per family (the level shift), and per family the Spearman correlation of prediction with
    observation (whether the ordering of mixtures is right even when the level is off)."""
    from scipy.stats import spearmanr

    from multiscale.laws.validation import predictive_draws

    pred = np.median(predictive_draws(fit, rows, noise=False), axis=0)
    obs = rows["loss"].to_numpy(float)
    rel = (pred - obs) / obs
    fams = rows["family"].to_numpy()
    out = {"mean_rel_error": float(rel.mean()), "per_family": {}}
    for f in dict.fromkeys(fams):
        m = fams == f
        rho = float(spearmanr(pred[m], obs[m]).statistic) if m.sum() > 2 else None
        out["per_family"][f] = {"mean_rel_error": float(rel[m].mean()), "spearman": rho, "n": int(m.sum())}
    return out


def summarize(args) -> dict:
    from multiscale.laws import independence_test, load_fit, score
    from multiscale.runs import read_runs

    runs = read_runs(args.runs)
    n_large = float(runs["N"].max())
    fit_max = float(args.fit_max_N) if args.fit_max_N else n_large
    small, held, large = runs[runs["N"] < fit_max], runs[runs["N"] >= fit_max], runs[runs["N"] == n_large]
    fit_small = load_fit(args.fit_small)
    fit_point = load_fit(args.fit_small_point)
    fit_large = load_fit(args.fit_large)
    out: dict = {"loss_units": "nats/token", "n_runs": int(runs["run"].nunique()),
                 "n_rows": int(len(runs)), "N_large": n_large,
                 "D_large": float(large["D"].iloc[0])}
    out["sizes"] = {str(int(n)): sorted(int(d) for d in g["D"].unique())
                    for n, g in runs.groupby("N")}

    # claim 1: independence
    ind = independence_test(runs).to_dict()
    out["independence"] = ind

    # claim 2: fit on the small models, score the largest
    out["fit_small"] = {"method": fit_small.method, "summary": fit_small.summary(),
                        "diagnostics": getattr(fit_small, "diagnostics", {}),
                        "options": getattr(fit_small, "options", {}),
                        "warnings": list(getattr(fit_small, "warnings", []))}
    out["fit_small_point"] = {"params": fit_point.params()}
    out["fit_max_N"] = fit_max
    out["scores"] = {
        "nuts_heldout": score(fit_small, held).to_dict(),
        "nuts_fitted": score(fit_small, small).to_dict(),
        "point_heldout": score(fit_point, held).to_dict(),
        "point_fitted": score(fit_point, small).to_dict(),
    }
    for n, sub in held.groupby("N"):
        out["scores"][f"nuts_heldout_N{int(n)}"] = score(fit_small, sub).to_dict()
        out["scores"][f"point_heldout_N{int(n)}"] = score(fit_point, sub).to_dict()
    for n, sub in small.groupby("N"):
        out["scores"][f"nuts_fitted_N{int(n)}"] = score(fit_small, sub).to_dict()
    out["errors"] = {f"N{int(n)}": prediction_errors(fit_small, sub) for n, sub in runs.groupby("N")}

    # claim 3: transfer, measured at the largest size
    c = {f: float(np.median(fit_large.draws["c"][:, j])) for j, f in enumerate(fit_large.families)}
    out["fit_large"] = {"method": fit_large.method, "summary": fit_large.summary(),
                        "n_runs": int(next(iter(fit_large.n_runs.values()))),
                        "diagnostics": getattr(fit_large, "diagnostics", {}),
                        "options": getattr(fit_large, "options", {})}
    out["measured_large"] = measured_mixtures(large, c)
    out["measured_large_over_seeds"] = over_seeds(out["measured_large"])
    out["paired_vs_uniform"] = paired_differences(out["measured_large"], "uniform")
    if "pstar-small3" in out["measured_large_over_seeds"]:
        out["paired_vs_pstar_small3"] = paired_differences(out["measured_large"], "pstar-small3")
    # the largest size held out below the transfer size (cpu-800k): raw mean loss only
    sizes = sorted(held["N"].unique())
    if len(sizes) > 1:
        mid = held[held["N"] == sizes[-2]]
        out["N_mid"] = float(sizes[-2])
        out["measured_mid"] = measured_mixtures(mid, None)
        out["measured_mid_over_seeds"] = over_seeds(out["measured_mid"])
    for key, path in (("rec_small", args.rec_small), ("rec_large", args.rec_large)):
        if path:
            with open(path) as fh:
                rec = json.load(fh)
            out[key] = {"ratios": rec["ratios"],
                        "p_star": {f: v["p_star"] for f, v in rec["families"].items()},
                        "objective_at_p_star": rec["objective_at_p_star"],
                        "baselines": rec.get("baselines", {})}
    if "rec_small" in out and "rec_large" in out:
        a, b = out["rec_small"]["ratios"], out["rec_large"]["ratios"]
        out["pstar_l1_small_vs_large"] = float(sum(abs(a[f] - b[f]) for f in a))
    return out


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.generic,)):
        return o.item()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def _print_summary(s: dict) -> None:
    print(f"# {s['n_runs']} runs, {s['n_rows']} rows; sizes (N: D values) {s['sizes']}")
    for name in [k for k in s["scores"] if k.startswith(("nuts", "point_heldout"))]:
        sc = s["scores"][name]
        print(f"\n{name}: overall R2 {sc['overall']['r2']:.3f} MAPE {sc['overall']['mape']:.2f}% "
              f"cov90 {sc['overall']['coverage']:.2f} (n={sc['overall']['n']})")
        for f, v in sc["per_family"].items():
            print(f"  {f:14s} R2 {v['r2']:7.3f}  MAPE {v['mape']:6.2f}%  cov90 {v['coverage']:.2f}  n={v['n']}")
    print("\nheld-out level shift (mean (pred - obs) / obs) and Spearman per family:")
    for key, e in s["errors"].items():
        print(f"  {key:10s} {100 * e['mean_rel_error']:+.2f}%  " + " ".join(
            f"{f}={v['spearman']:.2f}" for f, v in e["per_family"].items() if v["spearman"] is not None))
    print("\nmeasured at the largest size (mean loss nats/token, normalized objective):")
    for label, m in sorted(s["measured_large"].items(), key=lambda kv: kv[1]["normalized_objective"]):
        print(f"  {label:22s} {m['mean_loss']:.4f}  {m['normalized_objective']:.5f}  "
              + " ".join(f"{f}={p:.3f}" for f, p in m["ratios"].items()))
    print("\nover seeds (mean loss: mean, SD; normalized: mean):")
    for label, g in sorted(s["measured_large_over_seeds"].items(), key=lambda kv: kv[1]["mean_loss_mean"]):
        sd = g["mean_loss_sd"]
        print(f"  {label:22s} seeds {g['seeds']}  {g['mean_loss_mean']:.4f}  "
              f"{'-' if sd is None else f'{sd:.4f}'}  {g['normalized_objective_mean']:.5f}")
    print("\npaired by seed, minus uniform (mean loss: mean diff, SE, per-seed diffs):")
    for label, e in sorted(s["paired_vs_uniform"].items(), key=lambda kv: kv[1]["mean_loss"]["mean"]):
        ml = e["mean_loss"]
        se = "-" if ml["se"] is None else f"{ml['se']:.4f}"
        print(f"  {label:22s} seeds {e['seeds']}  {ml['mean']:+.4f}  {se}  "
              + " ".join(f"{d:+.4f}" for d in ml["diffs"]))
    for key in ("rec_small", "rec_large"):
        if key in s:
            print(f"\n{key}: " + ", ".join(f"{f}={p:.3f}" for f, p in s[key]["ratios"].items()))
    if "pstar_l1_small_vs_large" in s:
        print(f"L1(p*_small, p*_large) = {s['pstar_l1_small_vs_large']:.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("select")
    p.add_argument("runs")
    p.add_argument("--out", required=True)
    p.add_argument("--max-N", type=float)
    p.add_argument("--min-N", type=float)
    p.add_argument("--exclude", default="", help="mixture labels (LABEL or LABEL-sSEED) to leave out, comma-separated")
    p = sub.add_parser("transfer-plan")
    p.add_argument("recs", nargs="+", metavar="NAME=REC.json", help="mixture name and its recommendation")
    p.add_argument("--template", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default=None, help="seeds of the planned runs, comma-separated (default: the template's)")
    p = sub.add_parser("summarize")
    for flag in ("--runs", "--fit-small", "--fit-small-point", "--fit-large", "--rec-small", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--rec-large")
    p.add_argument("--fit-max-N", type=float, help="rows with N below this were fitted (default: all but the largest N)")
    args = ap.parse_args(argv)
    if args.cmd == "select":
        from multiscale.runs import read_runs, write_runs

        exclude = tuple(x for x in args.exclude.split(",") if x)
        df = select(read_runs(args.runs), max_N=args.max_N, min_N=args.min_N, exclude_labels=exclude)
        write_runs(df, args.out)
        print(f"{args.out}: {df['run'].nunique()} runs, {len(df)} rows")
    elif args.cmd == "transfer-plan":
        import yaml

        recs = {}
        for item in args.recs:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise SystemExit(f"transfer-plan: {item!r} is not NAME=REC.json")
            with open(path) as fh:
                recs[name] = json.load(fh)
        with open(args.template) as fh:
            template = yaml.safe_load(fh)
        seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else None
        plan = transfer_plan(recs, template, seeds)
        with open(args.out, "w") as fh:
            yaml.safe_dump(plan, fh, sort_keys=False)
        for m in plan["mixtures"]:
            print(f"{args.out}: {m['name']} = {m['ratios']}")
    else:
        s = summarize(args)
        with open(args.out, "w") as fh:
            json.dump(s, fh, indent=1, default=_json_default)
        _print_summary(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
