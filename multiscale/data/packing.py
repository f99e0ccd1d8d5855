"""Packing documents into fixed-length rows (the layout shared by training and eval).

A language's documents (EOS-terminated token arrays) are concatenated into one stream and cut
into rows of L inputs: row r holds stream tokens [r*L, r*L + L] (L + 1 tokens), inputs are the
first L, targets the last L, so every stream token after the first is a target exactly once and
no token is padding. Per row:

    inputs, targets   int32 [L]
    segment_ids       int32 [L]  1, 2, ... per document piece in the row (0 = padding)
    positions         int32 [L]  position within that piece (restarts at 0 at the row start)
    weights           float32 [L] 1 where the target belongs to the input's document, else 0
                                  (no prediction across a document boundary)

`PackIterDataset` does this lazily over a grain IterDataset of documents and is checkpointable:
its state is the parent's state before the first document still in use plus an offset, so a
restored iterator rereads that document and continues exactly.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from multiscale.errors import InputError

_CONST: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def pack_row(pieces: Sequence[np.ndarray], seq_len: int) -> dict[str, np.ndarray]:
    """One row from document pieces totalling seq_len + 1 tokens (or fewer: padded with 0).
    Rows inside one document share read-only constant segment ids, positions and weights."""
    if len(pieces) == 1 and len(pieces[0]) == seq_len + 1:
        toks = pieces[0]
        if seq_len not in _CONST:
            _CONST[seq_len] = (np.ones(seq_len, np.int32), np.arange(seq_len, dtype=np.int32),
                               np.ones(seq_len, np.float32))
            for a in _CONST[seq_len]:
                a.setflags(write=False)
        ones, arange, wones = _CONST[seq_len]
        return {"inputs": toks[:-1], "targets": toks[1:], "segment_ids": ones,
                "positions": arange, "weights": wones}
    lens = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    toks = np.concatenate(pieces).astype(np.int32, copy=False)
    n = len(toks)
    seg = np.repeat(np.arange(1, len(pieces) + 1, dtype=np.int32), lens)
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    pos = (np.arange(n) - starts).astype(np.int32)
    if n < seq_len + 1:  # padding (eval rows only)
        pad = seq_len + 1 - n
        toks = np.concatenate([toks, np.zeros(pad, np.int32)])
        seg = np.concatenate([seg, np.zeros(pad, np.int32)])
        pos = np.concatenate([pos, np.zeros(pad, np.int32)])
    seg_in, seg_tg = seg[:seq_len], seg[1:]
    weights = ((seg_in == seg_tg) & (seg_in > 0)).astype(np.float32)
    return {"inputs": toks[:seq_len], "targets": toks[1:], "segment_ids": seg_in,
            "positions": pos[:seq_len], "weights": weights}


class _PackIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, seq_len: int, extra: dict[str, Any]):
        super().__init__(parent)
        self._seq_len = seq_len
        self._extra = extra
        self._docs: collections.deque = collections.deque()  # (parent state before doc, tokens)
        self._pos = 0  # offset in docs[0] of the next row's first token
        self._avail = 0  # tokens in docs from _pos on

    def __next__(self) -> dict[str, np.ndarray]:
        need = self._seq_len + 1
        while self._avail < need:
            state = self._parent.get_state()
            doc = next(self._parent)
            self._docs.append((state, doc))
            self._avail += len(doc)
        pieces, remaining = [], need
        for k, (_, doc) in enumerate(self._docs):
            start = self._pos if k == 0 else 0
            take = min(len(doc) - start, remaining)
            pieces.append(doc[start : start + take])
            remaining -= take
            if remaining == 0:
                break
        row = pack_row(pieces, self._seq_len)
        row.update(self._extra)
        # advance by L tokens (the last target is the next row's first input)
        self._avail -= self._seq_len
        pos = self._pos + self._seq_len
        while self._docs and pos >= len(self._docs[0][1]):
            pos -= len(self._docs[0][1])
            self._docs.popleft()
        self._pos = pos
        return row

    def get_state(self) -> dict[str, Any]:
        parent = self._docs[0][0] if self._docs else self._parent.get_state()
        return {"parent": parent, "pos": self._pos}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self._docs.clear()
        self._pos = int(state["pos"])
        self._avail = -self._pos  # the first document read back is docs[0]


class PackIterDataset(grain.IterDataset):
    """Rows of `seq_len` packed from an IterDataset of 1-D token arrays; `extra` is added to rows."""

    def __init__(self, parent: grain.IterDataset, seq_len: int, extra: dict[str, Any] | None = None):
        super().__init__(parent)
        if seq_len < 1:
            raise InputError(f"seq_len must be >= 1, got {seq_len}")
        self._seq_len = seq_len
        self._extra = dict(extra or {})

    def __iter__(self) -> grain.DatasetIterator:
        return _PackIterator(self._parent.__iter__(), self._seq_len, self._extra)

    def __str__(self) -> str:
        return f"PackIterDataset(seq_len={self._seq_len})"


def pack_documents(docs: Sequence[np.ndarray], seq_len: int) -> list[dict[str, np.ndarray]]:
    """All rows of a finite document list (eval): the last row is padded (weights 0 there)."""
    rows = []
    total = sum(len(d) for d in docs)
    if total == 0:
        return rows
    flat = np.concatenate(docs).astype(np.int32)
    doc_of = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
    start = 0
    while start < total - 1:
        end = min(start + seq_len + 1, total)
        ids = doc_of[start:end]
        cuts = np.flatnonzero(np.diff(ids)) + 1
        pieces = np.split(flat[start:end], cuts)
        rows.append(pack_row(pieces, seq_len))
        start += seq_len
    return rows
