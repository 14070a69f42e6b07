"""Check an inventory before any host is touched: one rule set, in one place.

`aiprov validate`, every `aiprov bootstrap`/`models pull` and the playbooks'
own preflight (playbooks/action_plugins/aiprov_validate.py) all run RULES.
A rule is a pure function of the loaded inventory that yields Problems
(`FILE: KEY: message`); add one by appending it to RULES.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiprov import (
    checks_advisories,
    checks_cuda,
    checks_gateway,
    checks_locks,
    checks_mirrors,
    checks_monitoring,
    checks_multinode,
    checks_secrets,
    checks_stacks,
    checks_values,
    gpu_checks,
    models_checks,
    schema,
    slo,
    vllm_checks,
)
from aiprov.inventory import Inventory
from aiprov.problems import Problem

Rule = Callable[[Inventory], Iterable[Problem]]


def check_loading(inventory: Inventory) -> Iterable[Problem]:
    """What Ansible skipped or overrode while loading: values the hosts would not get."""
    return inventory.load_problems


# In order: loading, then each variable's schema, then what the schemas cannot say.
RULES: tuple[Rule, ...] = (
    check_loading,
    schema.check_schema,
    models_checks.check_models_catalog,
    gpu_checks.check_gpu_stack,
    checks_cuda.check_driver_branch,
    checks_cuda.check_engine_cuda,
    checks_mirrors.check_mirror_urls,
    checks_mirrors.check_python_envs,
    checks_mirrors.check_docker_runtime,
    checks_locks.check_locks,
    vllm_checks.check_models,
    vllm_checks.check_service_names,
    vllm_checks.check_parallelism,
    vllm_checks.check_memory,
    vllm_checks.check_ports,
    vllm_checks.check_quantization,
    vllm_checks.check_vllm_args,
    checks_multinode.check_multinode,
    checks_advisories.check_vllm_advisories,
    checks_secrets.check_api_keys,
    checks_gateway.check_front_values,
    checks_gateway.check_engine_exposure,
    checks_gateway.check_engine_ports,
    checks_gateway.check_tls,
    checks_stacks.check_dify,
    checks_stacks.check_dify_reaches_vllm,
    checks_stacks.check_mineru,
    checks_monitoring.check_monitoring,
    checks_monitoring.check_monitoring_fleet,
    checks_monitoring.check_grafana,
    checks_values.check_control_characters,
    checks_values.check_non_finite,
    checks_values.check_bool_strings,
    checks_values.check_minimums,
    checks_values.check_ports,
    checks_values.check_urls,
    checks_values.check_models_values,
    checks_values.check_gpu_family_groups,
    checks_values.check_funasr_binding,
    checks_values.check_plaintext_secrets,
    checks_values.check_reboot_batch,
    slo.check_slo,
)


def validate(inventory: Inventory) -> list[Problem]:
    """All problems in the inventory, deduplicated across hosts, errors first."""
    found: set[Problem] = set()
    for rule in RULES:
        found.update(rule(inventory))
    return sorted(found, key=lambda p: (p.severity != "error", p.file, p.key, p.message))


def errors(problems: Iterable[Problem], strict: bool = False) -> list[Problem]:
    """The problems that refuse a run (with strict, warnings too)."""
    return [p for p in problems if strict or p.severity == "error"]
