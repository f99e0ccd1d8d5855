"""Small file helpers shared by every writer in the library: atomic writes, JSON, checksums.

Paths may be local or object-store URLs (`gs://...`, via `etils.epath`). An atomic write leaves a
reader either the old file or the whole new one: locally through a temporary file in the same
folder, fsync and `os.replace`; on object stores a single upload is already atomic.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import uuid
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
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"out {path!r} is a file, not a folder", arg="out")
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise InputError(f"out {path!r} lies under {parent!r}, which is a file", arg="out")


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
