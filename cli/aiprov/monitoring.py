"""What the monitoring role's Prometheus scrapes and alerts on, from the inventory.

The role's filters (roles/monitoring/filter_plugins) are a shim over this
module; the tests render the same dictionaries and run the real promtool on
them. The vLLM engines are found as the vllm_service role runs them
(aiprov.vllm_services: one engine per replica, on loopback behind the front);
a per-host Prometheus scrapes their /metrics directly, which vLLM serves
without its key (the key guards /v1 only) and only on loopback.

vLLM renames metrics between releases: every vLLM metric the rules query must
be in data/vllm_metrics/<version>.json (scripts/gen_vllm_metrics.py, from
vLLM's own source), which tests/test_monitoring.py checks; the other
exporters' metrics are listed in EXPORTER_METRICS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean

from aiprov import gateway, paths, slo, vllm_services

# Metrics of the other exporters the rules use, by the exporter (and the
# version) that serves them: node_exporter 1.5 (Debian 12's), DCGM exporter's
# default counters, and Prometheus' own `up` and blackbox's probe_success
# (the alert rules' and the dashboards' queries are checked against them).
EXPORTER_METRICS = {
    "up": "prometheus",
    "probe_success": "prometheus-blackbox-exporter 0.23",
    "node_systemd_unit_state": "prometheus-node-exporter 1.5 (--collector.systemd)",
    "node_systemd_service_restart_total": "prometheus-node-exporter 1.5 (--collector.systemd)",
    "node_filesystem_avail_bytes": "prometheus-node-exporter 1.5",
    "node_filesystem_size_bytes": "prometheus-node-exporter 1.5",
    "DCGM_FI_DEV_FB_USED": "dcgm-exporter (default-counters.csv)",
    "DCGM_FI_DEV_FB_FREE": "dcgm-exporter (default-counters.csv)",
    "DCGM_FI_DEV_XID_ERRORS": "dcgm-exporter (default-counters.csv)",
    "DCGM_FI_DEV_GPU_UTIL": "dcgm-exporter (default-counters.csv)",
    "DCGM_FI_DEV_GPU_TEMP": "dcgm-exporter (default-counters.csv)",
    "DCGM_FI_DEV_POWER_USAGE": "dcgm-exporter (default-counters.csv)",
    "nginx_up": "prometheus-nginx-exporter 0.11",
    "nginx_connections_active": "prometheus-nginx-exporter 0.11",
    "nginx_connections_accepted": "prometheus-nginx-exporter 0.11",
    "nginx_connections_handled": "prometheus-nginx-exporter 0.11",
    "nginx_http_requests_total": "prometheus-nginx-exporter 0.11",
}

# The exporters' addresses on the host (a per-host Prometheus reads them on loopback).
NODE_JOB, VLLM_JOB, FUNASR_JOB, DCGM_JOB = "node", "vllm", "funasr", "dcgm"
NGINX_JOB = "nginx"


def vllm_metric_versions() -> list[str]:
    return sorted(p.stem for p in (paths.data_dir() / "vllm_metrics").glob("*.json"))


@cache
def vllm_metrics(version: str) -> dict[str, Any]:
    """The metrics vLLM `version` registers: name -> {type, series}."""
    path = paths.data_dir() / "vllm_metrics" / f"{version}.json"
    return json.loads(path.read_text())["metrics"]


def vllm_series(version: str) -> set[str]:
    return {s for metric in vllm_metrics(version).values() for s in metric["series"]}


def vllm_targets(host_vars: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One static target group per engine: its loopback address, the service and unit."""
    default_host = paths.role_setting(host_vars, "vllm_service", "vllm_service_host")
    offset = paths.role_setting(host_vars, "vllm_service", "vllm_service_engine_port_offset")
    groups = []
    for service in paths.role_setting(host_vars, "vllm_service", "vllm_service_services") or []:
        pairs = vllm_services.engine_endpoints(service, default_host, offset)
        for unit, (host, port) in zip(vllm_services.unit_names(service), pairs, strict=True):
            address = vllm_services.probe_host(host)
            address = f"[{address}]" if ":" in address else address
            groups.append(
                {
                    "targets": [f"{address}:{port}"],
                    "labels": {"aiprov_service": str(service["name"]), "aiprov_unit": unit},
                }
            )
    return groups


def funasr_target(host_vars: Mapping[str, Any]) -> str | None:
    """FunASR's /health URL on this host, where a FunASR model is configured."""
    if not paths.role_setting(host_vars, "funasr_service", "funasr_service_model"):
        return None
    host = vllm_services.probe_host(
        str(paths.role_setting(host_vars, "funasr_service", "funasr_service_host"))
    )
    port = int(paths.role_setting(host_vars, "funasr_service", "funasr_service_port"))
    return f"http://{host}:{port}/health"


def _static(job: str, target: str, interval: str) -> dict[str, Any]:
    return {"job_name": job, "scrape_interval": interval, "static_configs": [{"targets": [target]}]}


def prometheus_config(host_vars: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """prometheus.yml of a per-host Prometheus.

    settings: scrape_interval, evaluation_interval, prometheus_port,
    node_exporter_port, alertmanager (bool), alertmanager_port, rules_file,
    dcgm (bool), dcgm_port, blackbox (bool), blackbox_port, nginx_exporter_port.
    """
    interval = str(settings["scrape_interval"])
    jobs = [
        _static("prometheus", f"127.0.0.1:{settings['prometheus_port']}", interval),
        _static(NODE_JOB, f"127.0.0.1:{settings['node_exporter_port']}", interval),
    ]
    engines = vllm_targets(host_vars)
    if engines:
        jobs.append(
            {
                "job_name": VLLM_JOB,
                "scrape_interval": interval,
                "metrics_path": "/metrics",
                "static_configs": engines,
            }
        )
    health = funasr_target(host_vars)
    if health and boolean(settings.get("blackbox"), strict=False):
        jobs.append(
            {
                "job_name": FUNASR_JOB,
                "scrape_interval": interval,
                "metrics_path": "/probe",
                "params": {"module": ["http_2xx"]},
                "static_configs": [{"targets": [health], "labels": {"aiprov_service": "funasr"}}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {
                        "target_label": "__address__",
                        "replacement": f"127.0.0.1:{settings['blackbox_port']}",
                    },
                ],
            }
        )
    if boolean(settings.get("dcgm"), strict=False):
        jobs.append(_static(DCGM_JOB, f"127.0.0.1:{settings['dcgm_port']}", interval))
    jobs.extend(_nginx_jobs(host_vars, settings, interval))
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": str(settings["evaluation_interval"]),
        },
        "rule_files": [str(settings["rules_file"])],
        "scrape_configs": jobs,
    }
    if boolean(settings.get("alertmanager"), strict=False):
        config["alerting"] = {
            "alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{settings['alertmanager_port']}"]}]}
            ]
        }
    return config


def nginx_status_url(host_vars: Mapping[str, Any]) -> str | None:
    """The front's status page the nginx exporter reads, where the gateway
    role writes one (aiprov.gateway.status_port), else None."""
    port = gateway.status_port(host_vars)
    return f"http://127.0.0.1:{port}/stub_status" if port else None


def _nginx_jobs(host_vars: Mapping[str, Any], settings: Mapping[str, Any], interval: str):
    if not nginx_status_url(host_vars):
        return []
    return [_static(NGINX_JOB, f"127.0.0.1:{settings['nginx_exporter_port']}", interval)]


def _alert(name: str, expr: str, duration: str, severity: str, summary: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {"summary": summary},
    }


def rules(host_vars: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The alert rules (a Prometheus rules file) for what breaks an inference server.

    settings: models_mountpoint, disk_free_ratio, kv_cache_ratio,
    gpu_memory_ratio, latency_slo_seconds (the p95 end-to-end latency of a
    service whose slo: names no e2e_p95_ms), restart_count, dcgm (bool).
    """
    units = r"aiprov-.+[.]service|nginx[.]service"
    service_rules = [
        _alert(
            "AiprovTargetDown",
            "up == 0",
            "2m",
            "critical",
            "{{ $labels.job }} target {{ $labels.instance }} does not answer",
        ),
        _alert(
            "AiprovUnitNotActive",
            f'node_systemd_unit_state{{name=~"{units}",state="active"}} == 0',
            "2m",
            "critical",
            "{{ $labels.name }} is not active",
        ),
        _alert(
            "AiprovUnitRestartLoop",
            f'increase(node_systemd_service_restart_total{{name=~"{units}"}}[15m])'
            f" >= {int(settings['restart_count'])}",
            "0m",
            "critical",
            "{{ $labels.name }} restarted {{ $value }} times in 15 minutes",
        ),
        _alert(
            "AiprovModelsDiskFilling",
            f'node_filesystem_avail_bytes{{mountpoint="{settings["models_mountpoint"]}"}}'
            f' / node_filesystem_size_bytes{{mountpoint="{settings["models_mountpoint"]}"}}'
            f" < {float(settings['disk_free_ratio'])}",
            "5m",
            "warning",
            "the models disk ({{ $labels.mountpoint }}) has {{ $value | humanizePercentage }} free",
        ),
    ]
    if funasr_target(host_vars):
        service_rules.append(
            _alert(
                "AiprovFunasrUnhealthy",
                f'probe_success{{job="{FUNASR_JOB}"}} == 0',
                "2m",
                "critical",
                "FunASR's /health fails",
            )
        )
    if nginx_status_url(host_vars):
        service_rules.append(
            _alert(
                "AiprovNginxDown",
                f'nginx_up{{job="{NGINX_JOB}"}} == 0',
                "2m",
                "critical",
                "the key-checking front's nginx on {{ $labels.instance }} does not answer",
            )
        )
    vllm_rules = [
        _alert(
            "AiprovVllmKvCacheHigh",
            f"vllm:kv_cache_usage_perc > {float(settings['kv_cache_ratio'])}",
            "5m",
            "warning",
            "{{ $labels.aiprov_service }}: KV cache {{ $value | humanizePercentage }} used",
        ),
        _alert(
            "AiprovVllmRequestsWaitingGrowing",
            "vllm:num_requests_waiting > 0 and delta(vllm:num_requests_waiting[10m]) > 0",
            "10m",
            "warning",
            "{{ $labels.aiprov_service }}: {{ $value }} requests waiting, and more each time",
        ),
        _alert(
            "AiprovVllmPreempting",
            "rate(vllm:num_preemptions_total[5m]) > 0",
            "15m",
            "warning",
            "{{ $labels.aiprov_service }} preempts requests: its KV cache is too small",
        ),
    ]
    default_slo = float(settings["latency_slo_seconds"])
    entries = paths.role_setting(host_vars, "vllm_service", "vllm_service_services") or []
    # A service's own target is its slo: e2e_p95_ms, the one `aiprov check` holds it to.
    slos = {
        str(s["name"]): slo.targets(s)["e2e_p95_ms"] / 1000
        for s in entries
        if "e2e_p95_ms" in slo.targets(s)
    }
    services = [str(s["name"]) for s in entries]
    for name in services:
        p95 = (
            "histogram_quantile(0.95, sum by (aiprov_service, le) ("
            f'rate(vllm:e2e_request_latency_seconds_bucket{{aiprov_service="{name}"}}[5m])))'
        )
        vllm_rules.append(
            _alert(
                "AiprovVllmLatencyOverSlo",
                f"{p95} > {slos.get(name, default_slo)}",
                "10m",
                "warning",
                f"{name}: p95 end-to-end latency {{{{ $value | humanizeDuration }}}}"
                f" over its SLO of {slos.get(name, default_slo)}s",
            )
        )
    groups = [
        {"name": "aiprov-services", "rules": service_rules},
        {"name": "aiprov-vllm", "rules": vllm_rules},
    ]
    if boolean(settings.get("dcgm"), strict=False):
        ratio = float(settings["gpu_memory_ratio"])
        groups.append(
            {
                "name": "aiprov-gpu",
                "rules": [
                    _alert(
                        "AiprovGpuMemoryNearFull",
                        "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)"
                        f" > {ratio}",
                        "10m",
                        "warning",
                        "GPU {{ $labels.gpu }}: memory {{ $value | humanizePercentage }} used",
                    ),
                    _alert(
                        "AiprovGpuXidError",
                        "max_over_time(DCGM_FI_DEV_XID_ERRORS[5m]) > 0",
                        "0m",
                        "critical",
                        "GPU {{ $labels.gpu }}: Xid {{ $value }}",
                    ),
                ],
            }
        )
    return {"groups": groups}


# ---- the metric names a PromQL expression reads -------------------------------------------

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
             "group_right", "bool", "offset", "inf", "nan"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are no function,
    keyword or label (a simple reading, enough for the rules above)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if word.lower() in _KEYWORDS or following.startswith("("):
            continue
        if re.fullmatch(r"\d+(?:ms|[smhdwy])", text[match.start() - 1 : match.end()].strip()):
            continue
        names.add(word)
    return names
