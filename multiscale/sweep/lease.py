"""Per-run leases: which process of a sweep trains a run now.

A lease is `DIR/claims/<run_id>.json` (owner host, pid, random token; last heartbeat; duration),
created exclusively (`O_CREAT | O_EXCL`; on gs:// a conditional upload, or without the storage
client a write, `REMOTE_SETTLE_S` wait and read-back). The owner's heartbeat thread rewrites it
every `lease_s / 5`. A lease older than its duration, one whose owner ran on this host and is
gone, or one of an earlier attempt of the same Ray/SLURM sweep (owner field `sweep`) is stale:
another process renames it aside (only one wins) and claims the run. Hosts sharing a folder need
distinct names and clocks agreeing well within the lease. See
docs/decisions/2026-11-30-sweep-leases-and-fragments.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from multiscale.fileio import as_path, atomic_write_text, is_remote

DEFAULT_LEASE_S = 300.0
REMOTE_SETTLE_S = 2.0


def new_owner() -> dict[str, Any]:
    """A unique owner record for this process (one per sweep call)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}


@dataclasses.dataclass
class Lease:
    """A held claim on one run; `release()` (or leaving a `with` block) gives it back."""

    path: Any
    owner: dict[str, Any]
    lease_s: float
    taken_over: bool = False
    lost: bool = False
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = dataclasses.field(default=None, repr=False)

    def start(self) -> Lease:
        interval = max(self.lease_s / 5.0, 0.02)
        self._thread = threading.Thread(target=self._beat, args=(interval,), daemon=True,
                                        name=f"lease-{as_path(self.path).name}")
        self._thread.start()
        return self

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            current = read_claim(self.path)
            if current is None or current.get("token") != self.owner["token"]:
                self.lost = True  # expired and taken over by another process
                return
            atomic_write_text(self.path, _record(self.owner, self.lease_s))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = read_claim(self.path)
        if current is not None and current.get("token") == self.owner["token"]:
            try:
                as_path(self.path).unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _record(owner: dict[str, Any], lease_s: float) -> str:
    return json.dumps({**owner, "heartbeat": time.time(), "lease_s": float(lease_s)})


def read_claim(path) -> dict[str, Any] | None:
    """The claim's record; None when there is no claim; {} when it exists but cannot be read yet
    (being created)."""
    p = as_path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def is_expired(path, record: dict[str, Any] | None, lease_s: float, now: float | None = None) -> bool:
    """Whether a claim is stale: heartbeat older than its lease (a record that cannot be read is
    judged by the file's modification time against `lease_s`)."""
    if record is None:
        return True
    if _dead_here(record):
        return True
    now = time.time() if now is None else now
    try:
        beat, span = float(record["heartbeat"]), float(record["lease_s"])
    except (KeyError, TypeError, ValueError):
        try:
            beat, span = float(os.path.getmtime(str(path))), float(lease_s)
        except OSError:
            return True
    return now - beat > span


def _dead_here(record: dict[str, Any]) -> bool:
    """Whether the claim's owner ran on this host and its process is gone (killed): such a claim
    need not wait for its lease to expire."""
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by another user
        return False
    return False


def try_claim(path, owner: dict[str, Any], lease_s: float = DEFAULT_LEASE_S) -> Lease | None:
    """Claims the run of `path`, taking over an expired claim; None while another live process
    holds it. The returned lease is heartbeating."""
    text = _record(owner, lease_s)
    if create_exclusive(path, text):
        return Lease(path, owner, lease_s).start()
    current = read_claim(path)
    # an earlier attempt of the same engine sweep is dead (its engine retries only then)
    same_sweep = current is not None and owner.get("sweep") is not None and current.get("sweep") == owner.get("sweep")
    if current is not None and not (same_sweep or is_expired(path, current, lease_s)):
        return None
    if current is not None and not _break_claim(path, current):
        return None
    if create_exclusive(path, text):
        return Lease(path, owner, lease_s, taken_over=current is not None).start()
    return None


def claim_state(path, lease_s: float = DEFAULT_LEASE_S) -> str:
    """'free', 'live' or 'expired'."""
    record = read_claim(path)
    if record is None:
        return "free"
    return "expired" if is_expired(path, record, lease_s) else "live"


# ----------------------------------------------------------------------------- primitives


def create_exclusive(path, text: str) -> bool:
    """Creates `path` holding `text` only if it does not exist; True when this call created it."""
    p = as_path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(p):
        return _remote_create_exclusive(p, text)
    try:
        fd = os.open(str(p), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return True


def _remote_create_exclusive(p, text: str) -> bool:
    try:
        from google.cloud import storage  # optional: exact, with a generation precondition
    except ImportError:
        storage = None
    if storage is not None and str(p).startswith("gs://"):
        from google.api_core import exceptions

        bucket, _, name = str(p)[len("gs://"):].partition("/")
        blob = storage.Client().bucket(bucket).blob(name)
        try:
            blob.upload_from_string(text, if_generation_match=0)
        except exceptions.PreconditionFailed:
            return False
        return True
    if p.exists():
        return False
    p.write_text(text)
    time.sleep(REMOTE_SETTLE_S)
    return p.read_text() == text


def _break_claim(path, seen: dict[str, Any]) -> bool:
    """Removes the expired claim `seen`; False when it changed meanwhile or another process
    removed it first."""
    p = as_path(path)
    if is_remote(p):
        if read_claim(p) != seen:
            return False
        try:
            p.unlink()
        except FileNotFoundError:
            return False
        return True
    aside = p.parent / f".{p.name}.stale-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(str(p), str(aside))  # only one process wins this rename
    except FileNotFoundError:
        return False
    moved = read_claim(aside)
    if seen and moved != seen:  # its owner beat in between: put the live claim back
        try:
            os.link(str(aside), str(p))
        except FileExistsError:
            pass
        os.unlink(str(aside))
        return False
    os.unlink(str(aside))
    return True
