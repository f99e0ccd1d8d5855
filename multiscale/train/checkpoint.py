"""orbax checkpoints of the train state (params, optimizer state, step) and the data iterator.

`Checkpointer` wraps an async `CheckpointManager` with two items per step: `state`, the sharded
`TrainState` (`StandardSave`, multi-host safe, restored into the run's shardings), and `data`, one
JSON iterator state per process (`process_<i>-of-<n>.json`; each host reads its own shard).

Integrity: the file sizes of every finalized step are recorded in
`<run>/checkpoint_sizes/<step>.json`; `restore_latest` restores the newest step that matches them
and that orbax can read, warning (`DamagedCheckpointWarning`) and moving a damaged step to
`<run>/checkpoints_damaged/` (deleted on object stores); with no intact step the run starts at 0.
See docs/decisions/2026-11-30-checkpoint-sizes-not-hashes.md.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from multiscale.errors import DamagedFileError
from multiscale.fileio import read_json, write_json


class DamagedCheckpointWarning(UserWarning):
    """A checkpoint step was damaged and skipped; resume used an older one."""


class IteratorStateHandler(ocp.CheckpointHandler):
    """Saves a captured iterator state (a JSON-able object or bytes) per process."""

    def _file(self, directory: epath.Path) -> epath.Path:
        return directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"

    def save(self, directory: epath.Path, args: IteratorStateSave):
        state = args.state
        payload = ({"bytes_b64": base64.b64encode(state).decode()}
                   if isinstance(state, (bytes, bytearray)) else {"json": state})
        self._file(epath.Path(directory)).write_text(json.dumps(payload))

    def restore(self, directory: epath.Path, args: IteratorStateRestore | None = None):
        path = self._file(epath.Path(directory))
        payload = read_json(path, what="data-iterator state")
        if "bytes_b64" in payload:
            return base64.b64decode(payload["bytes_b64"])
        if "json" not in payload:
            raise DamagedFileError(f"data-iterator state {str(path)!r} is damaged: no 'json' key")
        return payload["json"]

    def metadata(self, directory: epath.Path):
        return None

    def structure(self, directory: epath.Path):
        return None

    def finalize(self, directory: epath.Path):
        pass

    def close(self):
        pass


@ocp.args.register_with_handler(IteratorStateHandler, for_save=True)
@dataclasses.dataclass
class IteratorStateSave(ocp.args.CheckpointArgs):
    state: Any


@ocp.args.register_with_handler(IteratorStateHandler, for_restore=True)
@dataclasses.dataclass
class IteratorStateRestore(ocp.args.CheckpointArgs):
    pass


def _file_sizes(step_dir: epath.Path) -> dict[str, int]:
    """Relative path -> size of every file under a step folder."""
    sizes, todo = {}, [step_dir]
    while todo:  # epath has no recursive glob on object stores: walk the folders
        for path in todo.pop().iterdir():
            if path.is_dir():
                todo.append(path)
            else:
                sizes[str(path.relative_to(step_dir))] = path.stat().length
    return dict(sorted(sizes.items()))


class Checkpointer:
    """Async save and restore of (train state, data iterator state) under `<run>/checkpoints`."""

    def __init__(self, directory: epath.PathLike, *, keep: int = 2):
        directory = epath.Path(directory)
        # orbax refuses relative paths; a local one is made absolute (gs:// and the like are kept).
        if "://" not in str(directory):
            directory = directory.absolute()
        self.directory = directory
        self.sizes_dir = directory.parent / "checkpoint_sizes"
        self.damaged_dir = directory.parent / "checkpoints_damaged"
        self.is_writer = jax.process_index() == 0
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, data_state) -> None:
        """Start an async save; the arrays are copied before this returns."""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=IteratorStateSave(data_state)))
        # orbax waited for the previous save before starting this one: record what is final.
        self._record_sizes(exclude=step)

    def restore_latest(self, abstract_state) -> tuple[int, Any, Any] | None:
        """(step, train state placed with `abstract_state`'s shardings, data iterator state) of
        the newest intact checkpoint, or None. Damaged steps are warned about
        (`DamagedCheckpointWarning`, naming the step and what is wrong), moved aside, and skipped."""
        steps = self.all_steps()
        for i, step in reversed(list(enumerate(steps))):
            problem = self._damage(step)
            if problem is None:
                try:
                    restored = self._manager.restore(step, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state), data=IteratorStateRestore()))
                    return step, restored["state"], restored["data"]
                # tensorstore raises bare Exceptions for unreadable data; a step that cannot be
                # read for any reason is skipped and named, and the older ones are tried.
                except Exception as err:  # noqa: BLE001
                    text = str(err).strip()
                    problem = f"orbax cannot read it ({type(err).__name__}: " \
                              f"{text.splitlines()[0][:200] if text else ''})"
            self._set_aside(step, problem, older=i > 0)
        return None

    def _damage(self, step: int) -> str | None:
        record = self.sizes_dir / f"{step}.json"
        if not record.exists():
            return None  # finalized but not yet recorded (the run stopped right after): try it
        try:
            recorded = read_json(record, what="checkpoint size record")
        except DamagedFileError:
            return None  # the record itself is damaged: let orbax judge the step
        for name, size in sorted(recorded.items()):
            path = self.directory / str(step) / name
            if not path.exists():
                return f"{name} is missing"
            actual = path.stat().length
            if actual != size:
                return f"{name} has {actual} bytes, {size} were written"
        return None

    def _set_aside(self, step: int, problem: str, *, older: bool) -> None:
        step_dir = self.directory / str(step)
        where = "deleted"
        if self.is_writer:
            if "://" in str(step_dir):
                step_dir.rmtree()
            else:
                self.damaged_dir.mkdir(parents=True, exist_ok=True)
                target = self.damaged_dir / f"{step}-{uuid.uuid4().hex[:8]}"
                step_dir.rename(target)
                where = f"moved to {target}"
            record = self.sizes_dir / f"{step}.json"
            if record.exists():
                record.unlink()
        then = ("trying the checkpoint before it" if older
                else "no intact checkpoint is left: the run starts from step 0")
        warnings.warn(f"checkpoint step {step} in {self.directory} is damaged ({problem}); "
                      f"{where}; {then}", DamagedCheckpointWarning, stacklevel=3)
        if jax.process_count() > 1:  # every host sees the step gone before any lists the steps
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"multiscale checkpoint {step} set aside")
        self._manager.reload()

    def _record_sizes(self, exclude: int | None = None) -> None:
        """Write the size record of every finalized step that has none; drop stale records."""
        if not self.is_writer:
            return
        steps = set(self._manager.all_steps())
        self.sizes_dir.mkdir(parents=True, exist_ok=True)
        for step in steps - {exclude}:
            record = self.sizes_dir / f"{step}.json"
            if not record.exists():
                try:
                    sizes = _file_sizes(self.directory / str(step))
                except FileNotFoundError:  # removed meanwhile (orbax keeps `keep` steps)
                    continue
                write_json(record, sizes)
        for record in self.sizes_dir.glob("*.json"):
            if record.stem.isdigit() and int(record.stem) not in steps:
                record.unlink()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._record_sizes()
        self._manager.close()
