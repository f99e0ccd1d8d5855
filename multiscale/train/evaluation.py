"""Held-out evaluation per language and per family.

For every language of the fixed eval set (the same text for every mixture) the evaluator
reports, in nats/token of the library's vocabulary:

- `loss`: total nats / total target tokens (token-weighted mean cross-entropy),
- `loss_sem`: its standard error, treating each eval *sequence* (row) as the sampling unit:
  the ratio-estimator (delta-method) variance `n/(n-1) * sum_r (nll_r - loss * tok_r)^2 / T^2`,
  where row r has `tok_r` tokens and `nll_r` nats and T = sum tok_r. Tokens within a sequence are
  correlated, so sequences, not tokens, are the independent draws; rows never mix languages,
- `bpb`: total nats / ln 2 / UTF-8 bytes of that eval text (comparable across tokenizers),
- `tokens`: target tokens scored, `sequences`: rows scored.

A family's `loss` is *micro*: pooled over all rows of its languages (token-weighted), with the
same SEM formula; its `loss_macro` is the plain mean of its languages' losses, with SEM
sqrt(sum sem_l^2) / n_languages.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from multiscale.errors import InputError
from multiscale.train.step import TRAIN_KEYS, CompiledSteps

LN2 = math.log(2.0)


@dataclasses.dataclass(frozen=True)
class LossStats:
    """Held-out loss of one language or family (nats/token)."""

    loss: float
    loss_sem: float
    bpb: float
    tokens: int
    sequences: int
    loss_macro: float | None = None
    loss_macro_sem: float | None = None

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Per-language and per-family held-out losses at one step."""

    step: int
    languages: dict[str, LossStats]
    families: dict[str, LossStats]

    def to_json(self) -> dict:
        return {"step": self.step,
                "families": {k: v.to_json() for k, v in self.families.items()},
                "languages": {k: v.to_json() for k, v in self.languages.items()}}

    def flat_metrics(self) -> dict[str, float]:
        """'eval/family/<f>/loss', 'eval/language/<l>/bpb', ... for scalar writers."""
        out = {}
        for kind, table in (("family", self.families), ("language", self.languages)):
            for name, stats in table.items():
                for key in ("loss", "loss_sem", "bpb", "loss_macro"):
                    value = getattr(stats, key)
                    if value is not None and math.isfinite(value):
                        out[f"eval/{kind}/{name}/{key}"] = value
        return out


def ratio_stats(nll_R: np.ndarray, tok_R: np.ndarray, n_bytes: float) -> LossStats:
    """Token-weighted mean loss of rows with `nll_R` nats and `tok_R` tokens, and its SEM."""
    keep = tok_R > 0
    nll_R, tok_R = nll_R[keep].astype(np.float64), tok_R[keep].astype(np.float64)
    n, total_tok, total_nll = int(keep.sum()), float(tok_R.sum()), float(nll_R.sum())
    if total_tok == 0:
        return LossStats(math.nan, math.nan, math.nan, 0, 0)
    loss = total_nll / total_tok
    if n > 1:
        resid = nll_R - loss * tok_R
        sem = math.sqrt(n / (n - 1) * float(np.sum(resid * resid))) / total_tok
    else:
        sem = math.nan
    bpb = total_nll / LN2 / n_bytes if n_bytes > 0 else math.nan
    return LossStats(loss, sem, bpb, int(round(total_tok)), n)


class Evaluator:
    """Scores parameters on a fixed eval set; its batches are placed on devices once."""

    def __init__(self, eval_set, steps: CompiledSteps, batch_size: int):
        ways = steps.mesh.shape["data"] * steps.mesh.shape["fsdp"]
        batch_size = -(-batch_size // ways) * ways  # round up to a multiple of data*fsdp
        self.steps = steps
        self.languages = list(eval_set.languages)
        self.family_of = dict(eval_set.family_of)
        self.bytes_per_language = dict(eval_set.bytes_per_language)
        self._batches = []
        self._language_ids = []
        for batch in eval_set.batches(batch_size):
            batch = _pad_rows(batch, batch_size)
            self._language_ids.append(np.asarray(batch["language_ids"]))
            # global arrays from host arrays every process holds in full
            host = {k: np.asarray(batch[k]) for k in TRAIN_KEYS}
            self._batches.append({k: jax.make_array_from_callback(
                x.shape, steps.batch_sharding, lambda idx, x=x: x[idx]) for k, x in host.items()})
        if not self._batches:
            raise InputError("the eval set has no sequences (no held-out text for any language)")

    _cache: dict = {}

    @classmethod
    def cached(cls, eval_set, steps: CompiledSteps, batch_size: int) -> Evaluator:
        """One evaluator per (eval set, compiled steps, batch size), so repeated runs in one
        process (a sweep) place the eval batches on the devices once."""
        key = (id(eval_set), id(steps), batch_size)
        hit = cls._cache.get(key)
        if hit is None or hit[0] is not eval_set:
            if len(cls._cache) >= 4:
                cls._cache.pop(next(iter(cls._cache)))
            hit = cls._cache[key] = (eval_set, cls(eval_set, steps, batch_size))
        return hit[1]

    def __call__(self, params, step: int) -> EvalResult:
        outs = [self.steps.eval(params, b) for b in self._batches]
        nll_R = np.concatenate([np.asarray(jax.device_get(o[0])) for o in outs])
        tok_R = np.concatenate([np.asarray(jax.device_get(o[1])) for o in outs])
        lang_R = np.concatenate(self._language_ids)
        languages = {}
        for i, lang in enumerate(self.languages):
            rows = lang_R == i
            languages[lang] = ratio_stats(nll_R[rows], tok_R[rows], self.bytes_per_language[lang])
        families = {}
        for family in dict.fromkeys(self.family_of[lang] for lang in self.languages):
            members = [i for i, lang in enumerate(self.languages) if self.family_of[lang] == family]
            rows = np.isin(lang_R, members)
            n_bytes = sum(self.bytes_per_language[self.languages[i]] for i in members)
            micro = ratio_stats(nll_R[rows], tok_R[rows], n_bytes)
            lang_stats = [languages[self.languages[i]] for i in members
                          if languages[self.languages[i]].tokens > 0]
            macro = float(np.mean([s.loss for s in lang_stats])) if lang_stats else math.nan
            macro_sem = (math.sqrt(sum(s.loss_sem ** 2 for s in lang_stats)) / len(lang_stats)
                         if lang_stats else math.nan)
            families[family] = dataclasses.replace(micro, loss_macro=macro,
                                                   loss_macro_sem=macro_sem)
        return EvalResult(step, languages, families)


def _pad_rows(batch: dict[str, Any], batch_size: int) -> dict[str, np.ndarray]:
    rows = len(batch["inputs"])
    if rows == batch_size:
        return batch
    if rows > batch_size:
        raise ValueError(f"eval batch has {rows} rows, more than the requested {batch_size}")
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        pad = np.zeros((batch_size - rows,) + value.shape[1:], value.dtype)
        out[key] = np.concatenate([value, pad])
    out["weights"][rows:] = 0
    out["language_ids"][rows:] = -1
    return out

