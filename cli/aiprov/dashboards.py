"""Grafana dashboards for what the monitoring role scrapes: the fleet, each
vLLM service, each GPU.

The panels' queries read the labels the monitoring role's scrape
configuration adds (aiprov_service, aiprov_unit; aiprov.monitoring) and the
metric names vLLM registers (the per-version data beside the alert rules), so
a test checks every query against that data as it checks the rules.
`scripts/gen_dashboards.py` writes them to cli/aiprov/data/dashboards/, for
Grafana's dashboard import or its file provisioning.
"""

from __future__ import annotations

import json
from typing import Any

from aiprov import paths

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
_WIDTH, _HEIGHT = 12, 8

# vLLM's histograms, as a quantile over the selected services.
_SERVICE = 'aiprov_service=~"$service"'


def _quantile(q: float, histogram: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (aiprov_service, le) "
        f"(rate({histogram}_bucket{{{_SERVICE}}}[$__rate_interval])))"
    )


def _panel(title: str, unit: str, targets: list[tuple[str, str]], kind: str = "timeseries"):
    return {
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def _variables(service: bool) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}
    ]
    if service:
        found.append(
            {
                "name": "service",
                "type": "query",
                "label": "Service",
                "datasource": DATASOURCE,
                "query": "label_values(vllm:num_requests_running, aiprov_service)",
                "refresh": 2,
                "multi": True,
                "includeAll": True,
                "current": {"text": "All", "value": "$__all"},
            }
        )
    return found


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]], service: bool):
    for index, panel in enumerate(panels):
        panel["id"] = index + 1
        panel["gridPos"] = {
            "x": (index % 2) * _WIDTH,
            "y": (index // 2) * _HEIGHT,
            "w": _WIDTH,
            "h": _HEIGHT,
        }
    return {
        "uid": uid,
        "title": title,
        "tags": ["aiprov"],
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": _variables(service)},
        "panels": panels,
    }


def vllm_service() -> dict[str, Any]:
    """Each vLLM service: latency quantiles, throughput, queue, KV cache, preemptions."""
    panels = [
        _panel(
            "Time to first token",
            "s",
            [
                (_quantile(0.5, "vllm:time_to_first_token_seconds"), "{{aiprov_service}} p50"),
                (_quantile(0.95, "vllm:time_to_first_token_seconds"), "{{aiprov_service}} p95"),
            ],
        ),
        _panel(
            "Inter-token latency",
            "s",
            [
                (_quantile(0.5, "vllm:inter_token_latency_seconds"), "{{aiprov_service}} p50"),
                (_quantile(0.95, "vllm:inter_token_latency_seconds"), "{{aiprov_service}} p95"),
            ],
        ),
        _panel(
            "End-to-end request latency",
            "s",
            [
                (_quantile(0.5, "vllm:e2e_request_latency_seconds"), "{{aiprov_service}} p50"),
                (_quantile(0.95, "vllm:e2e_request_latency_seconds"), "{{aiprov_service}} p95"),
                (_quantile(0.99, "vllm:e2e_request_latency_seconds"), "{{aiprov_service}} p99"),
            ],
        ),
        _panel(
            "Tokens per second",
            "short",
            [
                (
                    "sum by (aiprov_service) "
                    f"(rate(vllm:generation_tokens_total{{{_SERVICE}}}[$__rate_interval]))",
                    "{{aiprov_service}} generated",
                ),
                (
                    "sum by (aiprov_service) "
                    f"(rate(vllm:prompt_tokens_total{{{_SERVICE}}}[$__rate_interval]))",
                    "{{aiprov_service}} prompt",
                ),
            ],
        ),
        _panel(
            "Requests running and waiting",
            "short",
            [
                (
                    f"sum by (aiprov_service) (vllm:num_requests_running{{{_SERVICE}}})",
                    "{{aiprov_service}} running",
                ),
                (
                    f"sum by (aiprov_service) (vllm:num_requests_waiting{{{_SERVICE}}})",
                    "{{aiprov_service}} waiting",
                ),
            ],
        ),
        _panel(
            "KV cache usage",
            "percentunit",
            [(f"vllm:kv_cache_usage_perc{{{_SERVICE}}}", "{{aiprov_unit}}")],
        ),
        _panel(
            "Preemptions per second",
            "short",
            [
                (
                    "sum by (aiprov_service) "
                    f"(rate(vllm:num_preemptions_total{{{_SERVICE}}}[$__rate_interval]))",
                    "{{aiprov_service}}",
                )
            ],
        ),
        _panel(
            "Finished requests per second",
            "reqps",
            [
                (
                    "sum by (aiprov_service, finished_reason) "
                    f"(rate(vllm:request_success_total{{{_SERVICE}}}[$__rate_interval]))",
                    "{{aiprov_service}} {{finished_reason}}",
                )
            ],
        ),
    ]
    return _dashboard("aiprov-vllm-service", "aiprov / vLLM service", panels, service=True)


def fleet() -> dict[str, Any]:
    """The fleet: targets up, units active and restarting, load, the models disk,
    FunASR's health, the key-checking front's connections and requests."""
    panels = [
        _panel("Targets up", "short", [("sum by (job) (up)", "{{job}}")]),
        # 0 when all are active (a count of `== 0` would show no data then).
        _panel(
            "aiprov units not active",
            "short",
            [
                (
                    'sum by (instance) (1 - node_systemd_unit_state{name=~"aiprov-.+",'
                    'state="active"})',
                    "{{instance}}",
                )
            ],
        ),
        _panel(
            "Unit restarts (15 min)",
            "short",
            [
                (
                    "increase(node_systemd_service_restart_total"
                    '{name=~"aiprov-.+|nginx[.]service"}[15m])',
                    "{{name}}",
                )
            ],
        ),
        _panel(
            "Requests running per service",
            "short",
            [("sum by (aiprov_service) (vllm:num_requests_running)", "{{aiprov_service}}")],
        ),
        _panel(
            "Disk free",
            "percentunit",
            [
                (
                    'node_filesystem_avail_bytes{fstype!~"tmpfs|overlay"}'
                    ' / node_filesystem_size_bytes{fstype!~"tmpfs|overlay"}',
                    "{{instance}} {{mountpoint}}",
                )
            ],
        ),
        _panel(
            "FunASR health",
            "short",
            [('probe_success{aiprov_service="funasr"}', "{{instance}}")],
        ),
        # The key-checking front (nginx's stub_status, through the nginx exporter).
        _panel(
            "Front: active connections",
            "short",
            [("sum by (instance) (nginx_connections_active)", "{{instance}}")],
        ),
        _panel(
            "Front: requests per second",
            "reqps",
            [
                (
                    "sum by (instance) (rate(nginx_http_requests_total[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
        ),
    ]
    return _dashboard("aiprov-fleet", "aiprov / fleet", panels, service=False)


def gpus() -> dict[str, Any]:
    """Each GPU, from NVIDIA's DCGM exporter: utilisation, memory, temperature, Xid."""
    panels = [
        _panel(
            "GPU utilisation", "percent", [("DCGM_FI_DEV_GPU_UTIL", "{{Hostname}} GPU {{gpu}}")]
        ),
        _panel(
            "GPU memory used",
            "percentunit",
            [
                (
                    "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)",
                    "{{Hostname}} GPU {{gpu}}",
                )
            ],
        ),
        _panel(
            "GPU temperature", "celsius", [("DCGM_FI_DEV_GPU_TEMP", "{{Hostname}} GPU {{gpu}}")]
        ),
        _panel("Power", "watt", [("DCGM_FI_DEV_POWER_USAGE", "{{Hostname}} GPU {{gpu}}")]),
        _panel("Xid errors", "short", [("DCGM_FI_DEV_XID_ERRORS", "{{Hostname}} GPU {{gpu}}")]),
    ]
    return _dashboard("aiprov-gpus", "aiprov / GPUs", panels, service=False)


DASHBOARDS = {"vllm-service": vllm_service, "fleet": fleet, "gpus": gpus}


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, query) of every panel's targets."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


# ---- Grafana ------------------------------------------------------------------------------

# Fields Grafana sets on a stored dashboard (GET /api/dashboards/uid/<uid>).
_GRAFANA_OWN = {"id", "version"}


def grafana_datasource(url: str, scrape_interval: str) -> dict[str, Any]:
    """The Prometheus data source the monitoring role creates in Grafana (url
    mode, POST /api/datasources) or provisions (compose mode). Its scrape
    interval is Grafana's smallest step, so $__rate_interval covers 4 scrapes."""
    return {
        "uid": "aiprov-prometheus",
        "name": "aiprov Prometheus",
        "type": "prometheus",
        "access": "proxy",
        "url": str(url),
        "isDefault": False,
        "jsonData": {"timeInterval": str(scrape_interval), "httpMethod": "POST"},
    }


def grafana_datasource_outdated(stored: Any, wanted: dict[str, Any]) -> bool:
    """Whether Grafana's answer to GET /api/datasources/uid/<uid> (anything but
    a data source: not there) differs from `wanted` in a field aiprov sets."""
    if not isinstance(stored, dict) or stored.get("uid") != wanted["uid"]:
        return True
    return any(stored.get(key) != value for key, value in wanted.items())


def for_grafana(datasource: dict[str, Any]) -> list[dict[str, Any]]:
    """The generated dashboards (data/dashboards/*.json) as the monitoring
    role hands them to Grafana: each datasource variable set to `datasource`."""
    found = []
    for path in sorted((paths.data_dir() / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "datasource":
                variable["current"] = {"text": datasource["name"], "value": datasource["uid"]}
        found.append(dashboard)
    return found


def grafana_outdated(stored: Any, wanted: dict[str, Any], folder_uid: str) -> bool:
    """Whether Grafana's answer to GET /api/dashboards/uid/<uid> (anything but
    a dashboard: not there) differs from `wanted`, in content or folder."""
    if not isinstance(stored, dict) or not isinstance(stored.get("dashboard"), dict):
        return True
    held = {k: v for k, v in stored["dashboard"].items() if k not in _GRAFANA_OWN}
    folder = (stored.get("meta") or {}).get("folderUid")
    return held != wanted or folder != folder_uid
