"""Fleet cache benchmark: every host downloading from the hub against aiprov's fleet cache.

Prints figures; it is not a timed test. Four sandbox hosts (podman containers
with systemd, Debian 12), a generated model of --size-mb in --shards files
(random bytes as safetensors shards with their index, in a git-lfs repository,
as real large models are) served by a real Olah mirror with nginx in front
(tests/fixtures/hub_mirror.sh), and the upstream link, from the mirror to the
hosts, shaped with tc to --rate-mbit (HTB on the podman bridge, matching the
mirror's port only: traffic between the hosts is not shaped).

  setup      `aiprov models pull` once with a tiny model: packages, the hub
             client, the cache's rsync daemon (not timed)
  per-host   every host downloads the model from the mirror at once, with the
             models role's helper, as the guides do on each server
  cache      the cache host downloads once, then the other hosts copy it over
             the LAN from its rsync daemon (the role's order before streaming)
  streaming  the cache host downloads once while the other hosts follow it,
             copying each shard from its rsync daemon as soon as it is complete
             (the role's order now)
  aiprov     `aiprov models pull` with models_cache_host, all of it (Ansible's
             own time included; it streams)

The physical limit is one download at the link rate: model bytes / rate. The
target: the whole fleet within 1.2x that limit.

    python bench/models_fleet.py                      # 4 hosts, 300 MB in 6, 100 Mbit/s
    python bench/models_fleet.py --size-mb 100 --shards 2 --rate-mbit 50 --keep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from aiprov import runner

ROOT = Path(__file__).resolve().parent.parent
MIRROR = ROOT / "tests" / "fixtures" / "hub_mirror.sh"
PREFIX = "aiprov-mol-models-bench"
IMAGE = "localhost/aiprov-debian12:latest"
REPO = "aiprov-bench/random-weights"
HELPER = "/usr/local/lib/aiprov/model_fetch.py"
OLAH_PORT = 18575
MODELS_ROOT = "/srv/models"


def sh(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, text=True, **kwargs)


def podman(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return sh("podman", *argv, **kwargs)


def gateway() -> str:
    out = podman(
        "network", "inspect", "podman", "--format", "{{(index .Subnets 0).Gateway}}",
        capture_output=True,
    ).stdout  # fmt: skip
    return out.strip()


def start_hosts(count: int) -> list[str]:
    names = [f"{PREFIX}-{i}" for i in range(1, count + 1)]
    for name in names:
        podman("rm", "-f", name, capture_output=True)
        podman(
            "run", "-d", "--name", name, "--hostname", name, "--runtime", "runc",
            "--cgroup-manager", "cgroupfs", "--ulimit", "nofile=16384:16384",
            "--ulimit", "nproc=4096:4096", "--pull", "never", IMAGE, "/sbin/init",
            capture_output=True,
        )  # fmt: skip
    return names


def make_model(hub: Path, size_mb: int, shards: int) -> int:
    """Safetensors shards of random bytes and their index, committed through git-lfs.

    Returns the bytes of every file the hosts download."""
    repo = hub / "repos" / "models" / REPO
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    weight_map = {}
    for number in range(1, shards + 1):
        name = f"model-{number:05d}-of-{shards:05d}.safetensors"
        mb = size_mb // shards + (1 if number <= size_mb % shards else 0)
        size = mb * 1_000_000
        tensor = f"layers.{number}.weight"
        header = json.dumps({tensor: {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
        header += " " * (-len(header) % 8)
        with (repo / name).open("wb") as f:
            f.write(struct.pack("<Q", len(header)) + header.encode())
            for _ in range(mb):
                f.write(os.urandom(1_000_000))
        weight_map[tensor] = name
    index = {"metadata": {"total_size": size_mb * 1_000_000}, "weight_map": weight_map}
    (repo / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n")
    (repo / "config.json").write_text('{"model_type": "bench"}\n')
    (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    git = ["git", "-C", str(repo)]
    sh(*git, "init", "-q", "-b", "main")
    sh(*git, "lfs", "install", "--local", capture_output=True)
    sh(*git, "add", "-A")
    sh(*git, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q", "-m", "x")
    return sum(f.stat().st_size for f in repo.iterdir() if f.is_file())


def shape(port: int, rate_mbit: int) -> None:
    """HTB on the bridge: the mirror's traffic to the hosts at rate_mbit, the rest unshaped."""
    unshape()
    tc = ["tc"]
    sh(*tc, "qdisc", "add", "dev", "podman0", "root", "handle", "1:", "htb", "default", "20")
    sh(*tc, "class", "add", "dev", "podman0", "parent", "1:", "classid", "1:10", "htb",
       "rate", f"{rate_mbit}mbit", "ceil", f"{rate_mbit}mbit")  # fmt: skip
    sh(*tc, "class", "add", "dev", "podman0", "parent", "1:", "classid", "1:20", "htb",
       "rate", "10gbit")  # fmt: skip
    sh(*tc, "filter", "add", "dev", "podman0", "parent", "1:", "protocol", "ip", "u32",
       "match", "ip", "sport", str(port), "0xffff", "flowid", "1:10")  # fmt: skip


def unshape() -> None:
    subprocess.run(["tc", "qdisc", "del", "dev", "podman0", "root"], capture_output=True)


def write_inventory(path: Path, hosts: list[str], gw: str, cache: str, ids: list[str]) -> None:
    catalog = [
        {"id": "tiny", "hub": "huggingface", "repo": "aiprov-test/tiny-qwen2"},
        {"id": "bench", "hub": "huggingface", "repo": REPO},
    ]
    inventory = {
        "all": {
            "hosts": {name: {} for name in hosts},
            "vars": {
                "ansible_connection": "containers.podman.podman",
                "models_root": MODELS_ROOT,
                "models_hf_endpoint": f"http://{gw}:{OLAH_PORT + 1}",
                "models_pip_index_url": f"http://{gw}:{OLAH_PORT + 2}/simple/",
                "models_catalog": catalog,
                "models_enabled": ids,
                "models_cache_host": cache,
            },
        }
    }
    path.write_text(yaml.safe_dump(inventory))


def pull(inventory: Path) -> float:
    start = time.monotonic()
    result = runner.run(runner.RunOptions(inventory=str(inventory), playbook="models", forks=8))
    elapsed = time.monotonic() - start
    if result.rc != 0:
        for failure in result.state.failures:
            print(f"FAILED {failure.host}: {failure.task}: {failure.message}", file=sys.stderr)
        raise SystemExit(f"aiprov models pull failed (rc {result.rc}): {result.artifacts}")
    return elapsed


def helper(host: str, spec: dict, python: str) -> dict:
    done = subprocess.run(
        ["podman", "exec", "-i", host, python, HELPER],
        input=json.dumps(spec), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{host}: helper failed: {done.stdout.strip()} {done.stderr.strip()}")
    return json.loads(done.stdout)


def clear(hosts: list[str]) -> None:
    for host in hosts:
        podman("exec", host, "rm", "-rf", f"{MODELS_ROOT}/bench")


def spec(gw: str, source: str) -> dict:
    return {
        "id": "bench", "hub": "huggingface", "repo": REPO, "revision": "main",
        "allow_patterns": [], "ignore_patterns": [], "local_dir": f"{MODELS_ROOT}/bench",
        "endpoint": f"http://{gw}:{OLAH_PORT + 1}", "source": source,
        "tools_bin": "/opt/aiprov/models-tools/bin", "reserve_bytes": 0, "bwlimit_kib": 0,
        "check": False,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--shards", type=int, default=6, help="Weight files (default 6).")
    parser.add_argument("--rate-mbit", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="Leave the hosts running.")
    args = parser.parse_args()
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "cli/aiprov/data/containers.conf"))
    gw = gateway()
    work = Path(tempfile.mkdtemp(prefix="aiprov-models-bench-"))
    hub = work / "hub"
    hosts = start_hosts(args.hosts)
    try:
        sh("bash", str(MIRROR), "build", str(hub))
        model_bytes = make_model(hub, args.size_mb, args.shards)
        sh("bash", str(MIRROR), "start", str(hub), gw, str(OLAH_PORT))
        sh("bash", str(MIRROR), "front", str(hub), gw, str(OLAH_PORT + 1), str(OLAH_PORT), "0")
        sh("bash", str(MIRROR), "pypi", str(hub), gw, str(OLAH_PORT + 2), "huggingface_hub==2.4.0")
        inventory = work / "hosts.yml"

        # Setup (not timed): every host gets the hub client (no cache host), then
        # the cache host its rsync daemon with a module for the bench model.
        write_inventory(inventory, hosts, gw, "", ["tiny"])
        print(f"setup: {pull(inventory):.0f} s", flush=True)
        write_inventory(inventory, hosts, gw, hosts[0], ["tiny", "bench"])
        print(f"setup with cache: {pull(inventory):.0f} s", flush=True)

        shape(OLAH_PORT + 1, args.rate_mbit)
        limit = model_bytes * 8 / (args.rate_mbit * 1e6)
        python = "/opt/aiprov/models-tools/bin/python"

        clear(hosts)
        start = time.monotonic()
        with ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(lambda h: helper(h, spec(gw, "hub"), python), hosts))
        per_host = time.monotonic() - start
        print(f"per-host: {per_host:.1f} s", flush=True)

        clear(hosts)
        start = time.monotonic()
        helper(hosts[0], spec(gw, "hub"), python)
        source = f"rsync://{cache_address(hosts[0])}:8730/bench/"
        with ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(lambda h: helper(h, spec(gw, source), "/usr/bin/python3"), hosts[1:]))
        cached = time.monotonic() - start
        print(f"cache: {cached:.1f} s", flush=True)

        clear(hosts)
        follow = spec(gw, source) | {"follow": True, "follow_timeout": 120}
        start = time.monotonic()

        def finished(host: str, spec: dict, python: str) -> tuple[dict, float]:
            return helper(host, spec, python), time.monotonic() - start

        with ThreadPoolExecutor(len(hosts)) as pool:
            hub_download = pool.submit(finished, hosts[0], spec(gw, "hub"), python)
            copies = [pool.submit(finished, h, follow, "/usr/bin/python3") for h in hosts[1:]]
            cache_done = hub_download.result()[1]
            followers = [copy.result() for copy in copies]
        streaming = time.monotonic() - start
        print(
            f"streaming: {streaming:.1f} s; the cache host finished at {cache_done:.1f} s,"
            f" its followers at {', '.join(f'{done:.1f}' for _, done in followers)} s, having"
            f" copied {', '.join(str(r['streamed_bytes']) for r, _ in followers)} bytes"
            " before the cache host's marker",
            flush=True,
        )

        clear(hosts)
        write_inventory(inventory, hosts, gw, hosts[0], ["tiny", "bench"])
        whole = pull(inventory)

        print()
        print(
            f"hosts {len(hosts)}, model {model_bytes / 1e6:.0f} MB in {args.shards} shards,"
            f" link {args.rate_mbit} Mbit/s"
        )
        print(f"physical limit (one download at the link rate): {limit:.1f} s")
        print(f"{'mode':<40}{'seconds':>9}{'x limit':>9}")
        for name, seconds in (
            ("per-host downloads (the guides)", per_host),
            ("fleet cache, copies after the download", cached),
            ("fleet cache, streaming (helper)", streaming),
            ("aiprov models pull, fleet cache", whole),
        ):
            print(f"{name:<40}{seconds:>9.1f}{seconds / limit:>9.2f}")
        print(
            f"streaming: the cache host's own download {cache_done:.1f} s"
            f" ({cache_done / limit:.2f}x), the last follower {streaming - cache_done:.1f} s later"
        )
    finally:
        unshape()
        subprocess.run(["bash", str(MIRROR), "stop", str(hub)], check=False)
        if not args.keep:
            for host in hosts:
                subprocess.run(["podman", "rm", "-f", host], capture_output=True, check=False)
            shutil.rmtree(work, ignore_errors=True)
    return 0


def cache_address(host: str) -> str:
    out = podman("inspect", host, "--format", "{{.NetworkSettings.IPAddress}}", capture_output=True)
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
