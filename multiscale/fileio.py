"""Small file helpers shared by every writer in the library: atomic writes, JSON, checksums.

Paths may be local or object-store URLs (`gs://...`, via `etils.epath`). An atomic write leaves a
reader either the old file or the whole new one: locally through a temporary file in the same
folder, fsync and `os.replace`; on object stores a single upload is already atomic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from multiscale.errors import DamagedFileError, InputError, MissingFileError


def as_path(p):
    """An `epath.Path` for a local path or an object-store URL."""
    from etils import epath

    return epath.Path(p)


def is_remote(path) -> bool:
    return "://" in str(path)


def atomic_write_bytes(path, data: bytes) -> None:
    """Writes `data` to `path` atomically (creating parent folders)."""
    path = as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(path):
        path.write_bytes(data)
        return
    tmp = path.parent / f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Holds Ctrl-C (SIGINT) back while the block runs and raises `KeyboardInterrupt` after it:
    for a few renames that must not stop half-way. Outside the main thread it holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def atomic_write_text(path, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_default(o: Any) -> Any:
    """`json.dumps(default=...)` for numpy scalars and arrays."""
    import numpy as np

    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def json_safe(value: Any) -> Any:
    """`value` with non-finite floats replaced by None (strict JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """JSON text for library objects (numpy values allowed)."""
    return json.dumps(obj, indent=indent, default=json_default, ensure_ascii=False)


def write_json(path, obj: Any, *, indent: int | None = 2) -> None:
    """Writes `obj` as JSON, atomically."""
    atomic_write_text(path, dumps(obj, indent=indent) + "\n")


def read_json(path, *, what: str = "JSON file", expect: type | None = dict) -> Any:
    """Reads JSON from `path`; a missing file raises `MissingFileError`, an unreadable or
    truncated one (or one whose top level is not `expect`) `DamagedFileError`, naming the path."""
    path = as_path(path)
    if not path.exists():
        raise MissingFileError(f"{what} {str(path)!r} does not exist")
    try:
        obj = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedFileError(f"{what} {str(path)!r} is damaged (not valid JSON: {err})") from None
    if expect is not None and not isinstance(obj, expect):
        raise DamagedFileError(
            f"{what} {str(path)!r} is damaged: expected a JSON {expect.__name__}, "
            f"found {type(obj).__name__}")
    return obj


def load_yaml(stream) -> Any:
    """`yaml.safe_load` of a string or text stream that refuses a key given twice in one mapping
    (a `yaml.constructor.ConstructorError`, a `yaml.YAMLError` whose mark names the line): plain
    `safe_load` keeps the last value silently, so `{germanic: 0.3, germanic: 0.5}` would pass."""
    import yaml

    class _NoDuplicates(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"found the key {key!r} twice (first on line {seen[key].line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return loader.construct_mapping(node, deep=deep)

    _NoDuplicates.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(stream, Loader=_NoDuplicates)  # noqa: S506 (a SafeLoader subclass)


def check_output_folder(out) -> None:
    """Refuses, before any work, a local output folder `out` that is a file or lies under a file
    (`InputError` about `out`, naming the path). Object-store URLs are not checked."""
    if is_remote(out):
        return
    path = os.path.abspath(os.fspath(out))
    if os.path.lexists(path) and not os.path.exists(path):
        raise InputError(f"out {path!r} is a symbolic link to {os.path.realpath(path)!r}, which does not exist",
                         arg="out")
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"out {path!r} is a file, not a folder", arg="out")
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise InputError(f"out {path!r} lies under {parent!r}, which is a file", arg="out")


def check_output(out, *, folder: bool, inputs: Mapping[str, Any] | None = None,
                 marker: tuple[str, ...] = (), resumes: bool = False, overwrite: bool = False,
                 arg: str = "out", ask: str = "overwrite=True") -> None:
    """Refuses (`InputError` about `arg`), before any work, an output that would destroy what the
    user has or that cannot be written. Object-store URLs are not checked.

    - a folder output (`folder`) that is a file or lies under one, a file output that is a folder
      or whose folder does not exist, a dangling symbolic link;
    - the same file or folder as an input, a folder output holding an input, or an output that is
      an existing file inside an input folder (`inputs`: how to name each input, a noun and its
      argument such as 'table runs' -> its path or paths; symbolic links resolved);
    - an existing result: a file output that exists, or a folder output holding one of `marker`
      (the names the command writes there), unless `overwrite` (or `resumes`: the command
      continues the folder's work); a non-empty folder holding none of `marker` is another's and
      is refused even with `overwrite` (`ask`: how the caller asks to overwrite, for the message);
    - a place where no file can be created (checked by creating and removing one).
    """
    if is_remote(out):
        return
    path = os.path.abspath(os.fspath(out))
    if folder:
        check_output_folder(out)
    else:
        if os.path.lexists(path) and not os.path.exists(path):
            raise InputError(f"{arg} {path!r} is a symbolic link to {os.path.realpath(path)!r}, which does not "
                             "exist", arg=arg)
        if os.path.isdir(path):
            raise InputError(f"{arg} {path!r} is a folder; give a file name", arg=arg)
        check_output_folder(os.path.dirname(path))
        if not os.path.isdir(os.path.dirname(path)):
            raise InputError(f"{arg} {path!r}: its folder {os.path.dirname(path)!r} does not exist", arg=arg)
    _check_not_an_input(path, inputs or {}, arg)
    if folder and os.path.isdir(path):
        held = [name for name in os.listdir(path) if not name.startswith(".")]
        if held and not any(os.path.lexists(os.path.join(path, m)) for m in marker):
            raise InputError(f"{arg} {path!r} is not empty: it holds files this command did not write "
                             f"({', '.join(sorted(held)[:3])}{', ...' if len(held) > 3 else ''}); give a new "
                             "or empty folder", arg=arg)
        if held and not (overwrite or resumes):
            raise InputError(f"{arg} {path!r} already holds a result; pass {ask} to replace it", arg=arg)
    elif not folder and os.path.exists(path) and not overwrite:
        raise InputError(f"{arg} {path!r} already exists; pass {ask} to replace it", arg=arg)
    _check_writable(path if os.path.isdir(path) else os.path.dirname(path), path, arg)


def _check_not_an_input(path: str, inputs: Mapping[str, Any], arg: str) -> None:
    """Refuses an output that is an input, holds one, or is an existing file inside one."""
    real = os.path.realpath(path)
    for name, value in inputs.items():
        values = [value] if isinstance(value, (str, os.PathLike)) else list(value or ())
        for given in (os.path.realpath(os.fspath(v)) for v in values if v is not None and not is_remote(v)):
            if real == given:
                raise InputError(f"{arg} {path!r} is the input {name} {given!r}; write elsewhere", arg=arg)
            if given.startswith(real.rstrip(os.sep) + os.sep):
                raise InputError(f"{arg} {path!r} holds the input {name} {given!r}; write elsewhere", arg=arg)
            if os.path.isfile(real) and real.startswith(given.rstrip(os.sep) + os.sep):
                raise InputError(f"{arg} {path!r} is a file of the {name} {given!r}; write elsewhere",
                                 arg=arg)


def _check_writable(path: str, out: str, arg: str) -> None:
    """Creates and removes a file in `path`'s nearest existing folder, or refuses `out`."""
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        fd, probe = tempfile.mkstemp(prefix=".multiscale-write-check-", dir=path or ".")
    except OSError as err:
        raise InputError(f"{arg} {out!r} cannot be written: {err.strerror or err} in {path!r}", arg=arg) from None
    os.close(fd)
    os.unlink(probe)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with as_path(path).open("rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()
