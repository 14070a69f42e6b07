"""Rules for the services' API keys: a service that checks a key must have one.

A key usually comes from a template (a file or environment lookup, a vault
variable), so it is rendered here on the controller, as the run would render
it: an empty result, or one that cannot be rendered, fails the run as surely
as a missing key.
"""

from __future__ import annotations

from collections.abc import Iterator

from ansible.module_utils.parsing.convert_bool import boolean

from aiprov import gateway
from aiprov.inventory import Host, Inventory, origin_file
from aiprov.problems import Problem
from aiprov.templating import is_template, rendered


def _key_problem(host: Host, key: str, needed_by: str, file: str) -> Problem | None:
    """`file` is where the need was set, for a key that is set nowhere."""
    from ansible.errors import AnsibleError

    value = host.vars.get(key)
    file = origin_file(value, file)
    shown = f"'{value}' renders empty " if is_template(value) else "required "
    try:
        value = rendered(host, value)
    except AnsibleError as error:
        message = " ".join(str(error.message).split())
        return Problem(file, key, f"cannot be rendered on the controller: {message}")
    if isinstance(value, str) and value.strip():
        problem = gateway.token_problem(value)
        # The value itself is never printed: it is a secret.
        return Problem(file, key, problem) if problem else None
    return Problem(
        file,
        key,
        f"{shown}on host {host.name}: {needed_by} is set, and every request must carry "
        "this key; set it in Ansible Vault or through a lookup (a file, an environment "
        "variable)",
    )


def check_api_keys(inventory: Inventory) -> Iterator[Problem]:
    """vLLM services always check a key; FunASR does when its proxy is on."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        services = host.vars.get("vllm_service_services")
        if services:
            file = origin_file(services, default)
            problem = _key_problem(host, "vllm_service_api_key", "vllm_service_services", file)
            if problem:
                yield problem
        model = host.vars.get("funasr_service_model")  # the role does nothing without one
        if model and boolean(host.vars.get("funasr_service_proxy_enabled", False), strict=False):
            file = origin_file(model, default)  # a bool carries no origin; the model's does
            problem = _key_problem(
                host, "funasr_service_api_key", "funasr_service_proxy_enabled", file
            )
            if problem:
                yield problem
