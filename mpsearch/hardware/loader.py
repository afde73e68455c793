"""Find, read and write profile files.

Where shipped profiles live: ``mpsearch/hardware/shipped/*.yaml``, inside the package, so a
wheel carries them as package data (``[tool.setuptools.package-data]``) and an editable
install reads them in place. The repository's top-level ``hw_profiles/`` is a symlink to that
folder, so the files are where the design puts them without a second copy to keep in sync.

A name is looked up, first match wins, in:

1. each folder of the ``MPSEARCH_PROFILE_PATH`` environment variable (``os.pathsep``-separated);
2. ``./hw_profiles/`` of the current directory (where users drop their own profiles);
3. the shipped folder.

Anything with a path separator or a ``.yaml`` / ``.yml`` / ``.json`` suffix is a path. A file
of 1. or 2. that shadows a shipped profile is used, and named in a warning of the ``mpsearch`` logger.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mpsearch.core.io import dump_structured, read_structured
from mpsearch.core.profile import HardwareProfile
from mpsearch.errors import ConfigError, unknown_name
from mpsearch.hardware.schema import parse_profile, profile_to_dict

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
SUFFIXES = (".yaml", ".yml", ".json")
ENV_PATH = "MPSEARCH_PROFILE_PATH"
log = logging.getLogger("mpsearch")


def search_dirs() -> list[Path]:
    """Folders searched for profile names, in order."""
    dirs = [Path(p) for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "hw_profiles", SHIPPED_DIR]
    return dirs


def available_profiles() -> dict[str, Path]:
    """Profile name (file stem) -> file, over :func:`search_dirs`; the first match wins."""
    found: dict[str, Path] = {}
    seen_dirs: set[Path] = set()
    for d in search_dirs():
        try:
            real = d.resolve()
            if real in seen_dirs or not d.is_dir():
                continue
            seen_dirs.add(real)
            files = sorted(p for p in d.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        except OSError:
            continue
        for p in files:
            found.setdefault(p.stem, p)
    return found


def shipped_profiles() -> list[str]:
    """Names of the profiles that ship with mpsearch."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def _is_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.lower().endswith(SUFFIXES)


def resolve_profile(name_or_path: str | os.PathLike[str]) -> Path:
    """The file a name or path refers to.

    Raises:
        UnknownNameError: a name that no search folder holds (the message lists the names).
        ConfigError: a path that does not exist.
    """
    if isinstance(name_or_path, os.PathLike) or _is_path(str(name_or_path)):
        path = Path(name_or_path)
        if path.is_dir():
            raise ConfigError(f"{path}: profile must be a file, but it is a directory")
        if not path.is_file():
            raise ConfigError(f"{path}: profile file must exist, but it was not found")
        return path
    found = available_profiles()
    if name_or_path not in found:
        raise unknown_name("hardware profile", name_or_path, found, "load_profile")
    path = found[name_or_path]
    shipped = [SHIPPED_DIR / f"{name_or_path}{s}" for s in SUFFIXES]
    if path.resolve().parent != SHIPPED_DIR.resolve() and any(p.is_file() for p in shipped):
        # a user's file wins by design (search order), but silently using it would surprise
        log.warning("hardware profile %r: using %s, which shadows the shipped profile of that name", name_or_path, path)
    return path


def load_profile(name_or_path: str | os.PathLike[str] | HardwareProfile) -> HardwareProfile:
    """Load a hardware profile by shipped name (``"cortex-m7-cmsis-nn"``) or by path.

    Args:
        name_or_path: a profile name, a path to a YAML/JSON file, or a profile (returned as is).

    Returns:
        The checked profile, with ``path`` set to the file it came from.

    Raises:
        UnknownNameError: unknown name (the message lists the available names).
        ConfigError: the file breaks a rule; the message names the file, the dotted key,
            the rule and the value found.
    """
    if isinstance(name_or_path, HardwareProfile):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ConfigError(f"load_profile: name_or_path must be a profile name or a path, but got {name_or_path!r}")
    path = resolve_profile(name_or_path)
    try:
        data = read_structured(path)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: must be UTF-8 YAML or JSON, but reading failed: {type(exc).__name__}") from None
    profile = parse_profile(data, where=str(path), path=str(path))
    if not _is_path(str(name_or_path)) and profile.name != name_or_path:
        raise ConfigError(f"{path}: name must equal the file name {name_or_path!r} for lookup by name, "
                          f"but got {profile.name!r}")
    return profile


def write_profile(profile: HardwareProfile, path: str | os.PathLike[str]) -> Path:
    """Write ``profile`` as YAML (or JSON by suffix) that :func:`load_profile` reads back equal.

    The profile is checked first (a profile built in Python may break a rule); the write is
    atomic. Returns the path written.
    """
    data = profile_to_dict(profile)
    parse_profile(data, where=f"write_profile({profile.name!r})")
    return dump_structured(data, path)
