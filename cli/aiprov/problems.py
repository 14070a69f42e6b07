"""A problem found in user input, reported as `FILE: KEY: message`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    key: str
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else "warning: "
        return f"{self.file}: {self.key}: {prefix}{self.message}"


class InputError(Exception):
    """Bad user input; carries the problems to print. The CLI exits 4."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
