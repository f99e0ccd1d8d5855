"""Turn a validated run table into the arrays the fits need."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from multiscale.laws.forms import Law, check_shared
from multiscale.runs import RunTableError, validate_runs


@dataclass(frozen=True)
class FitData:
    """The rows of a run table as float64 arrays, one entry per row (R rows, F families).

    ``sem_rel_R`` is the standard error of log-loss (``loss_sem / loss``, delta method),
    0 where the table gives none. ``weight_R`` (None: all 1) multiplies each row's term of
    the point-fit objective: a bootstrap resample of whole runs is the same table with each
    row weighted by how often its run was drawn (the same objective as repeating the rows,
    with the table's shapes unchanged).
    """

    families: tuple[str, ...]
    fam_R: np.ndarray
    logN_R: np.ndarray
    logD_R: np.ndarray
    logp_R: np.ndarray
    logL_R: np.ndarray
    sem_rel_R: np.ndarray
    N_ref: float
    D_ref: float
    weight_R: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return int(self.fam_R.shape[0])

    @property
    def n_families(self) -> int:
        return len(self.families)

    def counts_F(self) -> np.ndarray:
        return np.bincount(self.fam_R, minlength=self.n_families)


def prepare(df: pd.DataFrame, law: Law, shared=()) -> tuple[pd.DataFrame, FitData, tuple[str, ...]]:
    """Validate `df` for `law` with the one run-table validation (`multiscale.runs.validate_runs`,
    which also refuses families with too few runs for the law) and build `FitData`."""
    shared = check_shared(law, shared)
    # families as validate_runs will see them (names stripped), for the minimum runs per family
    n_fam = pd.Series(df["family"]).astype(str).str.strip().nunique() if "family" in df.columns else 1
    df = validate_runs(df, law=law.name, min_runs=law.min_runs(n_fam, shared))
    if not law.uses_scale:
        for col in ("N", "D"):
            if df[col].nunique() > 1:
                raise RunTableError(
                    f"column {col!r}: law 'ratio' needs runs that share one (N, D); found "
                    f"{sorted(df[col].unique().tolist())[:6]}; use law 'multilingual'")
    families = tuple(dict.fromkeys(df["family"].tolist()))
    fam_index = {f: i for i, f in enumerate(families)}
    fam_R = df["family"].map(fam_index).to_numpy(dtype=np.int32)
    sem = df["loss_sem"].to_numpy(dtype=float) if "loss_sem" in df.columns else np.zeros(len(df))
    sem = np.nan_to_num(sem, nan=0.0)
    loss = df["loss"].to_numpy(dtype=float)
    logN = np.log(df["N"].to_numpy(dtype=float))
    logD = np.log(df["D"].to_numpy(dtype=float))
    data = FitData(
        families=families, fam_R=fam_R, logN_R=logN, logD_R=logD,
        logp_R=np.log(df["p"].to_numpy(dtype=float)), logL_R=np.log(loss),
        sem_rel_R=sem / loss, N_ref=float(np.exp(logN.mean())), D_ref=float(np.exp(logD.mean())))
    return df, data, shared
