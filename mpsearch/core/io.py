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


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the process umask: what ``open(path, "w")`` would give a new file."""
    mask = os.umask(0)  # the only way to read the umask is to set it; set it straight back
    os.umask(mask)
    return mode & ~mask


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes atomically: a temp file in the same folder, fsync, then ``os.replace``.

    The file gets the permissions of a plain ``open(path, "w")`` (0o666 less the umask), not
    the 0o600 of the temp file. A folder or file system that refuses the write raises
    :class:`ConfigError` naming the path.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"{path}: must be a file path in a writable folder, but writing failed: "
                          f"{exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ConfigError(f"{path}: must be a file path in a writable folder, but writing failed: "
                              f"{exc.strerror or exc}") from None
        raise


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the folder a write would create folders in)."""
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return p
    return Path(".")


def _probe_folder(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder`` (None: it can); tries one and removes it."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mpsearch-probe.", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(tmp)
    return None


def check_output_path(path: str | os.PathLike[str], where: str, key: str, *, folder: bool = False) -> Path:
    """Refuse an output path that cannot be written, before any work is done.

    Args:
        path: the file (or, with ``folder``, the folder) a command will write.
        where: named first in the message (``"write_profile"``; "" for none: the CLI names the command).
        key: the flag or key (``"-o"``, ``"--output-dir"``).
        folder: ``path`` is a folder to create or fill, not a file.

    Raises:
        ConfigError: ``"{where}: {key} must be {rule}, but got {path!r} ({why})"``: a file path
            that is a folder, a folder that is a file, a parent that is a file, or a folder
            where no file can be created.
    """
    p = Path(path)
    what = "a folder path" if folder else "a file path"
    where = f"{where}: " if where else ""
    if not str(path):
        raise ConfigError(f"{where}{key} must be {what}, but got ''")
    if folder and p.exists() and not p.is_dir():
        raise ConfigError(f"{where}{key} must be {what}, but got {str(path)!r}, which is a file")
    if not folder and p.is_dir():
        raise ConfigError(f"{where}{key} must be {what}, but got {str(path)!r}, which is a folder")
    base = _first_existing(p if folder else p.parent)
    if not base.is_dir():
        raise ConfigError(f"{where}{key} must be {what} whose parent folders are folders, but got "
                          f"{str(path)!r}, and {str(base)!r} is a file")
    why = _probe_folder(base)
    if why is not None:
        raise ConfigError(f"{where}{key} must be {what} in a writable folder, but got {str(path)!r} "
                          f"(creating a file in {str(base)!r} failed: {why})")
    return p
