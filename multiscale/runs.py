"""The run table: one row per (run, family), the hinge between training and the law fits.

The contract is written in docs/design.md, section "The run table". In short:

Required columns:

- ``run`` (str): the run's name.
- ``family`` (str): the language family this row's loss was measured on.
- ``N``: non-embedding parameters of the model.
- ``D``: training tokens of the whole run (all families together).
- ``p``: the family's sampling ratio in the run, ``0 < p <= 1``.
- ``loss``: mean held-out cross-entropy of the family, in nats per token.

Optional columns: ``loss_sem`` (standard error of ``loss``, nats/token), ``bpb`` (bits per
byte), ``eval_tokens``, ``step``, ``model``, ``seed``, ``unique_tokens`` (the family's unique
training tokens available to the run: its epochs are ``p * D / unique_tokens``), and one
``p_<family>`` column per family holding the run's whole mixture (the independence test needs it).

`make_rows` builds the rows of one run in this schema (training and the sweep use it);
`validate_runs` is the one check of a table (every reader goes through it, `read_runs` adds the
file-level checks); a bad table raises `RunTableError` naming the file, the rows and the column.
"""

from __future__ import annotations

import array
import csv
import datetime
import io
import numbers
import os
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multiscale.errors import InputError, MissingFileError
from multiscale.fileio import as_path, atomic_write_bytes, atomic_write_text, is_remote

REQUIRED_COLUMNS = ("run", "family", "N", "D", "p", "loss")
# The columns training writes, in this order, before the p_<family> columns.
ROW_COLUMNS = (*REQUIRED_COLUMNS, "loss_sem", "bpb", "eval_tokens", "step", "model", "seed")
UNIQUE_TOKENS = "unique_tokens"
OPTIONAL_COLUMNS = (*ROW_COLUMNS[len(REQUIRED_COLUMNS):], UNIQUE_TOKENS)
MIXTURE_PREFIX = "p_"
# Per-family values a row builder takes from an evaluation (only "loss" is required).
EVAL_KEYS = ("loss", "loss_sem", "bpb", "eval_tokens")

# |p - p_<family>| on one row, and the spread of one run's p_<family> values over its rows.
# Training writes both from one float, so they agree exactly; the slack admits float32 storage
# and tables written with 4 or more decimals.
P_TOLERANCE = 1e-4
# |sum - 1| of a run's mixture (its p_<family> columns, or its p values when every family of the
# mixture is evaluated). Published tables round ratios: RegMix writes 17 domains with 3 decimals
# and its mixtures sum to 0.996..1.003; 20 families rounded to 3 decimals stay within 0.01.
SUM_TOLERANCE = 1e-2
# Characters a family name may not hold: they separate FAMILY=VALUE lists on the command line.
_FORBIDDEN_IN_FAMILY = ",="

# Fewest runs per family each law needs: one more than its free parameters per family
# when nothing is shared (multilingual: E, A, B, alpha, beta, gamma).
MIN_RUNS_PER_FAMILY = {"multilingual": 7, "chinchilla": 6, "ratio": 3}

_MAX_LISTED = 8


class RunTableError(InputError):
    """A run table that cannot be fitted; the message names the file, the rows and the column."""


# ---------------------------------------------------------------------------------- the schema


def mixture_column(family: str) -> str:
    """The name of the column holding `family`'s share of a run's mixture: ``p_<family>``."""
    return f"{MIXTURE_PREFIX}{family}"


def mixture_columns(df: pd.DataFrame) -> list[str]:
    """The ``p_<family>`` columns of a table, in table order."""
    return [c for c in df.columns if isinstance(c, str) and c.startswith(MIXTURE_PREFIX)]


def column_order(families: Sequence[str], *, unique_tokens: bool = False) -> list[str]:
    """The columns of rows built by `make_rows`: `ROW_COLUMNS`, then ``unique_tokens`` when
    given, then one ``p_<family>`` column per family of `families`, in that order."""
    extra = [UNIQUE_TOKENS] if unique_tokens else []
    return [*ROW_COLUMNS, *extra, *(mixture_column(f) for f in families)]


def make_rows(*, run: str, N, D, step, model, seed, mixture: Mapping[str, float],
              per_family: Mapping[str, Mapping[str, Any]], families: Sequence[str] | None = None,
              unique_tokens: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """The run-table rows of one run, as dicts in `column_order`: one row per family with a ratio
    > 0 and an evaluation, in `families` order (default: the families of `mixture`).

    `mixture` is the ratio the data pipeline SAMPLED per family; `per_family` holds the evaluation
    ("loss" in nats/token required; "loss_sem", "bpb", "eval_tokens" optional).
    """
    families = list(mixture) if families is None else list(families)
    unknown = [f for f in mixture if f not in families]
    if unknown:
        raise InputError(f"mixture names famil{'y' if len(unknown) == 1 else 'ies'} "
                         f"{', '.join(map(repr, unknown))} outside the families {families}")
    shares = {mixture_column(f): mixture.get(f, 0.0) for f in families}
    rows = []
    for family in families:
        p, stats = mixture.get(family, 0.0), per_family.get(family)
        if not p > 0 or stats is None:
            continue
        if "loss" not in stats:
            raise InputError(f"the evaluation of family {family!r} has no 'loss'")
        row = {"run": run, "family": family, "N": N, "D": D, "p": p}
        row.update({k: stats.get(k) for k in EVAL_KEYS})
        row.update({"step": step, "model": model, "seed": seed})
        if unique_tokens is not None:
            row[UNIQUE_TOKENS] = unique_tokens.get(family)
        row.update(shares)
        rows.append(row)
    return rows


def rows_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV text of `rows` (e.g. from `make_rows`) under the header `columns` (None -> empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns))
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()


# ---------------------------------------------------------------------------------- validation


class _Table:
    """A table under validation: the frame, and where its rows came from (for messages).
    Once the names are checked, `run_R` numbers each row's run (0, 1, ... in first-seen order)
    and `first_R` is the first row of each run."""

    def __init__(self, df: pd.DataFrame, source: str | None, lines: Sequence[int] | None):
        self.df = df
        self.source = source
        self.lines = lines
        self.run_R: np.ndarray | None = None
        self.first_R: np.ndarray | None = None

    def error(self, message: str) -> RunTableError:
        return RunTableError(f"{self.source}: {message}" if self.source else message)

    def rows(self, mask) -> str:
        """'row 3 (run 'r3', line 5), ...' for the rows where mask is true (rows count from 0)."""
        idx = np.flatnonzero(np.asarray(mask))
        parts = []
        for i in idx[:_MAX_LISTED]:
            where = [f"run {self.df['run'].iloc[i]!r}"] if "run" in self.df.columns else []
            if self.lines is not None:
                where.append(f"line {self.lines[i]}")
            parts.append(f"row {i} ({', '.join(where)})" if where else f"row {i}")
        more = f" and {len(idx) - _MAX_LISTED} more" if len(idx) > _MAX_LISTED else ""
        return ", ".join(parts) + more

    def numeric(self, col: str) -> np.ndarray:
        """The column as float64 (empty cells NaN); refuses cells that are not real numbers:
        text, True/False, complex numbers, dates and durations."""
        s = self.df[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object)
        kind = s.dtype.kind
        if kind in "iuf":
            return s.to_numpy(dtype=float, na_value=np.nan)
        odd = np.ones(len(s), dtype=bool) if kind in _NOT_REAL else None
        if odd is None and pd.api.types.infer_dtype(s, skipna=True) not in _REAL_OR_TEXT:
            odd = s.map(lambda v: isinstance(v, _NOT_REAL_TYPES), na_action="ignore").fillna(False)
            odd = odd.to_numpy(dtype=bool)
        if odd is not None and odd.any():
            shown = s[odd].iloc[:3].tolist()
            raise self.error(f"column {col!r} holds values that are not real numbers ({shown}, dtype "
                             f"{s.dtype}) at {self.rows(odd)}; write {col} as ints or floats")
        values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = np.isnan(values) & s.notna().to_numpy()
        if bad.any():
            raise self.error(f"column {col!r} is not numeric at {self.rows(bad)}")
        return values


# dtype kinds and cell types that are numbers of the wrong sort (bool, complex, dates, durations)
_NOT_REAL = "bcmM"
_NOT_REAL_TYPES = (bool, np.bool_, complex, np.complexfloating, datetime.date, datetime.timedelta,
                   np.datetime64, np.timedelta64)
# `pandas.api.types.infer_dtype` answers under which no cell is of those types
_REAL_OR_TEXT = {"empty", "floating", "integer", "mixed-integer-float", "decimal", "string"}


def _clean_name(name):
    """A column or family name as compared: surrounding spaces removed, Unicode NFC."""
    return unicodedata.normalize("NFC", name.strip()) if isinstance(name, str) else name


def _compared_names(columns) -> list:
    """Column names as compared: `_clean_name`, and ``p_<family>`` with the family cleaned."""
    names = [_clean_name(c) for c in columns]
    return [mixture_column(_clean_name(c[len(MIXTURE_PREFIX):])) if isinstance(c, str)
            and c.startswith(MIXTURE_PREFIX) else c for c in names]


def _check_columns(t: _Table) -> None:
    """Column names stripped (' loss' is 'loss', 'p_ a' is 'p_a'); the required ones present,
    none twice."""
    names = _compared_names(t.df.columns)
    twice = sorted({c for c in names if names.count(c) > 1}, key=str)
    if twice:
        raise t.error(f"column(s) {twice} appear more than once (names compared without "
                      f"surrounding spaces)")
    t.df.columns = names
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise t.error(f"run table is missing required column(s) {missing}; it has {names}")
    if len(t.df) == 0:
        raise t.error("run table has no rows")
    bad = [c for c in mixture_columns(t.df) if not c[len(MIXTURE_PREFIX):]
           or any(ch in c for ch in _FORBIDDEN_IN_FAMILY)]
    if bad:
        raise t.error(f"mixture column(s) {bad} do not name a family (p_<family>, the family "
                      f"without {' or '.join(map(repr, _FORBIDDEN_IN_FAMILY))})")


def _check_names(t: _Table) -> None:
    """`run` and `family` are strings with surrounding spaces removed: ' germanic' IS 'germanic'
    (so written twice in one run it is a duplicate; family names are also put in Unicode NFC);
    empty names and ',' or '=' in a family are refused."""
    for col in ("run", "family"):
        null = t.df[col].isna().to_numpy()
        if null.any():
            raise t.error(f"column {col!r} is empty (a missing value; in a CSV also NA, NaN, None or "
                          f"null) at {t.rows(null)}")
        t.df[col] = t.df[col].astype(str).str.strip()
        empty = (t.df[col] == "").to_numpy()
        if empty.any():
            raise t.error(f"column {col!r} is empty (or only spaces) at {t.rows(empty)}")
    fam_R, fams = pd.factorize(t.df["family"])
    clean = [_clean_name(f) for f in fams]
    if clean != list(fams):  # Unicode NFC
        t.df["family"] = np.array(clean, dtype=object)[fam_R]
    fam = t.df["family"]
    bad = np.zeros(len(fam), dtype=bool)
    for ch in _FORBIDDEN_IN_FAMILY:
        bad |= fam.str.contains(ch, regex=False).to_numpy()
    if bad.any():
        raise t.error(f"column 'family' holds a name with ',' or '=' (they separate "
                      f"FAMILY=VALUE lists) at {t.rows(bad)}")
    t.run_R = pd.factorize(t.df["run"])[0]
    t.first_R = np.unique(t.run_R, return_index=True)[1]


def _check_required_numbers(t: _Table) -> None:
    """N, D > 0; 0 < p <= 1; loss > 0; all finite (NaN and inf refused)."""
    rules = {"N": (lambda v: v > 0, "positive and finite"),
             "D": (lambda v: v > 0, "positive and finite"),
             "p": (lambda v: (v > 0) & (v <= 1), "in (0, 1]"),
             "loss": (lambda v: v > 0, "positive and finite (nats/token)")}
    for col, (ok, what) in rules.items():
        v = t.numeric(col)
        bad = ~np.isfinite(v) | ~ok(np.nan_to_num(v))
        if bad.any():
            raise t.error(f"column {col!r} must be {what}; bad at {t.rows(bad)} "
                          f"(values {v[bad][:_MAX_LISTED].tolist()})")
        t.df[col] = v


def _check_optional_numbers(t: _Table) -> None:
    """Optional numeric columns: empty (NaN) allowed, inf refused, each in its range."""
    non_negative = (lambda v: v >= 0, ">= 0 and finite")
    count = (lambda v: (v >= 0) & (v == np.round(v)), "a whole number >= 0")  # a step or token count
    rules = {"loss_sem": non_negative, "bpb": non_negative, "eval_tokens": count,
             "step": count, "seed": (lambda v: v == np.round(v), "a whole number"),
             UNIQUE_TOKENS: (lambda v: v > 0, "positive and finite")}
    rules.update({c: ((lambda v: (v >= 0) & (v <= 1)), "in [0, 1]") for c in mixture_columns(t.df)})
    for col, (ok, what) in rules.items():
        if col not in t.df.columns:
            continue
        v = t.numeric(col)
        bad = ~np.isnan(v) & (np.isinf(v) | ~ok(np.nan_to_num(v)))
        if bad.any():
            raise t.error(f"column {col!r} must be {what} (or empty); bad at {t.rows(bad)}")
        t.df[col] = v


def _check_duplicates(t: _Table) -> None:
    dup = t.df.duplicated(subset=["run", "family"], keep=False).to_numpy()
    if dup.any():
        raise t.error(f"duplicate (run, family) pairs in columns 'run', 'family' at {t.rows(dup)}")


def _check_repeated_runs(t: _Table) -> None:
    """No run is another run under a second name: same N, D, seed (when recorded), ratios and
    bit-identical losses, some with more than 6 decimals (rounded published losses may agree by
    chance); docs/decisions/2026-12-01-one-run-under-two-names.md. Runs are grouped by a hash of
    that key first; only runs sharing a hash are compared exactly."""
    df, run_R = t.df, t.run_R
    loss = df["loss"].to_numpy(dtype=float)
    unrounded = np.abs(loss * 1e6 - np.round(loss * 1e6)) >= 1e-3
    candidate = np.bincount(run_R, weights=unrounded) > 0  # per run
    fam_R = pd.factorize(df["family"])[0].astype(np.uint64)
    p = df["p"].to_numpy(dtype=float)
    with np.errstate(over="ignore"):
        h = (pd.util.hash_array(loss.view(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
             + pd.util.hash_array(p.view(np.uint64) ^ (fam_R << np.uint64(1))))
    key = np.zeros(len(candidate), dtype=np.uint64)
    np.add.at(key, run_R, h)  # order-free within a run, as the key's sorted rows are
    seed = df["seed"].to_numpy(dtype=float) if "seed" in df.columns else np.full(len(df), np.nan)
    runs = pd.DataFrame({"key": key, "rows": np.bincount(run_R), "N": df["N"].to_numpy()[t.first_R],
                         "D": df["D"].to_numpy()[t.first_R], "seed": seed[t.first_R],
                         "any_seed": np.bincount(run_R, weights=~np.isnan(seed)) > 0})[candidate]
    shared = runs[runs.duplicated(["key", "rows", "N", "D", "seed", "any_seed"], keep=False)]
    if shared.empty:
        return
    names = pd.factorize(df["run"])[1]
    by_run = np.argsort(run_R, kind="stable")  # rows of run r: by_run[start[r]:start[r + 1]]
    start = np.concatenate([[0], np.cumsum(np.bincount(run_R))])
    fam = df["family"].to_numpy()
    keys: dict[tuple, str] = {}
    for r in shared.index:  # first-seen order
        rows = by_run[start[r]:start[r + 1]]
        s = shared.at[r, "seed"]
        seed_key = None if not shared.at[r, "any_seed"] else (float(s) if not np.isnan(s) else ("nan", r))
        key_r = (float(shared.at[r, "N"]), float(shared.at[r, "D"]), seed_key,
                 tuple(sorted(zip(fam[rows].tolist(), loss[rows].tolist(), p[rows].tolist()))))
        run = names[r]
        first = keys.setdefault(key_r, run)
        if first != run:
            mask = df["run"].isin([first, run]).to_numpy()
            raise t.error(f"runs {first!r} and {run!r} are one run under two names: the same N, D, seed and ratios "
                          f"and bit-identical losses on every family ({len(rows)}); fitting both would count that "
                          f"measurement twice. Keep one of them; at {t.rows(mask)}")


def _check_one_scale_per_run(t: _Table) -> None:
    """Every row of a run carries the same N and the same D."""
    for col in ("N", "D"):
        g = t.df[col].groupby(t.run_R, sort=True)
        bad_run = (g.max() != g.min()).to_numpy()
        if bad_run.any():
            bad = bad_run[t.run_R]
            run = t.df["run"].to_numpy()[bad][0]
            values = sorted(set(t.df.loc[t.df["run"] == run, col].tolist()))
            raise t.error(f"column {col!r} differs within run {run!r} ({values}): one run has one "
                          f"{col}; bad at {t.rows(bad)}")


def _check_one_mixture_per_run(t: _Table, mix: pd.DataFrame) -> None:
    """The rows of a run carry one mixture (within P_TOLERANCE), or none at all."""
    cols = mixture_columns(t.df)
    run_M = t.run_R[mix.index.to_numpy()]
    with_mixture = np.zeros(len(t.first_R), dtype=bool)
    with_mixture[run_M] = True
    recorded = np.zeros(len(t.df), dtype=bool)
    recorded[mix.index.to_numpy()] = True
    partial = with_mixture[t.run_R] & ~recorded
    if partial.any():
        raise t.error(f"the p_<family> columns are empty on some rows of a run whose other rows "
                      f"hold its mixture, at {t.rows(partial)}")
    g = mix[cols].groupby(run_M, sort=False)
    spread = (g.transform("max") - g.transform("min")).to_numpy()
    bad_rows = (spread > P_TOLERANCE).any(axis=1)
    if bad_rows.any():
        col = cols[int(np.argmax((spread > P_TOLERANCE).any(axis=0)))]
        mask = t.df.index.isin(mix.index[bad_rows])
        raise t.error(f"one run carries different mixtures on different rows: column {col!r} "
                      f"differs by more than {P_TOLERANCE:g} at {t.rows(mask)}")


def _check_own_ratio(t: _Table, mix: pd.DataFrame) -> None:
    """Each row's p equals its own column p_<family> within P_TOLERANCE."""
    fam = t.df.loc[mix.index, "family"]
    fam_M, fams = pd.factorize(fam)
    cols = mixture_columns(t.df)
    col_index = {c: j for j, c in enumerate(cols)}
    at_F = np.array([col_index.get(mixture_column(f), -1) for f in fams], dtype=int)
    if (at_F < 0).any():
        missing = sorted(mixture_column(f) for f, j in zip(fams, at_F) if j < 0)
        mask = t.df.index.isin(fam.index[at_F[fam_M] < 0])
        raise t.error(f"the table records mixtures but has no column {missing[0]!r} for the "
                      f"family of {t.rows(mask)}")
    own = mix[cols].to_numpy(dtype=float)[np.arange(len(mix)), at_F[fam_M]]
    p = t.df.loc[mix.index, "p"].to_numpy(dtype=float)
    off = np.abs(own - p) > P_TOLERANCE
    if off.any():
        i = mix.index[off][0]
        col = mixture_column(t.df.at[i, "family"])
        mask = t.df.index.isin(mix.index[off])
        raise t.error(f"column 'p' disagrees with column {col!r} (p = {t.df.at[i, 'p']:.6g}, "
                      f"{col} = {own[off][0]:.6g}; tolerance {P_TOLERANCE:g}) at {t.rows(mask)}")


def _check_mixture_sums(t: _Table, mix: pd.DataFrame) -> None:
    """A run's p_<family> columns sum to 1 within SUM_TOLERANCE."""
    cols = mixture_columns(t.df)
    total = mix[cols].sum(axis=1)
    off = (total - 1.0).abs() > SUM_TOLERANCE
    if off.any():
        i = total.index[off.to_numpy()][0]
        mask = t.df.index.isin(total.index[off.to_numpy()])
        raise t.error(f"the p_<family> columns of run {t.df.at[i, 'run']!r} sum to "
                      f"{total[i]:.6g}, not 1 (tolerance {SUM_TOLERANCE:g}), at {t.rows(mask)}")


def _complete_runs(t: _Table, mix: pd.DataFrame | None) -> np.ndarray:
    """Per run (in first-seen order): whether its mixture is recorded and every family with a
    share > 0 in it has a row."""
    n_runs = len(t.first_R)
    complete = np.zeros(n_runs, dtype=bool)
    if mix is None or mix.empty:
        return complete
    cols = mixture_columns(t.df)
    first = mix[cols].groupby(t.run_R[mix.index.to_numpy()], sort=True).first()
    fam_at = {c[len(MIXTURE_PREFIX):]: j for j, c in enumerate(cols)}
    col_R = t.df["family"].map(fam_at).to_numpy(dtype=float, na_value=np.nan)
    present = np.zeros((n_runs, len(cols)), dtype=bool)
    has = ~np.isnan(col_R)
    present[t.run_R[has], col_R[has].astype(int)] = True
    lacking = ((first.to_numpy() > 0) & ~present[first.index.to_numpy()]).any(axis=1)
    complete[first.index.to_numpy()[~lacking]] = True
    return complete


def _check_ratio_sums(t: _Table, mix: pd.DataFrame | None) -> None:
    """A run's p over its rows sums to 1 (within SUM_TOLERANCE) when every family of its
    recorded mixture is evaluated, and to at most 1 + SUM_TOLERANCE otherwise."""
    total = np.bincount(t.run_R, weights=t.df["p"].to_numpy())
    whole = _complete_runs(t, mix)
    bad = (total > 1.0 + SUM_TOLERANCE) | (whole & (total < 1.0 - SUM_TOLERANCE))
    if bad.any():
        r = int(np.argmax(bad))
        mask = t.run_R == r
        run = t.df["run"].to_numpy()[mask][0]
        need = "1" if whole[r] else "at most 1"
        raise t.error(f"column 'p' of run {run!r} sums to {total[r]:.6g} over its families, not {need} "
                      f"(tolerance {SUM_TOLERANCE:g}), at {t.rows(mask)}")


def _check_mixtures(t: _Table) -> None:
    """`mix`: the p_<family> columns (NaN read as 0) of the rows with any cell set; None without
    mixture columns."""
    mix = None
    if cols := mixture_columns(t.df):
        recorded = t.df[cols].notna().any(axis=1)
        mix = t.df.loc[recorded, ["run", *cols]].fillna({c: 0.0 for c in cols})
    if mix is not None and not mix.empty:
        _check_one_mixture_per_run(t, mix)
        _check_own_ratio(t, mix)
        _check_mixture_sums(t, mix)
    _check_ratio_sums(t, mix)


def _check_min_runs(t: _Table, law: str | None, min_runs: int | None) -> None:
    if law is not None and law not in MIN_RUNS_PER_FAMILY and min_runs is None:
        raise t.error(f"unknown law {law!r}; choose one of {sorted(MIN_RUNS_PER_FAMILY)}")
    need = min_runs if min_runs is not None else (MIN_RUNS_PER_FAMILY.get(law) if law else None)
    if not need:
        return
    counts = t.df.groupby("family", sort=False)["run"].count()
    few = counts[counts < need]
    if len(few):
        detail = ", ".join(f"{fam!r} has {n}" for fam, n in few.items())
        raise t.error(f"column 'family': law {law!r} needs at least {need} runs per family; {detail}")


def _check_arguments(df, law, min_runs, source, lines) -> None:
    """`validate_runs`'s arguments, each named when wrong."""
    def bad(arg: str, want: str, got) -> RunTableError:
        shown = type(got).__name__ if arg == "df" else repr(got)
        return RunTableError(f"validate_runs: argument {arg!r} must be {want}, got {shown}")

    if not isinstance(df, pd.DataFrame):
        raise bad("df", "a pandas DataFrame (a run table)", df)
    if law is not None and not isinstance(law, str):
        raise bad("law", f"None or one of {sorted(MIN_RUNS_PER_FAMILY)}", law)
    if min_runs is not None and (isinstance(min_runs, bool) or not isinstance(min_runs, numbers.Integral)
                                 or min_runs < 0):
        raise bad("min_runs", "None or a whole number >= 0", min_runs)
    if source is not None and not isinstance(source, (str, os.PathLike)):
        raise bad("source", "None or a file name", source)
    if lines is not None and (isinstance(lines, (str, bytes)) or not hasattr(lines, "__len__")):
        raise bad("lines", "None or a sequence of line numbers", lines)
    if lines is not None and len(lines) != len(df):
        raise RunTableError(f"validate_runs: argument 'lines' must hold one line number per row of "
                            f"'df' ({len(df)}), got {len(lines)}")


def validate_runs(df: pd.DataFrame, *, law: str | None = None, min_runs: int | None = None,
                  source: str | None = None, lines: Sequence[int] | None = None) -> pd.DataFrame:
    """Check a run table and return a clean, typed copy (index reset to 0..n-1).

    The rules: docs/design.md, "The run table". `law` also refuses a family with fewer runs than
    `MIN_RUNS_PER_FAMILY[law]` (`min_runs` overrides it); `source` and `lines` (the file line of
    each row) are named in messages.

    Raises:
      RunTableError: naming the file, the offending rows and the column (or the argument).
    """
    _check_arguments(df, law, min_runs, source, lines)
    t = _Table(df.reset_index(drop=True).copy(), None if source is None else str(source), lines)
    _check_columns(t)
    _check_names(t)
    _check_required_numbers(t)
    _check_optional_numbers(t)
    _check_duplicates(t)
    _check_one_scale_per_run(t)
    _check_repeated_runs(t)
    _check_mixtures(t)
    _check_min_runs(t, law, min_runs)
    return t.df


# ---------------------------------------------------------------------------------- files


def _is_parquet(path) -> bool:
    return str(path).lower().endswith((".parquet", ".pq"))


def _read_bytes(path) -> bytes:
    p = as_path(path)
    if not p.exists():
        raise MissingFileError(f"run table {str(path)!r} does not exist")
    if p.is_dir():
        raise MissingFileError(f"run table {str(path)!r} is a folder, not a CSV or Parquet file")
    return p.read_bytes()


# The first bytes of files that are not CSV text, and what to name them.
_MAGIC = {b"\x1f\x8b": "a gzip file: name it .csv.gz", b"PAR1": "a Parquet file: name it .parquet",
          b"PK\x03\x04": "a zip archive (a spreadsheet?): export it as CSV",
          b"BZh": "a bzip2 file: name it .csv.bz2", b"\xfd7zXZ": "an xz file: name it .csv.xz",
          b"\xff\xfe": "UTF-16 text: save it as UTF-8", b"\xfe\xff": "UTF-16 text: save it as UTF-8"}


def _csv_rows(data: bytes, source: str) -> tuple[list[str], list[int]]:
    """The header of CSV `data` and the file line of each data row, refusing a file that pandas
    would read wrongly: ragged or truncated rows (pandas fills a short row with NaN, or turns an
    extra field into an index) and a column named twice (pandas renames the second 'loss.1').

    Lines may end in LF, CRLF or CR alone (old Mac text); blank lines are skipped, as pandas does.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        kind = next((what for magic, what in _MAGIC.items() if data.startswith(magic)), None)
        hint = f": it looks like {kind}" if kind else f" ({err})"
        raise RunTableError(f"{source}: not a UTF-8 CSV file{hint}") from None
    if "\x00" in text:
        head = text[:text.index("\x00")]
        line = head.count("\n") + head.count("\r") - head.count("\r\n") + 1
        raise RunTableError(f"{source}: line {line} holds a NUL character: a damaged or binary file, not CSV text")
    reader = csv.reader(io.StringIO(text, newline=""))
    header, lines, start = None, array.array("q"), 0
    try:
        for record in reader:
            if not record:
                start = reader.line_num
                continue
            if header is None:
                header, start = record, reader.line_num
                _check_header(header, source, start)
                continue
            if len(record) != len(header):
                quote = any("\n" in f or "\r" in f for f in record)
                note = f"; a quote opened on line {start + 1} is never closed?" if quote else _cut_note(text, reader)
                raise RunTableError(
                    f"{source}: line {start + 1} (row {len(lines)}) has {len(record)} fields, the header "
                    f"has {len(header)}: the row is ragged or the file is cut{note}")
            lines.append(start + 1)
            start = reader.line_num
    except csv.Error as err:
        too_long = "field larger than field limit" in str(err)
        why = (f"a field is longer than {csv.field_size_limit():,} characters (an unclosed quote?)"
               if too_long else f"not readable as CSV ({err})")
        raise RunTableError(f"{source}: line {start + 1}: {why}") from None
    if header is None:
        raise RunTableError(f"{source}: the file is empty (no header line)")
    return header, lines.tolist()


def _check_header(header: list[str], source: str, line: int) -> None:
    """A header names some column and none twice (pandas would rename the second), and is not a
    spreadsheet's 'sep=' line or a lone field holding another separator."""
    if not any(h.strip() for h in header):
        raise RunTableError(f"{source}: the header (line {line}) names no column")
    if header[0].strip().lower().startswith("sep="):
        raise RunTableError(f"{source}: line {line} is a spreadsheet's {','.join(header).strip()!r} line, not the "
                            f"header: delete it")
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        sep = next(sep for sep in ";\t|" if sep in header[0])
        raise RunTableError(f"{source}: the header (line {line}) is one column {header[0]!r}: the file "
                            f"seems separated by {sep!r}, not ','; write it with commas")
    names = _compared_names(header)
    twice = sorted({c for c in names if names.count(c) > 1}, key=str)
    if twice:
        raise RunTableError(f"{source}: the header (line {line}) names column(s) {twice} more than once "
                            f"(names compared without surrounding spaces); rename or remove the extra one")


def _cut_note(text: str, reader) -> str:
    """A note when the short row is the file's last line and has no line end: a cut file."""
    line_ends = text.count("\n") + text.count("\r") - text.count("\r\n")
    last = reader.line_num == line_ends + 1 and not text.endswith(("\n", "\r"))
    return "; the file ends mid-row (truncated?)" if last else ""


def read_runs(path: str | os.PathLike, *, law: str | None = None) -> pd.DataFrame:
    """Read a run table from CSV or Parquet (by extension; local or gs://) and validate it.
    CSV may be compressed (``.csv.gz``, ``.csv.bz2``, ``.csv.xz``); ``run`` and ``family``
    are read as text ('007' stays '007').

    `MissingFileError` when there is no file; `RunTableError` (a ragged, truncated or unreadable
    file, or a table `validate_runs` refuses) names the file, the rows (and lines) and the column.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise RunTableError(f"read_runs: argument 'path' must be a file path (str or os.PathLike), "
                            f"got {path!r}")
    source = str(path)
    data = _read_bytes(path)
    lines = None
    try:
        if _is_parquet(path):
            df = pd.read_parquet(io.BytesIO(data))
        else:
            data = _decompress(data, source)
            header, lines = _csv_rows(data, source)
            names = {raw: str for raw in header if _clean_name(raw) in ("run", "family")}
            df = pd.read_csv(io.BytesIO(data), dtype=names)
            if len(df) != len(lines):
                raise RunTableError(f"{source}: pandas reads {len(df)} rows where the CSV has {len(lines)} "
                                    f"(stray quotes or line ends inside a field?)")
    except RunTableError:
        raise
    except (OSError, ValueError) as err:  # pandas' ParserError, pyarrow's ArrowInvalid
        raise RunTableError(f"{source}: cannot read the run table ({err})") from None
    del data  # the file's bytes are not needed while the table is checked
    return validate_runs(df, law=law, source=source, lines=lines)


def _decompress(data: bytes, source: str) -> bytes:
    """The CSV bytes of a ``.csv.gz``, ``.csv.bz2`` or ``.csv.xz`` file (others as they are)."""
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}
    for suffix, decompress in opener.items():
        if source.lower().endswith(suffix):
            try:
                return decompress(data)
            except (OSError, EOFError, lzma.LZMAError) as err:
                raise RunTableError(f"{source}: cannot read the run table ({err or 'cut short'})") from None
    return data


def write_runs(df: pd.DataFrame, path: str | os.PathLike):
    """Validate and write a run table atomically; CSV unless the path ends in ``.parquet``.

    Returns the path (a `pathlib.Path` locally, an `etils.epath.Path` for gs://).
    """
    df = validate_runs(df)
    if _is_parquet(path):
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(path, buf.getvalue())
    else:
        atomic_write_text(path, df.to_csv(index=False))
    return as_path(path) if is_remote(path) else Path(path)


def mixture_matrix(df: pd.DataFrame) -> tuple[list[str], list[str], np.ndarray]:
    """(runs in first-seen order, families, P_RxF float64) from the ``p_<family>`` columns.
    `RunTableError`: no ``p_`` columns, an empty cell, or a run with two mixtures."""
    if not isinstance(df, pd.DataFrame):
        raise RunTableError(f"mixture_matrix: argument 'df' must be a pandas DataFrame (a run table), "
                            f"got {type(df).__name__}")
    cols = mixture_columns(df)
    if not cols:
        raise RunTableError("the run table has no 'p_<family>' mixture columns")
    if "run" not in df.columns:
        raise RunTableError("the run table is missing column 'run'")
    families = [c[len(MIXTURE_PREFIX):] for c in cols]
    sub = df[["run", *cols]].copy()
    for c in cols:
        sub[c] = pd.to_numeric(sub[c], errors="coerce")
    g = sub.groupby("run", sort=False)[cols]
    spread = (g.max() - g.min()).to_numpy()
    conflict = g.max().index[(spread > P_TOLERANCE).any(axis=1)]
    if len(conflict):
        raise RunTableError(
            f"runs {list(conflict[:_MAX_LISTED])} carry different values in the "
            f"'p_<family>' columns on different rows")
    first = sub.drop_duplicates("run", keep="first").reset_index(drop=True)
    P_RxF = first[cols].to_numpy(dtype=float)
    if np.isnan(P_RxF).any():
        r, c = np.argwhere(np.isnan(P_RxF))[0]
        raise RunTableError(f"column {cols[c]!r} is empty for run {first['run'].iloc[r]!r}")
    return first["run"].astype(str).tolist(), families, P_RxF
