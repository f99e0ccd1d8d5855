"""Training: one run from a mixture to per-family held-out losses and run-table rows.

`run_training(TrainConfig(...))` trains (or resumes) a run and writes metrics.jsonl,
TensorBoard events, summary.json and rows.csv into its folder.
"""

from multiscale.train.config import TrainConfig, TrainConfigError
from multiscale.train.data_source import RunData, UnknownFamilyError
from multiscale.train.evaluation import EvalResult, LossStats
from multiscale.train.hooks import EvalHook, Hook, StepInfo, read_metrics
from multiscale.train.loop import NonFiniteLossError, ResumeMismatchError, rows_frame, run_training, validate

__all__ = ["TrainConfig", "TrainConfigError", "RunData", "UnknownFamilyError",
           "EvalResult", "LossStats", "Hook", "EvalHook", "StepInfo", "read_metrics",
           "NonFiniteLossError", "ResumeMismatchError", "rows_frame", "run_training", "validate"]
