"""The public RegMix proxy runs (Liu et al. 2024, arXiv 2407.01492) as a run table.

RegMix trained 1M-parameter models on mixtures of 17 Pile domains drawn from a Dirichlet
prior and evaluated 13 of them: 512 training runs and 256 held-out test runs. The four CSV
files beside this module are copied unchanged from the public repository sail-sg/regmix
(folder data/, commit b004d3a), under the MIT licence in ``LICENSE`` beside them (see
``README.md``).

Every run shares one model size and one token budget, so N and D are constants here (1e6
parameters as the files' names say; D is a nominal 1e9 tokens: the law at one (N, D) does not
depend on it). A domain with weight 0 in a run cannot be described by ``c * p^(-gamma)`` for that
run: such rows are dropped. The published weights are rounded to 3 decimals, so a run's 17
weights sum to 0.996..1.003 (within the run table's `SUM_TOLERANCE`); they are kept as published.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from multiscale.errors import InputError, MissingFileError
from multiscale.runs import mixture_column, validate_runs

HERE = Path(__file__).resolve().parent
SPLITS = ("train", "test")
MIX_PREFIX = "train_the_pile_"
LOSS_PREFIX, LOSS_SUFFIX = "metric/the_pile_", "_val_loss"
REGMIX_N = 1e6
REGMIX_D = 1e9


def regmix_files(folder: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """The (mixture, loss) CSV files of `split` in `folder`."""
    if split not in SPLITS:
        raise InputError(f"RegMix split {split!r} is unknown; choose one of {list(SPLITS)}")
    folder = Path(folder)
    paths = (folder / f"{split}_mixture_1m.csv", folder / f"{split}_pile_loss_1m.csv")
    for p in paths:
        if not p.exists():
            raise MissingFileError(f"RegMix file {str(p)!r} not found")
    return paths


def regmix_run_table(folder: str | os.PathLike = HERE, split: str = "train") -> tuple[pd.DataFrame, int]:
    """Run table from ``<split>_mixture_1m.csv`` and ``<split>_pile_loss_1m.csv`` in `folder`
    (default: the copies shipped in this package).

    Returns (table, number of (run, domain) pairs dropped because the domain's weight was 0).
    Runs are named ``regmix-<split>-<index>``; each row carries the full mixture as
    ``p_<domain>`` columns (all 17 domains). The table is validated (`validate_runs`).
    """
    mix_path, loss_path = regmix_files(folder, split)
    mix = pd.read_csv(mix_path)
    loss = pd.read_csv(loss_path)
    domains = [c[len(MIX_PREFIX):] for c in mix.columns if c.startswith(MIX_PREFIX)]
    mix = mix.rename(columns={MIX_PREFIX + d: mixture_column(d) for d in domains})
    evaluated = [c[len(LOSS_PREFIX):-len(LOSS_SUFFIX)] for c in loss.columns
                 if c.startswith(LOSS_PREFIX) and c.endswith(LOSS_SUFFIX)]
    merged = mix.merge(loss, on="index", how="inner", validate="one_to_one")
    rows, dropped = [], 0
    pcols = [mixture_column(d) for d in domains]
    for _, r in merged.iterrows():
        for d in evaluated:
            p = float(r[mixture_column(d)])
            if p <= 0:
                dropped += 1
                continue
            row = {"run": f"regmix-{split}-{int(r['index'])}", "family": d, "N": REGMIX_N,
                   "D": REGMIX_D, "p": p, "loss": float(r[LOSS_PREFIX + d + LOSS_SUFFIX])}
            row.update({c: float(r[c]) for c in pcols})
            rows.append(row)
    return validate_runs(pd.DataFrame(rows), source=str(loss_path)), dropped
