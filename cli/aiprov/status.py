"""`aiprov status`: one row per planned vLLM service of the fleet: up or down,
model, requests running and waiting, KV-cache use, p50/p95 latency over the
last minutes, GPU memory against the plan.

Where the numbers come from is a Source: a function from the fleet's
endpoints to one Reading each. `from_endpoints` asks every engine's own
/metrics through the key-checking front (what works on any fleet); a source
that asks Prometheus instead (histogram_quantile over rate(...[5m]), DCGM's
memory gauge) returns the same Readings and plugs in at `collect`.

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
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiprov import gateway, metrics, plan, vllm_services
from aiprov.inventory import Host, Inventory
from aiprov.plan import SERVICES_KEY

WINDOW_S = 600.0
_ADDRESS_FORMAT = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
TIMEOUT_S = 2.0


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


def _scheme(host_vars: Mapping[str, Any]) -> str:
    """https where the front serves TLS (a given certificate or a self-signed one)."""
    certificate = host_vars.get("gateway_tls_certificate")
    self_signed = str(host_vars.get("gateway_tls_self_signed")).lower() in ("true", "yes", "1")
    return "https" if certificate or self_signed else "http"


def endpoints(
    host: Host,
    render: Callable[[Host, Any], Any],
    planned: Mapping[str, float] | None = None,
    podman: Mapping[str, str] | None = None,
) -> list[Endpoint]:
    """The host's vLLM services as clients reach them: through the front (its
    port, the route's key) or, for a service exposed directly, the engine."""
    routes = {route["name"]: route for route in gateway.routes(host.vars)}
    default_host = host.vars.get("vllm_service_host", "127.0.0.1")
    engine_key = host.vars.get("vllm_service_api_key") or ""
    found = []
    for service in host.vars.get(SERVICES_KEY) or []:
        route = routes.get(f"vllm-{service['name']}")
        if route:
            where, port, key = address(host, podman), route["port"], route["key"]
            scheme = _scheme(host.vars)
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
    podman = podman_addresses(hosts)
    found = []
    for host in hosts:
        found += endpoints(host, render, planned_gib(host, default_file), podman)
    return found


def fetch_metrics(endpoint: Endpoint, timeout: float = TIMEOUT_S) -> str:
    """The engine's /metrics page through the front, with the key in a header."""
    request = urllib.request.Request(
        f"{endpoint.url}/metrics", headers={"Authorization": f"Bearer {endpoint.key}"}
    )
    context = None
    if endpoint.url.startswith("https:"):  # the front's certificate may be self-signed
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return response.read().decode("utf-8", "replace")


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


def collect(found: list[Endpoint], source: Source = from_endpoints) -> list[Reading]:
    return source(found)


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
