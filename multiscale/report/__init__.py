"""Reports and study analysis: what a fit says, in figures and words, and how a study's
measured runs compare.

- `write_report` (`writer.py`): figures, report.md, predictions.csv, recommendation.json;
  `recommend_for_report` (`recommend.py`): p* and its predicted gains over the baselines;
  `prediction_table`, `fit_metrics`, `prediction_errors`, `errors_by_size` (`predictions.py`).
- The study analysis (`study.py`, `transfer.py`, `study_summary.py`): rows selected by size,
  measured mixtures of a run table, means over seeds, paired differences by seed with their
  intervals, the transfer plan that trains recommended mixtures, and a study's summary.
- `plots.py`: the figures, one function each (matplotlib imported lazily).

Losses are mean held-out cross-entropy in nats/token throughout.
"""

from multiscale.report.predictions import errors_by_size, fit_metrics, prediction_errors, prediction_table
from multiscale.report.recommend import LOSS_UNITS, recommend_for_report
from multiscale.report.study import (
    measured_mixtures,
    mixture_label,
    over_seeds,
    paired_differences,
    select_runs,
)
from multiscale.report.study_summary import format_study_summary, summarize_study
from multiscale.report.transfer import transfer_plan
from multiscale.report.writer import Report, write_report

__all__ = [
    "LOSS_UNITS", "Report", "write_report", "recommend_for_report", "prediction_table", "fit_metrics",
    "prediction_errors", "errors_by_size", "select_runs", "mixture_label", "measured_mixtures",
    "over_seeds", "paired_differences", "transfer_plan", "summarize_study", "format_study_summary",
]
