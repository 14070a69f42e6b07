"""aiprov.host_models: which catalog models a host needs and the fleet cache fetches.

The models role reads them through its filter plugin shim; molecule/models runs
them for real (the cache host fetches a model only the other host's service names).
"""

from __future__ import annotations

import importlib.util

from aiprov import paths
from aiprov.host_models import fleet_model_ids, host_model_ids

CATALOG = ["a", "b", "c", "d", "e"]


def test_a_host_needs_enabled_then_service_then_funasr_models_once_each():
    values = {
        "models_enabled": ["c", "a"],
        "vllm_service_services": [{"name": "x", "model": "d"}, {"name": "y", "model": "c"}],
        "funasr_service_model": "e",
        "funasr_service_vad_model": "b",
    }
    assert host_model_ids(values, CATALOG) == ["c", "a", "d", "e", "b"]


def test_only_catalog_ids_count():
    values = {
        "models_enabled": ["zz"],
        "vllm_service_services": [{"name": "x", "model": "/data/own"}, {"name": "y"}],
        "funasr_service_model": "",
        "funasr_service_spk_model": "/opt/spk",
    }
    assert host_model_ids(values, CATALOG) == []
    assert host_model_ids({}, CATALOG) == []
    assert host_model_ids({"models_enabled": ["a"]}, []) == []


def test_the_fleet_groups_by_kind_across_hosts_then_adds_also():
    h1 = {"models_enabled": ["c", "zz"], "funasr_service_vad_model": "e"}
    h2 = {
        "models_enabled": ["b"],
        "vllm_service_services": [{"name": "x", "model": "d"}, {"name": "y", "model": "/abs"}],
        "funasr_service_model": "a",
    }
    # enabled of every host, then services' models, then each FunASR key
    assert fleet_model_ids([h1, h2], CATALOG) == ["c", "b", "d", "a", "e"]
    assert fleet_model_ids([h2], CATALOG, also=["c", "a"]) == ["b", "d", "a", "c"]
    assert fleet_model_ids([], CATALOG) == []


def test_nested_lists_are_flattened_and_nulls_skipped():
    values = {"models_enabled": [["a", None], "b"], "vllm_service_services": [[{"model": "c"}]]}
    assert host_model_ids(values, CATALOG) == ["a", "b", "c"]
    assert fleet_model_ids([values], CATALOG) == ["a", "b", "c"]


def test_the_role_filters_are_the_package_functions():
    path = paths.roles_dir() / "models" / "filter_plugins" / "models.py"
    spec = importlib.util.spec_from_file_location("models_filters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    filters = module.FilterModule().filters()
    assert filters == {"models_host_ids": host_model_ids, "models_fleet_ids": fleet_model_ids}
