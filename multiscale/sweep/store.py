"""The sweep folder: plans, fragments, the consolidated run table, failures and leases.

`SweepStore(DIR)` is the one face of the folder layout (a local path, a shared file system, or
gs:// through etils.epath), written out in docs/reference.md, "Sweep folder": plans/, plan.json,
runs/<run_id>/, rows/<run_id>.csv (checksummed fragments), claims/, failures/, quarantine/,
runs.csv and failures.jsonl.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import socket
import time
import traceback
import uuid
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import multiscale.sweep.lease as _lease
from multiscale.errors import DamagedFileError, InputError, MissingFileError
from multiscale.fileio import as_path, atomic_write_text, dumps, read_json, sha256_bytes

RUNS_CSV = "runs.csv"
FAILURES_JSONL = "failures.jsonl"
PLAN_JSON = "plan.json"
FRAGMENT_MARK = "# multiscale-fragment"


class DamagedFragmentWarning(UserWarning):
    """A run's fragment is truncated or fails its checksum; it is left out of runs.csv."""


@dataclasses.dataclass(frozen=True)
class FragmentScan:
    """The state of every fragment in DIR/rows: intact run ids, and damaged ones with the reason
    (and a digest of the damaged bytes, to notice when the fragment is replaced)."""

    intact: tuple[str, ...]
    damaged: tuple[tuple[str, str, str], ...] = ()  # (run_id, reason, sha256 of the bytes)


def fragment_text(run_id: str, rows) -> str:
    """A fragment: the rows as CSV (the `run` column first, set to `run_id`), then one trailer
    line `# multiscale-fragment rows=<n> sha256=<hex of the CSV bytes>`. The rows must pass the
    run table's validation (`multiscale.runs.validate_runs`), so runs.csv never holds a junk row."""
    import pandas as pd

    from multiscale.runs import validate_runs

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        raise ValueError(f"run {run_id}: the trainer returned no run-table rows")
    df = df.copy()
    df["run"] = run_id
    df = validate_runs(df, source=f"the rows of run {run_id}")
    body = df[["run"] + [c for c in df.columns if c != "run"]].to_csv(index=False, lineterminator="\n")
    return f"{body}{FRAGMENT_MARK} rows={len(df)} sha256={sha256_bytes(body.encode('utf-8'))}\n"


def check_fragment(run_id: str, data: bytes) -> str:
    """The CSV body of an intact fragment; raises DamagedFileError with the reason otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DamagedFileError("not UTF-8 text") from None
    if not text.endswith("\n"):
        raise DamagedFileError("cut short (no final newline)")
    body, _, trailer = text[:-1].rpartition("\n")
    body += "\n"
    if not trailer.startswith(FRAGMENT_MARK + " "):
        raise DamagedFileError("no checksum line (cut short)")
    fields = dict(f.partition("=")[::2] for f in trailer[len(FRAGMENT_MARK):].split())
    if fields.get("sha256") != sha256_bytes(body.encode("utf-8")):
        raise DamagedFileError("checksum mismatch")
    records = list(csv.reader(io.StringIO(body)))
    if not records or records[0][:1] != ["run"]:
        raise DamagedFileError("no header line starting with 'run'")
    width = len(records[0])
    if fields.get("rows") != str(len(records) - 1) or any(len(r) != width for r in records[1:]):
        raise DamagedFileError(f"{len(records) - 1} well-formed rows, the checksum line says {fields.get('rows')}")
    if any(r[0] != run_id for r in records[1:]):
        raise DamagedFileError(f"rows of another run than {run_id}")
    return body


class SweepStore:
    """The sweep folder `out_dir` (local or gs://). An intact fragment (checksummed, written
    atomically) is the one mark that a run is complete; damaged fragments are reported, never
    read into a table, and moved aside rather than deleted."""

    def __init__(self, out_dir):
        self.root = as_path(out_dir)

    def __repr__(self) -> str:
        return f"SweepStore({str(self.root)!r})"

    # ------------------------------------------------------------------ paths

    @property
    def runs_csv(self) -> str:
        return str(self.root / RUNS_CSV)

    @property
    def failures_jsonl(self) -> str:
        return str(self.root / FAILURES_JSONL)

    def exists(self) -> bool:
        return self.root.exists()

    def run_dir(self, run_id: str):
        return self.root / "runs" / run_id

    def fragment_path(self, run_id: str):
        return self.root / "rows" / f"{run_id}.csv"

    def claim_path(self, run_id: str):
        return self.root / "claims" / f"{run_id}.json"

    def _listing(self, sub: str, suffix: str) -> list[str]:
        d = self.root / sub
        if not d.exists():
            return []
        return sorted(p.name[: -len(suffix)] for p in d.iterdir()
                      if p.name.endswith(suffix) and not p.name.startswith("."))

    # ------------------------------------------------------------------ plans

    def save_plan(self, name: str, runs: Sequence[Any], *, corpus: str | None,
                  family_tokens: dict[str, int] | None, corpus_fingerprint: str | None = None) -> str:
        """Records an expanded plan (its runs, corpus, the corpus's fingerprint and family token
        counts); returns its path."""
        text = dumps({"name": name, "corpus": corpus, "corpus_fingerprint": corpus_fingerprint,
                      "family_tokens": family_tokens, "runs": [r.to_dict() for r in runs]}, indent=1)
        digest = hashlib.sha256("\n".join(r.run_id for r in runs).encode()).hexdigest()[:8]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = self.root / "plans" / f"{safe}-{digest}.json"
        atomic_write_text(path, text)
        atomic_write_text(self.root / PLAN_JSON, text)  # the latest plan, for people
        return str(path)

    def plans(self) -> list[dict[str, Any]]:
        """Every plan record swept into the folder (name, corpus, corpus_fingerprint,
        family_tokens, runs)."""
        d = self.root / "plans"
        files = sorted(p for p in d.glob("*.json") if not p.name.startswith(".")) if d.exists() else []
        if not files:
            raise MissingFileError(f"{d} holds no plan: is {self.root} a sweep folder?")
        records = []
        for f in files:
            rec = read_json(f, what="sweep plan record")
            if not isinstance(rec.get("runs"), list):
                raise DamagedFileError(f"sweep plan record {str(f)!r} is damaged: no 'runs' list "
                                       f"(rerun the sweep to rewrite it)")
            if "corpus_fingerprint" not in rec:
                raise InputError(f"sweep plan record {str(f)!r} has no 'corpus_fingerprint': sweep folder "
                                 f"{self.root} was written in a format this version does not read; "
                                 "sweep into a new folder")
            records.append(rec)
        return records

    def planned_runs(self, heldout: bool | None = None) -> list[dict[str, Any]]:
        """The planned runs of every plan, united by run id (held out when any plan says so);
        heldout=True/False keeps only held-out/fitted runs."""
        runs: dict[str, dict] = {}
        for rec in self.plans():
            for r in rec["runs"]:
                if r["run_id"] in runs:
                    runs[r["run_id"]]["heldout"] = runs[r["run_id"]]["heldout"] or r["heldout"]
                else:
                    runs[r["run_id"]] = dict(r)
        out = list(runs.values())
        return out if heldout is None else [r for r in out if bool(r["heldout"]) == heldout]

    def require_same_corpus(self, corpus: str, fingerprint: str) -> None:
        """Raise `InputError` if a plan recorded here was swept on another corpus (by
        `Corpus.fingerprint`): run ids name configurations, not data."""
        if not (self.root / "plans").exists():
            return
        for rec in self.plans():
            old_fp = rec["corpus_fingerprint"]
            if old_fp and old_fp != fingerprint:
                raise InputError(
                    f"sweep folder {self.root} holds plan {rec.get('name')!r}, swept on corpus "
                    f"{rec.get('corpus')!r} (fingerprint {old_fp}); corpus {corpus!r} is another (fingerprint "
                    f"{fingerprint}), and its runs would take that corpus's finished runs for their own. "
                    "Sweep it into a new folder.")

    def corpus_tokens(self) -> dict[str, int] | None:
        """Unique training tokens per family of the swept corpus (None if no plan recorded them)."""
        return next((rec["family_tokens"] for rec in self.plans() if rec.get("family_tokens")), None)

    def corpus(self) -> str | None:
        return next((rec["corpus"] for rec in self.plans() if rec.get("corpus")), None)

    def plan_names(self) -> list[str]:
        return [rec.get("name") for rec in self.plans()]

    # ------------------------------------------------------------------ fragments

    def fragment_ids(self) -> list[str]:
        """Run ids that have a fragment file (intact or not; see `scan`)."""
        return self._listing("rows", ".csv")

    def write_fragment(self, run_id: str, rows) -> None:
        """Stores one finished run's rows (DataFrame or list of dicts)."""
        atomic_write_text(self.fragment_path(run_id), fragment_text(run_id, rows))

    def _fragment_body(self, run_id: str) -> tuple[str | None, str | None, str]:
        """(CSV body or None, damage reason or None, sha256 of the bytes); body and reason are
        both None when the fragment vanished."""
        try:
            data = self.fragment_path(run_id).read_bytes()
        except FileNotFoundError:
            return None, None, ""
        try:
            return check_fragment(run_id, data), None, sha256_bytes(data)
        except DamagedFileError as err:
            return None, str(err), sha256_bytes(data)

    def read_fragment(self, run_id: str):
        """One intact fragment as a DataFrame; DamagedFileError (naming the file) otherwise."""
        import pandas as pd

        body, reason, _ = self._fragment_body(run_id)
        if body is None:
            path = self.fragment_path(run_id)
            if reason is None:
                raise MissingFileError(f"sweep fragment {str(path)!r} does not exist")
            raise DamagedFileError(f"sweep fragment {str(path)!r} is damaged: {reason}")
        return pd.read_csv(io.StringIO(body))

    def fragment_state(self, run_id: str) -> tuple[str, str | None]:
        """('intact' | 'missing' | 'damaged', the damage's reason or None)."""
        body, reason, _ = self._fragment_body(run_id)
        if body is not None:
            return "intact", None
        return ("missing", None) if reason is None else ("damaged", reason)

    def _read_all(self, ids: Iterable[str] | None = None):
        """(intact bodies by run id, FragmentScan)."""
        bodies, damaged = {}, []
        for run_id in self.fragment_ids() if ids is None else ids:
            body, reason, digest = self._fragment_body(run_id)
            if body is not None:
                bodies[run_id] = body
            elif reason is not None:
                damaged.append((run_id, reason, digest))
        return bodies, FragmentScan(intact=tuple(sorted(bodies)), damaged=tuple(damaged))

    def scan(self) -> FragmentScan:
        """Verifies every fragment (checksum, row count, field counts, run ids); warns
        (DamagedFragmentWarning) naming each damaged one."""
        scan = self._read_all()[1]
        self._warn(scan)
        return scan

    def _warn(self, scan: FragmentScan) -> None:
        for run_id, reason, _ in scan.damaged:
            warnings.warn(f"sweep fragment {str(self.fragment_path(run_id))!r} is damaged ({reason}); "
                          f"left out of {RUNS_CSV}: the next sweep of its plan quarantines it and "
                          f"trains the run again", DamagedFragmentWarning, stacklevel=3)

    def read_table(self):
        """Every intact fragment's rows as one DataFrame, sorted by run and family (the content
        runs.csv converges to); damaged fragments are left out with a warning."""
        bodies, scan = self._read_all()
        self._warn(scan)
        return _table(bodies)

    def quarantine(self, run_id: str, reason: str) -> str | None:
        """Moves the run's fragment to DIR/quarantine/ beside a JSON note of the reason; returns
        the new path (None if the fragment was already gone)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        dest = self.root / "quarantine" / f"{run_id}.{stamp}.csv"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fragment_path(run_id).rename(dest)
        except FileNotFoundError:
            return None
        atomic_write_text(self.root / "quarantine" / f"{run_id}.{stamp}.json",
                          dumps({"run": run_id, "reason": reason, "host": socket.gethostname(),
                                 "time": _utc_now()}))
        return str(dest)

    # ------------------------------------------------------------------ consolidation

    def consolidate(self, *, max_rounds: int = 50) -> int:
        """Rebuilds runs.csv and failures.jsonl from the intact fragments; returns the row count.
        Lock-free: rebuilds until runs.csv agrees with a fresh listing (docs/design.md, "Sweeps").
        """
        for _ in range(max_rounds):
            bodies, scan = self._read_all()
            table = _table(bodies)
            atomic_write_text(self.root / RUNS_CSV, table.to_csv(index=False))
            atomic_write_text(self.root / FAILURES_JSONL,
                              "".join(json.dumps(rec) + "\n" for rec in self.failures()))
            listed = set(self.fragment_ids())
            still_damaged = {i for i, _, digest in scan.damaged if self._fragment_body(i)[2] == digest}
            records = csv.reader(io.StringIO((self.root / RUNS_CSV).read_text()))
            header = next(records, None)
            k = header.index("run") if header and "run" in header else None
            on_disk = {r[k] for r in records if r} if k is not None else set()
            if on_disk == listed - still_damaged and set(scan.intact) <= listed:
                self._warn(scan)
                return int(len(table))
            time.sleep(0.01)
        raise RuntimeError(f"could not consolidate {self.runs_csv}: fragments kept changing "
                           f"for {max_rounds} rounds")

    # ------------------------------------------------------------------ failures

    def record_failure(self, run_id: str, err: BaseException) -> None:
        record = {
            "run": run_id, "time": _utc_now(), "unix": time.time(), "host": socket.gethostname(),
            "error": f"{type(err).__name__}: {err}",
            "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:],
        }
        atomic_write_text(self.root / "failures" / f"{run_id}.json", json.dumps(record))

    def clear_failure(self, run_id: str) -> None:
        try:
            (self.root / "failures" / f"{run_id}.json").unlink()
        except FileNotFoundError:
            pass

    def failure(self, run_id: str) -> dict[str, Any] | None:
        try:
            rec = json.loads((self.root / "failures" / f"{run_id}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None  # gone, or being replaced: the next reading sees it
        return rec if isinstance(rec, dict) else None

    def failures(self) -> list[dict[str, Any]]:
        """The recorded failures (one record per failed run: run, time, host, error, traceback)."""
        return [rec for rec in map(self.failure, self._listing("failures", ".json")) if rec is not None]

    # ------------------------------------------------------------------ leases

    def claim(self, run_id: str, owner: dict[str, Any], lease_s: float = _lease.DEFAULT_LEASE_S):
        """The run's lease (heartbeating) or None while another live process holds it."""
        return _lease.try_claim(self.claim_path(run_id), owner, lease_s)

    def claim_state(self, run_id: str, lease_s: float = _lease.DEFAULT_LEASE_S) -> str:
        """'free', 'live' or 'expired'."""
        return _lease.claim_state(self.claim_path(run_id), lease_s)


def _table(bodies: dict[str, str]):
    import pandas as pd

    if not bodies:
        from multiscale.runs import REQUIRED_COLUMNS

        return pd.DataFrame(columns=list(REQUIRED_COLUMNS))
    df = pd.concat([pd.read_csv(io.StringIO(bodies[k])) for k in sorted(bodies)], ignore_index=True)
    return df.sort_values(["run", "family"], kind="stable").reset_index(drop=True)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------------- module-level shortcuts


def consolidate(out_dir, *, max_rounds: int = 50) -> int:
    """`SweepStore(out_dir).consolidate()`: rebuild runs.csv by hand at any time."""
    return SweepStore(out_dir).consolidate(max_rounds=max_rounds)


def read_fragments(out_dir):
    """`SweepStore(out_dir).read_table()`."""
    return SweepStore(out_dir).read_table()
