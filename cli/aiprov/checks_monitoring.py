"""The monitoring role's values that its argument specs cannot check: Prometheus
durations and sizes, alert thresholds, per-service SLOs, and the vLLM
versions whose metric names the alert rules were checked against."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any

from aiprov import gateway, monitoring
from aiprov.inventory import Host, Inventory, is_int, origin_file
from aiprov.paths import role_defaults
from aiprov.plan import SERVICES_KEY
from aiprov.problems import Problem
from aiprov.templating import is_template

# Prometheus' duration (model.ParseDuration) and its retention size (units.Base2Bytes).
_DURATION = re.compile(r"(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?")
_SIZE = re.compile(r"\d+(?:B|KB|MB|GB|TB|PB|EB)")
DURATIONS = ("monitoring_scrape_interval", "monitoring_evaluation_interval",
             "monitoring_retention_time")  # fmt: skip
RATIOS = ("monitoring_disk_free_ratio", "monitoring_kv_cache_ratio", "monitoring_gpu_memory_ratio")


def duration_problem(value: Any) -> str | None:
    text = str(value)
    if not text or not _DURATION.fullmatch(text) or not re.search(r"[1-9]", text):
        return f"'{text}' is not a Prometheus duration (a positive one such as 15s, 5m, 15d)"
    return None


def size_problem(value: Any) -> str | None:
    text = str(value)
    if text and not _SIZE.fullmatch(text):
        return f"'{text}' is not a size Prometheus takes (such as 512MB or 10GB; empty for none)"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if is_int(value) or isinstance(value, float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _values(host: Host) -> dict[str, Any]:
    return {**role_defaults("monitoring"), **host.vars}


def check_monitoring(inventory: Inventory) -> Iterator[Problem]:
    default = inventory.sources[-1]
    for host in inventory.hosts:
        values = _values(host)
        if values.get("monitoring_enabled") is not True:
            continue
        for name in (*DURATIONS, "monitoring_retention_size"):
            value = values.get(name)
            if value is None or is_template(value):
                continue
            check = size_problem if name == "monitoring_retention_size" else duration_problem
            problem = check(value)
            if problem:
                yield Problem(origin_file(value, default), name, problem)
        for name in RATIOS:
            value = values.get(name)
            number = _number(value)
            if value is None or is_template(value) or number is None:
                continue
            if not 0 < number <= 1:
                yield Problem(
                    origin_file(value, default), name, f"{value} is not a share in (0, 1]"
                )
        listen = values.get("monitoring_prometheus_listen")
        if isinstance(listen, str) and not is_template(listen):
            try:
                ipaddress.ip_address(listen)
            except ValueError:
                yield Problem(
                    origin_file(listen, default),
                    "monitoring_prometheus_listen",
                    f"'{listen}' is not an IP address",
                )
        yield from _slos(host, values, default)
        yield from _metric_data(host, values, default)


def _slos(host: Host, values: dict[str, Any], default: str) -> Iterator[Problem]:
    # A service's own latency target is its slo: (aiprov.slo checks it).
    slos = {"monitoring_latency_slo_seconds": values.get("monitoring_latency_slo_seconds")}
    for key, seconds in slos.items():
        number = _number(seconds)
        if seconds is None or is_template(seconds) or number is None:
            continue
        if not number > 0:
            yield Problem(
                origin_file(seconds, default), key, f"{seconds} is not a positive number of seconds"
            )


def _metric_data(host: Host, values: dict[str, Any], default: str) -> Iterator[Problem]:
    """The rules' vLLM metric names are checked against data for some versions only."""
    if not host.vars.get(SERVICES_KEY):
        return
    version = host.vars.get("vllm_service_version", role_defaults("vllm_service").get(
        "vllm_service_version"))  # fmt: skip
    known = monitoring.vllm_metric_versions()
    if version is None or is_template(version) or str(version) in known:
        return
    yield Problem(
        origin_file(version, default),
        "vllm_service_version",
        f"the monitoring role's alert rules are checked against the metric names of vLLM "
        f"{', '.join(known)} only; {version} may have renamed some (add its data with "
        "scripts/gen_vllm_metrics.py)",
        severity="warning",
    )


def check_grafana(inventory: Inventory) -> Iterator[Problem]:
    """What Grafana's mode needs (its choices are the role's argument specs',
    a URL's scheme checks_values' URL rule): url mode a URL and a token,
    compose mode Docker on the host."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        values = _values(host)
        mode = values.get("monitoring_grafana_mode")
        if values.get("monitoring_enabled") is not True or is_template(mode):
            continue
        if mode == "url":
            for key, what in (
                ("monitoring_grafana_url", "Grafana's base URL (https://grafana.example:3000)"),
                ("monitoring_grafana_token", "a Grafana service account token (Editor role)"),
            ):
                if not values.get(key):
                    yield Problem(
                        origin_file(mode, default), key, f"monitoring_grafana_mode url needs {what}"
                    )
        elif mode == "compose" and host.vars.get("aiprov_docker_enabled") is False:
            yield Problem(
                origin_file(mode, default),
                "monitoring_grafana_mode",
                "compose runs Grafana in Docker, which this host turns off (aiprov_docker_enabled)",
            )


def check_monitoring_fleet(inventory: Inventory) -> Iterator[Problem]:
    """Who scrapes whom (aiprov.monitoring.server): a named monitoring_server
    is a host of this inventory; a host scraped by another host's Prometheus
    has the scrape key its front will ask for, the one that Prometheus
    presents; the key is a bearer token."""
    default = inventory.sources[-1]
    groups = inventory.members()
    names = {host.name for host in inventory.hosts}
    for host in inventory.hosts:
        named = host.vars.get("monitoring_server")
        if named and not is_template(named) and str(named) not in names:
            yield Problem(
                origin_file(named, default),
                "monitoring_server",
                f"'{named}' is not a host of this inventory: name the host that runs the "
                f"fleet's Prometheus (or put it in the group {monitoring.FLEET_GROUP})",
            )
            continue
        key = _values(host).get("monitoring_scrape_key")
        if key and not is_template(key):
            problem = gateway.token_problem(str(key))
            if problem:
                yield Problem(origin_file(key, default), "monitoring_scrape_key", problem)
        server = monitoring.server(host.name, host.vars, groups)
        if server is None or server == host.name or server not in names:
            continue
        theirs = _values(inventory.host(server)).get("monitoring_scrape_key")
        if not key:
            yield Problem(
                origin_file(named, default) if named else default,
                "monitoring_scrape_key",
                f"{host.name} is scraped by the Prometheus on {server} through its front, "
                "which asks for monitoring_scrape_key: set it (the same on both hosts, in a vault)",
            )
        elif (
            theirs is not None
            and not is_template(key)
            and not is_template(theirs)
            and str(theirs) != str(key)
        ):
            yield Problem(
                origin_file(key, default),
                "monitoring_scrape_key",
                f"{host.name}'s front would ask for another key than the Prometheus on {server} "
                "presents: give both hosts the same monitoring_scrape_key",
            )
