"""Hooks: what happens around the loop (logging, evaluation, progress), levanter-style.

The loop only trains; at every step it hands a `StepInfo` to each hook whose `every` divides
the step (and at the last step). `EvalHook` scores the held-out set and passes the result to the
other hooks' `on_eval`. Writers: `MetricsJsonlHook` (metrics.jsonl), `TensorBoardHook`
(tensorboardX event files) and `ProgressHook` (a rich progress bar with tokens/s and loss).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from typing import Any

from etils import epath

from multiscale.fileio import atomic_write_text
from multiscale.train.evaluation import EvalResult


@dataclasses.dataclass
class StepInfo:
    """One finished optimizer step (1-based `step`); `loss` in nats/token of the train batch."""

    step: int
    total_steps: int
    loss: float
    grad_norm: float
    lr: float
    tokens_seen: int
    tokens_per_s: float
    elapsed_s: float
    params: Any = None  # current parameters (only valid during the callback)


class Hook:
    """Base hook; override what you need. `every` is in steps (0: only the last step)."""

    every: int = 1

    def on_start(self, run: dict) -> None:
        pass

    def on_step(self, info: StepInfo) -> None:
        pass

    def on_eval(self, result: EvalResult) -> None:
        pass

    def on_end(self, summary: dict) -> None:
        pass

    def close(self) -> None:
        pass

    def due(self, step: int, total: int) -> bool:
        return step == total or (self.every > 0 and step % self.every == 0)


class EvalHook(Hook):
    """Runs the evaluator every `every` steps and at the end; fans results out to `listeners`."""

    def __init__(self, evaluator, every: int, listeners: list[Hook]):
        self.evaluator = evaluator
        self.every = every
        self.listeners = listeners
        self.last: EvalResult | None = None

    def on_step(self, info: StepInfo) -> None:
        result = self.evaluator(info.params, info.step)
        self.last = result
        for hook in self.listeners:
            hook.on_eval(result)


class MetricsJsonlHook(Hook):
    """Appends one JSON line per step ({"step", "loss", ...}) and per eval ({"eval": ...})."""

    def __init__(self, path: epath.PathLike, *, truncate_after_step: int | None = None):
        self.path = epath.Path(path)
        if truncate_after_step is not None:
            _truncate_jsonl(self.path, truncate_after_step)
        self._fh = self.path.open("a")

    def on_step(self, info: StepInfo) -> None:
        record = {"step": info.step, "loss": info.loss, "grad_norm": info.grad_norm,
                  "lr": info.lr, "tokens": info.tokens_seen, "tokens_per_s": info.tokens_per_s}
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in record.items()}
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()

    def on_eval(self, result: EvalResult) -> None:
        self._fh.write(json.dumps({"step": result.step, "eval": result.to_json()}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _truncate_jsonl(path: epath.Path, max_step: int) -> None:
    """Drop records of steps after `max_step` (left by a run killed after its last checkpoint),
    and lines that are not JSON records (a line cut short by the kill), with a warning."""
    if not path.exists():
        return
    kept, cut = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            cut.append(number)
            continue
        if isinstance(record, dict) and record.get("step", 0) <= max_step:
            kept.append(line)
    if cut:
        warnings.warn(f"{path}: dropped line(s) {', '.join(map(str, cut))}, not JSON records "
                      "(cut short when the run stopped)", stacklevel=3)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_metrics(path: epath.PathLike) -> list[dict]:
    """The records of a metrics.jsonl file."""
    return [json.loads(line) for line in epath.Path(path).read_text().splitlines() if line.strip()]


class TensorBoardHook(Hook):
    """Scalars to TensorBoard event files: train/loss, train/lr, ..., eval/family/<f>/loss."""

    def __init__(self, logdir: epath.PathLike):
        from tensorboardX import SummaryWriter  # imported here: only runs that log need it

        self._writer = SummaryWriter(logdir=str(logdir))

    def on_step(self, info: StepInfo) -> None:
        for key in ("loss", "grad_norm", "lr", "tokens_per_s"):
            value = getattr(info, key)
            if math.isfinite(value):
                self._writer.add_scalar(f"train/{key}", value, info.step)

    def on_eval(self, result: EvalResult) -> None:
        for key, value in result.flat_metrics().items():
            self._writer.add_scalar(key, value, result.step)

    def close(self) -> None:
        self._writer.close()


class ProgressHook(Hook):
    """A rich progress bar on stderr: step, tokens/s and the latest train and eval loss."""

    def __init__(self, description: str, total_steps: int, start_step: int = 0, console=None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[tps]} tok/s  loss {task.fields[loss]}  {task.fields[eval]}"),
            TimeRemainingColumn(), transient=False, console=console or Console(stderr=True))
        self._task = self._progress.add_task(description, total=total_steps,
                                             completed=start_step, tps="-", loss="-", eval="")
        self._progress.start()

    def on_step(self, info: StepInfo) -> None:
        self._progress.update(self._task, completed=info.step, tps=f"{info.tokens_per_s:,.0f}",
                              loss=f"{info.loss:.4f}")

    def on_eval(self, result: EvalResult) -> None:
        losses = [s.loss for s in result.families.values() if math.isfinite(s.loss)]
        if losses:
            self._progress.update(self._task, eval=f"eval {sum(losses) / len(losses):.4f}")

    def close(self) -> None:
        self._progress.stop()
