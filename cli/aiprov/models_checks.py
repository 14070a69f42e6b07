"""Semantic checks of the models role's variables that the argument specs cannot express.

Rules of validate.RULES: catalog ids are unique and local
directories distinct, every id a host enables is in the catalog, and the fleet
cache names a host of the inventory.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiprov.inventory import Inventory
from aiprov.problems import Problem


def check_models_catalog(inventory: Inventory) -> Iterator[Problem]:
    default = inventory.sources[-1]
    names = {host.name for host in inventory.hosts}
    seen: set[tuple[str, str]] = set()  # (file, message): group vars apply to many hosts
    for host in inventory.hosts:
        for problem in _host_problems(host.vars, host.origin, default, names):
            key = (problem.file, problem.message)
            if key not in seen:
                seen.add(key)
                yield problem


def _host_problems(values, origin, default: str, hosts: set[str]) -> Iterator[Problem]:
    catalog = values.get("models_catalog") or []
    if not isinstance(catalog, list):
        return  # the argument spec reports the type
    root = str(values.get("models_root") or "/data/models")
    ids: list[str] = []
    dirs: dict[str, str] = {}
    file = origin("models_catalog", default)
    for index, entry in enumerate(catalog):
        if not isinstance(entry, dict) or "id" not in entry:
            continue
        model_id = str(entry["id"])
        key = f"models_catalog[{index}]"
        if model_id in ids:
            yield Problem(file, f"{key}.id", f"'{model_id}' appears twice in the catalog")
        ids.append(model_id)
        local_dir = str(entry.get("local_dir") or f"{root}/{model_id}")
        if not local_dir.startswith("/"):
            yield Problem(file, f"{key}.local_dir", f"'{local_dir}' is not an absolute path")
        elif local_dir.rstrip("/") in dirs:
            other = dirs[local_dir.rstrip("/")]
            yield Problem(
                file, f"{key}.local_dir", f"'{local_dir}' is also the directory of '{other}'"
            )
        else:
            dirs[local_dir.rstrip("/")] = model_id
    enabled = values.get("models_enabled") or []
    if isinstance(enabled, list):
        for index, model_id in enumerate(enabled):
            if str(model_id) not in ids:
                known = ", ".join(sorted(set(ids))) or "none"
                yield Problem(
                    origin("models_enabled", file),
                    f"models_enabled[{index}]",
                    f"'{model_id}' is not a models_catalog id (ids: {known})",
                )
    cache = values.get("models_cache_host")
    if cache and str(cache) not in hosts:
        yield Problem(
            origin("models_cache_host", file),
            "models_cache_host",
            f"'{cache}' is not a host of this inventory",
        )
