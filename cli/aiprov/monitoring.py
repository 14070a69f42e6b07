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

# The hosts of this group run the fleet's Prometheus (the first one, unless a
# host names its own monitoring_server); without the group, each monitored
# host runs its own.
FLEET_GROUP = "monitoring"


def vllm_metric_versions() -> list[str]:
    return sorted(p.stem for p in (paths.data_dir() / "vllm_metrics").glob("*.json"))


@cache
def vllm_metrics(version: str) -> dict[str, Any]:
    """The metrics vLLM `version` registers: name -> {type, series}."""
    path = paths.data_dir() / "vllm_metrics" / f"{version}.json"
    return json.loads(path.read_text())["metrics"]


def vllm_series(version: str) -> set[str]:
    return {s for metric in vllm_metrics(version).values() for s in metric["series"]}


def _setting(host_vars: Mapping[str, Any], key: str) -> Any:
    return paths.role_setting(host_vars, "monitoring", f"monitoring_{key}")


def server(name: str, host_vars: Mapping[str, Any], groups: Mapping[str, Any]) -> str | None:
    """The host whose Prometheus scrapes this one, or None where nothing does.

    A host of the group `monitoring` is its own (it runs the fleet's
    Prometheus); a monitored host (monitoring_enabled) is scraped by the host
    its monitoring_server names, else by the first host of that group, else
    by a Prometheus of its own.
    """
    members = [str(h) for h in (groups.get(FLEET_GROUP) or [])]
    if name in members:
        return name
    if not boolean(_setting(host_vars, "enabled"), strict=False):
        return None
    named = _setting(host_vars, "server")
    if named:
        return str(named)
    return members[0] if members else name


def placement(
    host_vars: Mapping[str, Any], name: str, groups: Mapping[str, Any], fleet_vars: Any = None
) -> dict[str, Any]:
    """What the monitoring role runs on a host: enabled (its exporters),
    prometheus (a Prometheus here), server (whose Prometheus scrapes it) and
    scraped (the other hosts this host's Prometheus scrapes through their
    fronts; fleet_vars: every host's variables, Ansible's hostvars)."""
    found = server(name, host_vars, groups)
    scraped = []
    if found == name and fleet_vars is not None:
        for other in groups.get("all") or []:
            other = str(other)
            if other != name and server(other, fleet_vars[other], groups) == name:
                scraped.append(other)
    return {
        "enabled": found is not None,
        "prometheus": found == name,
        "server": found,
        "scraped": scraped,
    }


def dcgm_runs(host_vars: Mapping[str, Any]) -> bool:
    """NVIDIA's DCGM exporter: always, never, or (auto) on GPU hosts with Docker."""
    mode = str(_setting(host_vars, "dcgm_exporter"))
    gpu_host = str(host_vars.get("aiprov_gpu_family") or "cpu") != "cpu"
    docker = boolean(host_vars.get("aiprov_docker_enabled", True), strict=False)
    return mode == "always" or (mode == "auto" and gpu_host and docker)


def blackbox_runs(host_vars: Mapping[str, Any]) -> bool:
    """The blackbox exporter probes FunASR's /health where FunASR runs."""
    return boolean(_setting(host_vars, "blackbox_enabled"), strict=False) and bool(
        funasr_target(host_vars)
    )


def exports(host_vars: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What a monitored host serves to a Prometheus: per target its job, the
    loopback address and path it is read at, the path the host's front
    serves it at (behind monitoring_scrape_key) and its labels."""

    def port(key: str) -> int:
        return int(_setting(host_vars, key))

    found = [
        {
            "job": NODE_JOB,
            "address": f"127.0.0.1:{port('node_exporter_port')}",
            "path": "/metrics",
            "front": "/node/metrics",
            "labels": {},
        }
    ]
    for group in vllm_targets(host_vars):
        unit = group["labels"]["aiprov_unit"]
        found.append(
            {
                "job": VLLM_JOB,
                "address": group["targets"][0],
                "path": "/metrics",
                "front": f"/vllm/{unit}/metrics",
                "labels": dict(group["labels"]),
            }
        )
    health = funasr_target(host_vars)
    if health and blackbox_runs(host_vars):
        found.append(
            {
                "job": FUNASR_JOB,
                "address": f"127.0.0.1:{port('blackbox_port')}",
                # The front asks for this one probe only (no open proxy for
                # the key's holder).
                "path": "/probe",
                "params": {"module": "http_2xx", "target": health},
                "front": "/funasr/probe",
                "labels": {"aiprov_service": "funasr"},
            }
        )
    if nginx_status_url(host_vars):
        # The front's own counters, through Debian's nginx exporter.
        found.append(
            {
                "job": NGINX_JOB,
                "address": f"127.0.0.1:{port('nginx_exporter_port')}",
                "path": "/metrics",
                "front": "/nginx/metrics",
                "labels": {},
            }
        )
    if dcgm_runs(host_vars):
        found.append(
            {
                "job": DCGM_JOB,
                "address": f"127.0.0.1:{port('dcgm_exporter_port')}",
                "path": "/metrics",
                "front": "/dcgm/metrics",
                "labels": {},
            }
        )
    return found


def front(name: str, host_vars: Mapping[str, Any]) -> tuple[str, str, int]:
    """(scheme, address, port) of the front's monitoring route on a host, as
    a Prometheus or `aiprov status` elsewhere reaches it."""
    address = str(_setting(host_vars, "address") or host_vars.get("ansible_host") or name)
    address = f"[{address}]" if ":" in address else address
    return gateway.scheme(host_vars), address, int(_setting(host_vars, "gateway_port"))


def _fleet_job(name: str, host_vars: Mapping[str, Any], interval: str, key_file: str):
    """One job per scraped host, through its front: each target keeps its
    own job label (Prometheus sets job from job_name only where a target has
    none) and is read at the path the front serves it at."""
    scheme, address, port = front(name, host_vars)
    job: dict[str, Any] = {
        "job_name": f"aiprov-host-{name}",
        "scrape_interval": interval,
        "scheme": scheme,
        "authorization": {"type": "Bearer", "credentials_file": key_file},
        "static_configs": [
            {
                "targets": [f"{address}:{port}"],
                "labels": {
                    "job": target["job"],
                    "__metrics_path__": target["front"],
                    "instance": name,
                    "aiprov_host": name,
                    **target["labels"],
                },
            }
            for target in exports(host_vars)
        ],
    }
    if scheme == "https" and gateway.self_signed(host_vars):
        # The host made its own certificate; its front still checks the key.
        job["tls_config"] = {"insecure_skip_verify": True}
    return job


def vllm_targets(host_vars: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One static target group per engine: its loopback address, the service and unit."""
    default_host = paths.role_setting(host_vars, "vllm_service", "vllm_service_host")
    offset = paths.role_setting(host_vars, "vllm_service", "vllm_service_engine_port_offset")
    groups = []
    services = paths.role_setting(host_vars, "vllm_service", "vllm_service_services") or []
    # A multi-node service's engine with an API runs on its head only.
    for service in vllm_services.api_services(services, host_vars):
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


def nginx_status_url(host_vars: Mapping[str, Any]) -> str | None:
    """The front's status page (the gateway role's stub_status on loopback),
    which the nginx exporter reads, on a monitored host with routes."""
    port = gateway.status_port(host_vars)
    return f"http://127.0.0.1:{port}/stub_status" if port else None


def prometheus_config(
    host_vars: Mapping[str, Any],
    settings: Mapping[str, Any],
    fleet_vars: Any = None,
    scraped: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """prometheus.yml of the Prometheus on a host: its own exporters on
    loopback, and each host in `scraped` (the fleet's, when this host runs
    the fleet's Prometheus) through that host's front with the scrape key.

    settings: host (its inventory name), scrape_interval, evaluation_interval,
    prometheus_port, alertmanager (bool), alertmanager_port, rules_file,
    scrape_key_file; fleet_vars: every host's variables (Ansible's hostvars).
    """
    interval = str(settings["scrape_interval"])
    name = str(settings["host"])
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "prometheus",
            "scrape_interval": interval,
            "static_configs": [{"targets": [f"127.0.0.1:{settings['prometheus_port']}"]}],
        }
    ]
    for target in exports(host_vars):
        job = next((j for j in jobs if j["job_name"] == target["job"]), None)
        if job is None:
            job = {"job_name": target["job"], "scrape_interval": interval,
                   "metrics_path": target["path"], "static_configs": []}  # fmt: skip
            if target.get("params"):
                job["params"] = {k: [v] for k, v in target["params"].items()}
            jobs.append(job)
        labels = {"aiprov_host": name, **target["labels"]}
        job["static_configs"].append({"targets": [target["address"]], "labels": labels})
    for other in scraped:
        jobs.append(
            _fleet_job(str(other), fleet_vars[other], interval, str(settings["scrape_key_file"]))
        )
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


def _alert(name: str, expr: str, duration: str, severity: str, summary: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {"summary": summary},
    }


def _monitored(
    host_vars: Mapping[str, Any],
    settings: Mapping[str, Any],
    fleet_vars: Any,
    scraped: list[str] | tuple[str, ...],
) -> list[tuple[str, Mapping[str, Any], str]]:
    """(name, variables, models mountpoint) of every host a Prometheus watches:
    its own, then those it scrapes (their mountpoint as their own monitoring
    role found it)."""
    found = [(str(settings["host"]), host_vars, str(settings["models_mountpoint"]))]
    for other in scraped:
        other_vars = fleet_vars[other]
        mountpoint = (
            _setting(other_vars, "models_mountpoint")
            or other_vars.get("_monitoring_found_mountpoint")
            or "/"
        )
        found.append((str(other), other_vars, str(mountpoint)))
    return found


def rules(
    host_vars: Mapping[str, Any],
    settings: Mapping[str, Any],
    fleet_vars: Any = None,
    scraped: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """The alert rules (a Prometheus rules file) for what breaks an inference
    server, on the host and on each host in `scraped` (prometheus_config's).

    settings: host, models_mountpoint, disk_free_ratio, kv_cache_ratio,
    gpu_memory_ratio, latency_slo_seconds (the p95 end-to-end latency of a
    service whose slo: names no e2e_p95_ms), restart_count.
    """
    hosts = _monitored(host_vars, settings, fleet_vars, scraped)
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
    ]
    for name, _, mountpoint in hosts:
        disk = f'{{aiprov_host="{name}",mountpoint="{mountpoint}"}}'
        service_rules.append(
            _alert(
                "AiprovModelsDiskFilling",
                f"node_filesystem_avail_bytes{disk} / node_filesystem_size_bytes{disk}"
                f" < {float(settings['disk_free_ratio'])}",
                "5m",
                "warning",
                "{{ $labels.aiprov_host }}: the models disk ({{ $labels.mountpoint }})"
                " has {{ $value | humanizePercentage }} free",
            )
        )
    if any(blackbox_runs(v) for _, v, _ in hosts):
        service_rules.append(
            _alert(
                "AiprovFunasrUnhealthy",
                f'probe_success{{job="{FUNASR_JOB}"}} == 0',
                "2m",
                "critical",
                "FunASR's /health fails",
            )
        )
    if any(nginx_status_url(v) for _, v, _ in hosts):
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
    for host, variables, _ in hosts:
        entries = paths.role_setting(variables, "vllm_service", "vllm_service_services") or []
        for entry in entries:
            name = str(entry["name"])
            # A service's own target is its slo: e2e_p95_ms, the one `aiprov check` holds it to.
            target = slo.targets(entry).get("e2e_p95_ms")
            seconds = target / 1000 if target is not None else default_slo
            p95 = (
                "histogram_quantile(0.95, sum by (aiprov_host, aiprov_service, le) (rate("
                f'vllm:e2e_request_latency_seconds_bucket{{aiprov_host="{host}",'
                f'aiprov_service="{name}"}}[5m])))'
            )
            vllm_rules.append(
                _alert(
                    "AiprovVllmLatencyOverSlo",
                    f"{p95} > {seconds}",
                    "10m",
                    "warning",
                    f"{host} {name}: p95 end-to-end latency {{{{ $value | humanizeDuration }}}}"
                    f" over its SLO of {seconds}s",
                )
            )
    groups = [
        {"name": "aiprov-services", "rules": service_rules},
        {"name": "aiprov-vllm", "rules": vllm_rules},
    ]
    if any(dcgm_runs(v) for _, v, _ in hosts):
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
