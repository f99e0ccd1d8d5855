"""Public scaling ladders (final losses across model size N and token budget D) as run tables.

Each ladder lives in its own folder beside this module: ``runs.csv`` (rows of a public ladder,
one per trained model, every column as converted from the source), the source's ``LICENSE``
and a ``README.md`` naming the source, its licence and what a row is (see also ``README.md``
here). Every row is a final loss: the last evaluation of a run whose learning-rate schedule
ended at its own budget D. Losses are validation cross-entropy in nats per token; N counts
non-embedding parameters (input embedding and output head both excluded), D training tokens.

Every model was trained on one corpus, so p = 1, and a run has one row. Its family names what
the loss was measured on: the training corpus's own held-out text (Gadre et al.: three corpora,
each evaluated in distribution; Porian et al.: two; Gemstone: Dolma), or, for the OLMo 2 ladder,
whose mix has no held-out set of its own among the evaluations, C4 (``c4_en``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from multiscale.errors import InputError
from multiscale.runs import REQUIRED_COLUMNS, read_runs, validate_runs

HERE = Path(__file__).resolve().parent
# name -> the column of runs.csv that holds the run table's family
_FAMILY_COLUMN = {
    "gadre2024_openlm": "train_dataset",  # its "family" column names the (in-distribution) evaluation set
    "porian2024_resolving": "family",
    "gemstone2025": "family",
    "olmo2_ladder_peteish": "family",
}
LADDERS = tuple(_FAMILY_COLUMN)


def ladder_folder(name: str) -> Path:
    """The folder of ladder `name` (its runs.csv, LICENSE and README.md)."""
    if name not in _FAMILY_COLUMN:
        raise InputError(f"ladder {name!r} is unknown; choose one of {list(LADDERS)}")
    return HERE / name


def load_ladder(name: str) -> pd.DataFrame:
    """Ladder `name` (one of `LADDERS`) as a validated run table: columns run, family, N, D,
    p = 1, loss; one row per run (see the module docstring for what the family is)."""
    path = ladder_folder(name) / "runs.csv"
    raw = read_runs(path)
    table = raw[list(REQUIRED_COLUMNS)].assign(family=raw[_FAMILY_COLUMN[name]].astype(str))
    return validate_runs(table, law="chinchilla", source=str(path))
