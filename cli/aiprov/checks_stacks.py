"""Semantic checks of the compose stacks (mineru_services) that the argument spec cannot express.

Rules of validate.RULES. MinerU's vLLM engines take a share of
their GPUs like the vLLM services do: aiprov.plan adds them to each GPU's sum
(so the per-GPU bound of vllm_checks.check_memory covers them); the checks
here cover what is MinerU's own: replicas per GPU, GPU indexes, shares,
ports, profiles.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from aiprov import stacks
from aiprov.inventory import Inventory, origin_file
from aiprov.problems import Problem

_SHA256 = re.compile(r"^sha256:[0-9a-fA-F]{64}$")
_DIFY_KEYS = ("dify_source_checksum", "dify_source_url", "dify_version", "dify_admin_email")


def check_dify(inventory: Inventory) -> Iterator[Problem]:
    """A host that deploys Dify names the checksum of its release archive (else the
    download would go unverified)."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        if host.vars.get("dify_enabled") is not True:
            continue
        checksum = host.vars.get("dify_source_checksum")
        if isinstance(checksum, str) and _SHA256.match(checksum):
            continue
        # The file that set Dify up for this host (a bool carries no origin; a string does).
        where = next(
            (
                origin_file(host.vars[k], "")
                for k in _DIFY_KEYS
                if isinstance(host.vars.get(k), str)
            ),
            "",
        )
        yield Problem(
            where or default,
            "dify_source_checksum",
            'Dify is enabled: set it to "sha256:<64 hex digits>" of the release archive at '
            "dify_source_url (sha256sum on the file you fetch or mirror); aiprov never runs an "
            "unverified compose file",
        )


_LOOPBACK = ("127.", "localhost", "::1")


def check_dify_reaches_vllm(inventory: Inventory) -> Iterator[Problem]:
    """Dify's containers reach the vLLM services it registers through the front,
    which must then listen where they can reach it (not on loopback)."""
    from aiprov import vllm_services
    from aiprov.paths import role_defaults

    default = inventory.sources[-1]
    for host in inventory.hosts:
        if host.vars.get("dify_enabled") is not True or host.vars.get("dify_models"):
            continue
        services = host.vars.get("vllm_service_services")
        engine_host = host.vars.get(
            "vllm_service_host", role_defaults("vllm_service").get("vllm_service_host")
        )
        listen = host.vars.get("gateway_listen", role_defaults("gateway").get("gateway_listen"))
        if not isinstance(listen, str) or not listen.startswith(_LOOPBACK):
            continue
        for entry in services if isinstance(services, list) else []:
            if isinstance(entry, dict) and vllm_services.fronted(entry, str(engine_host)):
                yield Problem(
                    origin_file(listen, default),
                    "gateway_listen",
                    f"the front listens on {listen}, which Dify's containers cannot reach: "
                    f"Dify would register {entry.get('name')}'s endpoint and fail to call it; "
                    "let the front listen on the host's address or list the models in "
                    "dify_models",
                    severity="warning",
                )
                break


def check_mineru(inventory: Inventory) -> Iterator[Problem]:
    default = inventory.sources[-1]
    for host in inventory.hosts:
        services = stacks.mineru_services(host)
        if not services:
            continue
        count = host.vars.get("aiprov_gpu_count")
        cpu_only = host.vars.get("aiprov_gpu_family") == "cpu"
        names: set[str] = set()
        for service in services:
            if service.name in names:
                yield Problem(
                    service.file("name", default),
                    service.key("name"),
                    "two entries have this name; each MinerU service is one container",
                )
            names.add(service.name)
            gpus_file, gpus_key = service.file("gpus", default), service.key("gpus")
            if not service.gpus:
                yield Problem(gpus_file, gpus_key, "give the service at least one GPU")
            elif service.data_parallel_size != len(service.gpus):
                yield Problem(
                    service.file("data_parallel_size", default),
                    service.key("data_parallel_size"),
                    f"{service.data_parallel_size} replica(s) for {len(service.gpus)} GPU(s): "
                    "vLLM runs one data-parallel replica per GPU, make them equal",
                )
            if len(set(service.gpus)) != len(service.gpus):
                yield Problem(gpus_file, gpus_key, f"{service.gpus} lists a GPU twice")
            if isinstance(count, int) and not cpu_only:
                missing = [g for g in service.gpus if not 0 <= g < count]
                if missing:
                    yield Problem(
                        gpus_file,
                        gpus_key,
                        f"GPU {', '.join(map(str, missing))} does not exist: host {host.name} "
                        f"has {count} GPUs, numbered 0-{count - 1}",
                    )
            if not 0 < service.gpu_memory_utilization <= 1:
                yield Problem(
                    service.file("gpu_memory_utilization", default),
                    service.key("gpu_memory_utilization"),
                    "must be a fraction of the GPU's memory in (0, 1]",
                )
        yield from _port_problems(host, services, default)
        profiles = host.vars.get(stacks.MINERU_PROFILES_KEY)
        if isinstance(profiles, list):
            unknown = [p for p in profiles if p not in names]
            if unknown:
                yield Problem(
                    origin_file(profiles, default),
                    stacks.MINERU_PROFILES_KEY,
                    f"{', '.join(map(str, unknown))} is not a service of mineru_services "
                    f"({', '.join(sorted(names))})",
                )


def _port_problems(host, services, default) -> Iterator[Problem]:
    """MinerU's host ports differ from each other and from the vLLM services' ports."""
    taken: dict[int, str] = {}
    vllm = host.vars.get("vllm_service_services")
    for entry in vllm if isinstance(vllm, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("port"), int):
            taken[entry["port"]] = f"vLLM service '{entry.get('name')}'"
    for service in services:
        if service.port is None:
            continue
        if service.port in taken:
            yield Problem(
                service.file("port", default),
                service.key("port"),
                f"{service.port} is already the port of {taken[service.port]}",
            )
        taken.setdefault(service.port, service.label)
