"""The one way a value reaches an aiprov unit file.

The service_unit role's filters are a shim over this module, and the
service roles' unit builders (aiprov.vllm_services) use its URL helper.
systemd reads a unit file line by line, so
every value is written in a form that cannot end its line, continue it onto
the next, or be expanded into something else:

    quote(["/opt/venv/bin/python", "-m", "x", "50%"], "exec")
    # '"/opt/venv/bin/python" "-m" "x" "50%%"'

Contexts:

- ``exec``: a list of argv words for ExecStart= and friends. Each word is
  double-quoted with C escapes (a newline becomes ``\\n``), ``%`` specifiers
  are doubled and ``$`` is doubled (systemd expands $VARS on these lines).
- ``env``: a list of ``KEY=VALUE`` words for Environment=: quoted and escaped
  the same way, ``$`` left alone (Environment= does not expand it). KEY must
  be a shell-style name.
- ``text``: one free-text value for directives that take the rest of the line
  (Description=): control characters become spaces, ``%`` is doubled and a
  trailing backslash (a line continuation) is dropped.
- ``path``: one absolute path for directives that take the rest of the line
  and do not unquote (WorkingDirectory=, EnvironmentFile=): written as is
  with ``%`` doubled; refused if it is not absolute or holds a control
  character, leading or trailing blanks, or ends in a backslash.
- ``paths``: a list of absolute paths (ReadWritePaths=): each one quoted and
  escaped like ``env``.
- ``name``: a user, group or unit name: refused unless it is made of
  ``[A-Za-z0-9_.@:-]`` (nothing there needs quoting).
- ``choice``: one of the fixed words in ``choices`` (Type=, ProtectHome=),
  refused otherwise.
"""

from __future__ import annotations

import re
from typing import Any

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@:-]*$")
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


class QuoteError(ValueError):
    pass


def _escape(word: str, dollar: bool) -> str:
    out = []
    for char in word:
        if char in _C_ESCAPES:
            out.append(_C_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        elif char == "%":
            out.append("%%")
        elif char == "$" and dollar:
            out.append("$$")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def quote(value: Any, context: str = "exec", choices: Any = None) -> str:
    """Render `value` for a unit file line of the given context (see the module doc)."""
    if context == "exec":
        words = [str(word) for word in _as_list(value, context)]
        if not words or not words[0].startswith("/"):
            raise QuoteError(f"service_unit: a command must start with an absolute path: {words!r}")
        return " ".join(_escape(word, dollar=True) for word in words)
    if context == "env":
        words = [str(word) for word in _as_list(value, context)]
        for word in words:
            key = word.split("=", 1)[0]
            if "=" not in word or not _ENV_KEY.match(key):
                raise QuoteError(f"service_unit: not an environment assignment KEY=VALUE: {word!r}")
        return " ".join(_escape(word, dollar=False) for word in words)
    if context == "text":
        text = "".join(" " if ord(c) < 0x20 or ord(c) == 0x7F else c for c in str(value))
        return text.strip().rstrip("\\").strip().replace("%", "%%")
    if context == "path":
        path = str(value)
        if (
            not path.startswith("/")
            or path != path.strip()
            or path.endswith("\\")
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path)
        ):
            raise QuoteError(f"service_unit: not a plain absolute path: {path!r}")
        return path.replace("%", "%%")
    if context == "paths":
        paths = [str(path) for path in _as_list(value, context)]
        for path in paths:
            if not path.startswith("/"):
                raise QuoteError(f"service_unit: not an absolute path: {path!r}")
        return " ".join(_escape(path, dollar=False) for path in paths)
    if context == "name":
        name = str(value)
        if not _NAME.match(name):
            raise QuoteError(f"service_unit: not a valid user, group or unit name: {name!r}")
        return name
    if context == "choice":
        allowed = [str(choice) for choice in _as_list(choices, context)]
        if str(value) not in allowed:
            raise QuoteError(f"service_unit: {value!r} is not one of {allowed!r}")
        return str(value)
    raise QuoteError(f"service_unit: unknown quoting context {context!r}")


def _as_list(value: Any, context: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise QuoteError(f"service_unit: {context} needs a list of words, got {value!r}")
    return list(value)


def environment(env: Any) -> list[str]:
    """A mapping (order kept) or a list of [key, value] pairs -> KEY=VALUE words."""
    items = env.items() if hasattr(env, "items") else env
    words = []
    for key, val in items:
        if isinstance(val, bool):
            val = "true" if val else "false"
        words.append(f"{key}={'' if val is None else val}")
    return words


def url(host: str, port: int, path: str = "/") -> str:
    """http://host:port/path, with an IPv6 address in brackets."""
    host = str(host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{int(port)}{path}"
