"""The schema half of validation: the roles' own meta/argument_specs.yml (the
same specs Ansible enforces when a role starts) plus data/fleet_spec.yml for the
fleet-wide `aiprov_*` variables. Each variable is validated on its own, so
every problem names the file where the value was set and its key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from aiprov import gpu_families, paths
from aiprov.inventory import Host, Inventory, origin_file
from aiprov.problems import Problem


@cache
def specs() -> dict[str, dict[str, dict[str, Any]]]:
    """Variable specs keyed by prefix: {"base": {"base_extra_packages": {...}}, ...}."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for spec_file in sorted(paths.roles_dir().glob("*/meta/argument_specs.yml")):
        role = spec_file.parent.parent.name
        data = paths.read_yaml(spec_file) or {}
        options = data.get("argument_specs", {}).get("main", {}).get("options", {}) or {}
        found[role] = options
    fleet = paths.read_yaml(paths.data_dir() / "fleet_spec.yml")
    # The family names live in gpu_families.yml alone.
    family = fleet["options"]["aiprov_gpu_family"]
    family["choices"] = [*gpu_families.names(), gpu_families.CPU_FAMILY]
    found["aiprov"] = fleet["options"]
    return found


def _prefix_of(key: str) -> str | None:
    # Longest prefix first: "vllm_service_x" belongs to vllm_service, not to a "vllm" role.
    for prefix in sorted(specs(), key=len, reverse=True):
        if key.startswith(prefix + "_"):
            return prefix
    return None


_TAGGED_TYPE = re.compile(r"<class 'ansible\.[\w.]*\._AnsibleTagged(\w+)'>")


def _clean(text: str) -> str:
    """Ansible's messages, minus the internal class names of tagged values."""
    text = _TAGGED_TYPE.sub(lambda m: m.group(1).lower(), str(text))
    return " ".join(text.split())


def _check_value(key: str, spec: dict[str, Any], value: Any) -> list[str]:
    """Validate one variable against its argument spec; return the messages."""
    validator = ArgumentSpecValidator({key: _strip_docs(spec)})
    result = validator.validate({key: value})
    return [_clean(error) for error in result.error_messages]


def _strip_docs(spec: dict[str, Any]) -> dict[str, Any]:
    """ArgumentSpecValidator rejects documentation-only keys in nested options."""
    keep = {k: v for k, v in spec.items() if k not in ("description", "version_added")}
    if "options" in keep:
        keep["options"] = {name: _strip_docs(sub) for name, sub in keep["options"].items()}
    return keep


def schema_problems(host: Host, default_file: str) -> list[Problem]:
    problems = []
    for key, value in sorted(host.vars.items()):
        prefix = _prefix_of(key)
        if prefix is None:
            problem = _misspelled_prefix(key, origin_file(value, default_file))
            if problem:
                problems.append(problem)
            continue
        options = specs()[prefix]
        file = origin_file(value, default_file)
        if key not in options:
            # Internal variables (leading underscore) never come from inventories.
            hint = difflib.get_close_matches(key, list(options), n=1)
            message = "unknown variable"
            if hint:
                message += f"; did you mean '{hint[0]}'?"
            problems.append(Problem(file, key, message))
            continue
        if isinstance(value, str) and "{{" in value:
            continue  # a template: Ansible validates the rendered value at run time
        for message in _check_value(key, options[key], value):
            problems.append(Problem(file, key, message))
    return problems


def _misspelled_prefix(key: str, file: str) -> Problem | None:
    """`vllm_sevice_services` would be ignored by every role: say what was meant.

    A key whose first words are close to a role's prefix (or `aiprov`) but not
    equal to it is taken as a typo, not as a variable of the user's own.
    """
    words = key.split("_")
    for count in range(1, len(words)):
        written = "_".join(words[:count])
        close = difflib.get_close_matches(written, list(specs()), n=1, cutoff=_PREFIX_CUTOFF)
        if close and close[0] != written:
            meant = close[0] + key[len(written) :]
            options = specs()[close[0]]
            hint = meant if meant in options else next(iter(_closest(meant, options)), None)
            message = f"unknown variable: '{written}' is not a role prefix"
            if hint:
                message += f"; did you mean '{hint}'?"
            return Problem(file, key, message)
    return None


# "vllm_sevice" → "vllm_service", "model" → "models"; "mode" or "base_x" stay the user's.
_PREFIX_CUTOFF = 0.85


def _closest(key: str, options: dict[str, Any]) -> list[str]:
    return difflib.get_close_matches(key, list(options), n=1)


def check_schema(inventory: Inventory) -> Iterator[Problem]:
    """Every aiprov variable against its role's argument spec (or the fleet spec)."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        yield from schema_problems(host, default)
