"""The typed, frozen configuration of one training run."""

from __future__ import annotations

import dataclasses
import os

from multiscale.errors import InputError
from multiscale.mixture import Mixture, MixtureError


class TrainConfigError(InputError):
    """An invalid training configuration; the message names the field (also its `arg`)."""


def _field(help: str, default=dataclasses.MISSING, *, resume: bool = True,
           choices: tuple[str, ...] | None = None) -> dataclasses.Field:
    """A TrainConfig field with its `help` (the command line's help text), whether a resumed run
    must have the same value (`resume`: it changes what is trained) and its allowed `choices`."""
    return dataclasses.field(default=default, metadata={"help": help, "resume": resume, "choices": choices})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One run: a preset trained on `tokens` tokens of a family mixture. Each field's `help`
    (field metadata) says what it is; `multiscale train` has a flag for every field.

    `ratios` is a `Mixture` (from a mapping or 'germanic=0.5,...' text), divided by its sum once
    (`Mixture.normalized`); the data pipeline samples it as is.
    """

    corpus: str = _field("a built corpus folder (`multiscale corpus build`)", resume=False)
    model: str = _field("model preset (see `multiscale presets`)")
    tokens: int = _field("training tokens D (e.g. 2e6); steps = D // (batch size * seq_len), and the run "
                         "table records the tokens trained, steps * batch size * seq_len")
    ratios: Mixture = _field("family sampling ratios summing to 1, e.g. germanic=0.4,romance=0.6")
    out: str = _field("run folder (local or gs://)", resume=False)
    seq_len: int = _field("tokens per sequence", 128)
    batch: int = _field("global batch in sequences, all hosts and micro-batches together", 32)
    lr: float = _field("peak learning rate", 3e-3)
    warmup_steps: int | None = _field("learning-rate warm-up steps (default: 5% of the steps, at least 1)", None)
    min_lr_ratio: float = _field("the cosine schedule's floor, a fraction of the peak learning rate", 0.1)
    weight_decay: float = _field("AdamW weight decay", 0.1)
    b1: float = _field("AdamW beta1", 0.9)
    b2: float = _field("AdamW beta2", 0.95)
    eps: float = _field("AdamW epsilon", 1e-8)
    clip: float = _field("global-norm gradient clipping (<= 0: none)", 1.0)
    grad_accum: int = _field("micro-batches per step (each of batch / grad_accum sequences)", 1)
    seed: int = _field("parameter initialisation and data order", 0)
    eval_every: int = _field("steps between evals (0: only at the end)", 0, resume=False)
    checkpoint_every: int = _field("steps between checkpoints (0: only at the end)", 100, resume=False)
    eval_batch: int = _field("at most this many sequences per eval batch", 32, resume=False)
    eval_memory_tokens: int = _field(
        "at most this many tokens (sequences x seq_len) per eval batch, at least one sequence, so long "
        "sequences evaluate a few at a time; the losses do not depend on it", 8192, resume=False)
    eval_tokens_per_language: int | None = _field(
        "cap on each language's eval tokens (the same cap gives every run the same eval text; "
        "in Python, None: the whole eval split)", 32_768, resume=False)
    mesh: str | None = _field("device mesh, e.g. data=2,fsdp=2,tensor=2 (default: all devices on data)",
                              None, resume=False)
    compute_dtype: str = _field("auto: bfloat16 on accelerators, float32 on CPU", "auto",
                                choices=("auto", "float32", "bfloat16"))
    tie_embeddings: bool = _field("share the input and output embeddings", False)
    run_name: str | None = _field("the run table's `run` (default: the run folder's name)", None, resume=False)
    keep_checkpoints: int = _field("how many recent checkpoints to keep", 2, resume=False)

    def __post_init__(self):
        try:
            mixture = self.ratios if isinstance(self.ratios, Mixture) else Mixture(self.ratios)
            object.__setattr__(self, "ratios", mixture.normalized())
        except MixtureError as err:
            raise TrainConfigError(str(err), arg="ratios") from None
        for name in ("tokens", "seq_len", "batch", "grad_accum", "eval_batch", "eval_memory_tokens",
                     "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TrainConfigError(f"{name} must be a positive int, got {value!r}", arg=name)
        for name in ("eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise TrainConfigError(f"{name} must be an int >= 0, got {value!r}", arg=name)
        cap = self.eval_tokens_per_language
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 2):
            raise TrainConfigError(f"eval_tokens_per_language must be an int >= 2 or None, got {cap!r}",
                                   arg="eval_tokens_per_language")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise TrainConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}", arg="warmup_steps")
        if not self.lr > 0:
            raise TrainConfigError(f"lr must be > 0, got {self.lr}", arg="lr")
        if not 0 <= self.min_lr_ratio <= 1:
            raise TrainConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}", arg="min_lr_ratio")
        if self.batch % self.grad_accum:
            raise TrainConfigError(f"batch={self.batch} is not divisible by grad_accum={self.grad_accum}",
                                   arg="batch")
        if self.tokens < self.tokens_per_step:
            raise TrainConfigError(f"tokens={self.tokens} is less than one step of batch*seq_len = "
                                   f"{self.tokens_per_step} tokens", arg="tokens")

    @classmethod
    def resume_fields(cls) -> tuple[str, ...]:
        """The fields that change what is trained: a run folder's checkpoints resume only under
        the same values."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["resume"])

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
        """The fields as JSON values (`ratios` as a mapping), as config.json records them."""
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "ratios": self.ratios.to_dict()}
