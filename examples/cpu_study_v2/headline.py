"""The second CPU study's headline numbers, recomputed from the committed files of
docs/cpu_study_v2 (runs.csv, fit_a/, rec_static.json, rec_active.json, next.json,
rec_active_full.json, next_full.json); prints ONE JSON object, the content of
docs/cpu_study_v2/summary.json.

  python examples/cpu_study_v2/headline.py [--docs docs/cpu_study_v2] [--out summary.json]

- `table`: per model, the token budgets trained, and the models whose budgets span >= 16x;
- `repetition`: the most epochs any run took of the capped family (japonic), D p / U;
- `beta_width90`: the 90% interval width of beta per family in stage A's NUTS fit;
- `designs`: the seed sweep's p* widths (stage A's fit, as `multiscale next` saw them) and per
  design (static: stage B; active: stage C, k = 8; active_full: stage E, all of F) the runs and
  FLOPs it spent (6 N D, nominal D, as `multiscale next` counts) and the 90% interval width of
  p* per family at the target;
- `final`: stages D and F, cpu-1.6m at 8e5 tokens: per mixture and seed the held-out loss
  averaged over the five families (nats/token, equal weights); per mixture the difference to
  uniform paired by seed, and static's to each active design (mean, min/max over seeds and the
  90% t-interval of the mean). Absent until stage D's runs are in runs.csv.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

CAPPED = "japonic"
TARGET_MODEL = "cpu-1.6m"
RUN_NAME = re.compile(r"^cpu-1\.6m-D\d+k-(?P<mix>.+)-s(?P<seed>\d+)-[0-9a-f]{8}$")


def table_facts(runs: pd.DataFrame) -> dict:
    budgets = {m: sorted(float(d) for d in g["D"].unique()) for m, g in runs.groupby("model")}
    wide = sorted(m for m, b in budgets.items() if len(b) >= 3 and b[-1] / b[0] >= 16)
    cap = runs[runs["family"] == CAPPED]
    epochs = cap["D"] * cap["p"] / cap["unique_tokens"]
    worst = cap.loc[epochs.idxmax()]
    return {"runs": int(runs["run"].nunique()), "budgets": budgets, "models_spanning_16x": wide,
            "repetition": {"family": CAPPED, "unique_tokens": float(worst["unique_tokens"]),
                           "max_epochs": round(float(epochs.max()), 2), "run": worst["run"],
                           "runs_past_2_epochs": int((epochs > 2).sum())}}


def beta_widths(fit_dir: Path) -> dict[str, float]:
    from multiscale.laws.fits import load_fit

    fit = load_fit(fit_dir)
    lo, hi = np.quantile(fit.draws["beta"], [0.05, 0.95], axis=0)
    return {f: round(float(w), 4) for f, w in zip(fit.families, hi - lo, strict=True)}


def _study_tools():
    """examples/cpu_study_v2/study_v2.py as a module (loaded from its file: nothing is added to
    sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_v2", Path(__file__).resolve().parent / "study_v2.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# design -> (its recommendation, the `multiscale next` output that chose its runs or None)
DESIGNS = {"static": ("rec_static.json", None), "active": ("rec_active.json", "next.json"),
           "active_full": ("rec_active_full.json", "next_full.json")}


def design_facts(docs: Path) -> dict:
    here = Path(__file__).resolve().parent
    seed = json.loads((docs / "next.json").read_text())["width_now"]  # fit A's, before either design
    out = {"seed_sweep": {"flops_6ND": 0.0, "p_star_width90": {f: round(w, 4) for f, w in seed.items()},
                          "mean_width90": round(float(np.mean(list(seed.values()))), 4)}}
    for name, (rec_file, next_file) in DESIGNS.items():
        if not (docs / rec_file).exists():
            continue
        if next_file is None:
            planned = _study_tools().plan_compute(str(here / "stage_b.yaml"), None)
            flops, runs = planned["flops_6ND"], planned["runs"]
        else:
            chosen = json.loads((docs / next_file).read_text())
            flops, runs = chosen["flops"], len(chosen["chosen"])
        rec = json.loads((docs / rec_file).read_text())
        widths = {f: round(v["p_star"]["q95"] - v["p_star"]["q05"], 4) for f, v in rec["families"].items()}
        out[name] = {"flops_6ND": float(flops), "runs": int(runs),
                     "p_star": {f: round(v, 4) for f, v in rec["ratios"].items()},
                     "p_star_width90": widths, "mean_width90": round(float(np.mean(list(widths.values()))), 4),
                     "expected_regret": rec["decisions"]["robust p*"]["expected_regret"]}
    return out


def paired(diff: pd.Series) -> dict:
    """Mean, range and 90% t-interval of differences paired by seed."""
    from scipy import stats

    d = diff.dropna().to_numpy(float)
    out = {"mean": round(float(d.mean()), 5), "min": round(float(d.min()), 5), "max": round(float(d.max()), 5),
           "seeds": int(d.size)}
    if d.size >= 2:
        half = float(stats.t.ppf(0.95, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
        out["t90"] = [round(float(d.mean()) - half, 5), round(float(d.mean()) + half, 5)]
    return out


def final_losses(runs: pd.DataFrame) -> dict | None:
    big = runs[runs["model"] == TARGET_MODEL].copy()
    if big.empty:
        return None
    parts = big["run"].str.extract(RUN_NAME)
    big["mix"], big["seed_"] = parts["mix"], parts["seed"].astype(int)
    mean = big.groupby(["mix", "seed_"])["loss"].mean().unstack("seed_")  # mixture x seed
    out = {"loss_by_seed": {m: {int(s): round(float(v), 5) for s, v in row.dropna().items()}
                            for m, row in mean.iterrows()}}
    if "uniform" in mean.index:
        diff = mean.sub(mean.loc["uniform"], axis=1)
        out["minus_uniform"] = {m: paired(r) for m, r in diff.iterrows() if m != "uniform"}
    designs = [m for m in ("active", "active_full") if m in mean.index]
    if "static" in mean.index and designs:
        out["static_minus"] = {m: paired(mean.loc["static"] - mean.loc[m]) for m in designs}
    return out


def summary(docs: Path) -> dict:
    runs = pd.read_csv(docs / "runs.csv")
    return {**table_facts(runs), "beta_width90": beta_widths(docs / "fit_a"), "designs": design_facts(docs),
            "final": final_losses(runs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", default="docs/cpu_study_v2")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    text = json.dumps(summary(Path(args.docs)), default=str)
    if args.out:
        Path(args.out).write_text(json.dumps(json.loads(text), indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
