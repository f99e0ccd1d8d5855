"""Training: one run from a mixture to per-family held-out losses and run-table rows.

`run_training(TrainConfig(...))` trains (or resumes) a run and writes metrics.jsonl,
TensorBoard events, summary.json and rows.csv into its folder.

Exported lazily, as `multiscale` is: `multiscale.train.config` (what the command line reads
to build `multiscale train`'s flags) imports no jax.
"""

from __future__ import annotations

import importlib

_EXPORTS: dict[str, str] = {
    "TrainConfig": "multiscale.train.config",
    "TrainConfigError": "multiscale.train.config",
    "RunData": "multiscale.train.data_source",
    "UnknownFamilyError": "multiscale.mixture",
    "EvalResult": "multiscale.train.evaluation",
    "LossStats": "multiscale.train.evaluation",
    "Hook": "multiscale.train.hooks",
    "EvalHook": "multiscale.train.hooks",
    "StepInfo": "multiscale.train.hooks",
    "read_metrics": "multiscale.train.hooks",
    "NonFiniteLossError": "multiscale.train.loop",
    "ResumeMismatchError": "multiscale.train.loop",
    "rows_frame": "multiscale.train.loop",
    "run_training": "multiscale.train.loop",
    "validate": "multiscale.train.loop",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'multiscale.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
