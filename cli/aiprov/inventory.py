"""Load an inventory with Ansible's own inventory and variable machinery.

Group/host variable precedence is Ansible's: aiprov only adds one inventory
source in front of the user's (gpu_families.yml, whose group_vars/ carry the
per-GPU-family defaults), so the user's own group_vars and host_vars win.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiprov import paths
from aiprov.problems import InputError, Problem

# Must be set before ansible's constants are imported: a source that no
# inventory plugin can parse is an error, not a warning that leaves hosts out.
os.environ["ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED"] = "true"
os.environ.setdefault("ANSIBLE_LOCALHOST_WARNING", "false")
os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false")

from ansible.errors import AnsibleError
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.utils.display import Display
from ansible.vars.manager import VariableManager

try:  # ansible-core >= 2.19 tags every loaded value with the file it came from
    from ansible._internal._datatag._tags import Origin
except ImportError:  # pragma: no cover - older ansible-core
    Origin = None

# Variables Ansible itself puts into a host's vars; never user input.
_MAGIC = {
    "inventory_file",
    "inventory_dir",
    "inventory_hostname",
    "inventory_hostname_short",
    "group_names",
    "groups",
    "omit",
    "playbook_dir",
    "ansible_playbook_python",
    "ansible_config_file",
    "ansible_version",
    "ansible_check_mode",
    "ansible_diff_mode",
    "ansible_forks",
    "ansible_run_tags",
    "ansible_skip_tags",
    "ansible_verbosity",
    "ansible_inventory_sources",
    "hostvars",
    "environment",
    "role_names",
    "ansible_role_names",
    "ansible_dependent_role_names",
    "ansible_play_role_names",
}


@dataclass
class Host:
    name: str
    groups: list[str]
    vars: dict[str, Any] = field(repr=False)

    def origin(self, key: str, default: str) -> str:
        """The file (and line) where this host's variable `key` was set."""
        return origin_of(self.vars.get(key), default)


@dataclass
class Inventory:
    sources: list[str]
    hosts: list[Host]

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)


def origin_of(value: Any, default: str) -> str:
    if Origin is not None:
        tag = Origin.get_tag(value)
        if tag is not None and tag.path:
            return f"{tag.path}:{tag.line_num}" if tag.line_num else str(tag.path)
    return default


def origin_file(value: Any, default: str) -> str:
    """Like origin_of, without the line number."""
    if Origin is not None:
        tag = Origin.get_tag(value)
        if tag is not None and tag.path:
            return str(tag.path)
    return default


def entry_origin_file(entry: dict[str, Any], option: str, default: str) -> str:
    """The file where a list entry's `option` was set, else where the entry was."""
    value = entry.get(option)
    found = origin_file(value, "") if value is not None else ""
    return found or origin_file(entry, default)


def is_int(value: Any) -> bool:
    """An integer from YAML, not a bool (which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


_PARSE_ERROR = re.compile(r"Unable to parse (?P<path>\S+) as an inventory source")


def _explain(error: AnsibleError, default_file: str) -> Problem:
    """Turn an Ansible loading error into one `FILE: KEY: message` line."""
    text = error.message if hasattr(error, "message") else str(error)
    text = " ".join(str(text).split())
    # A YAML error in a group_vars/host_vars file carries the file's origin on
    # the exception it was raised from, not on the one Ansible re-raises.
    file = ""
    cause: BaseException | None = error
    while cause is not None and not file:
        obj = getattr(cause, "obj", None)
        if Origin is not None and isinstance(obj, Origin):
            file = str(obj.path or "")
        elif obj is not None:
            file = origin_file(obj, "")
        cause = cause.__cause__ or cause.__context__
    match = _PARSE_ERROR.search(text)
    if match:
        file = match.group("path")
    if not file:
        path_match = re.search(r"(/[^\s'\"]+\.(?:ya?ml|ini|json))", text)
        file = path_match.group(1) if path_match else default_file
    return Problem(file, "(file)", text)


def load(source: str | os.PathLike[str], extra_vars: dict[str, Any] | None = None) -> Inventory:
    """Load the inventory at `source` (a file or directory) with every host's vars.

    Raises InputError with `FILE: KEY: message` problems for anything Ansible
    cannot load; never contacts a host.
    """
    path = Path(source)
    if not path.exists():
        raise InputError([Problem(str(path), "(inventory)", "no such file or directory")])
    if path.is_file() and path.stat().st_size == 0:
        raise InputError([Problem(str(path), "(inventory)", "the inventory file is empty")])

    sources = [str(paths.families_inventory()), str(path.resolve())]
    loader = DataLoader()
    # Playbook-adjacent vars (playbooks/group_vars) would apply at run time too.
    loader.set_basedir(str(paths.share_dir() / "playbooks"))
    display = Display()
    saved_verbosity = display.verbosity
    try:
        manager = InventoryManager(loader=loader, sources=sources)
        variables = VariableManager(loader=loader, inventory=manager)
        if extra_vars:
            variables.extra_vars = extra_vars
        hosts = []
        for host in manager.get_hosts():
            host_vars = variables.get_vars(host=host, include_hostvars=False)
            visible = {k: v for k, v in host_vars.items() if k not in _MAGIC}
            groups = sorted(g.name for g in host.get_groups() if g.name != "all")
            hosts.append(Host(name=host.name, groups=groups, vars=visible))
    except AnsibleError as error:
        raise InputError([_explain(error, str(path))]) from None
    finally:
        display.verbosity = saved_verbosity
    if not hosts:
        raise InputError([Problem(str(path), "(inventory)", "the inventory defines no hosts")])
    return Inventory(sources=sources, hosts=hosts)
