"""What the report reads: the fit, its run table, which runs are held out, and the corpus's
per-family token counts. Every path is checked before any work, with the flag named."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import pandas as pd

from multiscale.errors import InputError, MissingFileError
from multiscale.fileio import check_output_folder


@dataclasses.dataclass(frozen=True)
class SweepFacts:
    """What the sweep folder holding a run table says about it: the runs its plans mark
    held-out, and the corpus's per-family training tokens (None when not recorded)."""

    heldout: frozenset[str]
    family_tokens: Mapping[str, int] | None


def check_paths(fit_dir: str, out_dir: str, runs, fitted) -> str:
    """Refuses, before any work, a missing FIT_DIR, run table or fitted table, and an output
    folder that is a file or lies under one. Returns the run table's path."""
    if not os.path.isdir(fit_dir):
        raise MissingFileError(f"fit_dir {fit_dir!r} is not a folder (a saved fit: `multiscale fit`)", arg="fit_dir")
    if runs is not None:  # given, it must exist; else the run table saved beside the fit
        if not os.path.isfile(runs):
            raise MissingFileError(f"runs {os.fspath(runs)!r}: run table does not exist", arg="runs")
        runs_path = os.fspath(runs)
    else:
        runs_path = os.path.join(fit_dir, "runs.csv")
        if not os.path.isfile(runs_path):
            raise MissingFileError(f"runs: no run table given, and the fit {fit_dir!r} holds no runs.csv",
                                   arg="runs")
    if fitted is not None and not os.path.isfile(fitted):
        raise MissingFileError(f"fitted {os.fspath(fitted)!r} does not exist", arg="fitted")
    check_output_folder(out_dir)
    return runs_path


def sweep_facts(runs_path: str) -> SweepFacts | None:
    """The facts of the sweep folder holding `runs_path` (read through its `SweepStore`), or None
    when that folder records no plan (the table is not a sweep's)."""
    from multiscale.sweep.store import SweepStore

    store = SweepStore(os.path.dirname(os.path.abspath(runs_path)))
    try:
        held = frozenset(r["run_id"] for r in store.planned_runs(heldout=True))
    except MissingFileError:
        return None
    return SweepFacts(heldout=held, family_tokens=store.corpus_tokens())


def heldout_runs(fit, df: pd.DataFrame, runs_path: str, *, heldout: Sequence[str] | None,
                 fitted_table: str | None, facts: SweepFacts | None) -> list[str]:
    """Which runs of `df` the fit did not see, in this order of evidence: `heldout` as given;
    the runs missing from the table the fit saw (`fitted_table`, else FIT_DIR/runs.csv when it
    is another file than `runs_path`); the runs the sweep's plans mark held-out, unless the fit
    saw as many rows as the table has for its families (it was fitted on everything)."""
    all_runs = list(dict.fromkeys(df["run"]))
    if heldout is not None:
        unknown = sorted(set(heldout) - set(all_runs))
        if unknown:
            raise InputError(f"heldout names runs that are not in {runs_path}: {unknown[:5]}", arg="heldout")
        twice = sorted({r for r in heldout if list(heldout).count(r) > 1})
        if twice:
            raise InputError(f"heldout names run(s) {twice[:5]} twice", arg="heldout")
        return list(heldout)
    if fitted_table is not None and os.path.abspath(fitted_table) != os.path.abspath(runs_path):
        from multiscale.runs import read_runs

        seen = set(read_runs(fitted_table)["run"].astype(str))
        return [r for r in all_runs if r not in seen]
    if facts is None:
        return []
    from multiscale.sweep.plan import runs_of_configurations

    held = runs_of_configurations(all_runs, facts.heldout)
    fitted_rows = sum(getattr(fit, "n_runs", {}).values())
    if held and fitted_rows >= int(df["family"].isin(getattr(fit, "families", ())).sum()):
        return []
    return held
