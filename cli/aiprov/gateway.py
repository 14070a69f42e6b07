"""The key-checking front (the gateway role's nginx): which routes a host
serves and how each value is written into nginx's configuration.

Every engine behind the front listens on loopback; the front listens on the
service's public port, checks `Authorization: Bearer <key>` on every path with
an exact, case-sensitive comparison, and forwards to the service's replicas
(least connections), presenting the engine's own key. vLLM's `--api-key`
guards only `/v1`, so the front is what keeps `/invocations`, `/pooling`,
`/score`, `/rerank` and `/classify` closed.

The routes come from the host's variables (inventory and extra vars), with
each role's defaults for what the inventory leaves unset: the gateway role
and `aiprov validate` compute them with the same function.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean

from aiprov import paths, vllm_services

# RFC 6750's b64token: what a Bearer credential may be made of. Nothing in it
# needs escaping in nginx's configuration or in an HTTP header.
BEARER_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")

# nginx unescapes \\ and \" in a quoted string and expands $variables in it.
_NGINX_UNSAFE = re.compile(r'["\\$\x00-\x1f\x7f]')

_ROUTE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class GatewayError(ValueError):
    pass


def token_problem(token: Any) -> str | None:
    """Why `token` cannot be a Bearer key, or None."""
    if not isinstance(token, str) or not token:
        return "is empty"
    if not BEARER_TOKEN.match(token):
        return (
            "is not an RFC 6750 bearer token: use letters, digits and - . _ ~ + / "
            "(with = only at the end), e.g. `openssl rand -hex 32`"
        )
    return None


_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")


def size_problem(size: Any) -> str | None:
    """Why `size` is not an nginx size (client_max_body_size), or None."""
    if isinstance(size, bool) or not _SIZE.match(str(size)):
        return f"{str(size)!r} is not a size such as 64m, 200m or 1g"
    return None


def nginx_string(value: Any) -> str:
    """`value` as a double-quoted nginx string; refused where nginx would
    unescape or expand something in it."""
    text = str(value)
    if _NGINX_UNSAFE.search(text):
        raise GatewayError(f"gateway: a value nginx would unescape or expand: {text!r}")
    return f'"{text}"'


def listen(address: str, port: int) -> str:
    """The `listen` argument for an address and port ([v6]:port for IPv6)."""
    address = str(address)
    if not re.match(r"^[0-9A-Fa-f.:]+$", address):
        raise GatewayError(f"gateway: not an IP address: {address!r}")
    if ":" in address:
        address = f"[{address}]"
    return f"{address}:{int(port)}"


def self_signed(host_vars: Mapping[str, Any]) -> bool:
    return boolean(
        paths.role_setting(host_vars, "gateway", "gateway_tls_self_signed"), strict=False
    )


def scheme(host_vars: Mapping[str, Any]) -> str:
    """https where the front serves TLS (a given certificate or a self-signed one)."""
    certificate = paths.role_setting(host_vars, "gateway", "gateway_tls_certificate")
    return "https" if certificate or self_signed(host_vars) else "http"


def routes(
    host_vars: Mapping[str, Any], monitoring: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The front's routes on a host, from its variables: one per vLLM service
    whose engines listen on loopback, FunASR's when its proxy is on, and the
    monitoring route where the host is monitored and has a scrape key
    (monitoring: aiprov.monitoring.placement of the host).

    Each route: name, port (public), backends ("127.0.0.1:18000", ...), key
    (what clients must send), upstream_key (what the engine expects, or ""),
    max_body_size; the monitoring route has locations instead of backends.
    """

    def vllm(key: str) -> Any:
        return paths.role_setting(host_vars, "vllm_service", f"vllm_service_{key}")

    def funasr(key: str) -> Any:
        return paths.role_setting(host_vars, "funasr_service", f"funasr_service_{key}")

    found = []
    default_host, engine_key = vllm("host"), vllm("api_key") or ""
    # The head of a multi-node service serves its API; its other nodes have no front for it.
    for service in vllm_services.api_services(vllm("services") or [], host_vars):
        if not vllm_services.fronted(service, default_host):
            continue
        backends = vllm_services.engine_endpoints(service, default_host, vllm("engine_port_offset"))
        found.append(
            {
                "name": f"vllm-{service['name']}",
                "port": int(service["port"]),
                "backends": [_backend(host, port) for host, port in backends],
                "key": str(service.get("api_key") or engine_key),
                "upstream_key": str(engine_key),
                "max_body_size": str(service.get("max_body_size") or vllm("max_body_size")),
            }
        )
    if boolean(funasr("proxy_enabled"), strict=False) and funasr("model"):
        engine = vllm_services.probe_host(str(funasr("host")))
        found.append(
            {
                "name": "funasr",
                "port": int(funasr("proxy_port")),
                "backends": [_backend(engine, int(funasr("port")))],
                "key": str(funasr("api_key") or ""),
                "upstream_key": "",  # funasr-server has no authentication
                "max_body_size": str(funasr("proxy_max_body_size")),
            }
        )
    if monitoring:
        route = monitoring_route(host_vars, monitoring)
        if route:
            found.append(route)
    return found


def monitoring_route(
    host_vars: Mapping[str, Any], monitoring: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The exporters (and the Prometheus, where one runs here) behind
    monitoring_scrape_key, for a Prometheus on another host, Grafana and
    `aiprov status`: each exporter at one exact path, with no arguments of
    the client's; Prometheus' HTTP API (read-only: its admin and lifecycle
    endpoints are off) under /prometheus/api/v1/."""
    from aiprov import monitoring as monitoring_targets  # it reads this module's TLS settings

    def setting(key: str) -> Any:
        return paths.role_setting(host_vars, "monitoring", f"monitoring_{key}")

    key = setting("scrape_key")
    if not monitoring.get("enabled") or not key:
        return None
    locations = [
        {
            "path": target["front"],
            "exact": True,
            "backend": target["address"],
            "uri": target["path"],
            "args": "&".join(f"{k}={v}" for k, v in (target.get("params") or {}).items()),
        }
        for target in monitoring_targets.exports(host_vars)
    ]
    if monitoring.get("prometheus"):
        locations.append(
            {
                "path": "/prometheus/api/v1/",
                "exact": False,
                "backend": f"127.0.0.1:{int(setting('prometheus_port'))}",
                "uri": "/api/v1/",
                "args": None,
            }
        )
    return {
        "name": "monitoring",
        "port": int(setting("gateway_port")),
        "backends": [],
        "locations": locations,
        "key": str(key),
        "upstream_key": "",
        "max_body_size": "1m",
    }


def _backend(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def checked_routes(
    host_vars: Mapping[str, Any], monitoring: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """routes(), refusing what cannot be written safely (validate reports the
    same problems with FILE: KEY before any run; this is the last guard)."""
    found = routes(host_vars, monitoring)
    for route in found:
        if not _ROUTE_NAME.match(route["name"]):
            raise GatewayError(f"gateway: route name {route['name']!r} is not [a-z0-9_-]")
        problem = token_problem(route["key"])
        if problem:
            raise GatewayError(f"gateway: the key of route {route['name']} {problem}")
        if route["upstream_key"] and token_problem(route["upstream_key"]):
            raise GatewayError(f"gateway: the engine key of route {route['name']} is not a token")
        problem = size_problem(route["max_body_size"])
        if problem:
            raise GatewayError(f"gateway: route {route['name']}: {problem}")
    return found


def status_port(host_vars: Mapping[str, Any]) -> int | None:
    """The loopback port of the front's nginx status page (stub_status), on a
    monitored host that serves routes, else None: the gateway role writes the
    page and the monitoring role scrapes it through Debian's nginx exporter,
    both deciding with this function."""
    monitored = boolean(
        paths.role_setting(host_vars, "monitoring", "monitoring_enabled"), strict=False
    )
    if not monitored or not routes(host_vars):
        return None
    return int(paths.role_setting(host_vars, "monitoring", "monitoring_nginx_status_port"))
