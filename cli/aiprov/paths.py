"""Where aiprov's Ansible content lives: inside the wheel, or in a checkout."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

_PACKAGE_DIR = Path(__file__).resolve().parent


def share_dir() -> Path:
    """The directory holding playbooks/, roles/, inventories/ and group_vars/.

    An installed wheel carries them as aiprov/share/; a checkout has them at
    the repository root, two levels above this file (cli/aiprov/).
    """
    installed = _PACKAGE_DIR / "share"
    if (installed / "playbooks").is_dir():
        return installed
    return _PACKAGE_DIR.parent.parent


def data_dir() -> Path:
    """Package data: the image build script, podman settings, model catalog, ..."""
    return _PACKAGE_DIR / "data"


def playbook(name: str) -> Path:
    return share_dir() / "playbooks" / f"{name}.yml"


def roles_dir() -> Path:
    return share_dir() / "roles"


def role_script(relative: str, name: str) -> ModuleType:
    """A script a role ships (files/) loaded as a module, so the CLI runs the
    same code the role runs on hosts: one home for it."""
    loader_spec = importlib.util.spec_from_file_location(name, share_dir() / relative)
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    return module


def families_inventory() -> Path:
    """The inventory source that makes group_vars/<gpu family>.yml apply."""
    return share_dir() / "gpu_families.yml"


def profiles_dir() -> Path:
    """Example inventories, one per layout; `aiprov init` copies them."""
    return share_dir() / "inventories"


# libyaml's parser when PyYAML has it (same safe constructor, same values; much faster).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    """One of aiprov's own YAML files (package data, argument specs, role defaults)."""
    return yaml.load(path.read_text(), Loader=YAML_LOADER)


@cache
def role_defaults(role: str) -> dict[str, Any]:
    """A role's defaults/main.yml as data ({} without one)."""
    try:
        data = read_yaml(roles_dir() / role / "defaults" / "main.yml")
    except (OSError, yaml.YAMLError):  # no defaults, or Ansible-only tags (!unsafe, !vault)
        return {}
    return data if isinstance(data, dict) else {}


def role_setting(host_vars: Any, role: str, key: str) -> Any:
    """A role's variable as a host gets it: the host's value, else the role's default."""
    return host_vars[key] if key in host_vars else role_defaults(role).get(key)
