"""Small I/O helpers shared by every YAML/JSON reader and writer: strict keys, atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from mpsearch.errors import ConfigError, rule_error


def check_keys(data: Mapping[str, Any], valid: Iterable[str], where: str, key: str = "", required: Iterable[str] = ()) -> None:
    """Refuse unknown and missing keys in a mapping read from a file.

    Args:
        data: the mapping read from YAML/JSON.
        valid: keys that may appear.
        where: the file (or source) named in the message.
        key: dotted key of ``data`` itself ("" for the top level).
        required: keys that must appear.
    """
    if not isinstance(data, Mapping):
        raise rule_error(where, key or "the top level", "a mapping", data)
    valid = list(valid)
    for k in data:
        if k not in valid:
            dotted = f"{key}.{k}" if key else str(k)
            import difflib

            close = difflib.get_close_matches(str(k), [str(v) for v in valid], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {dotted!r}{hint}; valid keys{' of ' + key if key else ''}: "
                              f"{', '.join(valid)}")
    for k in required:
        if k not in data:
            dotted = f"{key}.{k}" if key else str(k)
            raise ConfigError(f"{where}: key {dotted!r} is required but missing")


def read_structured(path: str | os.PathLike[str]) -> Any:
    """Read a YAML (``yaml.safe_load``) or JSON file, with errors that name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file must exist, but it was not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: file must be readable, but got {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: must be valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}, but parsing failed: {exc}") from None


def dump_structured(data: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as YAML or JSON (by suffix) atomically: a temp file, then rename."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False)
    write_text_atomic(path, text)
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write text so a reader never sees a half-written file (temp file + ``os.replace``)."""
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes atomically: a temp file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
