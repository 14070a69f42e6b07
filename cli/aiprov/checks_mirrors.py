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
from aiprov.templating import rendered

# Variables holding one URL (empty: the mirror preset's), variables that must
# hold one, and variables holding a list of URLs.
_URL_KEYS = (
    "python_env_pip_index_url",
    "python_env_conda_pkgs_url",
    "python_env_conda_cloud_url",
    "python_env_miniconda_url",
)
_REQUIRED_URL_KEYS = ("docker_ce_repo_url", "docker_nvidia_toolkit_repo_url")
_URL_LIST_KEYS = ("python_env_pip_extra_index_urls", "docker_registry_mirrors")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_HOST = re.compile(r"^https?://[^/\s]+")


# user[:password]@ right after the scheme (or at the start): what messages hide.
_CREDENTIALS = re.compile(r"^([^@/]*//)?[^@/]*@")


def masked_url(url: str) -> str:
    """`url` with its user and password replaced, for messages."""
    return _CREDENTIALS.sub(r"\1***@", url, count=1)


def url_problem(url: Any) -> str | None:
    """Why `url` is not a usable mirror URL, or None when it is; never shows credentials."""
    if not isinstance(url, str):
        return None  # the schema reports the wrong type
    shown = masked_url(url)
    if any(c.isspace() for c in url):
        return f"'{shown}' contains whitespace"
    if not url.startswith(("http://", "https://")):
        try:
            scheme = urlsplit(shown).scheme
        except ValueError:  # an unbalanced '[' reads as a broken IPv6 address
            scheme = ""
        named = f"'{scheme}://'" if scheme else "no scheme"
        return f"'{shown}' has {named}: mirror URLs must start with http:// or https://"
    if not _HOST.match(url):
        return f"'{shown}' names no host"
    return None


def _where(host: Host, key: str, default: str) -> str:
    return origin_file(host.vars.get(key), default)


def check_mirror_urls(inventory: Inventory) -> Iterator[Problem]:
    default = inventory.sources[-1]
    for host in inventory.hosts:
        for key in _URL_KEYS + _REQUIRED_URL_KEYS:
            if key not in host.vars:
                continue  # the role's default
            value = _rendered_url(host, host.vars[key])
            if value is None or (key in _URL_KEYS and not value):
                continue  # empty takes the preset's URL
            message = url_problem(value) if value else "must be an http:// or https:// URL"
            if message:
                yield Problem(_where(host, key, default), key, message)
        for key in _URL_LIST_KEYS:
            values = host.vars.get(key)
            if not isinstance(values, list):
                continue
            for index, value in enumerate(values):
                message = url_problem(_rendered_url(host, value))
                if message:
                    yield Problem(_where(host, key, default), f"{key}[{index}]", message)


# A value only the run can tell (its template names a host fact, say).
_UNKNOWN = object()


def _rendered_value(host: Host, value: Any) -> Any:
    """The value the run will use, or _UNKNOWN."""
    from ansible.errors import AnsibleError

    try:
        return rendered(host, value)
    except AnsibleError:
        return _UNKNOWN


def _rendered_url(host: Host, value: Any) -> Any:
    found = _rendered_value(host, value)
    return None if found is _UNKNOWN else found


def check_python_envs(inventory: Inventory) -> Iterator[Problem]:
    default = inventory.sources[-1]
    for host in inventory.hosts:
        conda = host.vars.get("python_env_miniconda_enabled") is True
        if conda:
            checksum = _rendered_value(host, host.vars.get("python_env_miniconda_sha256"))
            if checksum is not _UNKNOWN and not (
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
        wanted = _rendered_value(host, host.vars.get("docker_default_runtime"))
        if not wanted or not isinstance(wanted, str):
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
