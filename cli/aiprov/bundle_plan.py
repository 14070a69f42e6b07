"""What an offline bundle must carry for an inventory's hosts (pure: no network).

From each host's variables (with the roles' defaults): the roles it runs, the
locked environments they install (aiprov.locks), the distribution packages their
vars/<family>.yml name, the catalog models it needs (aiprov.host_models, as the
models role) and the container images of its compose stacks. `aiprov bundle
build` resolves these for the target (OS release, Python, architecture) and
downloads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiprov import host_models, locks, paths
from aiprov.bundle import Target
from aiprov.bundle_images import Image
from aiprov.inventory import Inventory

# aiprov_os → (package family, suite, the release's python3, its glibc).
RELEASES = {
    "debian12": ("Debian", "bookworm", "3.11", 36),
    "debian13": ("Debian", "trixie", "3.13", 41),
    "ubuntu22.04": ("Debian", "jammy", "3.10", 35),
    "ubuntu24.04": ("Debian", "noble", "3.12", 39),
    "rhel9": ("RedHat", "9", "3.9", 34),
}
DEFAULT_OS = "debian12"
DEFAULT_ARCH = "x86_64"
# A role's package lists in vars/<family>.yml: `_<role>_..._packages`.
_PACKAGE_KEY = re.compile(r"^_[a-z_]+_packages$")
# The bundle host's registry and skopeo: carried only when the bundle has images.
_REGISTRY_PACKAGES = ("bundle_host", "_bundle_host_registry_packages")


class PlanError(Exception):
    pass


@dataclass
class Plan:
    target: Target
    family: str
    suite: str
    glibc: int  # the release's glibc minor version (2.N): the wheels' manylinux tags
    locks: list[Path] = field(default_factory=list)  # the lock files whose wheels it carries
    packages: list[str] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    # What the bundle cannot carry, and why (shown by build and --dry-run).
    notes: list[str] = field(default_factory=list)


def _setting(values: Mapping[str, Any], role: str, key: str) -> Any:
    return paths.role_setting(values, role, key)


def roles_run(values: Mapping[str, Any], groups: Iterable[str] = ()) -> list[str]:
    """The roles playbooks/bootstrap.yml runs on a host that install something."""
    gpu = values.get("aiprov_gpu_family", "") != "cpu"
    docker = bool(values.get("aiprov_docker_enabled", True))
    roles = ["base"] + (["bundle_host"] if locks.BUNDLE_HOST_GROUP in groups else [])
    roles += ["python_env", "models"]
    roles += ["nouveau", "nvidia_driver", "cuda_toolkit"] if gpu else []
    roles += ["docker"] if docker else []
    if _setting(values, "vllm_service", "vllm_service_services"):
        roles += ["vllm_service", "gateway"]
    if _setting(values, "funasr_service", "funasr_service_model"):
        roles += ["funasr_service", "gateway"]
    if docker and _setting(values, "dify", "dify_enabled"):
        roles.append("dify")
    if docker and _setting(values, "mineru", "mineru_services"):
        roles.append("mineru")
    if _setting(values, "monitoring", "monitoring_enabled"):
        roles.append("monitoring")
    return list(dict.fromkeys(roles))


def packages(values: Mapping[str, Any], family: str, groups: Iterable[str] = ()) -> list[str]:
    """Distribution packages the host's roles name in vars/<family>.yml.

    Only plain lists: a templated list depends on facts of the running host
    (its kernel's headers, the release's compose package), which a bundle
    cannot know; the build reports names the archive does not have.
    """
    found: list[str] = []
    for role in roles_run(values, groups):
        for key, value in _package_lists(role, family).items():
            if (role, key) != _REGISTRY_PACKAGES:
                found += value
    return found


def _package_lists(role: str, family: str) -> dict[str, list[str]]:
    path = paths.roles_dir() / role / "vars" / f"{family}.yml"
    if not path.is_file():
        return {}
    return {
        key: [v for v in value if isinstance(v, str) and "{{" not in v]
        for key, value in (paths.read_yaml(path) or {}).items()
        if _PACKAGE_KEY.match(key) and isinstance(value, list)
    }


def images(values: Mapping[str, Any]) -> tuple[list[Image], list[str]]:
    """Container images of the host's compose stacks that come from a registry,
    with the role variable that names the registry (the bundle's overlay sets
    it), and notes on the images it cannot carry."""
    if "mineru" not in roles_run(values) or _setting(values, "mineru", "mineru_image_build"):
        return [], []
    registry = _setting(values, "mineru", "mineru_image_registry")
    if not registry:
        return [], [
            "mineru: mineru_image_registry is empty (an image loaded with docker load on the"
            " host); not bundled"
        ]
    name = _setting(values, "mineru", "mineru_image_name")
    tag = values.get("mineru_image_tag") or _setting(values, "mineru", "mineru_version")
    return [Image(f"{registry.rstrip('/')}/{name}:{tag}", "mineru_image_registry", name)], []


def platform_tags(glibc: int, arch: str) -> list[str]:
    """The manylinux tags a host with glibc 2.`glibc` runs, newest first (pip
    takes --platform literally and expands none of them)."""
    tags = [f"manylinux_2_{n}_{arch}" for n in range(glibc, 4, -1)]
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    return tags + [
        f"{name}_{arch}" for name, n in legacy.items() if arch == "x86_64" and glibc >= n
    ]


def _one(hosts: Iterable[Any], key: str, default: str, what: str) -> str:
    seen = {str(h.vars.get(key) or default) for h in hosts}
    if len(seen) > 1:
        raise PlanError(
            f"the hosts run different {what} ({', '.join(sorted(seen))}): build one bundle"
            f" per {what} with --limit or --{key.removeprefix('aiprov_')}"
        )
    return seen.pop()


def plan(inventory: Inventory, os_name: str = "", arch: str = "") -> Plan:
    """What a bundle for every host of `inventory` must carry.

    The target is the hosts' aiprov_os and aiprov_arch (unset: debian12 on
    x86_64) unless `os_name`/`arch` override it; one bundle has one target.
    """
    hosts = inventory.hosts
    os_name = os_name or _one(hosts, "aiprov_os", DEFAULT_OS, "OS release")
    arch = arch or _one(hosts, "aiprov_arch", DEFAULT_ARCH, "architecture")
    if os_name not in RELEASES:
        raise PlanError(f"unknown OS release {os_name} (known: {', '.join(RELEASES)})")
    family, suite, python, glibc = RELEASES[os_name]
    result = Plan(Target(os_name, python, arch), family, suite, glibc)
    values = [h.vars for h in hosts]
    catalog = list(values[0].get("models_catalog") or []) if values else []
    ids = host_models.fleet_model_ids(values, [e.get("id") for e in catalog])
    result.models = [e for e in catalog if e.get("id") in ids]
    for host in hosts:
        serves = locks.BUNDLE_HOST_GROUP in host.groups
        try:
            result.locks += locks.host_locks(
                host.vars, python, downloads_from_hub=bool(result.models), serves_bundle=serves
            )
        except locks.LockError as error:
            raise PlanError(str(error)) from None
        result.packages += packages(host.vars, family, host.groups)
        found, notes = images(host.vars)
        result.images += found
        result.notes += notes
    result.locks = list(dict.fromkeys(result.locks))
    result.images = list(dict.fromkeys(result.images))
    result.notes = list(dict.fromkeys(result.notes))
    if result.images and any(locks.BUNDLE_HOST_GROUP in h.groups for h in hosts):
        role, key = _REGISTRY_PACKAGES
        result.packages += _package_lists(role, family).get(key, [])
    result.packages = sorted(set(result.packages))
    if any(_setting(h, "dify", "dify_enabled") for h in values):
        result.notes.append(
            "dify: its images are named in its release archive's compose file; not bundled"
        )
    return result
