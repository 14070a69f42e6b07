"""Which catalog models a host needs, and which the fleet cache fetches: one home.

The models role imports these through its filter plugin shim
(roles/models/filter_plugins/models.py: models_host_ids, models_fleet_ids).

A host needs the ids in its ``models_enabled``, the model of each of its
``vllm_service_services`` and its FunASR models (the ``funasr_service_*model``
keys), in that order, once each, and only those that are catalog ids: a
service may name an absolute path instead, which nothing fetches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# The FunASR role's model keys, in the order the models role fetches them.
FUNASR_MODEL_KEYS = (
    "funasr_service_model",
    "funasr_service_vad_model",
    "funasr_service_punc_model",
    "funasr_service_spk_model",
)


def _flat(value: Any) -> Iterator[Any]:
    """Items of nested lists, depth first, without None (Ansible's flatten)."""
    if isinstance(value, list | tuple):
        for item in value:
            yield from _flat(item)
    elif value is not None:
        yield value


def _enabled(values: Mapping[str, Any]) -> list[Any]:
    return list(_flat(values.get("models_enabled", [])))


def _service_models(values: Mapping[str, Any]) -> list[Any]:
    services = _flat(values.get("vllm_service_services", []))
    return [s.get("model", "") if isinstance(s, Mapping) else "" for s in services]


def _select(candidates: Iterable[Any], catalog_ids: Iterable[Any]) -> list[Any]:
    """The candidates that are catalog ids, first occurrence first, once each."""
    ids = list(catalog_ids)
    found: list[Any] = []
    for candidate in candidates:
        if candidate in ids and candidate not in found:
            found.append(candidate)
    return found


def host_model_ids(values: Mapping[str, Any], catalog_ids: Iterable[Any]) -> list[Any]:
    """The catalog ids one host needs, from its variables (missing keys: none)."""
    candidates = _enabled(values) + _service_models(values)
    candidates += [values.get(key, "") for key in FUNASR_MODEL_KEYS]
    return _select(candidates, catalog_ids)


def fleet_model_ids(
    hosts: Iterable[Mapping[str, Any]], catalog_ids: Iterable[Any], also: Iterable[Any] = ()
) -> list[Any]:
    """Every catalog id some host of `hosts` needs (what the fleet cache fetches).

    Grouped by kind across the hosts: every host's models_enabled, then every
    vLLM service's model, then each FunASR key over every host; `also` last
    (the models role adds the current host's ids, read with its role defaults).
    """
    hosts = list(hosts)
    candidates = [i for values in hosts for i in _enabled(values)]
    candidates += [m for values in hosts for m in _service_models(values)]
    for key in FUNASR_MODEL_KEYS:
        candidates += [values.get(key, "") for values in hosts]
    return _select(candidates + list(also), catalog_ids)
