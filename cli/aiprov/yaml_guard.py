"""Refuse inventory files that would exhaust memory or time before Ansible parses them.

Ansible's YAML loader builds an alias as a reference to the anchored node, so a
1 KB "billion laughs" file loads at once; whatever walks the values afterwards
(the argument-spec validator, the vault decryption, a rule) meets 10^9 strings
and runs out of memory. A huge file costs Ansible about 16 s per MB. So every
file Ansible would read for the inventory (the sources themselves, group_vars/
and host_vars/) is checked first:

- over MAX_FILE_BYTES: refused from its size alone, unread;
- YAML with aliases: its events are counted (PyYAML's parser, no objects
  built) and it is refused when aliases would add more than MAX_ALIAS_NODES
  nodes, or nesting goes deeper than MAX_DEPTH.

A file with no alias in it (the common case) is only searched for one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from aiprov import paths
from aiprov.problems import InputError, Problem

MAX_FILE_BYTES = 256 * 1024  # Ansible takes about 4 s and 80 MB to load this much
MAX_ALIAS_NODES = 100_000
MAX_DEPTH = 100
# Files Ansible skips in an inventory directory (its INVENTORY_IGNORE_EXTS default).
IGNORED = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg")
IGNORED += (".retry",)
# An alias outside quotes follows the start of a line, a space or a flow indicator.
_ALIAS = re.compile(rb"(?:^|[\s\[{,:?-])\*[^\s\[\]{},]", re.MULTILINE)
_VARS_DIRS = ("group_vars", "host_vars")


class _Refused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def inventory_files(source: Path) -> Iterator[Path]:
    """The files Ansible reads for an inventory source: the source (a file, or every
    file of a directory) and the group_vars/ and host_vars/ next to it."""
    if source.is_file():
        yield source
        for name in _VARS_DIRS:
            yield from _walk(source.parent / name)
    elif source.is_dir():
        yield from _walk(source)


def _walk(top: Path) -> Iterator[Path]:
    if top.is_file():
        yield top
        return
    for root, dirs, files in os.walk(top):  # symlinked directories are not followed
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.endswith(IGNORED):
                continue
            path = Path(root) / name
            if path.is_file():
                yield path


def file_problem(path: Path) -> Problem | None:
    """Why Ansible must not load `path`, or None."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _Refused(
                f"{size / 1e6:.1f} MB; aiprov refuses inventory files over "
                f"{MAX_FILE_BYTES // 1024} KiB (Ansible loads YAML at about 60 KB a second): "
                "split it, or keep the data outside the inventory"
            )
        data = path.read_bytes()
        if b"*" in data and _ALIAS.search(data) and not data.startswith(b"$ANSIBLE_VAULT"):
            _count(data)
    except _Refused as refused:
        return Problem(str(path), "(file)", refused.message)
    except (OSError, yaml.YAMLError):
        return None  # Ansible reports what it cannot read or parse, with its own words
    return None


def _count(data: bytes) -> None:
    """Walk the YAML events; raise _Refused when aliases expand past the limit."""
    sizes: dict[str, int] = {}  # anchor → expanded size of its node
    stack: list[list] = []  # [anchor, expanded size] of each open collection
    added = 0  # nodes the aliases add

    def close(anchor: str | None, size: int) -> None:
        if anchor:
            sizes[anchor] = size
        if stack:
            stack[-1][1] += size

    for event in yaml.parse(data, Loader=paths.YAML_LOADER):
        if isinstance(event, yaml.AliasEvent):
            size = sizes.get(event.anchor, 1)
            added += size
            if added > MAX_ALIAS_NODES:
                raise _Refused(
                    f"its YAML aliases (*{event.anchor} and others) expand to more than "
                    f"{MAX_ALIAS_NODES} values, an 'alias bomb' that would exhaust memory; "
                    "write the values out or use fewer nested aliases"
                )
            close(None, size)
        elif isinstance(event, yaml.ScalarEvent):
            close(event.anchor, 1)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([event.anchor, 1])
            if len(stack) > MAX_DEPTH:
                raise _Refused(f"values nest deeper than {MAX_DEPTH} levels")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, size = stack.pop()
            close(anchor, size)


def check(source: str | os.PathLike[str]) -> None:
    """Raise InputError naming each file of the inventory at `source` that is refused."""
    problems = [p for f in inventory_files(Path(source)) if (p := file_problem(f))]
    if problems:
        raise InputError(problems)
