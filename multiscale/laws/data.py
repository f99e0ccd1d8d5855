"""Turn a validated run table into the arrays the fits need."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from multiscale.errors import InputError
from multiscale.laws.forms import Law, check_shared
from multiscale.runs import MIXTURE_PREFIX, UNIQUE_TOKENS, RunTableError, mixture_columns, validate_runs


@dataclass(frozen=True)
class FitData:
    """The rows of a run table as float64 arrays, one entry per row (R rows, F families).

    ``sem_rel_R`` is the standard error of log-loss (``loss_sem / loss``; 0 where none).
    ``weight_R`` (None: all 1) weights each row's term of the point-fit objective (a bootstrap of
    whole runs, without changing shapes). ``mixture_families`` (M) come from the ``p_<family>``
    columns, ``P_RxM`` is each row's mixture (None without them), ``fam_in_mix_F`` each family's
    index among them (-1: absent), ``logU_R`` log ``unique_tokens`` (+inf where none given).
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
    mixture_families: tuple[str, ...] = ()
    P_RxM: np.ndarray | None = None
    fam_in_mix_F: np.ndarray | None = None
    logU_R: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return int(self.fam_R.shape[0])

    @property
    def n_families(self) -> int:
        return len(self.families)

    def counts_F(self) -> np.ndarray:
        return np.bincount(self.fam_R, minlength=self.n_families)

    def unique_tokens_F(self) -> dict[str, float]:
        """The largest finite unique-token count seen per family (families without one omitted):
        what a fit keeps of the U it saw."""
        if self.logU_R is None:
            return {}
        out = {}
        for j, f in enumerate(self.families):
            u = self.logU_R[self.fam_R == j]
            u = u[np.isfinite(u)]
            if len(u):
                out[f] = float(np.exp(u.max()))
        return out


def mixture_arrays(df: pd.DataFrame, families) -> dict:
    """The FitData fields of the whole mixture (see `FitData`) from a validated table."""
    cols = mixture_columns(df)
    out: dict = {"logU_R": np.full(len(df), np.inf)}
    if UNIQUE_TOKENS in df.columns:
        u = pd.to_numeric(df[UNIQUE_TOKENS], errors="coerce").to_numpy(dtype=float)
        with np.errstate(divide="ignore"):
            out["logU_R"] = np.where(np.isfinite(u) & (u > 0), np.log(np.where(u > 0, u, 1.0)), np.inf)
    if cols:
        mix = tuple(c[len(MIXTURE_PREFIX):] for c in cols)
        out["mixture_families"] = mix
        out["P_RxM"] = np.nan_to_num(df[cols].to_numpy(dtype=float), nan=0.0)
        out["fam_in_mix_F"] = np.array([mix.index(f) if f in mix else -1 for f in families], dtype=np.int64)
    return out


def prepare(df: pd.DataFrame, law: Law, shared=()) -> tuple[pd.DataFrame, FitData, tuple[str, ...]]:
    """Validate `df` for `law` with the one run-table validation (`multiscale.runs.validate_runs`,
    which also refuses families with too few runs for the law) and build `FitData`."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"df must be a run table (a pandas DataFrame), got {type(df).__name__}", arg="df")
    shared = check_shared(law, shared)
    # families as validate_runs will see them (names stripped), for the minimum runs per family
    n_fam = pd.Series(df["family"]).astype(str).str.strip().nunique() if "family" in df.columns else 1
    # Fewest runs per family: the law's own count, plus one per coefficient of a matrix parameter
    # (M - 1 other mixture families each).
    need = law.min_runs(n_fam, shared) + len(law.matrix) * max(len(mixture_columns(df)) - 1, 0)
    df = validate_runs(df, law=law.name, min_runs=need)
    if not law.uses_scale:
        for col in ("N", "D"):
            if df[col].nunique() > 1:
                other = "transfer" if law.uses_mixture else "multilingual"
                raise RunTableError(
                    f"column {col!r}: law {law.name!r} needs runs that share one (N, D); found "
                    f"{sorted(df[col].unique().tolist())[:6]}; use law {other!r}")
    if law.uses_mixture and not mixture_columns(df):
        raise RunTableError(f"law {law.name!r} needs each run's whole mixture: the table has no "
                            "p_<family> columns")
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
        sem_rel_R=sem / loss, N_ref=float(np.exp(logN.mean())), D_ref=float(np.exp(logD.mean())),
        **mixture_arrays(df, families))
    return df, data, shared
