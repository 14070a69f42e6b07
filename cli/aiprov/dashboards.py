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

from typing import Any

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
    """The fleet: targets up, units active and restarting, load, the models disk."""
    panels = [
        _panel("Targets up", "short", [("sum by (job) (up)", "{{job}}")]),
        _panel(
            "aiprov units not active",
            "short",
            [
                (
                    'count by (instance) (node_systemd_unit_state{name=~"aiprov-.+",'
                    'state="active"} == 0)',
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
