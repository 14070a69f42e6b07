"""`aiprov status`: one row per planned vLLM service of the fleet: up or down,
model, requests running and waiting, KV-cache use, p50/p95 latency over the
last minutes, GPU memory against the plan.

Where the numbers come from is a Source: a function from the fleet's
endpoints to one Reading each. Where a host's Prometheus (its own, or the
fleet's on the group `monitoring`) is reachable through that host's front
(monitoring_scrape_key), `from_prometheus` asks it: latency quantiles over
the last 5 minutes, and the GPU memory DCGM reports against the plan.
Elsewhere `from_endpoints` asks every engine's own /metrics through the
key-checking front (what works on any fleet).

Latency "over the last minutes": each run keeps the histogram it read in the
state dir; the next run within WINDOW_S reports the quantiles of what
happened in between, else those since the engine started (the row says
which).
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiprov import gateway, metrics, monitoring, paths, plan, vllm_services
from aiprov.inventory import Host, Inventory
from aiprov.plan import SERVICES_KEY

WINDOW_S = 600.0
_ADDRESS_FORMAT = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
TIMEOUT_S = 2.0
# A one-token completion of a multi-node service: it crosses every host.
PROBE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Endpoint:
    """Where a service is reached from this machine, as its clients reach it."""

    host: str
    service: str
    served_name: str
    url: str  # scheme://address:port
    key: str = field(repr=False)
    runner: str | None = None
    planned_gib: float | None = None  # GPU memory the plan gives it (all its GPUs)
    gpus: tuple[int, ...] = ()
    # The Prometheus API that watches the host (through its server's front) and its key.
    prometheus: str | None = None
    prometheus_key: str = field(default="", repr=False)
    # A service spread over several hosts: /health and /metrics stay up on the
    # head while a lost stage hangs every request, so status asks a completion.
    multinode: bool = False


@dataclass
class Reading:
    up: bool
    error: str | None = None
    model: str | None = None
    running: float | None = None
    waiting: float | None = None
    kv_cache_pct: float | None = None
    p50_s: float | None = None
    p95_s: float | None = None
    window: str | None = None  # "5m" / "since start"
    gpu_used_gib: float | None = None  # the endpoints do not say; Prometheus (DCGM) does
    source: str = "engine"  # where the numbers came from: "engine" or "prometheus"
    histogram: dict[float, float] | None = field(default=None, repr=False)


Source = Callable[[list[Endpoint]], list[Reading]]


def address(host: Host, podman: Mapping[str, str] | None = None) -> str:
    """Where clients reach the host: ansible_host, else (a host Ansible reaches
    through podman, as the sandbox's) its container's address, else its name."""
    if host.vars.get("ansible_host"):
        return str(host.vars["ansible_host"])
    return (podman or {}).get(host.name) or host.name


def _through_podman(host: Host) -> bool:
    connection = str(host.vars.get("ansible_connection", ""))
    return connection.endswith("podman") and not host.vars.get("ansible_host")


def podman_addresses(hosts: list[Host]) -> dict[str, str]:
    """The addresses of the containers behind hosts reached through podman
    (one `podman inspect` for all of them)."""
    names = [h.name for h in hosts if _through_podman(h)]
    if not names:
        return {}
    from aiprov import sandbox

    try:
        done = sandbox.run_podman("inspect", "--format", _ADDRESS_FORMAT, *names, check=False)
    except (sandbox.SandboxError, OSError):
        return {}
    lines = done.stdout.splitlines()
    return {name: (line.split() or [""])[0] for name, line in zip(names, lines, strict=False)}


def prometheus_api(
    inventory: Inventory,
    host: Host,
    render: Callable[[Host, Any], Any],
    podman: Mapping[str, str] | None = None,
) -> tuple[str | None, str]:
    """The Prometheus API that watches `host`, through its server's front
    (aiprov.monitoring: the host's own Prometheus, or the fleet's), and the
    key; (None, "") where there is none or no key lets one reach it."""
    name = monitoring.server(host.name, host.vars, inventory.members())
    if name is None or name not in {h.name for h in inventory.hosts}:
        return None, ""
    server = inventory.host(name)
    key = str(render(server, server.vars.get("monitoring_scrape_key")) or "")
    if not key:
        return None, ""
    where = render(server, server.vars.get("monitoring_address")) or address(server, podman)
    where = f"[{where}]" if ":" in str(where) else where
    port = paths.role_setting(server.vars, "monitoring", "monitoring_gateway_port")
    return f"{gateway.scheme(server.vars)}://{where}:{port}/prometheus/api/v1", key


def endpoints(
    host: Host,
    render: Callable[[Host, Any], Any],
    planned: Mapping[str, float] | None = None,
    podman: Mapping[str, str] | None = None,
    prometheus: tuple[str | None, str] = (None, ""),
    members: Mapping[str, list[str]] | None = None,
) -> list[Endpoint]:
    """The host's vLLM services as clients reach them: through the front (its
    port, the route's key) or, for a service exposed directly, the engine
    (members: the inventory's groups, for multi-node services)."""
    # Ansible's view of the host: a multi-node service is reached on its head.
    host_vars = {**host.vars, "inventory_hostname": host.name, "groups": members or {}}
    routes = {route["name"]: route for route in gateway.routes(host_vars)}
    default_host = host.vars.get("vllm_service_host", "127.0.0.1")
    engine_key = host.vars.get("vllm_service_api_key") or ""
    found = []
    for service in vllm_services.api_services(host.vars.get(SERVICES_KEY) or [], host_vars):
        route = routes.get(f"vllm-{service['name']}")
        if route:
            where, port, key = address(host, podman), route["port"], route["key"]
            scheme = gateway.scheme(host.vars)
        else:
            where = vllm_services.listen_host(service, str(default_host))
            if where in ("0.0.0.0", "::"):
                where = address(host, podman)
            port, key, scheme = int(service["port"]), engine_key, "http"
        found.append(
            Endpoint(
                host=host.name,
                service=str(service["name"]),
                served_name=str(service.get("served_name") or service["name"]),
                url=f"{scheme}://{where}:{port}",
                key=str(render(host, key) or ""),
                runner=service.get("runner"),
                planned_gib=(planned or {}).get(str(service["name"])),
                gpus=tuple(int(g) for g in service.get("gpus") or () if str(g).isdigit()),
                prometheus=prometheus[0],
                prometheus_key=prometheus[1],
                multinode=bool(service.get("multinode")),
            )
        )
    return found


def planned_gib(host: Host, default_file: str) -> dict[str, float]:
    """GPU memory the plan gives each service on a host (over all its GPUs)."""
    try:
        host_plan = plan.plan_host(host, default_file)
    except Exception:  # the plan is a nicety here; `aiprov plan` reports its problems
        return {}
    return {
        sp.service.name: round(sp.share_gib * max(1, len(sp.service.gpus)), 1)
        for sp in host_plan.services
        if sp.service.gpus and sp.share_gib
    }


def fleet_endpoints(
    inventory: Inventory, render: Callable[[Host, Any], Any], default_file: str
) -> list[Endpoint]:
    hosts = [host for host in inventory.hosts if host.vars.get(SERVICES_KEY)]
    podman = podman_addresses(inventory.hosts)
    found = []
    for host in hosts:
        api = prometheus_api(inventory, host, render, podman)
        planned = planned_gib(host, default_file)
        found += endpoints(host, render, planned, podman, api, inventory.members())
    return found


def fetch_metrics(endpoint: Endpoint, timeout: float = TIMEOUT_S) -> str:
    """The engine's /metrics page through the front, with the key in a header."""
    request = urllib.request.Request(
        f"{endpoint.url}/metrics", headers={"Authorization": f"Bearer {endpoint.key}"}
    )
    context = _context(endpoint.url)
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return response.read().decode("utf-8", "replace")


def _context(url: str) -> ssl.SSLContext | None:
    if not url.startswith("https:"):
        return None
    # The front's certificate may be self-signed; the key is what it checks.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def reading(text: str, before: Mapping[float, float] | None = None, window: str = "") -> Reading:
    """What a /metrics page says (with the histogram of the previous run, when
    it is recent, the latency of the requests since)."""
    samples = metrics.parse(text)
    histogram = metrics.buckets(samples, metrics.LATENCY)
    recent = metrics.delta(histogram, before) if before else histogram
    kv = metrics.total(samples, *metrics.KV_CACHE)
    return Reading(
        up=True,
        model=metrics.model_name(samples),
        running=metrics.total(samples, metrics.RUNNING),
        waiting=metrics.total(samples, metrics.WAITING),
        kv_cache_pct=None if kv is None else round(100 * kv, 1),
        p50_s=metrics.quantile(0.5, recent),
        p95_s=metrics.quantile(0.95, recent),
        window=window if before else "since start",
        histogram=histogram,
    )


def _state_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "aiprov" / "status" / "histograms.json"


def _load_previous(path: Path, now: float) -> tuple[float | None, dict[str, dict[float, float]]]:
    """The previous run's time and histograms, when it is within WINDOW_S."""
    try:
        data = json.loads(path.read_text())
        then = float(data["time"])
        histograms = {
            url: {float(b): float(v) for b, v in hist.items()}
            for url, hist in data["histograms"].items()
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None, {}
    if not 0 <= now - then <= WINDOW_S:
        return None, {}
    return then, histograms


def _save(path: Path, now: float, readings: Mapping[str, Reading]) -> None:
    histograms = {
        url: {str(b): v for b, v in r.histogram.items()}
        for url, r in readings.items()
        if r.histogram
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"time": now, "histograms": histograms}))
    except OSError:
        pass  # the next run reports since start


def from_endpoints(found: list[Endpoint], timeout: float = TIMEOUT_S) -> list[Reading]:
    """Ask every endpoint at once; one Reading each, in order."""
    state = _state_file()
    now = time.time()
    then, previous = _load_previous(state, now)
    window = f"{max(1, round((now - then) / 60))}m" if then is not None else ""

    def ask(endpoint: Endpoint) -> Reading:
        try:
            text = fetch_metrics(endpoint, timeout)
        except urllib.error.HTTPError as error:
            return Reading(up=False, error=f"HTTP {error.code}")
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            return Reading(up=False, error=str(reason))
        return reading(text, previous.get(endpoint.url), window)

    with ThreadPoolExecutor(max_workers=min(32, max(1, len(found)))) as pool:
        results = list(pool.map(ask, found))
    _save(state, now, {e.url: r for e, r in zip(found, results, strict=True) if r.up})
    return results


# What `aiprov status` asks a Prometheus, by host and service (latency over 5 minutes).
_BY = "aiprov_host, aiprov_service"
QUERIES = {
    "up": f'min by ({_BY}) (up{{job="{monitoring.VLLM_JOB}"}})',
    "model": f"group by ({_BY}, model_name) ({metrics.RUNNING})",
    "running": f"sum by ({_BY}) ({metrics.RUNNING})",
    "waiting": f"sum by ({_BY}) ({metrics.WAITING})",
    "kv": f"max by ({_BY}) ({metrics.KV_CACHE[0]})",
    "p50": f"histogram_quantile(0.5, sum by ({_BY}, le) (rate({metrics.LATENCY}_bucket[5m])))",
    "p95": f"histogram_quantile(0.95, sum by ({_BY}, le) (rate({metrics.LATENCY}_bucket[5m])))",
    "gpu_mib": "sum by (aiprov_host, gpu) (DCGM_FI_DEV_FB_USED)",
}


def query(api: str, key: str, expr: str, timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
    """An instant query's result vector, through the front with the key in a header."""
    url = f"{api}/query?{urllib.parse.urlencode({'query': expr})}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=timeout, context=_context(api)) as response:
        answer = json.loads(response.read())
    if answer.get("status") != "success":
        raise ValueError(answer.get("error") or "the query failed")
    return answer["data"]["result"]


def readings_from_prometheus(
    found: list[Endpoint], answers: Mapping[str, list[dict[str, Any]]]
) -> list[Reading]:
    """One Reading per endpoint from the answers to QUERIES (pure)."""

    def by_service(name: str) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (r["metric"].get("aiprov_host", ""), r["metric"].get("aiprov_service", "")): r
            for r in answers.get(name, [])
        }

    def number(row: dict[str, Any] | None) -> float | None:
        if row is None:
            return None
        value = float(row["value"][1])
        return None if value != value else value  # NaN: no requests in the window

    tables = {name: by_service(name) for name in QUERIES if name != "gpu_mib"}
    gpu_mib = {
        (r["metric"].get("aiprov_host", ""), r["metric"].get("gpu", "")): float(r["value"][1])
        for r in answers.get("gpu_mib", [])
    }
    results = []
    for endpoint in found:
        key = (endpoint.host, endpoint.service)
        up = number(tables["up"].get(key))
        if up is None:
            results.append(
                Reading(up=False, error="Prometheus has no target for it", source="prometheus")
            )
            continue
        if up < 1:
            results.append(
                Reading(up=False, error="an engine's target is down", source="prometheus")
            )
            continue
        used = [gpu_mib.get((endpoint.host, str(g))) for g in endpoint.gpus]
        kv = number(tables["kv"].get(key))
        model = tables["model"].get(key)
        results.append(
            Reading(
                up=True,
                model=model["metric"].get("model_name") if model else None,
                running=number(tables["running"].get(key)),
                waiting=number(tables["waiting"].get(key)),
                kv_cache_pct=None if kv is None else round(100 * kv, 1),
                p50_s=number(tables["p50"].get(key)),
                p95_s=number(tables["p95"].get(key)),
                window="5m",
                source="prometheus",
                gpu_used_gib=(
                    round(sum(used) / 1024, 1)  # type: ignore[arg-type]
                    if used and None not in used
                    else None
                ),
            )
        )
    return results


def from_prometheus(found: list[Endpoint], timeout: float = TIMEOUT_S) -> list[Reading]:
    """Ask each Prometheus once per query for the endpoints it watches; the
    endpoints whose Prometheus does not answer (or that have none) are asked
    directly."""
    apis = sorted({(e.prometheus, e.prometheus_key) for e in found if e.prometheus})
    jobs = [(api, key, name) for api, key in apis for name in QUERIES]

    def ask(job: tuple[str, str, str]) -> list[dict[str, Any]] | None:
        api, key, name = job
        try:
            return query(api, key, QUERIES[name], timeout)
        except (urllib.error.URLError, OSError, TimeoutError, ValueError, KeyError):
            return None

    with ThreadPoolExecutor(max_workers=min(32, max(1, len(jobs)))) as pool:
        answered = list(pool.map(ask, jobs))
    per_api: dict[str, dict[str, list[dict[str, Any]]] | None] = {}
    for (api, _key, name), result in zip(jobs, answered, strict=True):
        if result is None or per_api.get(api, {}) is None:
            per_api[api] = None  # one failed query: ask the engines instead
        else:
            per_api.setdefault(api, {})[name] = result  # type: ignore[index]
    readings: dict[int, Reading] = {}
    for api, answers in per_api.items():
        if answers is None:
            continue
        mine = [i for i, e in enumerate(found) if e.prometheus == api]
        answered_here = readings_from_prometheus([found[i] for i in mine], answers)
        readings.update(zip(mine, answered_here, strict=True))
    rest = [i for i in range(len(found)) if i not in readings]
    if rest:
        readings.update(zip(rest, from_endpoints([found[i] for i in rest], timeout), strict=True))
    return [readings[i] for i in range(len(found))]


def probe_completion(endpoint: Endpoint, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why a one-token completion (an embedding for a pooling model) failed
    through the service's front, or None when it answered."""
    pooling = endpoint.runner == "pooling"
    body = {"model": endpoint.served_name}
    body.update(
        {"input": "aiprov status"} if pooling else {"prompt": "aiprov status", "max_tokens": 1}
    )
    request = urllib.request.Request(
        f"{endpoint.url}/v1/{'embeddings' if pooling else 'completions'}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {endpoint.key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=_context(endpoint.url)):
            return None
    except urllib.error.HTTPError as error:
        return f"a completion answered HTTP {error.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        return f"a completion failed: {getattr(error, 'reason', error)}"


def collect(found: list[Endpoint], source: Source = from_prometheus) -> list[Reading]:
    """Readings of every endpoint; a multi-node service that reads up must
    also answer a real completion (a lost stage leaves its metrics up)."""
    readings = source(found)
    for endpoint, reading_ in zip(found, readings, strict=True):
        if endpoint.multinode and reading_.up:
            failed = probe_completion(endpoint)
            if failed:
                reading_.up, reading_.error = False, f"{failed} (a pipeline stage may be lost)"
    return readings


def to_json(found: list[Endpoint], readings: list[Reading]) -> dict[str, Any]:
    rows = []
    for endpoint, r in zip(found, readings, strict=True):
        row = {
            "host": endpoint.host,
            "service": endpoint.service,
            "url": endpoint.url,
            "planned_gpu_gib": endpoint.planned_gib,
        }
        row.update({k: v for k, v in asdict(r).items() if k != "histogram"})
        row["model"] = r.model or endpoint.served_name
        rows.append(row)
    return {"services": rows, "down": sum(not r.up for r in readings)}


def exit_code(readings: list[Reading]) -> int:
    """2 when a planned service is down (as a failed host), else 0."""
    return 2 if any(not r.up for r in readings) else 0
