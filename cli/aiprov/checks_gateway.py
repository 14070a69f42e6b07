"""Rules for the key-checking front (the gateway role) and what sits behind it.

The engines behind the front listen on loopback; these rules check what the
front will be asked to serve (aiprov.gateway.routes, the function the role
itself renders from) before any host is touched: keys nginx and HTTP can
carry, engine ports that fit and collide with nothing, replicas only behind
the front, TLS files that exist, and a warning for every engine exposed
directly, where vLLM's own key guards only /v1.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from typing import Any

from aiprov import gateway, paths, plan, vllm_services
from aiprov.inventory import Host, Inventory, is_int, origin_file
from aiprov.plan import SERVICES_KEY
from aiprov.problems import Problem
from aiprov.templating import is_template
from aiprov.vllm_checks import other_ports


def _setting(host: Host, key: str) -> Any:
    role = "gateway" if key.startswith("gateway_") else "vllm_service"
    return paths.role_setting(host.vars, role, key)


def check_engine_exposure(inventory: Inventory) -> Iterator[Problem]:
    """Engines off loopback are exposed directly (a warning); replicas and the
    per-service front settings need the front."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        default_host = _setting(host, "vllm_service_host")
        if not isinstance(default_host, str) or is_template(default_host):
            continue
        for service in plan.parse_services(host.vars.get(SERVICES_KEY)):
            raw = service.raw
            if service.replicas < 1:
                yield Problem(
                    service.file("replicas", default),
                    service.key("replicas"),
                    f"{service.replicas}: a service runs at least one engine",
                )
            if vllm_services.fronted(raw, default_host):
                continue
            address = vllm_services.listen_host(raw, default_host)
            where = "host" if "host" in raw else None
            file = service.file("host", default) if where else origin_file(default_host, default)
            key = service.key("host") if where else "vllm_service_host"
            if service.replicas > 1:
                yield Problem(
                    service.file("replicas", default),
                    service.key("replicas"),
                    f"{service.replicas} replicas need the front, which spreads requests over "
                    f"them; this service's engine listens on {address} (set its host to "
                    "127.0.0.1)",
                )
            yield Problem(
                file,
                key,
                f"service '{service.name}' listens on {address}: clients reach the engine "
                "directly, where vLLM's key guards only /v1 (/invocations, /pooling, /score, "
                "/rerank and /classify answer without it); leave it on 127.0.0.1 behind the "
                "gateway's front",
                severity="warning",
            )


def check_engine_ports(inventory: Inventory) -> Iterator[Problem]:
    """Engine ports behind the front (port + offset + replica) fit and collide with nothing."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        offset = _setting(host, "vllm_service_engine_port_offset")
        default_host = _setting(host, "vllm_service_host")
        if not is_int(offset) or not isinstance(default_host, str) or is_template(default_host):
            continue  # the schema reports an offset that is not a number
        services = plan.parse_services(host.vars.get(SERVICES_KEY))
        taken = other_ports(host)
        taken.update({s.port: f"service '{s.name}'" for s in services if s.port is not None})
        for service in services:
            if service.port is None or not vllm_services.fronted(service.raw, default_host):
                continue
            for index in range(max(service.replicas, 1)):
                port = service.port + offset + index
                option = "replicas" if index else "port"
                source, key = service.file(option, default), service.key(option)
                what = f"the engine of service '{service.name}'" + (
                    f" (replica {index})" if index else ""
                )
                if not 1024 <= port <= 65535:
                    yield Problem(
                        source,
                        key,
                        f"{what} would listen on port {service.port} + {offset} + {index} = "
                        f"{port}, not between 1024 and 65535",
                    )
                elif port in taken:
                    yield Problem(
                        source,
                        key,
                        f"{what} would listen on port {port}, already the port of {taken[port]}",
                    )
                else:
                    taken[port] = what


def check_front_values(inventory: Inventory) -> Iterator[Problem]:
    """What the front writes into nginx: a service's own api_key is a bearer
    token (compared exactly), body sizes are nginx sizes."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        for name in ("vllm_service_max_body_size", "funasr_service_proxy_max_body_size"):
            value = host.vars.get(name)
            if value is not None and not is_template(value):
                problem = gateway.size_problem(value)
                if problem:
                    yield Problem(origin_file(value, default), name, problem)
        for service in plan.parse_services(host.vars.get(SERVICES_KEY)):
            for option, check in (
                ("api_key", gateway.token_problem),
                ("max_body_size", gateway.size_problem),
            ):
                value = service.raw.get(option)
                if value is None or is_template(value):
                    continue
                problem = check(value)
                if problem:
                    yield Problem(service.file(option, default), service.key(option), problem)


def check_tls(inventory: Inventory) -> Iterator[Problem]:
    """The front's address, and its TLS files: both or neither, present, or self-signed."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        listen = _setting(host, "gateway_listen")
        if isinstance(listen, str) and not is_template(listen):
            try:
                ipaddress.ip_address(listen)
            except ValueError:
                yield Problem(
                    origin_file(listen, default),
                    "gateway_listen",
                    f"'{listen}' is not an IP address (0.0.0.0, ::, or one of the host's)",
                )
        cert = _setting(host, "gateway_tls_certificate") or ""
        key = _setting(host, "gateway_tls_certificate_key") or ""
        if not isinstance(cert, str) or not isinstance(key, str):
            continue  # the schema reports it
        if bool(cert) != bool(key):
            missing = "gateway_tls_certificate_key" if cert else "gateway_tls_certificate"
            given = cert or key
            yield Problem(
                origin_file(given, default),
                missing,
                "TLS needs both the certificate and its private key",
            )
        if cert and host.vars.get("gateway_tls_self_signed") is True:
            yield Problem(
                origin_file(cert, default),
                "gateway_tls_self_signed",
                "a certificate is given: leave gateway_tls_self_signed off",
            )
        for name, path in (("gateway_tls_certificate", cert), ("gateway_tls_certificate_key", key)):
            if not path or is_template(path):
                continue
            expanded = os.path.expanduser(path)
            if not os.path.isabs(expanded):
                yield Problem(
                    origin_file(path, default),
                    name,
                    f"'{path}' is relative; give the file's absolute path on the controller",
                )
            elif not os.path.isfile(expanded) or not os.access(expanded, os.R_OK):
                yield Problem(
                    origin_file(path, default),
                    name,
                    f"{path} is not a readable file on this controller",
                )
