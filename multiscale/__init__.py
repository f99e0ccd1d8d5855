"""multiscale: how often should each language be sampled?

Trains small decoders on family-weighted multilingual mixtures, fits the multilingual
scaling law of He et al. (2024, arXiv 2410.12883) to the per-family held-out losses, and
recommends sampling ratios for a large model with Bayesian credible intervals.

The public API is exported lazily, so `import multiscale` stays cheap: fitting a run table
never imports TensorFlow or builds a model.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors and the mixture value (docs/design.md: "Command line and errors", "Mixtures and baselines")
    "MultiscaleError": "multiscale.errors",
    "InputError": "multiscale.errors",
    "MissingFileError": "multiscale.errors",
    "DamagedFileError": "multiscale.errors",
    "Mixture": "multiscale.mixture",
    "MixtureError": "multiscale.mixture",
    "parse_pairs": "multiscale.mixture",
    # families, corpus, vocabulary, mixture pipeline, eval set ("Data and training")
    "Language": "multiscale.families",
    "Family": "multiscale.families",
    "Grouping": "multiscale.families",
    "PAPER_GROUPING": "multiscale.families",
    "MANPAGES_GROUPING": "multiscale.families",
    "load_grouping": "multiscale.families",
    "get_vocabulary": "multiscale.data.vocab",
    "build_corpus": "multiscale.data.corpus",
    "Corpus": "multiscale.data.corpus",
    "MixtureSpec": "multiscale.data.sampling",
    "make_train_iterator": "multiscale.data.sampling",
    "repetition_report": "multiscale.data.sampling",
    "load_eval_set": "multiscale.data.evalset",
    # models and training
    "ModelConfig": "multiscale.models",
    "PRESETS": "multiscale.models",
    "get_preset": "multiscale.models",
    "count_params": "multiscale.models",
    "flops_per_token": "multiscale.models",
    "TrainConfig": "multiscale.train",
    "run_training": "multiscale.train",
    "rows_frame": "multiscale.train",
    "NonFiniteLossError": "multiscale.train",
    # run table, built-in run tables, law engine ("The run table", "Laws: forms, fits, optimal ratios")
    "read_runs": "multiscale.runs",
    "write_runs": "multiscale.runs",
    "validate_runs": "multiscale.runs",
    "RunTableError": "multiscale.runs",
    "load_regmix": "multiscale.datasets",
    "load_ladder": "multiscale.datasets",
    "LADDERS": "multiscale.datasets",
    "fit_point": "multiscale.laws",
    "fit_bayes": "multiscale.laws",
    "load_fit": "multiscale.laws",
    "predict": "multiscale.laws",
    "optimal_ratios": "multiscale.decisions",
    "independence_test": "multiscale.laws",
    # sweeps, reports, demo ("Sweeps: plan, runner, store", "Reports and study analysis")
    "SweepPlan": "multiscale.sweep",
    "PlannedRun": "multiscale.sweep",
    "shard_runs": "multiscale.sweep",
    "SweepStore": "multiscale.sweep",
    "run_sweep": "multiscale.sweep",
    "consolidate": "multiscale.sweep",
    "read_fragments": "multiscale.sweep",
    "write_report": "multiscale.report",
    "run_autopilot": "multiscale.autopilot",
    "run_demo": "multiscale.demo",
}
__all__ = sorted(_EXPORTS)


# subpackages reachable as attributes after a bare `import multiscale` (multiscale.datasets.load_regmix)
_SUBPACKAGES = ("cli", "data", "datasets", "laws", "models", "report", "sweep", "train")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"multiscale.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'multiscale' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
