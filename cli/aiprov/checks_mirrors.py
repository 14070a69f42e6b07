"""Semantic checks of the mirror and container-runtime variables (python_env, docker roles).

Rules of validate.RULES. The argument specs already reject an
unknown preset (choices) and a runtime without a path (required); these
checks cover what a schema cannot say: every mirror URL is http(s) with a
host, Miniconda comes with its checksum, conda environments have a conda, and
the default runtime is one that daemon.json defines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from aiprov.inventory import Host, Inventory, origin_file
from aiprov.problems import Problem

# Variables holding one URL, and variables holding a list of URLs.
_URL_KEYS = (
    "python_env_pip_index_url",
    "python_env_conda_pkgs_url",
    "python_env_conda_cloud_url",
    "python_env_miniconda_url",
    "docker_ce_repo_url",
    "docker_nvidia_toolkit_repo_url",
)
_URL_LIST_KEYS = ("python_env_pip_extra_index_urls", "docker_registry_mirrors")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def url_problem(url: Any) -> str | None:
    """Why `url` is not a usable mirror URL, or None when it is."""
    if not isinstance(url, str):
        return None  # the schema reports the wrong type
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        shown = f"'{parts.scheme}://'" if parts.scheme else "no scheme"
        return f"'{url}' has {shown}: mirror URLs must start with http:// or https://"
    if not parts.hostname:
        return f"'{url}' names no host"
    if any(c.isspace() for c in url.strip()):
        return f"'{url}' contains whitespace"
    return None


def _where(host: Host, key: str, default: str) -> str:
    return origin_file(host.vars.get(key), default)


def check_mirror_urls(inventory: Inventory) -> Iterator[Problem]:
    default = inventory.sources[-1]
    for host in inventory.hosts:
        for key in _URL_KEYS:
            value = host.vars.get(key)
            if not value or _is_template(value):
                continue  # empty takes the preset's URL
            message = url_problem(value)
            if message:
                yield Problem(_where(host, key, default), key, message)
        for key in _URL_LIST_KEYS:
            values = host.vars.get(key)
            if not isinstance(values, list):
                continue
            for index, value in enumerate(values):
                if _is_template(value):
                    continue
                message = url_problem(value)
                if message:
                    yield Problem(_where(host, key, default), f"{key}[{index}]", message)


def check_python_envs(inventory: Inventory) -> Iterator[Problem]:
    default = inventory.sources[-1]
    for host in inventory.hosts:
        conda = host.vars.get("python_env_miniconda_enabled") is True
        if conda:
            checksum = host.vars.get("python_env_miniconda_sha256")
            if not _is_template(checksum) and not (
                isinstance(checksum, str) and _SHA256.match(checksum)
            ):
                yield Problem(
                    _where(host, "python_env_miniconda_sha256", default),
                    "python_env_miniconda_sha256",
                    "Miniconda is enabled: give the installer's sha256 (64 hex digits, "
                    "sha256sum of the file); the role refuses an installer it cannot verify",
                )
            if not host.vars.get("python_env_miniconda_url"):
                yield Problem(
                    _where(host, "python_env_miniconda_enabled", default),
                    "python_env_miniconda_url",
                    "Miniconda is enabled: give the installer's URL (a mirror or artifact cache)",
                )
        envs = host.vars.get("python_env_venvs")
        if not isinstance(envs, list):
            continue
        file = _where(host, "python_env_venvs", default)
        seen: set[str] = set()
        for index, env in enumerate(envs):
            if not isinstance(env, dict):
                continue  # the schema reports it
            name = env.get("name")
            if name in seen:
                yield Problem(
                    file,
                    f"python_env_venvs[{index}].name",
                    f"'{name}' is defined twice; each environment needs its own name",
                )
            seen.add(name)
            if env.get("kind") == "conda" and not conda:
                yield Problem(
                    file,
                    f"python_env_venvs[{index}].kind",
                    "a conda environment needs python_env_miniconda_enabled: true",
                )


def check_docker_runtime(inventory: Inventory) -> Iterator[Problem]:
    default = inventory.sources[-1]
    for host in inventory.hosts:
        wanted = host.vars.get("docker_default_runtime")
        if not wanted or not isinstance(wanted, str) or _is_template(wanted):
            continue
        known = ["runc"]
        if host.vars.get("docker_nvidia_runtime_enabled", True) is not False:
            known.append("nvidia")
        runtimes = host.vars.get("docker_runtimes") or []
        if isinstance(runtimes, list):
            known += [r["name"] for r in runtimes if isinstance(r, dict) and "name" in r]
        if wanted not in known:
            yield Problem(
                _where(host, "docker_default_runtime", default),
                "docker_default_runtime",
                f"'{wanted}' is not a runtime daemon.json defines ({', '.join(known)}); "
                "add it to docker_runtimes with its path",
            )
