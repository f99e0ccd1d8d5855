"""The typed, frozen configuration of one training run."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from multiscale.errors import InputError
from multiscale.mixture import Mixture, MixtureError


class TrainConfigError(InputError):
    """An invalid training configuration; the message names the field."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One run: a preset trained on `tokens` tokens of a family mixture.

    Attributes:
      corpus: directory of a built corpus (`multiscale corpus build`).
      model: preset name (`multiscale presets`).
      tokens: training budget D in tokens; steps = tokens // (batch * seq_len), and the run
        table records the tokens actually trained, steps * batch * seq_len.
      ratios: family -> sampling ratio p: a mapping, 'germanic=0.5,...' text or a `Mixture`,
        validated by `Mixture.parse` (finite, >= 0, summing to 1 within `RATIO_TOLERANCE`) and
        divided by its sum (`Mixture.normalized`); stored as a plain dict, in the given order
        (`mixture` gives the `Mixture`, which the data pipeline samples as is).
      out: run folder (local path or any etils.epath path, e.g. gs://...).
      seq_len, batch: tokens per row and rows per *global* step (all hosts and accumulation).
      lr, warmup_steps, min_lr_ratio: peak learning rate, linear warm-up steps (None: 5% of
        the steps, at least 1), and the cosine floor as a fraction of the peak.
      weight_decay, b1, b2, eps, clip: AdamW and global-norm clipping (clip <= 0 disables).
      grad_accum: micro-batches per step (each of batch / grad_accum rows).
      seed: parameter initialisation and data order.
      eval_every, checkpoint_every: in steps; 0 means only at the end (checkpoints: every 100
        steps by default, the command line's default too, so a stopped run resumes).
      eval_batch, eval_memory_tokens: an eval batch holds at most `eval_batch` rows and at most
        `eval_memory_tokens` tokens (rows * seq_len), but at least one row (`eval_rows`), so long
        sequences evaluate a few rows at a time; the losses do not depend on it.
      eval_tokens_per_language: cap on each language's eval tokens (the same cap gives the
        same eval text to every run; None: the whole eval split).
      mesh: 'data=2,fsdp=2,tensor=2' style; None puts all devices on `data`.
      compute_dtype: 'auto' (bf16 on accelerators, f32 on CPU), 'float32' or 'bfloat16'.
      tie_embeddings: share input and output embeddings.
      run_name: the `run` column of the run table (default: the out folder's name).
      keep_checkpoints: how many recent checkpoints orbax keeps.
    """

    corpus: str
    model: str
    tokens: int
    ratios: Mapping[str, float]
    out: str
    seq_len: int = 128
    batch: int = 32
    lr: float = 3e-3
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    clip: float = 1.0
    grad_accum: int = 1
    seed: int = 0
    eval_every: int = 0
    checkpoint_every: int = 100
    eval_batch: int = 32
    eval_memory_tokens: int = 8192
    eval_tokens_per_language: int | None = 32_768
    mesh: str | None = None
    compute_dtype: str = "auto"
    tie_embeddings: bool = False
    run_name: str | None = None
    keep_checkpoints: int = 2

    def __post_init__(self):
        # The one validation of a mixture (text comes from the command line's --ratios), then
        # divided by its sum once, so the ratios sum to 1 to float precision (as always before).
        what = "--ratios" if isinstance(self.ratios, str) else "TrainConfig.ratios"
        try:
            mixture = Mixture.parse(self.ratios, what=what).normalized()
        except MixtureError as err:
            raise TrainConfigError(str(err)) from None
        object.__setattr__(self, "ratios", mixture.to_dict())
        object.__setattr__(self, "_mixture", mixture)
        for name in ("tokens", "seq_len", "batch", "grad_accum", "eval_batch", "eval_memory_tokens",
                     "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TrainConfigError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        for name in ("eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise TrainConfigError(f"TrainConfig.{name} must be an int >= 0, got {value!r}")
        cap = self.eval_tokens_per_language
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 2):
            raise TrainConfigError("TrainConfig.eval_tokens_per_language (--eval-tokens-per-language) must be "
                                   f"an int >= 2 or None, got {cap!r}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise TrainConfigError(f"TrainConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not self.lr > 0:
            raise TrainConfigError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise TrainConfigError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.batch % self.grad_accum:
            raise TrainConfigError(
                f"TrainConfig.batch={self.batch} is not divisible by grad_accum={self.grad_accum}")
        if self.tokens < self.tokens_per_step:
            raise TrainConfigError(
                f"TrainConfig.tokens={self.tokens} is less than one step of batch*seq_len = "
                f"{self.tokens_per_step} tokens")

    @property
    def mixture(self) -> Mixture:
        """`ratios` as the validated `Mixture` (what the data pipeline samples)."""
        return self._mixture

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq_len

    @property
    def steps(self) -> int:
        """Optimizer steps: tokens // (batch * seq_len)."""
        return self.tokens // self.tokens_per_step

    @property
    def tokens_trained(self) -> int:
        """D of the run table: steps * batch * seq_len."""
        return self.steps * self.tokens_per_step

    @property
    def eval_rows(self) -> int:
        """Rows per eval batch: `eval_batch`, fewer when rows * seq_len would pass
        `eval_memory_tokens`, and at least 1."""
        return max(1, min(self.eval_batch, self.eval_memory_tokens // self.seq_len))

    @property
    def warmup(self) -> int:
        if self.warmup_steps is not None:
            return min(self.warmup_steps, self.steps)
        return max(1, round(0.05 * self.steps))

    @property
    def name(self) -> str:
        return self.run_name or os.path.basename(os.path.normpath(str(self.out))) or "run"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
