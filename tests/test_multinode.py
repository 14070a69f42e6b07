"""One model across several hosts: the nodes, each node's units, the plan's
stages, the front on the head only, the group restart and the watcher."""

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from aiprov import gateway, plan, vllm_services
from aiprov.cli import main

ROOT = Path(__file__).resolve().parents[1]
WATCH = ROOT / "roles" / "vllm_service" / "files" / "vllm-group-watch"
KEY = "0123456789abcdef0123456789abcdef"

SERVICE = {
    "name": "llm",
    "model": "/models/qwen3-32b",
    "served_name": "LLM",
    "port": 8000,
    "gpus": [0, 1, 2, 3],
    "tensor_parallel_size": 4,
    "pipeline_parallel_size": 2,
    "multinode": {"hosts": ["gpu01", "gpu02"], "probe_interval": 5, "probe_timeout": 30},
}
SETTINGS = {
    "venv": "/opt/v",
    "user": "aiprov",
    "group": "aiprov",
    "home": "/var/lib/aiprov",
    "key_file": "/etc/aiprov/vllm-api-key.env",
    "host": "127.0.0.1",
    "models_root": "/data/models",
    "environment": {"HF_HUB_OFFLINE": "1"},
    "gpu": True,
    "start_timeout": 1800,
    "restart_sec": 10,
    "restart_max_delay": 300,
    "limit_nofile": 65536,
    "groups": {},
    "addresses": {"gpu01": "10.0.0.1", "gpu02": "10.0.0.2"},
    "interface": "ens1f0",
    "front_scheme": "http",
}


def units_on(node: str, service=SERVICE, **settings):
    return {
        u["name"]: u for u in vllm_services.units([service], {**SETTINGS, "node": node, **settings})
    }


def test_nodes_from_a_list_or_a_group_sorted():
    assert vllm_services.nodes(SERVICE) == ["gpu01", "gpu02"]
    by_group = {**SERVICE, "multinode": {"group": "pair"}}
    assert vllm_services.nodes(by_group, {"pair": ["b2", "a1"]}) == ["a1", "b2"]
    assert vllm_services.node_rank(by_group, "b2", {"pair": ["b2", "a1"]}) == 1
    assert vllm_services.node_rank(by_group, "c3", {"pair": ["b2", "a1"]}) is None
    assert vllm_services.node_rank({"name": "x"}, "anything") == 0


def test_the_head_serves_the_api_the_other_node_runs_headless():
    head, other = units_on("gpu01"), units_on("gpu02")
    assert sorted(head) == sorted(other) == ["aiprov-vllm-llm", "aiprov-vllm-llm.watch"]
    argv = head["aiprov-vllm-llm"]["exec_start"]
    assert argv[:3] == ["/opt/v/bin/python", "-m", vllm_services.ENTRYPOINT_MODULE]
    assert argv[-10:] == [
        "--distributed-executor-backend", "mp", "--nnodes", "2", "--node-rank", "0",
        "--master-addr", "10.0.0.1", "--master-port", "29501",
    ]  # fmt: skip
    assert head["aiprov-vllm-llm"]["health_url"] == "http://127.0.0.1:18000/health"
    worker = other["aiprov-vllm-llm"]
    assert worker["exec_start"][:2] == ["/opt/v/bin/python", vllm_services.HEADLESS_LAUNCHER]
    assert worker["exec_start"][-6:] == [
        "--node-rank",
        "1",
        "--master-addr",
        "10.0.0.1",
        "--master-port",
        "29501",
    ]
    assert worker["health_url"] == ""  # no API: the head's gate waits for the whole group
    # A node waiting for its peers ignores SIGTERM: systemd's stop ends in SIGKILL soon.
    assert worker["stop_timeout"] == head["aiprov-vllm-llm"]["stop_timeout"] == 20


def test_each_node_announces_its_address_and_the_interface_between_hosts():
    head, other = units_on("gpu01"), units_on("gpu02")
    assert head["aiprov-vllm-llm"]["environment"]["VLLM_HOST_IP"] == "10.0.0.1"
    env = other["aiprov-vllm-llm"]["environment"]
    assert env["VLLM_HOST_IP"] == "10.0.0.2"
    assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "ens1f0"
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    cpu = units_on("gpu02", gpu=False)["aiprov-vllm-llm"]["environment"]
    assert "NCCL_SOCKET_IFNAME" not in cpu and "GLOO_SOCKET_IFNAME" not in cpu
    given = {
        **SERVICE,
        "multinode": {**SERVICE["multinode"], "interface": "ib0", "master_addr": "192.0.2.7"},
    }
    cpu = units_on("gpu02", given, gpu=False)["aiprov-vllm-llm"]
    assert cpu["environment"]["GLOO_SOCKET_IFNAME"] == "ib0"
    assert cpu["exec_start"][-4:] == ["--master-addr", "192.0.2.7", "--master-port", "29501"]


def test_the_watchers_probe_a_completion_on_the_head_and_the_front_elsewhere():
    head = units_on("gpu01")["aiprov-vllm-llm.watch"]
    assert head["exec_start"] == [
        vllm_services.GROUP_WATCH, "head", "aiprov-vllm-llm.service",
        "http://127.0.0.1:18000/v1/completions", "LLM", "5", "30",
    ]  # fmt: skip
    assert head["user"] == "root" and head["environment_files"] == [SETTINGS["key_file"]]
    worker = units_on("gpu02", front_scheme="https")["aiprov-vllm-llm.watch"]
    assert worker["exec_start"] == [
        vllm_services.GROUP_WATCH, "worker", "aiprov-vllm-llm.service",
        "https://10.0.0.1:8000/health", "5",
    ]  # fmt: skip
    assert not any(KEY in " ".join(unit["exec_start"]) for unit in units_on("gpu02").values())


def test_only_the_head_has_an_endpoint_a_route_and_units_for_it():
    settings = {**SETTINGS, "node": "gpu02"}
    assert vllm_services.endpoints([SERVICE], settings) == []
    assert [
        e["unit"] for e in vllm_services.endpoints([SERVICE], {**settings, "node": "gpu01"})
    ] == ["aiprov-vllm-llm"]
    assert vllm_services.units([SERVICE], {**settings, "node": "gpu03"}) == []
    host_vars = {"vllm_service_services": [SERVICE], "vllm_service_api_key": KEY, "groups": {}}
    assert gateway.routes({**host_vars, "inventory_hostname": "gpu02"}) == []
    assert [r["port"] for r in gateway.routes({**host_vars, "inventory_hostname": "gpu01"})] == [
        8000
    ]


def test_a_change_on_any_node_restarts_the_whole_group():
    def written(*names):
        return {"results": [{"changed": True, "item": {"name": n}} for n in names]}

    hostvars = {
        "gpu01": {"service_unit_written": written(), "vllm_service_key": {"changed": False}},
        "gpu02": {
            "service_unit_written": written("aiprov-vllm-llm"),
            "vllm_service_key": {"changed": False},
        },
    }
    settings = {**SETTINGS, "node": "gpu01"}
    assert vllm_services.group_restarts([SERVICE], settings, hostvars) == [
        "aiprov-vllm-llm",
        "aiprov-vllm-llm.watch",
    ]
    hostvars["gpu02"]["service_unit_written"] = written("aiprov-vllm-llm.watch")  # a watcher alone
    assert vllm_services.group_restarts([SERVICE], settings, hostvars) == []
    hostvars["gpu01"]["vllm_service_key"] = {"changed": True}
    assert vllm_services.group_restarts([SERVICE], {**settings, "node": "gpu02"}, hostvars) != []


def test_node_addresses_prefer_the_gathered_ipv4():
    hostvars = {
        "a": {
            "ansible_facts": {"default_ipv4": {"address": "10.1.0.5"}},
            "ansible_host": "a.example",
        },
        "b": {"ansible_host": "b.example"},
        "c": {},
    }
    assert vllm_services.node_addresses(["a", "b", "c"], hostvars) == {
        "a": "10.1.0.5",
        "b": "b.example",
        "c": "c",
    }


@pytest.mark.parametrize(
    ("layers", "pp", "split"),
    [
        (64, 2, [32, 32]),
        (2, 2, [1, 1]),
        (61, 4, [15, 15, 16, 15]),
        (62, 4, [15, 16, 16, 15]),
        (7, 2, [4, 3]),
    ],
)
def test_stage_layers_split_as_vllm_does(layers, pp, split):
    assert plan.stage_layers(layers, pp) == split
    assert sum(split) == layers


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


PAIR = {
    "hosts.yml": """
all:
  children:
    h100:
      children:
        pair:
          hosts:
            gpu01:
            gpu02:
""",
    "group_vars/pair.yml": """
nvidia_driver_branch: "580"
vllm_service_api_key: "{{ lookup('ansible.builtin.env', 'AIPROV_VLLM_API_KEY') }}"
vllm_service_version: "0.32.0"
models_catalog:
  - {id: qwen3-32b, hub: huggingface, repo: Qwen/Qwen3-32B, revision: main}
vllm_service_services:
  - name: llm
    model: qwen3-32b
    served_name: LLM
    port: 8000
    gpus: [0, 1, 2, 3, 4, 5, 6, 7]
    tensor_parallel_size: 8
    pipeline_parallel_size: 2
    gpu_memory_utilization: 0.9
    max_model_len: 32768
    multinode:
      group: pair
""",
}


def test_a_pair_of_h100_hosts_validates_and_plans_a_stage_on_each(tmp_path):
    inv = write(tmp_path, PAIR)
    env = {"AIPROV_VLLM_API_KEY": KEY}
    result = CliRunner().invoke(main, ["validate", "-i", str(inv)], env=env)
    assert result.exit_code == 0, result.output + result.stderr
    result = CliRunner().invoke(main, ["plan", "-i", str(inv), "--format", "json"], env=env)
    assert result.exit_code == 0, result.output + result.stderr
    hosts = {h["host"]: h for h in json.loads(result.stdout)["hosts"]}
    first, second = (hosts[name]["services"][0] for name in ("gpu01", "gpu02"))
    assert first["multinode"] == {
        "node_rank": 0,
        "nodes": ["gpu01", "gpu02"],
        "stages": [0],
        "layers": [0, 31],
    }
    assert second["multinode"]["stages"] == [1] and second["multinode"]["layers"] == [32, 63]
    # Each host's 8 GPUs hold one stage: a sixteenth of the weights each.
    assert first["weights_per_gpu_gib"] == pytest.approx(first["weights_gib"] / 16, abs=0.01)
    assert [len(hosts[n]["gpus"][0]["services"]) for n in ("gpu01", "gpu02")] == [1, 1]
    text = CliRunner().invoke(main, ["plan", "-i", str(inv)], env={**env, "COLUMNS": "120"})
    assert "llm stage 1/2" in text.stdout and "llm stage 2/2" in text.stdout


class _Engine(BaseHTTPRequestHandler):
    status = 200
    seen: ClassVar[list[tuple[str, str, str]]] = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        type(self).seen.append((self.path, self.headers.get("Authorization", ""), body))
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def engine():
    _Engine.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def fake_systemctl(tmp_path: Path, state: str = "active") -> Path:
    """A systemctl that answers `show` and logs what it is asked to do."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/calls\n'
        'case "$*" in\n'
        f"  *ActiveState*) echo {state} ;;\n"
        f"  *InvocationID*) cat {tmp_path}/invocation 2>/dev/null || echo run1 ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return bin_dir


def watch(tmp_path: Path, bin_dir: Path, *args: str, seconds: float) -> None:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "VLLM_API_KEY": KEY}
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(
            [sys.executable, str(WATCH), *args], env=env, timeout=seconds, capture_output=True
        )


def restarts(tmp_path: Path) -> list[str]:
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return [c for c in calls if c.startswith("restart")]


def test_the_head_watcher_restarts_the_head_after_two_failed_completions(tmp_path, engine):
    url = f"http://127.0.0.1:{engine.server_port}/v1/completions"
    bin_dir = fake_systemctl(tmp_path)
    watch(tmp_path, bin_dir, "head", "aiprov-vllm-llm.service", url, "LLM", "0.2", "2", seconds=1.5)
    assert restarts(tmp_path) == []  # a serving group is left alone
    path, auth, body = _Engine.seen[0]
    assert path == "/v1/completions" and auth == f"Bearer {KEY}"
    assert json.loads(body) == {"model": "LLM", "prompt": "aiprov group probe", "max_tokens": 1}
    _Engine.status = 500
    try:
        watch(
            tmp_path,
            bin_dir,
            "head",
            "aiprov-vllm-llm.service",
            url,
            "LLM",
            "0.2",
            "2",
            seconds=1.5,
        )
    finally:
        _Engine.status = 200
    assert restarts(tmp_path)[0] == "restart --no-block aiprov-vllm-llm.service"


def test_the_worker_watcher_restarts_once_the_head_it_joined_is_gone(tmp_path, engine):
    bin_dir = fake_systemctl(tmp_path)
    gone = "http://127.0.0.1:9/health"  # nothing listens on the discard port here
    watch(tmp_path, bin_dir, "worker", "aiprov-vllm-llm.service", gone, "0.2", seconds=1.2)
    assert restarts(tmp_path) == []  # a head that never answered is still starting
    url = f"http://127.0.0.1:{engine.server_port}/health"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "VLLM_API_KEY": KEY}
    args = [sys.executable, str(WATCH), "worker", "aiprov-vllm-llm.service", url, "0.2"]
    with subprocess.Popen(args, env=env) as watcher:
        try:
            time.sleep(1.0)
            assert restarts(tmp_path) == []  # the head answers: nothing to do
            assert _Engine.seen[0][:2] == ("/health", f"Bearer {KEY}")
            engine.shutdown()
            engine.server_close()
            time.sleep(1.0)
        finally:
            watcher.kill()
    assert restarts(tmp_path)[0] == "restart --no-block aiprov-vllm-llm.service"


def test_the_watcher_refuses_bad_arguments():
    result = subprocess.run(
        [sys.executable, str(WATCH), "head", "x"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("vllm-group-watch head UNIT")


def test_status_counts_a_multinode_service_down_when_a_completion_fails(engine):
    from aiprov import status

    url = f"http://127.0.0.1:{engine.server_port}"
    found = [
        status.Endpoint("gpu01", "llm", "LLM", url, KEY, multinode=True),
        status.Endpoint("gpu01", "small", "S", url, KEY),
    ]

    def metrics_up(endpoints):
        return [status.Reading(up=True) for _ in endpoints]

    assert [r.up for r in status.collect(found, metrics_up)] == [True, True]
    path, auth, body = _Engine.seen[-1]
    assert (path, auth, json.loads(body)["max_tokens"]) == ("/v1/completions", f"Bearer {KEY}", 1)
    _Engine.status = 504
    try:
        readings = status.collect(found, metrics_up)
    finally:
        _Engine.status = 200
    assert [r.up for r in readings] == [False, True]  # only the multi-node one is asked
    assert readings[0].error == "a completion answered HTTP 504 (a pipeline stage may be lost)"


def test_status_reaches_a_multinode_service_on_its_head_only():
    from aiprov import status
    from aiprov.inventory import Host

    def host(name):
        variables = {"vllm_service_services": [SERVICE], "vllm_service_api_key": KEY}
        return Host(name=name, groups=["pair"], vars=variables)

    def render(_host, value):
        return value

    head = status.endpoints(host("gpu01"), render, members={"pair": ["gpu01", "gpu02"]})
    assert [(e.service, e.multinode) for e in head] == [("llm", True)]
    assert status.endpoints(host("gpu02"), render, members={"pair": ["gpu01", "gpu02"]}) == []


def test_monitoring_scrapes_a_multinode_engine_on_its_head_only():
    from aiprov import monitoring

    host_vars = {"vllm_service_services": [SERVICE], "groups": {}}
    head = monitoring.vllm_targets({**host_vars, "inventory_hostname": "gpu01"})
    assert [g["targets"] for g in head] == [["127.0.0.1:18000"]]
    assert monitoring.vllm_targets({**host_vars, "inventory_hostname": "gpu02"}) == []
