"""A problem found in user input, reported as `FILE: KEY: message`."""

from __future__ import annotations

from dataclasses import dataclass

MASK = "<vaulted>"
_MIN_SECRET = 4  # shorter values would mask digits and words all over the messages
_secrets: set[str] = set()


def hide_secret(value: str) -> None:
    """Never show `value` (a decrypted vault value) in a problem made from now on."""
    value = str(value)
    if len(value.strip()) >= _MIN_SECRET:
        _secrets.add(value)


def _masked(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    key: str
    message: str
    severity: str = "error"  # or "warning"

    def __post_init__(self) -> None:
        if _secrets:  # a check may quote a value: never a vaulted one
            object.__setattr__(self, "key", _masked(self.key))
            object.__setattr__(self, "message", _masked(self.message))

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else "warning: "
        return f"{self.file}: {self.key}: {prefix}{self.message}"


class InputError(Exception):
    """Bad user input; carries the problems to print. The CLI exits 4."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
