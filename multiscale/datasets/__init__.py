"""Public run tables shipped inside the package, loaded as run tables (docs/design.md, "The run
table"). They need nothing outside the installed package.

- `load_regmix(split)`: the RegMix proxy runs (Liu et al. 2024, arXiv 2407.01492; MIT licence,
  files from sail-sg/regmix at commit b004d3a): 512 "train" and 256 "test" runs of 1M-parameter
  models on mixtures of 17 Pile domains, 13 of them evaluated.
- `load_ladder(name)`, `LADDERS`: four public scaling ladders of final losses across N and D,
  each on one corpus (p = 1): Gadre et al. 2024, Porian et al. 2024, Gemstone (McLeish et al.
  2025) and the OLMo 2 ladder (Bhagia et al. 2024); sources and licences in
  ``multiscale/datasets/ladders/README.md``.
"""

from __future__ import annotations

import pandas as pd

from multiscale.datasets.ladders import LADDERS, ladder_folder, load_ladder
from multiscale.datasets.regmix import HERE as REGMIX_FOLDER
from multiscale.datasets.regmix import regmix_run_table

__all__ = ["LADDERS", "REGMIX_FOLDER", "ladder_folder", "load_ladder", "load_regmix", "regmix_run_table"]


def load_regmix(split: str = "train") -> pd.DataFrame:
    """The RegMix runs of `split` ("train": 512 runs, "test": 256) as a validated run table.

    One row per (run, evaluated domain) where the domain's weight is > 0 (the ratio law needs
    p > 0; `regmix_run_table` also returns how many pairs were dropped), the family being the
    Pile domain (e.g. "arxiv"), N = 1e6, D = 1e9 (nominal), loss the published validation loss,
    and the run's whole mixture in ``p_<domain>`` columns (17 domains).
    """
    table, _ = regmix_run_table(REGMIX_FOLDER, split)
    return table
