"""Checks of services spread over several hosts (a vllm_service_services
entry with `multinode`): what vLLM's multi-node runtime would refuse, or
where it would hang, decided before any host is touched.

A rule of validate.RULES. The nodes come from aiprov.vllm_services (the one
home of how the role resolves them); the parallel layout against the model
is vllm_checks' (with each node's GPUs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiprov import paths, plan, vllm_checks, vllm_services, vllmflags
from aiprov.inventory import Host, Inventory, origin_file
from aiprov.plan import SERVICES_KEY, Service
from aiprov.problems import Problem

# What must be the same on every node: the role's settings (name -> what it is).
SAME_SETTINGS = {
    "vllm_service_package": "vLLM distribution",
    "vllm_service_version": "vLLM version",
    "aiprov_gpu_family": "GPU family",
}
# Keys of a node's own entry that may differ between nodes: its GPUs (the
# count must match) and its environment (e.g. a CPU core binding).
NODE_KEYS = {"gpus", "environment"}


def _setting(host: Host, name: str) -> Any:
    role = "vllm_service" if name.startswith("vllm_service_") else None
    default = paths.role_defaults(role).get(name) if role else None
    return host.vars.get(name, default)


def _catalog_entry(host: Host, model: str) -> dict[str, Any] | None:
    if model.startswith("/"):
        return {"id": model}
    return plan.catalog_entries(host).get(model)


def _comparable(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key not in NODE_KEYS}


def check_multinode(inventory: Inventory) -> Iterator[Problem]:
    """Nodes exist and hold the same entry, engine, model revision and GPU
    family; the layout fits one pipeline stage group per host; the master
    port is free on every node."""
    default = inventory.sources[-1]
    members = inventory.members()
    by_name = {host.name: host for host in inventory.hosts}
    for host in inventory.hosts:
        for service in plan.parse_services(host.vars.get(SERVICES_KEY)):
            if service.multinode:
                yield from _service_problems(host, service, by_name, members, default)


def _service_problems(host, service, by_name, members, default) -> Iterator[Problem]:
    file, key = service.file("multinode", default), service.key("multinode")
    spec = service.multinode or {}
    if bool(spec.get("hosts")) == bool(spec.get("group")):
        yield Problem(file, key, "name the nodes with hosts (the head first) or group, not both")
        return
    nodes = vllm_services.nodes(service.raw, members)
    if spec.get("group") and not nodes:
        yield Problem(file, f"{key}.group", f"no inventory group '{spec['group']}' with hosts")
        return
    if len(nodes) < 2:
        yield Problem(
            file, key, f"{len(nodes)} node(s): a multi-node service needs at least 2 hosts"
        )
        return
    if len(set(nodes)) != len(nodes):
        yield Problem(file, f"{key}.hosts", f"{nodes} names a host twice")
        return
    missing = [node for node in nodes if node not in by_name]
    if missing:
        yield Problem(file, key, f"{', '.join(missing)}: not a host of this inventory")
        return
    if host.name not in nodes:
        yield Problem(
            file,
            key,
            f"host {host.name} has this service but is not one of its nodes "
            f"({', '.join(nodes)}); give the entry only to its nodes",
        )
        return
    yield from _layout_problems(host, service, len(nodes), default)
    if host.name != nodes[0]:
        return  # the head compares the nodes, once
    yield from _node_problems(host, service, [by_name[n] for n in nodes[1:]], default)
    yield from _master_port_problems(service, [by_name[n] for n in nodes], default)
    if service.raw.get("api_key"):
        yield Problem(
            service.file("api_key", default),
            service.key("api_key"),
            "the other nodes' watchers ask the head through its front with "
            "vllm_service_api_key, which this service's own key makes 401: they cannot "
            "tell a lost head and will not rejoin a restarted one; leave the key to "
            "vllm_service_api_key for a multi-node service",
            severity="warning",
        )


def _layout_problems(host: Host, service: Service, count: int, default: str) -> Iterator[Problem]:
    tp, pp = service.tensor_parallel_size, service.pipeline_parallel_size
    if service.replicas > 1:
        yield Problem(
            service.file("replicas", default),
            service.key("replicas"),
            "replicas and multinode together are not supported: run a second multi-node "
            "service for another copy of the model",
        )
    if tp >= 1 and pp >= 1 and pp % count:
        yield Problem(
            service.file("pipeline_parallel_size", default),
            service.key("pipeline_parallel_size"),
            f"{pp} pipeline stage(s) over {count} hosts: tensor parallel stays within a "
            f"host and the stages are spread over the hosts, so it must be a multiple of "
            f"{count}",
        )
    version = _setting(host, "vllm_service_version")
    flags = vllmflags.load(str(version)) if version is not None else None
    if flags is not None and "--nnodes" not in flags.options:
        yield Problem(
            origin_file(host.vars.get("vllm_service_version"), default),
            "vllm_service_version",
            f"vLLM {flags.version} has no --nnodes (its own multi-node runtime came in a "
            "later release); pin a version that has it, such as 0.32.0",
        )


def _node_problems(head: Host, service: Service, others: list[Host], default: str):
    file, key = service.file("multinode", default), service.key("multinode")
    head_catalog = _catalog_entry(head, service.model)
    for node in others:
        entry = next(
            (s for s in plan.parse_services(node.vars.get(SERVICES_KEY)) if s.name == service.name),
            None,
        )
        if entry is None:
            yield Problem(
                file,
                key,
                f"node {node.name} has no service '{service.name}' in {SERVICES_KEY}: give "
                "the entry to every node (e.g. in the group's group_vars)",
            )
            continue
        differing = sorted(
            name
            for name in set(_comparable(service.raw)) | set(_comparable(entry.raw))
            if service.raw.get(name) != entry.raw.get(name)
        )
        if differing:
            yield Problem(
                file,
                key,
                f"node {node.name}'s entry differs in {', '.join(differing)}: every node runs "
                "the same engine arguments",
            )
        if len(entry.gpus) != len(service.gpus):
            yield Problem(
                file,
                key,
                f"node {node.name} gives {len(entry.gpus)} GPU(s), the head {len(service.gpus)}: "
                "every node holds the same share of the stages",
            )
        for name, what in SAME_SETTINGS.items():
            if _setting(node, name) != _setting(head, name):
                yield Problem(
                    origin_file(node.vars.get(name), default),
                    name,
                    f"{what} {_setting(node, name)!r} on node {node.name}, "
                    f"{_setting(head, name)!r} on the head {head.name}: every node of "
                    f"'{service.name}' needs the same",
                )
        catalog = _catalog_entry(node, service.model)
        if catalog is None:
            yield Problem(
                file,
                key,
                f"the model '{service.model}' is not in node {node.name}'s models_catalog: "
                "every node needs it on its own disk",
            )
        elif head_catalog is not None and any(
            catalog.get(field) != head_catalog.get(field) for field in ("repo", "revision", "hub")
        ):
            yield Problem(
                file,
                key,
                f"node {node.name}'s catalog entry '{service.model}' differs from the head's "
                "(repo, revision or hub): every node must load the same weights",
            )


def _master_port_problems(service: Service, nodes: list[Host], default: str):
    spec = service.multinode or {}
    port = int(spec.get("master_port") or vllm_services.MASTER_PORT)
    file, key = service.file("multinode", default), f"{service.key('multinode')}.master_port"
    if not 1024 <= port <= 65535:
        yield Problem(file, key, f"{port} is not between 1024 and 65535")
        return
    for node in nodes:
        taken = dict(vllm_checks.other_ports(node))
        default_host = _setting(node, "vllm_service_host")
        offset = _setting(node, "vllm_service_engine_port_offset")
        for other in plan.parse_services(node.vars.get(SERVICES_KEY)):
            if other.port is not None:
                taken.setdefault(other.port, f"service '{other.name}'")
            if other.name != service.name and other.multinode:
                other_port = int(other.multinode.get("master_port") or vllm_services.MASTER_PORT)
                taken.setdefault(other_port, f"service '{other.name}''s master_port")
            if other.port is not None:
                for _, engine in vllm_services.engine_endpoints(other.raw, default_host, offset):
                    taken.setdefault(engine, f"service '{other.name}''s engine")
        if port in taken:
            yield Problem(file, key, f"{port} is taken by {taken[port]} on node {node.name}")
