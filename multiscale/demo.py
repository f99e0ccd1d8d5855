"""The quickstart: `make demo` / `multiscale demo`: the whole loop on the embedded corpus
(Debian's translated manual pages, 5 families) on a laptop CPU.

Corpus -> DIR/corpus/; a small sweep -> DIR/sweep/runs.csv; the multilingual law fitted with NUTS
-> DIR/fit/; p* with 90% intervals and its predicted gain over uniform and temperature sampling
-> DIR/recommendation.json; the report -> DIR/report/. Re-running reuses the corpus, every
finished run (a half-finished one resumes) and the fit when its inputs are unchanged.

The sweep: cpu-100k and cpu-400k at 64k and 128k tokens (4 scales identify the N and D terms);
the paper's design (each family at 0.05 and 0.5, the rest even) at cpu-100k, Dirichlet mixtures
at cpu-400k, uniform everywhere; temperature (tau = 0.3) and UniMax runs at cpu-400k x 128k are
held out of the fit to check its predictions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from multiscale.errors import MultiscaleError
from multiscale.fileio import atomic_write_text, check_output_folder, read_json, write_json
from multiscale.runs import read_runs
from multiscale.sweep.plan import runs_of_configurations
from multiscale.sweep.store import SweepStore

DEMO_PLAN: dict[str, Any] = {
    "name": "demo",
    "presets": ["cpu-100k", "cpu-400k"],
    "tokens": [65536, 131072],
    "seeds": [0],
    "train": {"seq_len": 128, "batch": 16, "eval_batch": 64, "eval_tokens_per_language": 8192},
    "mixtures": [
        {"design": "baselines", "include": ["uniform"]},
        {"design": "vary_one", "grid": [0.05, 0.5], "presets": ["cpu-100k"]},
        {"design": "dirichlet", "count": 4, "alpha": 1.0, "seed": 0, "floor": 0.03,
         "presets": ["cpu-400k"], "tokens": [131072]},
        {"design": "baselines", "include": ["temperature", "unimax"], "taus": [0.3],
         "max_epochs": 4, "presets": ["cpu-400k"], "tokens": [131072], "heldout": True},
    ],
}

# A much smaller demo for tests and smoke checks: one preset at one tiny budget, a short NUTS run.
QUICK_PLAN: dict[str, Any] = {
    "name": "demo-quick",
    "presets": ["cpu-100k"],
    "tokens": [2048],
    "seeds": [0],
    "train": {"seq_len": 64, "batch": 8, "eval_batch": 64, "eval_tokens_per_language": 2048},
    "mixtures": [
        {"design": "baselines", "include": ["uniform"]},
        {"design": "vary_one", "grid": [0.5]},
        {"design": "baselines", "include": ["temperature"], "taus": [0.3], "heldout": True},
    ],
}


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What the demo builds, trains and fits (see the module docstring)."""

    plan: dict[str, Any]
    max_docs_per_language: int = 80   # corpus size: ~10 M byte tokens over 18 languages
    chains: int = 4
    draws: int = 500
    warmup: int = 500
    shared: tuple[str, ...] = ("alpha", "beta")  # exponents shared by all families (few scales)
    objective: str = "normalized"


FULL = DemoSettings(plan=DEMO_PLAN)
QUICK = DemoSettings(plan=QUICK_PLAN, max_docs_per_language=12, chains=2, draws=100, warmup=100)


@dataclasses.dataclass(frozen=True)
class DemoResult:
    out_dir: str
    corpus: str
    runs_csv: str
    fit_dir: str
    report: str
    recommendation: dict
    trained: int
    reused_runs: int
    reused_fit: bool
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_demo(out_dir: str | os.PathLike = "demo_out", *, quick: bool = False, progress: bool = True,
             settings: DemoSettings | None = None, log=print) -> DemoResult:
    """Runs (or resumes) the quickstart in `out_dir`; prints the recommendation and where outputs went."""
    from multiscale.report import write_report

    t0 = time.perf_counter()
    s = settings or (QUICK if quick else FULL)
    out = os.path.abspath(os.fspath(out_dir))
    check_output_folder(out)
    os.makedirs(out, exist_ok=True)
    corpus_dir = os.path.join(out, "corpus")
    log(f"\n== step 1/5: corpus -> {corpus_dir}")
    _corpus(corpus_dir, s.max_docs_per_language, progress, log)

    sweep_dir = os.path.join(out, "sweep")
    log(f"\n== step 2/5: sweep -> {sweep_dir}")
    res = _sweep(s.plan, out, sweep_dir, corpus_dir, progress, log)

    fit_dir = os.path.join(out, "fit")
    log(f"\n== step 3/5: Bayesian fit (NUTS) -> {fit_dir}")
    fit, reused_fit = _fit(sweep_dir, fit_dir, s, log)

    rec_path = os.path.join(out, "recommendation.json")
    log(f"\n== step 4/5: recommendation -> {rec_path}")
    runs_csv = SweepStore(sweep_dir).runs_csv
    N, D, rec = _recommend(fit, sweep_dir, runs_csv, rec_path, s.objective, log)

    report_dir = os.path.join(out, "report")
    log(f"\n== step 5/5: report -> {report_dir}")
    report = write_report(fit_dir, report_dir, runs=runs_csv, N=N, D=D, objective=s.objective)
    wall = time.perf_counter() - t0
    log("")
    log(f"demo finished in {wall / 60:.1f} min. Outputs:")
    log(f"  corpus        {corpus_dir}")
    log(f"  run table     {runs_csv}  ({res.planned} runs; loss in nats/token)")
    log(f"  fit           {fit_dir}")
    log(f"  ratios        {os.path.join(out, 'recommendation.json')}")
    log(f"  report        {report.markdown}")
    return DemoResult(out_dir=out, corpus=corpus_dir, runs_csv=runs_csv, fit_dir=fit_dir, report=report.markdown,
                      recommendation=rec, trained=len(res.completed), reused_runs=len(res.skipped),
                      reused_fit=reused_fit, wall_s=wall)


def _corpus(corpus_dir: str, max_docs: int, progress: bool, log):
    """The demo's corpus, reused when built with the same settings (its stamp file says so)."""
    from multiscale.data.corpus import Corpus, build_corpus

    stamp = os.path.join(corpus_dir, "demo_settings.json")
    want = {"source": "manpages", "max_docs_per_language": max_docs}
    if os.path.exists(stamp):
        try:
            if read_json(stamp, what="demo corpus stamp") == want:
                corpus = Corpus.open(corpus_dir)
                log(f"reusing the corpus in {corpus_dir}")
                return corpus
        except MultiscaleError:  # missing or damaged: rebuild it
            pass
        os.remove(stamp)
    corpus = build_corpus("manpages", corpus_dir, max_docs_per_language=max_docs, progress=progress, overwrite=True)
    write_json(stamp, want)
    return corpus


def _sweep(plan_dict: dict, out: str, sweep_dir: str, corpus_dir: str, progress: bool, log):
    """Trains the demo's plan (finished runs are skipped); a failed run stops the demo."""
    from multiscale.sweep import SweepPlan, run_sweep

    plan = SweepPlan.from_dict(plan_dict)
    atomic_write_text(os.path.join(out, "plan.yaml"), yaml.safe_dump(plan_dict, sort_keys=False))
    res = run_sweep(plan, sweep_dir, corpus=corpus_dir, progress=progress, log=log)
    if res.failed:
        raise RuntimeError(f"{len(res.failed)} demo run(s) failed; see {sweep_dir}/failures.jsonl "
                           f"(re-run the demo to retry them)")
    return res


def _recommend(fit, sweep_dir: str, runs_csv: str, path: str, objective: str, log):
    """p* at the largest (N, D) of the sweep, against the baselines on the swept corpus's token
    counts; written to `path` and logged. Returns (N, D, the recommendation without its draws)."""
    from multiscale.decisions import optimal_ratios
    from multiscale.report import recommend_for_report

    df_all = read_runs(runs_csv)
    N, D = float(df_all["N"].max()), float(df_all["D"].max())
    rec = recommend_for_report(optimal_ratios(fit, N, D, objective=objective,
                                              available_tokens=SweepStore(sweep_dir).corpus_tokens()))
    rec.pop("p_star_draws", None)  # the report plots them; keep the JSON small
    write_json(path, rec)
    for line in rec["text"]:
        log(line)
    return N, D, rec


def _fit(sweep_dir: str, fit_dir: str, s: DemoSettings, log):
    """Bayesian fit of the non-held-out runs; reused when the table and options are unchanged."""
    from multiscale.laws import fit_bayes, load_fit

    store = SweepStore(sweep_dir)
    df = read_runs(store.runs_csv)
    held = runs_of_configurations(df["run"].unique(), [r["run_id"] for r in store.planned_runs(heldout=True)])
    fit_df = df[~df["run"].isin(held)].reset_index(drop=True)
    options = {"law": "multilingual", "chains": s.chains, "draws": s.draws, "warmup": s.warmup,
               "shared": list(s.shared), "seed": 0}
    key = hashlib.sha256((fit_df.to_csv(index=False) + json.dumps(options, sort_keys=True)).encode()).hexdigest()
    stamp = os.path.join(fit_dir, "demo_inputs.sha256")
    if os.path.exists(stamp) and Path(stamp).read_text().strip() == key:
        try:
            fit = load_fit(fit_dir)
            log(f"reusing the fit in {fit_dir} (same {fit_df['run'].nunique()} runs, same options)")
            return fit, True
        except MultiscaleError:  # missing or damaged: fit again
            pass
    log(f"fitting {fit_df['run'].nunique()} runs x {fit_df['family'].nunique()} families "
        f"({len(held)} held out); {s.chains} chains x {s.draws} draws")
    with warnings.catch_warnings():  # the fit's summary, logged after it, repeats its warnings
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = fit_bayes(fit_df, law="multilingual", chains=s.chains, draws=s.draws, warmup=s.warmup,
                        seed=0, shared=s.shared)
    os.makedirs(fit_dir, exist_ok=True)
    fit.save(fit_dir)
    atomic_write_text(os.path.join(fit_dir, "runs.csv"), fit_df.to_csv(index=False))  # the rows this fit saw
    atomic_write_text(stamp, key)
    log(str(fit))
    return fit, False
