"""Load an inventory with Ansible's own inventory and variable machinery.

Group/host variable precedence is Ansible's: aiprov only adds one inventory
source in front of the user's (gpu_families.yml, whose groups carry the
per-GPU-family defaults), so the user's own group_vars and host_vars win.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiprov import paths, yaml_guard
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

from aiprov import vault  # imports Ansible's settings: after the ones above

try:  # ansible-core >= 2.19 tags every loaded value with the file it came from
    from ansible._internal._datatag._tags import Origin
except ImportError:  # pragma: no cover - older ansible-core
    Origin = None
try:  # ansible-core >= 2.19 can collect Display warnings instead of printing them
    from ansible._internal._display_utils import DeferredWarningContext
except ImportError:  # pragma: no cover - older ansible-core
    DeferredWarningContext = None

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
    # Data Ansible skipped or overrode while loading (it only warns, or says nothing).
    load_problems: list[Problem] = field(default_factory=list)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def members(self) -> dict[str, list[str]]:
        """group -> its hosts in inventory order (Ansible's `groups`, without the magic)."""
        found: dict[str, list[str]] = {}
        for host in self.hosts:
            for group in host.groups:
                found.setdefault(group, []).append(host.name)
        return found


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


def _decrypt_inline(hosts: list[Host], default_file: str, have_secrets: bool) -> None:
    """Decrypt every inline !vault value, so checks see what Ansible will use."""
    locked: list[Problem] = []
    for host in hosts:
        for key, value in host.vars.items():
            host.vars[key] = vault.reveal(
                key, value, lambda v: origin_file(v, default_file), have_secrets, locked
            )
    if locked:
        raise InputError(sorted(set(locked)))


_VARS_DIRS = ("group_vars", "host_vars")
_DUPLICATE_KEY = re.compile(r"Found duplicate mapping key '(?P<key>[^']+)'")
_ORIGIN = re.compile(r"Origin: (?P<path>/[^\s:]+)")
_PATH_IN_TEXT = re.compile(r"(/\S+)$")


def skipped_files(source: str) -> list[Problem]:
    """Variable files Ansible would pass over without an error.

    It skips a group_vars/host_vars that is not a directory (with a warning),
    and an unreadable directory, a dangling symlink or a symlink loop in them
    without a word: the host then silently runs without those values.
    """
    base = Path(source) if Path(source).is_dir() else Path(source).parent
    problems = []
    for name in _VARS_DIRS:
        top = base / name
        if not os.path.lexists(top):
            continue
        if not top.is_dir():
            problems.append(
                Problem(str(top), "(file)", f"{name} is not a directory: Ansible skips it")
            )
            continue
        problems.extend(_skipped_entries(top))
    return problems


def _skipped_entries(directory: Path, parents: frozenset[Path] = frozenset()) -> Iterator[Problem]:
    parents = parents | {directory.resolve()}
    try:
        entries = sorted(directory.iterdir())
    except OSError as error:
        yield Problem(
            str(directory), "(file)", f"cannot be read ({error.strerror}): Ansible skips it"
        )
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue  # hidden files and backups: Ansible ignores them by design
        if entry.is_symlink() and not entry.exists():
            yield Problem(
                str(entry), "(file)", "a dangling symlink or a symlink loop: Ansible skips it"
            )
        elif entry.is_dir() and entry.resolve() in parents:
            # Ansible would read the same files again and again until the path is too long.
            yield Problem(str(entry), "(file)", "a symlink to a directory above it (a loop)")
        elif entry.is_dir():
            yield from _skipped_entries(entry, parents)
        elif not os.access(entry, os.R_OK):
            yield Problem(str(entry), "(file)", "cannot be read: Ansible skips it")


@contextlib.contextmanager
def collected_warnings(default_file: str) -> Iterator[list[Problem]]:
    """Ansible's warnings inside the block, as problems, instead of on stderr.

    A duplicated key in one YAML file is only a warning to Ansible (the last
    value wins), which hides one of the two values the user wrote.
    """
    found: list[Problem] = []
    if DeferredWarningContext is None:  # pragma: no cover - older ansible-core
        yield found
        return
    with DeferredWarningContext(variables={}) as context:
        yield found
    for warning in context.get_warnings():
        event = warning.event
        found.append(_warning_problem(event.msg, event.formatted_source_context, default_file))


def _warning_problem(message: str, source_context: str | None, default_file: str) -> Problem:
    text = " ".join(str(message).split())
    origin = _ORIGIN.search(source_context or "")
    path = _PATH_IN_TEXT.search(text)
    file = origin.group("path") if origin else path.group(1) if path else default_file
    duplicate = _DUPLICATE_KEY.search(text)
    if duplicate:
        key = duplicate.group("key")
        line = (source_context or "").split(":")[2:3] if origin else []
        where = f" (line {line[0]})" if line and line[0].isdigit() else ""
        return Problem(file, key, f"set twice in this file{where}; Ansible keeps only the last")
    return Problem(file, "(file)", text)


def load(
    source: str | os.PathLike[str],
    extra_vars: dict[str, Any] | None = None,
    vault_options: vault.VaultOptions | None = None,
) -> Inventory:
    """Load the inventory at `source` (a file or directory) with every host's vars.

    Vault-encrypted files and inline !vault values are decrypted with the
    passwords of `vault_options` (and Ansible's own settings).
    Raises InputError with `FILE: KEY: message` problems for anything Ansible
    cannot load or decrypt; never contacts a host.
    """
    path = Path(source)
    if not path.exists():
        raise InputError([Problem(str(path), "(inventory)", "no such file or directory")])
    if path.is_file() and path.stat().st_size == 0:
        raise InputError([Problem(str(path), "(inventory)", "the inventory file is empty")])
    yaml_guard.check(path)  # alias bombs and huge files, before Ansible parses them

    sources = [str(paths.families_inventory()), str(path.resolve())]
    loader = DataLoader()
    # Playbook-adjacent vars (playbooks/group_vars) would apply at run time too.
    loader.set_basedir(str(paths.share_dir() / "playbooks"))
    secrets = vault.secrets(vault_options or vault.VaultOptions())
    loader.set_vault_secrets(secrets)
    vault.activate(secrets)
    display = Display()
    saved_verbosity = display.verbosity
    try:
        with collected_warnings(str(path)) as warnings:
            manager = InventoryManager(loader=loader, sources=sources)
            variables = VariableManager(loader=loader, inventory=manager)
            hosts = []
            for host in manager.get_hosts():
                # -e wins over everything, as in the run (VariableManager reads it from argv).
                host_vars = variables.get_vars(host=host, include_hostvars=False) | (
                    extra_vars or {}
                )
                visible = {k: v for k, v in host_vars.items() if k not in _MAGIC}
                groups = sorted(g.name for g in host.get_groups() if g.name != "all")
                hosts.append(Host(name=host.name, groups=groups, vars=visible))
    except AnsibleError as error:
        problem = _explain(error, str(path))
        if vault.cannot_decrypt(error, problem.file, secrets):
            problem = Problem(problem.file, problem.key, vault.failure_message(bool(secrets)))
        raise InputError([problem]) from None
    finally:
        display.verbosity = saved_verbosity
    if not hosts:
        raise InputError([Problem(str(path), "(inventory)", "the inventory defines no hosts")])
    _decrypt_inline(hosts, str(path), bool(secrets))
    skipped = [p for source_path in sources for p in skipped_files(source_path)]
    # Ansible warns about a vars path that is not a directory; say it once.
    seen = {p.file for p in skipped}
    problems = skipped + [w for w in warnings if w.file not in seen]
    return Inventory(sources=sources, hosts=hosts, load_problems=problems)
