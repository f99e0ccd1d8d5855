"""The run table: one row per (run, family), the hinge between training and the law fits.

Required columns (DESIGN.md section 4):

- ``run`` (str): the run's name.
- ``family`` (str): the language family this row's loss was measured on.
- ``N``: non-embedding parameters of the model.
- ``D``: training tokens of the whole run (all families together).
- ``p``: the family's sampling ratio in the run, ``0 < p <= 1``.
- ``loss``: mean held-out cross-entropy of the family, in nats per token.

Optional columns: ``loss_sem`` (standard error of ``loss``, nats/token), ``bpb``,
``eval_tokens``, ``step``, ``model``, ``seed``, and one ``p_<family>`` column per family
holding the run's whole mixture (the independence test needs it).

`validate_runs` refuses a bad table with a `RunTableError` (a ValueError) whose message
names the offending rows (by ``run`` and by 0-based row number) and the column.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("run", "family", "N", "D", "p", "loss")
OPTIONAL_COLUMNS = ("loss_sem", "bpb", "eval_tokens", "step", "model", "seed")
MIXTURE_PREFIX = "p_"

# Fewest runs per family each law needs: one more than its free parameters per family
# when nothing is shared (multilingual: E, A, B, alpha, beta, gamma).
MIN_RUNS_PER_FAMILY = {"multilingual": 7, "chinchilla": 6, "ratio": 3}

_MAX_LISTED = 8


class RunTableError(ValueError):
    """A run table that cannot be fitted; the message names the rows and the column."""


def _rows_text(df: pd.DataFrame, mask) -> str:
    """'row 3 (run 'r3'), row 7 (run 'r7'), ...' for the rows where mask is true."""
    idx = np.flatnonzero(np.asarray(mask))
    parts = []
    for i in idx[:_MAX_LISTED]:
        run = df["run"].iloc[i] if "run" in df.columns else "?"
        parts.append(f"row {i} (run {run!r})")
    more = f" and {len(idx) - _MAX_LISTED} more" if len(idx) > _MAX_LISTED else ""
    return ", ".join(parts) + more


def _numeric(df: pd.DataFrame, col: str) -> np.ndarray:
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(values) & df[col].notna().to_numpy()
    if bad.any():
        raise RunTableError(f"column {col!r} is not numeric at {_rows_text(df, bad)}")
    return values


def mixture_columns(df: pd.DataFrame) -> list[str]:
    """The ``p_<family>`` columns of a table, in table order."""
    return [c for c in df.columns if isinstance(c, str) and c.startswith(MIXTURE_PREFIX)]


def validate_runs(df: pd.DataFrame, *, law: str | None = None, min_runs: int | None = None) -> pd.DataFrame:
    """Check a run table and return a clean, typed copy (index reset to 0..n-1).

    Args:
      df: the table.
      law: when given ("multilingual", "chinchilla" or "ratio"), also refuse a family with
        fewer runs than `MIN_RUNS_PER_FAMILY[law]`.
      min_runs: overrides the per-law minimum (e.g. when exponents are shared).

    Raises:
      RunTableError: naming the offending rows and column.
    """
    if not isinstance(df, pd.DataFrame):
        raise RunTableError(f"a run table must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise RunTableError(
            f"run table is missing required column(s) {missing}; it has {list(df.columns)}")
    if len(df) == 0:
        raise RunTableError("run table has no rows")
    df = df.reset_index(drop=True).copy()
    for col in ("run", "family"):
        null = df[col].isna().to_numpy()
        if null.any():
            raise RunTableError(f"column {col!r} is empty at {_rows_text(df, null)}")
        df[col] = df[col].astype(str)
    for col in ("N", "D"):
        v = _numeric(df, col)
        bad = ~np.isfinite(v) | (v <= 0)
        if bad.any():
            raise RunTableError(
                f"column {col!r} must be positive and finite; bad at {_rows_text(df, bad)}")
        df[col] = v
    p = _numeric(df, "p")
    bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
    if bad.any():
        raise RunTableError(
            f"column 'p' must lie in (0, 1]; bad at {_rows_text(df, bad)} "
            f"(values {p[bad][:_MAX_LISTED].tolist()})")
    df["p"] = p
    loss = _numeric(df, "loss")
    bad = ~np.isfinite(loss) | (loss <= 0)
    if bad.any():
        raise RunTableError(
            f"column 'loss' must be positive and finite (nats/token); bad at {_rows_text(df, bad)}")
    df["loss"] = loss
    if "loss_sem" in df.columns:
        sem = _numeric(df, "loss_sem")
        bad = ~np.isnan(sem) & (~np.isfinite(sem) | (sem < 0))
        if bad.any():
            raise RunTableError(
                f"column 'loss_sem' must be non-negative; bad at {_rows_text(df, bad)}")
        df["loss_sem"] = sem
    for col in ("bpb", "eval_tokens", "step", "seed"):
        if col in df.columns:
            df[col] = _numeric(df, col)
    for col in mixture_columns(df):
        v = _numeric(df, col)
        bad = ~np.isnan(v) & ((v < 0) | (v > 1))
        if bad.any():
            raise RunTableError(f"column {col!r} must lie in [0, 1]; bad at {_rows_text(df, bad)}")
        df[col] = v
    dup = df.duplicated(subset=["run", "family"], keep=False).to_numpy()
    if dup.any():
        raise RunTableError(
            f"duplicate (run, family) pairs in columns 'run', 'family' at {_rows_text(df, dup)}")
    need = min_runs if min_runs is not None else (MIN_RUNS_PER_FAMILY.get(law) if law else None)
    if law is not None and law not in MIN_RUNS_PER_FAMILY and min_runs is None:
        raise RunTableError(f"unknown law {law!r}; choose one of {sorted(MIN_RUNS_PER_FAMILY)}")
    if need:
        counts = df.groupby("family", sort=False)["run"].count()
        few = counts[counts < need]
        if len(few):
            detail = ", ".join(f"{fam!r} has {n}" for fam, n in few.items())
            raise RunTableError(
                f"column 'family': law {law!r} needs at least {need} runs per family; {detail}")
    return df


def read_runs(path: str | os.PathLike, *, law: str | None = None) -> pd.DataFrame:
    """Read a run table from CSV or Parquet (by extension) and validate it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"run table {str(path)!r} does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path)
    try:
        return validate_runs(df, law=law)
    except RunTableError as err:
        raise RunTableError(f"{path}: {err}") from None


def write_runs(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate and write a run table atomically (temp file in the same folder, then rename).

    CSV unless the path ends in ``.parquet``.
    """
    df = validate_runs(df)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def mixture_matrix(df: pd.DataFrame) -> tuple[list[str], list[str], np.ndarray]:
    """The mixture of every run from the ``p_<family>`` columns.

    Returns:
      (runs, families, P_RxF): run names in first-seen order, family names (column suffixes),
      and the R x F matrix of sampling ratios (float64).

    Raises:
      RunTableError: no ``p_`` columns, or one run with two different mixtures.
    """
    cols = mixture_columns(df)
    if not cols:
        raise RunTableError("the run table has no 'p_<family>' mixture columns")
    if "run" not in df.columns:
        raise RunTableError("the run table is missing column 'run'")
    families = [c[len(MIXTURE_PREFIX):] for c in cols]
    sub = df[["run", *cols]].copy()
    for c in cols:
        sub[c] = pd.to_numeric(sub[c], errors="coerce")
    first = sub.drop_duplicates("run", keep="first").reset_index(drop=True)
    again = sub.drop_duplicates().groupby("run", sort=False).size()
    conflict = again[again > 1]
    if len(conflict):
        raise RunTableError(
            f"runs {list(conflict.index[:_MAX_LISTED])} carry different values in the "
            f"'p_<family>' columns on different rows")
    P_RxF = first[cols].to_numpy(dtype=float)
    if np.isnan(P_RxF).any():
        r, c = np.argwhere(np.isnan(P_RxF))[0]
        raise RunTableError(f"column {cols[c]!r} is empty for run {first['run'].iloc[r]!r}")
    return first["run"].astype(str).tolist(), families, P_RxF
