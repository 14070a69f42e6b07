"""Local sandbox hosts: podman containers with systemd as PID 1.

For people without GPU servers (and for aiprov's own tests): each host is a
container from a Debian image that build-image.sh makes with debootstrap.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from aiprov import paths

LABEL = "aiprov.sandbox"
OS_SUITES = {"debian12": "bookworm", "debian13": "trixie"}


class SandboxError(Exception):
    pass


@dataclass
class SandboxHost:
    name: str
    state: str
    image: str
    address: str


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(paths.data_dir() / "containers.conf"))
    return env


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            ["podman", *args], capture_output=True, text=True, env=podman_env(), check=False
        )
    except FileNotFoundError:
        raise SandboxError("podman is not installed (apt-get install podman runc)") from None
    if check and result.returncode != 0:
        raise SandboxError(f"podman {' '.join(args)}: {result.stderr.strip()}")
    return result


def image_name(os_name: str) -> str:
    return f"localhost/aiprov-{os_name}:latest"


def build_image(os_name: str) -> None:
    """Build (or reuse the cached) image for `os_name`."""
    if os_name not in OS_SUITES:
        raise SandboxError(f"unknown OS '{os_name}' (choose from {', '.join(OS_SUITES)})")
    script = paths.data_dir() / "build-image.sh"
    result = subprocess.run(
        ["bash", str(script), OS_SUITES[os_name], f"aiprov-{os_name}"],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SandboxError(f"image build failed:\n{result.stderr.strip()}")


def host_names(count: int) -> list[str]:
    return [f"aiprov-sandbox-{index}" for index in range(1, count + 1)]


def up(count: int, os_name: str, inventory_dir: Path) -> list[SandboxHost]:
    """Start `count` hosts (keeping running ones) and write their inventory."""
    if count < 1:
        raise SandboxError("--hosts must be at least 1")
    build_image(os_name)
    existing = {host.name: host for host in status()}
    for name in host_names(count):
        if name in existing:
            if existing[name].state != "running":
                _podman("start", name)
            continue
        _podman(
            "run", "--detach", "--name", name, "--hostname", name,
            "--label", f"{LABEL}=1", "--systemd", "always",
            image_name(os_name), "/sbin/init",
        )  # fmt: skip
    write_inventory(host_names(count), inventory_dir)
    return status()


def down() -> list[str]:
    """Remove every sandbox host."""
    names = [host.name for host in status()]
    if names:
        _podman("rm", "--force", "--time", "5", *names)
    return names


def status() -> list[SandboxHost]:
    result = _podman("ps", "--all", "--filter", f"label={LABEL}", "--format", "json")
    hosts = []
    for entry in json.loads(result.stdout or "[]"):
        name = entry["Names"][0]
        address = ""
        if entry.get("State") == "running":
            inspect = _podman(
                "inspect", "--format", "{{.NetworkSettings.IPAddress}}", name, check=False
            )
            address = inspect.stdout.strip()
        hosts.append(SandboxHost(name, entry.get("State", "?"), entry.get("Image", ""), address))
    return sorted(hosts, key=lambda h: h.name)


def write_inventory(names: list[str], inventory_dir: Path) -> Path:
    """Write hosts.yml for the sandbox hosts; the directory's group_vars stay."""
    inventory_dir.mkdir(parents=True, exist_ok=True)
    hosts_file = inventory_dir / "hosts.yml"
    content = {
        "all": {
            "children": {
                "sandbox": {
                    "hosts": {name: None for name in names},
                    "vars": {"ansible_connection": "containers.podman.podman"},
                }
            }
        }
    }
    header = "---\n# Written by `aiprov sandbox up`: podman containers on this machine.\n"
    hosts_file.write_text(header + yaml.safe_dump(content, sort_keys=False))
    return hosts_file
