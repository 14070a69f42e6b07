"""Which of the role's INI keys community.general.ini_file would change.

The role backs a file up once before its first change, so it must know in
advance whether any key changes. Asking ini_file in check mode costs one
module run per key on the host (16 for pip.conf); this reads the file once
and answers with ini_file's own rules: a key is settled only where ini_file
would leave the file as it is. When unsure it says "pending", and ini_file
then decides, so the worst case is one needless (idempotent) module run.
"""

from __future__ import annotations

import re

_SECTION_END = "["


def _option_line(option: str, active_only: bool) -> re.Pattern[str]:
    # ini_file's match_opt (comments count: it rewrites or removes them too)
    # and match_active_opt.
    comment = "()" if active_only else "([#;]?)"
    return re.compile(rf"( |\t)*{comment}( |\t)*({re.escape(option)})( |\t)*(=|$)( |\t)*(.*)")


def _section_lines(lines: list[str], section: str | None) -> list[str]:
    """The lines of the first section named `section` (None: before any section)."""
    if not section:
        end = next((i for i, line in enumerate(lines) if line.startswith(_SECTION_END)), len(lines))
        return lines[:end]
    header = re.compile(rf"^\[\s*{re.escape(section.strip())}\s*]")
    for start, line in enumerate(lines):
        if header.match(line):
            rest = lines[start + 1 :]
            end = next((i for i, item in enumerate(rest) if item.startswith(_SECTION_END)), len(rest))
            return rest[:end]
    return []


def _settled(lines: list[str], key: dict) -> bool:
    section = _section_lines(lines, key.get("section"))
    option = key["option"]
    if key.get("state", "present") == "absent":
        return not any(_option_line(option, True).match(line) for line in section)
    matching = [line for line in section if _option_line(option, False).match(line)]
    return matching == [f"{option} = {key['value']}\n"]


def python_env_ini_pending(content: str, keys: list[dict]) -> list[dict]:
    """The keys whose ini_file run would change `content` (all of them if unsure)."""
    if content and not content.endswith("\n"):
        return list(keys)  # ini_file adds the missing newline
    lines = content.splitlines(keepends=True)
    return [key for key in keys if not _settled(lines, key)]


class FilterModule:
    def filters(self):
        return {"python_env_ini_pending": python_env_ini_pending}
