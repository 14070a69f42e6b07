"""Built-in inventory profiles: the example inventories under inventories/."""

from __future__ import annotations

import shutil
from pathlib import Path

from aiprov import paths


class ProfileError(Exception):
    """A profile that does not exist or a target it may not be written to (exit 4)."""


def names() -> list[str]:
    return sorted(p.name for p in paths.profiles_dir().iterdir() if (p / "hosts.yml").is_file())


def init(target: Path, profile: str, force: bool = False) -> list[Path]:
    """Copy the profile's inventory into `target`; refuse to overwrite unless forced."""
    if profile not in names():
        raise ProfileError(f"unknown profile '{profile}' (choose from {', '.join(names())})")
    source = paths.profiles_dir() / profile
    if target.exists() and not target.is_dir():
        raise ProfileError(f"{target} exists and is not a directory")
    if target.exists() and any(target.iterdir()) and not force:
        raise ProfileError(f"{target} is not empty (use --force to overwrite its files)")
    shutil.copytree(source, target, dirs_exist_ok=True)
    return sorted(p for p in target.rglob("*") if p.is_file())
