"""Reports: what a fit says, in figures and words.

- `write_report` (`writer.py`): figures, report.md, predictions.csv, recommendation.json;
  `recommend_for_report` (`recommend.py`): p* and its predicted gains over the baselines;
  `prediction_table`, `fit_metrics` (`predictions.py`).
- `plots.py`: the figures, one function each (matplotlib imported lazily).

Losses are mean held-out cross-entropy in nats/token throughout.
"""

from multiscale.report.predictions import fit_metrics, prediction_table
from multiscale.report.recommend import LOSS_UNITS, recommend_for_report
from multiscale.report.writer import Report, write_report

__all__ = [
    "LOSS_UNITS", "Report", "write_report", "recommend_for_report", "prediction_table", "fit_metrics",
]
