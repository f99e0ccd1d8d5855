"""orbax checkpoints of the train state (params, optimizer state, step) and the data iterator.

`Checkpointer` wraps an async `CheckpointManager` with two items per step:

- `state`: the sharded `TrainState`, saved with `StandardSave` (every host writes its shards,
  so it is multi-host safe) and restored directly into the run's shardings,
- `data`: the data iterator's state, one JSON file per process
  (`process_<i>-of-<n>.json`), since each host reads its own data shard.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath


class IteratorStateHandler(ocp.CheckpointHandler):
    """Saves a captured iterator state (a JSON-able object or bytes) per process."""

    def _file(self, directory: epath.Path) -> epath.Path:
        return directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"

    def save(self, directory: epath.Path, args: "IteratorStateSave"):
        state = args.state
        payload = ({"bytes_b64": base64.b64encode(state).decode()}
                   if isinstance(state, (bytes, bytearray)) else {"json": state})
        self._file(epath.Path(directory)).write_text(json.dumps(payload))

    def restore(self, directory: epath.Path, args: "IteratorStateRestore | None" = None):
        path = self._file(epath.Path(directory))
        if not path.exists():
            raise FileNotFoundError(f"no data-iterator state for this process at {path}")
        payload = json.loads(path.read_text())
        if "bytes_b64" in payload:
            return base64.b64decode(payload["bytes_b64"])
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


class Checkpointer:
    """Async save and restore of (train state, data iterator state) under `<run>/checkpoints`."""

    def __init__(self, directory: epath.PathLike, *, keep: int = 2):
        directory = epath.Path(directory)
        # orbax refuses relative paths; a local one is made absolute (gs:// and the like are kept).
        if "://" not in str(directory):
            directory = directory.absolute()
        self.directory = directory
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state, data_state) -> None:
        """Start an async save; the arrays are copied before this returns."""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=IteratorStateSave(data_state)))

    def restore(self, step: int, abstract_state):
        """(train state placed with `abstract_state`'s shardings, data iterator state)."""
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=IteratorStateRestore()))
        return restored["state"], restored["data"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
