"""multiscale from Python, as in a notebook: corpus -> sweep -> Bayesian fit -> ratios -> report.

    python examples/quickstart.py [--out quickstart_out] [--tiny]

Each cell below is one step of the loop; every value it passes on is a plain object you can
inspect (a Corpus, a list of planned runs, a pandas run table, a fit, a recommendation). Re-running
reuses what is finished (the corpus, completed runs). `--tiny` trains six very short runs (a smoke
test, well under a minute on 2 CPU cores; its numbers are rough and its sampler diagnostics warn).
"""

from __future__ import annotations

import argparse
import os

import multiscale
from multiscale.decisions import optimal_ratios
from multiscale.laws import fit_bayes
from multiscale.runs import read_runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="quickstart_out")
    ap.add_argument("--tiny", action="store_true", help="a few very short runs (smoke test)")
    args = ap.parse_args(argv)
    out = args.out

    # %% 1. A corpus: Debian's translated manual pages, 18 languages in 5 families.
    corpus_dir = os.path.join(out, "corpus")
    if os.path.exists(os.path.join(corpus_dir, "manifest.json")):
        corpus = multiscale.Corpus.open(corpus_dir)
    else:
        corpus = multiscale.build_corpus("manpages", corpus_dir, max_docs_per_language=12 if args.tiny else 40)
    families = corpus.grouping.family_names
    print("families:", families)
    print("unique training tokens per family:", {f: corpus.train_tokens(f) for f in families})

    # %% 2. A sweep plan: presets x token budgets x mixtures (the paper's design + a baseline).
    plan = multiscale.SweepPlan.from_dict({
        "name": "quickstart",
        "presets": ["cpu-100k"] if args.tiny else ["cpu-100k", "cpu-200k"],
        "tokens": [2048] if args.tiny else [32768, 65536],
        "train": {"seq_len": 64, "batch": 8, "eval_batch": 64, "eval_tokens_per_language": 2048 if args.tiny else 8192},
        "mixtures": [
            {"design": "baselines", "include": ["uniform"]},
            {"design": "vary_one", "grid": [0.5] if args.tiny else [0.05, 0.5]},
        ],
    })
    runs = plan.expand(families)
    print(f"{len(runs)} planned runs, e.g. {runs[1].run_id}: {runs[1].ratio_dict}")

    # %% 3. Train them (skips finished runs); the rows land in one run table.
    result = multiscale.run_sweep(plan, os.path.join(out, "sweep"), corpus=corpus_dir, progress=not args.tiny)
    table = read_runs(result.runs_csv)   # one row per (run, family); loss in nats/token
    print(table[["run", "family", "N", "D", "p", "loss"]].head(10).to_string(index=False))

    # %% 4. Fit the multilingual law L_i(N, D, p_i) = (E_i + A_i/N^alpha_i + B_i/D^beta_i) * p_i^-gamma_i.
    fit = fit_bayes(table, law="multilingual", shared=("alpha", "beta"),
                    chains=2, draws=100 if args.tiny else 500, warmup=100 if args.tiny else 500)
    print(fit)
    fit_dir = os.path.join(out, "fit")
    fit.save(fit_dir)
    table.to_csv(os.path.join(fit_dir, "runs.csv"), index=False)

    # %% 5. Recommend family ratios for a larger model (median and 90% interval of p*).
    rec = optimal_ratios(fit, N=float(table["N"].max()), D=float(table["D"].max()))
    print(rec)

    # %% 6. The report: plots and report.md.
    report = multiscale.write_report(fit_dir, os.path.join(out, "report"), runs=result.runs_csv)
    print("report:", report.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
