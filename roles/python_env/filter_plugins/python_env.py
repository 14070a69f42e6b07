"""Which of the role's INI keys community.general.ini_file would change.

The role backs a file up once before its first change, so it must know in
advance whether any key changes. Asking ini_file in check mode costs one
module run per key on the host (16 for pip.conf); this reads the file once
and answers with ini_file's own rules: a key is settled only where ini_file
would leave the file as it is. When unsure it says "pending", and ini_file
then decides, so the worst case is one needless (idempotent) module run.
"""

from __future__ import annotations

import base64
import re

_SECTION_END = "["
_ROOT_0644 = ("0644", "root", "root")


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
            end = next(
                (i for i, item in enumerate(rest) if item.startswith(_SECTION_END)), len(rest)
            )
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


def python_env_ini_changes(files: list[dict], stats: list[dict], reads: list[dict]) -> list[dict]:
    """The role's INI files that need a write, each with its pending keys.

    `files` are {path, keys}; `stats` and `reads` the stat and slurp loop
    results over them, in the same order. A file that is missing or not
    root's 0644 gets all its keys (ini_file also sets the owner and mode).
    """
    changes = []
    for file, stat_result, read_result in zip(files, stats, reads, strict=True):
        stat = stat_result["stat"]
        owned = stat["exists"] and (stat["mode"], stat["pw_name"], stat["gr_name"]) == _ROOT_0644
        content = base64.b64decode(read_result["content"]).decode() if owned else ""
        pending = python_env_ini_pending(content, file["keys"]) if owned else list(file["keys"])
        if pending:
            changes.append({"path": file["path"], "exists": stat["exists"], "pending": pending})
    return changes


class FilterModule:
    def filters(self):
        return {"python_env_ini_changes": python_env_ini_changes}
