"""Every locked environment a host installs has a lock (validate.RULES).

The roles install vLLM, FunASR and the hub clients only from a lock
(aiprov.locks). Before any host is touched: a version and flavour that no
shipped lock covers for any Python is refused, naming the command that
generates one; a lock of the user's own must exist and pin every package
with hashes. Which Python a host has is known only on the host: the
locked_venv block fails there when no lock fits it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ansible.errors import AnsibleError

from aiprov import locks
from aiprov.inventory import Host, Inventory
from aiprov.problems import Problem
from aiprov.templating import rendered

_HUBS = {"huggingface", "modelscope"}


def _downloads_from_hub(host: Host) -> bool:
    catalog = host.vars.get("models_catalog") or []
    return isinstance(catalog, list) and any(
        isinstance(entry, dict) and entry.get("hub") in _HUBS for entry in catalog
    )


def check_locks(inventory: Inventory) -> Iterator[Problem]:
    default = inventory.sources[-1]
    for host in inventory.hosts:
        try:
            needs = locks.needs(
                host.vars, _downloads_from_hub(host), locks.BUNDLE_HOST_GROUP in host.groups
            )
        except (TypeError, ValueError):
            continue  # the schema reports the malformed value
        for need in needs:
            if need.override:
                yield from _check_override(host, need, default)
            elif not locks.pythons(need.engine, need.version, need.flavour):
                key = need.version_key
                yield Problem(
                    host.origin(key, default),
                    key,
                    locks.missing(need.engine, need.version, need.flavour),
                )


def _check_override(host: Host, need: locks.Need, default: str) -> Iterator[Problem]:
    key = need.override_key
    where = host.origin(key, default)
    try:
        value = str(rendered(host, need.override))
    except AnsibleError:
        return  # depends on what only the run defines
    if not Path(value).is_absolute():
        yield Problem(
            where,
            key,
            f"'{value}' must be an absolute path on the controller"
            " (or a template such as {{ inventory_dir }}/...)",
        )
        return
    try:
        locks.read(value)
    except locks.LockError as error:
        yield Problem(where, key, str(error))
