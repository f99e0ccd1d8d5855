"""Convert the public RegMix proxy runs (Liu et al. 2024, arXiv 2407.01492) to a run table.

RegMix trained 1M-parameter models on mixtures of 17 Pile domains drawn from a Dirichlet
prior and evaluated 13 of them. Every run shares one model size and one token budget, so
N and D are constants here (1e6 parameters as the files' names say; D is a nominal 1e9
tokens: the law at one (N, D) does not depend on it). A domain with weight 0 in a run cannot
be described by ``c * p^(-gamma)`` for that run: such rows are dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

MIX_PREFIX = "train_the_pile_"
LOSS_PREFIX, LOSS_SUFFIX = "metric/the_pile_", "_val_loss"
REGMIX_N = 1e6
REGMIX_D = 1e9


def regmix_run_table(folder: str | os.PathLike, split: str = "train") -> tuple[pd.DataFrame, int]:
    """Run table from ``<split>_mixture_1m.csv`` and ``<split>_pile_loss_1m.csv``.

    Returns (table, number of (run, domain) pairs dropped because the domain's weight was 0).
    Each row carries the full mixture as ``p_<domain>`` columns (all 17 domains).
    """
    folder = Path(folder)
    mix_path = folder / f"{split}_mixture_1m.csv"
    loss_path = folder / f"{split}_pile_loss_1m.csv"
    for p in (mix_path, loss_path):
        if not p.exists():
            raise FileNotFoundError(f"RegMix file {str(p)!r} not found")
    mix = pd.read_csv(mix_path)
    loss = pd.read_csv(loss_path)
    domains = [c[len(MIX_PREFIX):] for c in mix.columns if c.startswith(MIX_PREFIX)]
    mix = mix.rename(columns={MIX_PREFIX + d: f"p_{d}" for d in domains})
    evaluated = [c[len(LOSS_PREFIX):-len(LOSS_SUFFIX)] for c in loss.columns
                 if c.startswith(LOSS_PREFIX) and c.endswith(LOSS_SUFFIX)]
    merged = mix.merge(loss, on="index", how="inner", validate="one_to_one")
    rows, dropped = [], 0
    pcols = [f"p_{d}" for d in domains]
    for _, r in merged.iterrows():
        for d in evaluated:
            p = float(r[f"p_{d}"])
            if p <= 0:
                dropped += 1
                continue
            row = {"run": f"{split}{int(r['index'])}", "family": d, "N": REGMIX_N, "D": REGMIX_D,
                   "p": p, "loss": float(r[LOSS_PREFIX + d + LOSS_SUFFIX])}
            row.update({c: float(r[c]) for c in pcols})
            rows.append(row)
    return pd.DataFrame(rows), dropped
