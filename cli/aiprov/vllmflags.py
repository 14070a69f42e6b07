"""vLLM's command-line options per version, and an exact-spelling check of an argv.

The option data (data/vllm_flags/<version>.json) is dumped from vLLM's own
argument parser by scripts/gen_vllm_flags.py. vLLM's parser accepts
abbreviations (`--enforce-eag`); this checker insists on full names so that a
command line means the same thing in the next vLLM release.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from aiprov import paths

_NUMBER = re.compile(r"^-\d+(\.\d*)?$")


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    nargs: Any  # None, "?", "*", "+" or an int (0: a switch)
    choices: tuple[str, ...] | None
    deprecated: bool

    @property
    def name(self) -> str:
        """The long spelling, as `--help` shows it first."""
        longs = [f for f in self.flags if f.startswith("--")]
        return longs[0] if longs else self.flags[0]


@dataclass
class FlagSet:
    version: str
    options: dict[str, Option]  # every option string → its option
    quantization_methods: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def find(self, flag: str) -> Option | None:
        return self.options.get(flag)


@dataclass(frozen=True)
class ArgProblem:
    flag: str
    message: str
    severity: str = "error"


@dataclass(frozen=True)
class ParsedArg:
    flag: str  # canonical long name
    values: tuple[str, ...]


def data_dir():
    return paths.data_dir() / "vllm_flags"


def versions() -> list[str]:
    return sorted(p.stem for p in data_dir().glob("*.json"))


@cache
def load(version: str) -> FlagSet | None:
    """The option data of a vLLM version, or None when aiprov has none for it."""
    path = data_dir() / f"{version}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    options: dict[str, Option] = {}
    for entry in data["options"]:
        choices = entry.get("choices")
        option = Option(
            flags=tuple(entry["flags"]),
            nargs=entry.get("nargs"),
            choices=tuple(str(c) for c in choices) if choices else None,
            deprecated=bool(entry.get("deprecated")),
        )
        for flag in option.flags:
            options[flag] = option
    return FlagSet(
        version=data["version"],
        options=options,
        quantization_methods=tuple(data.get("quantization_methods", ())),
        extra={k: v for k, v in data.items() if k not in ("options", "quantization_methods")},
    )


@cache
def renamed() -> dict[str, str]:
    """Options the guides use that vLLM dropped or never had → what to use instead."""
    return yaml.safe_load((paths.data_dir() / "vllm_renamed.yml").read_text())


def _option_like(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NUMBER.match(token)


def _resolve(flags: FlagSet, token: str) -> tuple[str, Option | None, str | None]:
    """(normalised flag, its option, attached value) for one option token."""
    if token.startswith("--"):
        name, eq, value = token.partition("=")
        # vLLM reads --max_num_seqs as --max-num-seqs and --a.b as a JSON sub-key of --a.
        name = "--" + name[2:].replace("_", "-")
        base = name.split(".", 1)[0]
        option = flags.find(base)
        if option is not None and "." in name and option.nargs == 0:
            option = None
        return (base if option is not None else name), option, (value if eq else None)
    option = flags.find(token)
    if option is not None:
        return token, option, None
    # A one-letter short option with its value attached: -O3, -q awq is separate.
    short = flags.find(token[:2])
    if short is not None and short.nargs != 0 and len(token) > 2:
        return token[:2], short, token[2:]
    return token, None, None


def _unknown(flags: FlagSet, flag: str) -> str:
    if not flag.strip("-"):
        return f"'{flag}' is not an option (a bare '--' would end vLLM's options)"
    message = f"vLLM {flags.version} has no option {flag}"
    if flag in renamed():
        return f"{message}: {renamed()[flag]}"
    longs = sorted({o.name for o in flags.options.values()})
    prefixed = [f for f in longs if f.startswith(flag) and flag.startswith("--")]
    if prefixed:
        return (
            f"{message}; vLLM would read it as an abbreviation of {' or '.join(prefixed[:3])}, "
            "but aiprov wants the full name"
        )
    close = difflib.get_close_matches(flag, longs, n=1, cutoff=0.75)
    if close:
        return f"{message}; did you mean {close[0]}?"
    return message


def parse(flags: FlagSet, args: list[str]) -> tuple[list[ParsedArg], list[ArgProblem]]:
    """Walk an argument list as vLLM's parser would, but with exact names only."""
    parsed: list[ParsedArg] = []
    problems: list[ArgProblem] = []
    i = 0
    while i < len(args):
        token = args[i]
        if not _option_like(token):
            problems.append(ArgProblem(token, f"'{token}' is a value without an option before it"))
            i += 1
            continue
        flag, option, attached = _resolve(flags, token)
        i += 1
        if option is None:
            problems.append(ArgProblem(flag, _unknown(flags, flag)))
            while i < len(args) and not _option_like(args[i]):
                i += 1  # the unknown option's values
            continue
        values: list[str] = []
        if attached is not None:
            if option.nargs == 0:
                problems.append(ArgProblem(flag, f"{flag} takes no value"))
            values.append(attached)
        elif option.nargs is None or (isinstance(option.nargs, int) and option.nargs >= 1):
            wanted = 1 if option.nargs is None else option.nargs
            while len(values) < wanted and i < len(args) and not _option_like(args[i]):
                values.append(args[i])
                i += 1
            if len(values) < wanted:
                problems.append(ArgProblem(flag, f"{flag} needs a value"))
        elif option.nargs == "?":
            if i < len(args) and not _option_like(args[i]):
                values.append(args[i])
                i += 1
        elif option.nargs in ("*", "+"):
            while i < len(args) and not _option_like(args[i]):
                values.append(args[i])
                i += 1
            if option.nargs == "+" and not values:
                problems.append(ArgProblem(flag, f"{flag} needs at least one value"))
        if option.choices is not None:
            for value in values:
                if value not in option.choices:
                    problems.append(
                        ArgProblem(
                            flag,
                            f"{flag} {value}: not one of {', '.join(option.choices)}",
                        )
                    )
        for value in values:
            # vLLM reads a {...} value as JSON; a guide's markdown escape (num\_crops) breaks it.
            if value.lstrip().startswith("{"):
                try:
                    json.loads(value)
                except json.JSONDecodeError as error:
                    problems.append(
                        ArgProblem(flag, f"{flag}: the value is not valid JSON ({error})")
                    )
        if option.deprecated:
            hint = renamed().get(option.name)
            problems.append(
                ArgProblem(
                    flag,
                    f"{option.name} is deprecated in vLLM {flags.version}"
                    + (f": {hint}" if hint else ""),
                    severity="warning",
                )
            )
        parsed.append(ParsedArg(option.name, tuple(values)))
    return parsed, problems
